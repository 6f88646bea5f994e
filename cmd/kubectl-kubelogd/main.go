// Command kubectl-kubelogd is the kubectl plugin `kubectl kubelogd`: `kubelogd tail` run
// inside a kubelogd pod through the API server, for readers without access to its volume.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kubelogd/kubelogd/internal/plugin"
)

func main() {
	os.Exit(run())
}

func run() int {
	ctx, stop := signalContext()
	defer stop()
	return plugin.Main(ctx, os.Args[1:], os.LookupEnv, os.Stdin, os.Stdout, os.Stderr)
}

// signalContext is cancelled by the first SIGINT or SIGTERM, which ends a --follow with
// exit 0; a second one exits at once. (On a terminal Ctrl-C goes to the remote tail as a
// key instead, and ends it there.)
func signalContext() (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
			return
		}
		<-ch
		os.Exit(130)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}
