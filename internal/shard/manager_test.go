package shard

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// settle bounds how long the replicas get to reach a state: generous, the tests prove
// what happens, not how fast.
const settle = testLeaseDuration + 10*time.Second

// Three replicas started together share twelve shards four each, and the Leases agree.
func TestThreeReplicasShareEvenly(t *testing.T) {
	e := newEnv(t, 12)
	a, b, c := e.start("a"), e.start("b"), e.start("c")
	e.waitShares(settle, map[*replica]int{a: 4, b: 4, c: 4})
	for _, r := range []*replica{a, b, c} {
		if st := r.m.Stats(); st.Lost != 0 {
			t.Errorf("%s lost shards while sharing: %+v", r.id, st)
		}
	}
}

// A replica shut down gracefully stops its shards, then releases them: the others take
// them without waiting for the Leases to expire.
func TestGracefulShutdownHandsOver(t *testing.T) {
	e := newEnv(t, 12)
	a, b, c := e.start("a"), e.start("b"), e.start("c")
	e.waitShares(settle, map[*replica]int{a: 4, b: 4, c: 4})
	before := c.m.Held()
	c.owner.mu.Lock()
	c.owner.onStop = func(s int) {
		// Stop comes before the release: the Lease is still c's while it runs.
		time.Sleep(100 * time.Millisecond)
		l, err := e.c.Client.CoordinationV1().Leases(e.ns).Get(context.Background(), shardLeaseName(s), metav1.GetOptions{})
		if err != nil || holder(l) != "c" {
			e.reg.violation("shard %d's Lease during c's Stop: %s (err %v)", s, describe(l), err)
		}
	}
	c.owner.mu.Unlock()

	c.stop()
	leases, err := e.leases()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range before {
		// Released, or already taken: never left to expire.
		if l := leases[s]; holder(l) == "c" {
			t.Errorf("shard %d still names c after its Run returned: %s", s, describe(l))
		}
	}
	if _, err := e.c.Client.CoordinationV1().Leases(e.ns).Get(context.Background(), replicaLeaseName("c"), metav1.GetOptions{}); err == nil {
		t.Error("c's membership Lease outlived its Run")
	}
	if starts, stops, running := c.owner.counts(); starts != 4 || stops != 4 || len(running) != 0 {
		t.Errorf("c's owner: %d starts, %d stops, writing %v; want 4, 4, none", starts, stops, running)
	}
	if st := c.m.Stats(); st.Released != 4 || st.Lost != 0 {
		t.Errorf("c's stats %+v, want 4 released and none lost", st)
	}
	start := time.Now()
	e.waitShares(settle, map[*replica]int{a: 6, b: 6})
	t.Logf("c's shards taken over %s after its Run returned", time.Since(start).Round(time.Millisecond))
}

// A replica killed without releasing anything keeps its shards until their Leases
// expire; then the others take them, at higher epochs.
func TestKilledReplicaExpires(t *testing.T) {
	e := newEnv(t, 12)
	a, b, c := e.start("a"), e.start("b"), e.start("c")
	e.waitShares(settle, map[*replica]int{a: 4, b: 4, c: 4})
	c.kill()
	last, err := e.leases()
	if err != nil {
		t.Fatal(err)
	}
	var theirs []int
	for s, l := range last {
		if holder(l) == "c" {
			theirs = append(theirs, s)
		}
	}
	if len(theirs) != 4 {
		t.Fatalf("after the kill, c's Leases are %v, want 4 still naming c", theirs)
	}
	e.waitShares(settle, map[*replica]int{a: 6, b: 6})
	now, err := e.leases()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range theirs {
		old, cur := last[s], now[s]
		if epochOf(cur) <= epochOf(old) {
			t.Errorf("shard %d re-acquired at epoch %d, not above c's %d", s, epochOf(cur), epochOf(old))
		}
		if cur.Spec.AcquireTime == nil || cur.Spec.AcquireTime.Time.Before(expiresAt(old)) {
			t.Errorf("shard %d taken at %v, before c's Lease expired at %v", s, cur.Spec.AcquireTime, expiresAt(old))
		}
	}
}

