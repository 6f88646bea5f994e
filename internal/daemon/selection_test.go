package daemon

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubelogd/kubelogd/informer"
)

// selRecorder is the collector's side of a selection: the pods passed on and released.
type selRecorder struct {
	mu       sync.Mutex
	seen     map[string]int // pod → states passed on
	deleted  []string
	released []string
}

func (r *selRecorder) OnPod(p informer.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[p.Namespace+"/"+p.Name]++
	if p.Deleted {
		r.deleted = append(r.deleted, p.Namespace+"/"+p.Name)
	}
}

func (r *selRecorder) release(_ context.Context, match func(ns, pod string) bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range []string{"a/p1", "b/p2"} {
		ns, pod, _ := strings.Cut(name, "/")
		if match(ns, pod) {
			r.released = append(r.released, name)
		}
	}
	return nil
}

func testPod(ns, name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "app"}}},
	}
}

// runSelection runs a selection of cfg over the pods a/p1 and b/p2 until the test ends,
// recording what it passes on and releases.
func runSelection(t *testing.T, cfg informer.Config) (*selection, *selRecorder, context.Context) {
	t.Helper()
	client := fake.NewClientset(testPod("a", "p1"), testPod("b", "p2"))
	rec := &selRecorder{seen: map[string]int{}}
	sel, err := newSelection(client, cfg, rec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	sel.release = rec.release
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- sel.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return sel, rec, ctx
}

// TestSelectionChange: a namespace added is passed on; one removed is released, not
// passed on as deleted; the informers in force keep reporting their sync.
func TestSelectionChange(t *testing.T) {
	sel, rec, ctx := runSelection(t, informer.Config{Namespaces: []string{"a"}})
	seen := func(name string) int {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return rec.seen[name]
	}
	deadline := time.Now().Add(10 * time.Second)
	for !sel.Synced() || seen("a/p1") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("a/p1 not passed on")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if seen("b/p2") != 0 {
		t.Fatal("b/p2 passed on before b was selected")
	}

	if err := sel.apply(ctx, informer.Config{Namespaces: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	if seen("b/p2") == 0 || !sel.Synced() {
		t.Fatalf("after adding b: b/p2 seen %d times, synced %v", seen("b/p2"), sel.Synced())
	}
	if err := sel.apply(ctx, informer.Config{Namespaces: []string{"b"}}); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.released, []string{"a/p1"}) || len(rec.deleted) > 0 {
		t.Fatalf("after removing a: released %q, deleted %q; want a/p1 released, nothing deleted", rec.released, rec.deleted)
	}
}

// TestSelectionChangeDeletedMeanwhile: a pod the old informers passed on, deleted before
// the new ones listed and its deletion not yet passed on when they switch, is passed on
// as deleted (its files get the deletion's handling), not released as a pod that left the
// selection; a pod of a namespace taken out of the selection that still exists is
// released.
func TestSelectionChangeDeletedMeanwhile(t *testing.T) {
	sel, rec, ctx := runSelection(t, informer.Config{Namespaces: []string{"a", "b"}})
	deadline := time.Now().Add(10 * time.Second)
	for !sel.Synced() {
		if time.Now().After(deadline) {
			t.Fatal("not synced")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The old informers passed a/ghost on; the API server no longer has it, and its
	// deletion has not come through them.
	sel.onPod(0, informer.Pod{Namespace: "a", Name: "ghost", UID: "uid-ghost", Node: "n1"})

	if err := sel.apply(ctx, informer.Config{Namespaces: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !slices.Equal(rec.deleted, []string{"a/ghost"}) || !slices.Equal(rec.released, []string{"b/p2"}) {
		t.Fatalf("deleted %q, released %q; want a/ghost deleted, b/p2 released", rec.deleted, rec.released)
	}
}
