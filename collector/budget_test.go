package collector

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubelogd/kubelogd/internal/shard"
	"github.com/kubelogd/kubelogd/sink"
)

// TestBudget: slots per node and in all, and when an idle stream must give its slot up.
func TestBudget(t *testing.T) {
	b := newBudget(2, 3, 0)
	for i, want := range []bool{true, true, false} {
		if got := b.acquire("n1"); got != want {
			t.Fatalf("acquire n1 #%d = %v, want %v (2 per node)", i, got, want)
		}
	}
	if !b.acquire("n2") || b.acquire("n3") {
		t.Fatal("the third slot in all must be the last (3 in all)")
	}
	if b.contended("n1") {
		t.Error("contended with nobody wanting a slot")
	}
	b.setWanting("n1", true)
	if !b.contended("n1") {
		t.Error("n1 is full and a polled container of n1 wants a slot: n1's idle stream must yield")
	}
	if b.contended("n2") {
		t.Error("n2's stream yielding frees nothing for n1, whose own budget is full")
	}
	b.setWanting("n1", false)
	b.setWanting("n3", true)
	if !b.contended("n2") || !b.contended("n1") {
		t.Error("the total is full and n3 has room: any idle stream must yield")
	}
	b.release("n2")
	if b.contended("n1") {
		t.Error("a slot is free: nobody must yield")
	}
	if !b.acquire("n3") {
		t.Error("n3 gets the freed slot")
	}
	b.setWanting("n3", false)
	if b.want != 0 || len(b.wanting) != 0 {
		t.Errorf("wanting not balanced: %d %v", b.want, b.wanting)
	}
	if u := newBudget(0, 0, 0); !u.acquire("n") || u.limited() {
		t.Error("a budget of 0 and 0 is unlimited")
	}
}

// TestBudgetClosingIsNoContention: a demoted stream's slot counts for its close, and the
// container it goes to is still waiting meanwhile; no other idle stream must give its slot
// up for it then (one demotion would bring more), nor may the slot be taken before the
// close is counted out. The same in all, when the total is what is full.
func TestBudgetClosingIsNoContention(t *testing.T) {
	for _, tc := range []struct {
		name                 string
		perNode, total       int
		pool, wantPool, idle string
	}{
		{"per node", 3, 0, "n", "n", "n"},
		{"in all", 0, 3, "n", "m", "n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newBudget(tc.perNode, tc.total, 0)
			for range 3 {
				if !b.acquire(tc.pool) {
					t.Fatal("acquire refused under the budget")
				}
			}
			b.setWanting(tc.wantPool, true)
			if !b.contended(tc.idle) {
				t.Fatal("full, and a polled container wants a slot: an idle stream must yield")
			}
			// One idle stream is demoted: its stream ends (closing), then its slot goes.
			b.closing(tc.pool)
			b.release(tc.pool)
			until := b.closingUntil()
			contended, taken := b.contended(tc.idle), b.acquire(tc.wantPool)
			if time.Now().After(until) {
				t.Skip("followCloseGrace passed during the checks: the machine is too loaded to tell")
			}
			if contended {
				t.Error("the demoted stream's slot is on its way to the waiting container: no other stream must yield")
			}
			if taken {
				t.Fatal("the slot was taken while the demoted stream's close still counts")
			}
			if d := time.Until(until); d > followCloseGrace {
				t.Errorf("closingUntil in %v, want within %v", d, followCloseGrace)
			}
			for deadline := time.Now().Add(time.Minute); !b.closingUntil().IsZero(); time.Sleep(10 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatal("the close still counts a minute later")
				}
			}
			if !b.acquire(tc.wantPool) {
				t.Error("the slot is free once the close is counted out")
			}
			b.setWanting(tc.wantPool, false)
			if !b.closingUntil().IsZero() || b.n != 3 {
				t.Errorf("closingUntil %v, %d held, want none closing and 3 held", b.closingUntil(), b.n)
			}
		})
	}
}

// TestTrialGivenBackWithoutSlot: a container granted the trial follow of a node that was
// out of inotify instances, but refused a slot by the follow budget, gives the trial back;
// otherwise no container of the node would ever follow again.
func TestTrialGivenBackWithoutSlot(t *testing.T) {
	tg, _ := testTarget(t, runningPod("c1", 0, ""))
	p := tg.snapshot()
	tg.c.budget = newBudget(1, 0, 0)
	tg.c.budget.acquire(p.Node) // another container holds the node's only slot
	tg.c.nodes.exhausted(p.Node)
	tg.c.nodes.now = func() time.Time { return time.Now().Add(time.Hour) } // the period out has passed
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	tg.readRunning(ctx, p, p.Container("app"))
	if ok, trial := tg.c.nodes.mayFollow(p.Node); !ok || !trial {
		t.Errorf("mayFollow = %v, %v after a trial without a slot: the trial was not given back", ok, trial)
	}
}

// TestResumeAheadGoesByContent: a cursor whose newest line was stamped in the future (the
// node's clock then stepped back) resumes by content, whatever the read: a poll has no
// stall probe to find the hidden lines, and from a sinceTime ahead of the present the
// kubelet would hide every line logged now (soak seed 167553592: 314 lines lost from a
// polled container with no marker).
func TestResumeAheadGoesByContent(t *testing.T) {
	tg, out := testTarget(t, runningPod("c1", 0, ""))
	now := time.Now()
	tg.c.cfg.Now = func() time.Time { return now }
	out.cur.Observe(now.Add(-time.Second), []byte("a"))
	if q := tg.newRequest(readPoll, false); q.byContent {
		t.Fatal("a cursor stamped in the past resumes by content")
	}
	out.cur.Observe(now.Add(30*time.Second), []byte("ahead"))
	for _, mode := range []readMode{readPoll, readFollow, readToEnd} {
		q := tg.newRequest(mode, false)
		if !q.byContent || q.opts.SinceTime != nil {
			t.Errorf("mode %d: byContent %v, sinceTime %v; want by content, no sinceTime", mode, q.byContent, q.opts.SinceTime)
		}
	}
}

