package daemon

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/collector"
)

// TestStopWhileStarting: SIGTERM (a cancelled context) while the start-up checks wait for
// an API server that does not answer is a clean stop, not a usage error (exit 2).
func TestStopWhileStarting(t *testing.T) {
	asked := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		<-r.Context().Done() // never answers
	}))
	defer srv.Close()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "`+srv.URL+`"}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
users: [{name: u, user: {}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := Config{Kubeconfig: kc, QPS: 5, Burst: 10}
	cfg.Sink.Dir = t.TempDir()
	cfg.Collector = collector.Config{StallTimeout: time.Minute}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	<-asked
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run stopped while starting = %v, want nil", err)
	}
}

// TestGroupStopsServersLast: on stop, the metrics and health server (started with last)
// keeps running until every worker — the collector draining its streams — has returned;
// and a failing worker stops the group with its error.
func TestGroupStopsServersLast(t *testing.T) {
	var g group
	release := make(chan struct{})
	serverStopped := make(chan struct{})
	var serverAliveWhileDraining bool
	g.last("server", func(ctx context.Context) error {
		<-ctx.Done()
		close(serverStopped)
		return nil
	})
	g.run("collector", func(ctx context.Context) error {
		<-ctx.Done()
		<-release // draining
		select {
		case <-serverStopped:
		default:
			serverAliveWhileDraining = true
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.wait(ctx, func() {}) }()
	cancel()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("wait = %v", err)
	}
	if !serverAliveWhileDraining {
		t.Fatal("the server stopped before the collector had drained")
	}

	var failing group
	failing.last("server", func(ctx context.Context) error { <-ctx.Done(); return nil })
	failing.run("informer", func(context.Context) error { return errors.New("boom") })
	failing.run("collector", func(ctx context.Context) error { <-ctx.Done(); return nil })
	if err := failing.wait(context.Background(), func() {}); err == nil || err.Error() != "informer: boom" {
		t.Fatalf("wait = %v, want informer: boom", err)
	}
}
