package informer

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// logBuffer collects a logger's output; the informers log from their own goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// failLists makes the first n pod lists fail with err (n < 0: all of them), and counts them.
func failLists(client *fake.Clientset, n int, err error) *atomic.Int32 {
	var calls atomic.Int32
	client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		if c := calls.Add(1); n < 0 || int(c) <= n {
			return true, nil, err
		}
		return false, nil, nil // on to the clientset's tracker
	})
	return &calls
}

// TestRunWaitsOutFailingFirstList: first lists that fail for longer than the warn interval
// do not end Run; it warns, reports why it is not synced, and syncs once a list succeeds.
func TestRunWaitsOutFailingFirstList(t *testing.T) {
	client := fake.NewClientset(pod("a", "p1"))
	calls := failLists(client, 2, apierrors.NewInternalError(errors.New("etcdserver: request timed out")))
	rec, logs := &recorder{}, &logBuffer{}
	d, err := New(client, Config{SyncWarnInterval: 50 * time.Millisecond}, rec, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.SyncError(); !errors.Is(err, ErrNotSynced) {
		t.Fatalf("SyncError before Run = %v, want ErrNotSynced", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()

	waitFor(t, func() bool {
		return calls.Load() >= 1 && strings.Contains(logs.String(), "waiting for the first list of pods")
	})
	err = d.SyncError()
	if !errors.Is(err, ErrNotSynced) || !strings.Contains(err.Error(), "all namespaces") || !strings.Contains(err.Error(), "etcdserver: request timed out") {
		t.Fatalf("SyncError during the failures = %v, want ErrNotSynced naming the scope and the last error", err)
	}
	waitFor(t, d.Synced)
	if calls.Load() < 3 {
		t.Fatalf("synced after %d lists, want the 2 failed ones retried", calls.Load())
	}
	if err := d.SyncError(); err != nil {
		t.Fatalf("SyncError after sync = %v", err)
	}
	waitFor(t, func() bool { return len(rec.names()) == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v after cancel, want nil", err)
	}
}

// TestRunFailsOnForbiddenList: a list refused with 403 is no outage to wait out: Run
// returns at once with an error naming the scope, and IsForbidden holds for it.
func TestRunFailsOnForbiddenList(t *testing.T) {
	client := fake.NewClientset()
	failLists(client, -1, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "", errors.New(`User "x" cannot list resource "pods"`)))
	d, err := New(client, Config{Namespaces: []string{"a"}, SyncWarnInterval: time.Hour}, &recorder{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(t.Context()) }()
	select {
	case err = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run still waiting 10s after a 403 on the list")
	}
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "cannot list/watch pods in namespace a") {
		t.Fatalf("Run = %v, want a Forbidden error naming namespace a", err)
	}
	if d.Synced() {
		t.Fatal("Synced after a refused list")
	}
}