// Scaling 1 → 3 → 1: the first replica sheds exactly the 8 shards the newcomers take, one
// at a time, and nothing else moves; scaling back, it takes them all again.
func TestScaleUpAndDown(t *testing.T) {
	e := newEnv(t, 12)
	a := e.start("a")
	e.waitShares(settle, map[*replica]int{a: 12})
	b, c := e.start("b"), e.start("c")
	e.waitShares(settle, map[*replica]int{a: 4, b: 4, c: 4})
	if starts, stops, _ := a.owner.counts(); starts != 12 || stops != 8 {
		t.Errorf("a started %d and stopped %d shards, want 12 and 8", starts, stops)
	}
	for _, r := range []*replica{b, c} {
		if starts, stops, _ := r.owner.counts(); starts != 4 || stops != 0 {
			t.Errorf("%s started %d and stopped %d shards, want 4 and none", r.id, starts, stops)
		}
	}
	if st := a.m.Stats(); st.Shed != 8 || st.Lost != 0 {
		t.Errorf("a's stats %+v, want 8 shed and none lost", st)
	}
	b.stop()
	c.stop()
	e.waitShares(settle, map[*replica]int{a: 12})
	if starts, stops, _ := a.owner.counts(); starts != 20 || stops != 8 {
		t.Errorf("a started %d and stopped %d shards, want 20 and 8", starts, stops)
	}
}

// A replica cut off from the API server stops writing within RenewDeadline: Holds turns
// false, then Owner.Stop; the others take its shards once the Leases expired. Back in
// touch, it takes its share again, at epochs above any before.
func TestFenceWhenCutOff(t *testing.T) {
	e := newEnv(t, 12)
	a, b, c := e.start("a"), e.start("b"), e.start("c")
	e.waitShares(settle, map[*replica]int{a: 4, b: 4, c: 4})
	held := c.m.Held()
	cutAt := time.Now()
	c.cut.Store(true)
	// Holds is exact: false by RenewDeadline after the last renewal, sent before cutAt.
	eventually(t, testRenewDeadline+testRetryPeriod, "c's Holds turns false", func() (bool, string) {
		for _, s := range held {
			if _, ok := c.m.Holds(s); ok {
				return false, fmt.Sprintf("Holds(%d) still true", s)
			}
		}
		return true, ""
	})
	t.Logf("c's fences ended %s after the cut", time.Since(cutAt).Round(time.Millisecond))
	eventually(t, settle, "c's owner stopped", func() (bool, string) {
		_, stops, running := c.owner.counts()
		return stops == 4 && len(running) == 0, fmt.Sprintf("%d stops, writing %v", stops, running)
	})
	if st := c.m.Stats(); st.Lost != 4 || st.RenewFailures == 0 {
		t.Errorf("c's stats %+v, want 4 lost and renew failures", st)
	}
	e.waitShares(settle, map[*replica]int{a: 6, b: 6})

	c.cut.Store(false)
	e.waitShares(settle, map[*replica]int{a: 4, b: 4, c: 4})
	// The registry has checked that each start of a shard came at a higher epoch than the
	// one before, c's own re-acquisitions included.
}

// Another writer that takes a held shard's Lease makes the holder stop it at once, and
// the holder takes it back only after that writer's Lease expired, at a higher epoch.
func TestForeignHolderStopsShard(t *testing.T) {
	e := newEnv(t, 4)
	a := e.start("a")
	e.waitShares(settle, map[*replica]int{a: 4})
	leases := e.c.Client.CoordinationV1().Leases(e.ns)
	l, err := leases.Get(t.Context(), shardLeaseName(0), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	old := epochOf(l)
	l.Spec.HolderIdentity = new("intruder")
	l.Spec.LeaseTransitions = new(int32(old + 1))
	l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if l, err = leases.Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, settle, "a stops shard 0", func() (bool, string) {
		_, _, running := a.owner.counts()
		_, holds := a.m.Holds(0)
		_, writing := running[0]
		return !holds && !writing, fmt.Sprintf("Holds %v, writing %v", holds, writing)
	})
	e.waitShares(settle, map[*replica]int{a: 4})
	now, err := leases.Get(t.Context(), shardLeaseName(0), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if epochOf(now) <= old+1 || now.Spec.AcquireTime.Time.Before(expiresAt(l)) {
		t.Errorf("shard 0 taken back as %s, want an epoch above %d after %v", describe(now), old+1, expiresAt(l))
	}
}