// TestBudgetSharedByShards (issue #16): replicas that share the pods by shard split each
// node's budget among the shards, so that whichever replica holds which shards, the slots
// held on a node never sum to more than the per-node budget.
func TestBudgetSharedByShards(t *testing.T) {
	const perNode, shards = 5, 3
	// Each replica has its own budget; the three together hold every shard once.
	replicas := []*budget{newBudget(perNode, 0, shards), newBudget(perNode, 0, shards), newBudget(perNode, 0, shards)}
	held := 0
	for i := range 200 {
		pod := fmt.Sprintf("pod-%d", i)
		r := replicas[shard.Of("ns", pod, shards)] // replica k holds shard k
		if r.acquire(r.pool("n1", "ns", pod)) {
			held++
		}
	}
	if held != perNode {
		t.Errorf("three replicas hold %d slots of node n1, want its budget of %d", held, perNode)
	}
	// A pool's part: 5 over 3 shards is 2, 2, 1.
	b := newBudget(perNode, 0, shards)
	parts := map[int]int{}
	for i := range 200 {
		pod := fmt.Sprintf("pod-%d", i)
		if b.acquire(b.pool("n1", "ns", pod)) {
			parts[shard.Of("ns", pod, shards)]++
		}
	}
	if parts[0] != 2 || parts[1] != 2 || parts[2] != 1 {
		t.Errorf("slots by shard = %v, want 2, 2, 1", parts)
	}
	// More shards than slots: some shards' containers are all polled.
	few := newBudget(2, 0, 4)
	if p := few.pool("n1", "ns", podOfShard(t, 3, 4)); few.acquire(p) {
		t.Error("shard 3 of 4 has no part of a budget of 2, yet took a slot")
	}
	if p := few.pool("n2", "ns", podOfShard(t, 0, 4)); !few.acquire(p) || few.acquire(p) {
		t.Error("shard 0 of 4 has exactly one slot of a budget of 2 on each node")
	}
	if p := newBudget(2, 0, 0).pool("n1", "ns", "x"); p != "n1" {
		t.Errorf("without shards the pool is the node, got %q", p)
	}
}

// podOfShard returns a pod name of namespace "ns" in shard i of n.
func podOfShard(t *testing.T, i, n int) string {
	for k := range 1000 {
		if name := fmt.Sprintf("p%d", k); shard.Of("ns", name, n) == i {
			return name
		}
	}
	t.Fatalf("no pod name in shard %d of %d", i, n)
	return ""
}

// TestBudgetSet: a reload lowers and raises the bounds; slots held beyond a lowered
// bound stay held, and no new one is granted until the count is below it.
func TestBudgetSet(t *testing.T) {
	b := newBudget(0, 0, 0)
	if b.limited() {
		t.Fatal("an unlimited budget reports limits")
	}
	for range 3 {
		if !b.acquire("n1") {
			t.Fatal("an unlimited budget refused a slot")
		}
	}
	b.set(2, 0)
	if !b.limited() || b.acquire("n1") {
		t.Fatal("a slot granted beyond the lowered per-node bound")
	}
	b.release("n1")
	b.release("n1")
	if !b.acquire("n1") {
		t.Fatal("no slot below the lowered bound")
	}
	b.set(0, 0)
	if b.limited() || !b.acquire("n1") {
		t.Fatal("the bound not lifted")
	}
}

// TestQuietFor checks the second poll's wait after a first poll found only old lines: a
// quarter of the quiet time, within [least, most], spread over its upper half.
func TestQuietFor(t *testing.T) {
	least, most := time.Second, 30*time.Second
	for _, c := range []struct{ idle, lo, hi time.Duration }{
		{0, least, least},
		{6 * time.Second, least, least + least/2},
		{40 * time.Second, 5 * time.Second, 10 * time.Second},
		{time.Hour, most / 2, most},
	} {
		for range 200 {
			if d := quietFor(c.idle, least, most); d < c.lo || d > c.hi {
				t.Fatalf("quietFor(%v) = %v, want within [%v, %v]", c.idle, d, c.lo, c.hi)
			}
		}
	}
}

// TestReleaseWaitsForClosingStreams: a shard handed to another replica is released only
// once the follow streams closing on its nodes no longer count — the replica taking the
// pods over opens its follows on the same kubelets, which hold an ended stream's inotify
// instance until its close reaches them (followCloseGrace).
func TestReleaseWaitsForClosingStreams(t *testing.T) {
	m, err := sink.NewManager(sink.Config{Dir: t.TempDir(), MaxBackups: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	c := New(Config{MaxStreamsPerNode: 1}, fake.NewClientset().CoreV1(), m, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	pool := c.budget.pool("node-a", "ns", "p")
	if !c.budget.acquire(pool) {
		t.Fatal("no slot on an empty node")
	}
	c.budget.closing(pool) // the stream of a released target has just ended
	c.budget.release(pool)
	until := c.budget.closingUntil()
	if until.IsZero() {
		t.Fatal("a closing stream does not count")
	}
	if err := c.Release(ctx, func(string, string) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if now := time.Now(); now.Before(until) {
		t.Errorf("Release returned %v before the closing stream stopped counting", until.Sub(now))
	}
	if u := c.budget.closingUntil(); time.Now().Before(u) {
		t.Errorf("after Release, a closing stream counts until %v", u)
	}
}
