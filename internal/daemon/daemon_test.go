package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"

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

// TestServerError: which start-up check failures are waited out (the API server's own
// errors) and which end kubelogd at once (configuration).
func TestServerError(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"500", apierrors.NewInternalError(errors.New("etcd unavailable")), true},
		{"500 wrapped", fmt.Errorf("checking: %w", apierrors.NewInternalError(errors.New("x"))), true},
		{"503", apierrors.NewServiceUnavailable("starting"), true},
		{"429", apierrors.NewTooManyRequests("slow down", 1), true},
		{"504 server timeout", apierrors.NewServerTimeout(gr, "list", 1), true},
		{"500 with no status body", apierrors.NewGenericServerResponse(500, "get", gr, "", "", 0, false), true},
		{"403", apierrors.NewForbidden(gr, "", errors.New("no")), false},
		{"401", apierrors.NewUnauthorized("who are you"), false},
		{"404", apierrors.NewNotFound(gr, "x"), false},
		{"connection refused", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := serverError(tc.err); got != tc.want {
				t.Errorf("serverError(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
