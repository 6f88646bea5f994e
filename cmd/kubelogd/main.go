// Command kubelogd collects the logs of every container in a Kubernetes cluster into
// rotated files, one per container.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/kubelogd/kubelogd/internal/daemon"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run runs the daemon, or `kubelogd tail`, and returns the exit code. Help and the
// version go to stdout, errors to stderr.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "tail" {
		return runTail(args[1:], stdout, stderr)
	}
	cfg, logger, err := parse(args, stderr)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, helpText())
		return 0
	}
	if errors.Is(err, errVersion) {
		fmt.Fprintln(stdout, "kubelogd", version)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "kubelogd:", err)
		return 2
	}
	cfg.Version = version
	ctx, stop := signalContext(logger)
	defer stop()
	if err := daemon.Run(ctx, cfg, logger); err != nil {
		fmt.Fprintln(stderr, "kubelogd:", strings.TrimPrefix(err.Error(), daemon.ErrUsage.Error()+": "))
		if errors.Is(err, daemon.ErrUsage) {
			return 2
		}
		return 1
	}
	logger.Info("stopped")
	return 0
}

// signalContext is cancelled by the first SIGTERM or SIGINT; a second one exits at once.
func signalContext(logger *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case sig := <-ch:
			logger.Info("signal received, shutting down (send again to exit at once)", "signal", sig.String())
			cancel()
		case <-ctx.Done():
			return
		}
		<-ch
		logger.Warn("second signal: exiting without flushing")
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// newLogger returns kubelogd's logger, at the level of lvl, which it sets from level: a
// reload of the configuration file changes the level through lvl.
func newLogger(w io.Writer, format, level string, lvl *slog.LevelVar) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	lvl.Set(l)
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: want text or json", format)
}
