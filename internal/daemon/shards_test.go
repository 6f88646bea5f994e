package daemon

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/internal/shard"
)

type recorder struct {
	mu   sync.Mutex
	pods []string
}

func (r *recorder) OnPod(p informer.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pods = append(r.pods, p.Name)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.pods
	r.pods = nil
	slices.Sort(out)
	return out
}

// The gate passes on only the pods of held shards; a shard taken gets the latest state
// of its pods, deleted ones too (their files are finished by the new holder); a shard
// given up is released through the collector before Stop returns, and its pods are no
// longer passed on.
func TestShardGate(t *testing.T) {
	const shards = 4
	byShard := map[int][]string{}
	var names []string
	for i := 0; len(byShard[0]) < 2 || len(byShard[1]) < 1; i++ {
		n := "p-" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		s := shard.Of("ns", n, shards)
		byShard[s] = append(byShard[s], n)
		names = append(names, n)
	}
	next := &recorder{}
	g := newShardGate(shards, slog.New(slog.DiscardHandler))
	g.next = next
	pod := func(n string, deleted bool) informer.Pod {
		return informer.Pod{UID: types.UID("uid-" + n), Namespace: "ns", Name: n, Deleted: deleted}
	}
	for _, n := range names {
		g.OnPod(pod(n, false))
	}
	if got := next.take(); len(got) != 0 {
		t.Fatalf("pods passed on before any shard was held: %q", got)
	}
	g.OnPod(pod(byShard[0][1], true)) // deleted while nobody here held its shard
	g.Start(0, 1)
	if got, want := next.take(), slices.Sorted(slices.Values(byShard[0])); !slices.Equal(got, want) {
		t.Fatalf("Start(0) passed on %q, want shard 0's pods %q", got, want)
	}
	g.OnPod(pod(byShard[1][0], false))
	g.OnPod(pod(byShard[0][0], false))
	if got := next.take(); !slices.Equal(got, []string{byShard[0][0]}) {
		t.Fatalf("passed on %q, want only the held shard's pod %s", got, byShard[0][0])
	}
	var matched []string
	g.release = func(_ context.Context, match func(string, string) bool) error {
		for _, n := range names {
			if match("ns", n) {
				matched = append(matched, n)
			}
		}
		return nil
	}
	g.Stop(0)
	if slices.Sort(matched); !slices.Equal(matched, slices.Sorted(slices.Values(byShard[0]))) {
		t.Errorf("Stop(0) released %q, want shard 0's pods %q", matched, byShard[0])
	}
	g.OnPod(pod(byShard[0][0], false))
	if got := next.take(); len(got) != 0 {
		t.Errorf("a pod of a shard given up was passed on: %q", got)
	}
	g.Start(1, 1)
	g.now = func() time.Time { return time.Now().Add(sweepGrace) }
	if !g.owns("ns", byShard[1][0]) || g.owns("ns", byShard[0][0]) {
		t.Error("owns: want shard 1's pods only, once held for the sweep grace")
	}
	if got := g.share(); got != 0.25 {
		t.Errorf("share = %v with 1 of 4 shards, want 0.25", got)
	}
}
