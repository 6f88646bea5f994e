package main

import (
	"io"
	"log/slog"
	"os"

	"github.com/kubelogd/kubelogd/internal/tail"
)

// runTail runs `kubelogd tail`: it reads the collected files and needs no cluster access.
// The first SIGINT or SIGTERM ends a --follow cleanly (exit 0), a second exits at once.
func runTail(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signalContext(slog.New(slog.DiscardHandler))
	defer stop()
	return tail.Main(ctx, args, os.LookupEnv, stdout, stderr)
}
