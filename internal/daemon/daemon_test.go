package daemon

import (
	"context"
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
