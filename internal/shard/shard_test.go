package shard

import (
	"context"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Of must never change: every replica, of every version in a rolling update, has to put
// a pod in the same shard. The expected values are FNV-1a computed independently.
func TestOf(t *testing.T) {
	for _, tc := range []struct {
		ns, pod string
		shards  int
		want    int
	}{
		{"default", "web-0", 12, 6},
		{"default", "web-0", 7, 1},
		{"kube-system", "coredns-abc", 12, 2},
		{"team-a", "job-x", 12, 7},
		{"team-a", "job-x", 1, 0},
	} {
		if got := Of(tc.ns, tc.pod, tc.shards); got != tc.want {
			t.Errorf("Of(%q, %q, %d) = %d, want %d", tc.ns, tc.pod, tc.shards, got, tc.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	valid := func() Config {
		return Config{
			Client: fake.NewClientset(), Namespace: "kubelogd", ReplicaID: "kubelogd-0", Shards: 4,
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			Owner: &fakeOwner{},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" for none
	}{
		{"valid", func(*Config) {}, ""},
		{"no client", func(c *Config) { c.Client = nil }, "Client is nil"},
		{"no owner", func(c *Config) { c.Owner = nil }, "Owner is nil"},
		{"no namespace", func(c *Config) { c.Namespace = "" }, "Namespace is empty"},
		{"no replica id", func(c *Config) { c.ReplicaID = "" }, "ReplicaID is empty"},
		{"replica id unfit for a name", func(c *Config) { c.ReplicaID = "Node_1" }, `ReplicaID "Node_1" cannot name a Lease "kubelogd-replica-Node_1"`},
		{"no shards", func(c *Config) { c.Shards = 0 }, "Shards is 0"},
		{"renew deadline not below lease duration", func(c *Config) { c.RenewDeadline = c.LeaseDuration }, "RenewDeadline 15s must be shorter than LeaseDuration 15s"},
		{"retry period not below renew deadline", func(c *Config) { c.RetryPeriod = c.RenewDeadline }, "RetryPeriod 10s must be shorter than RenewDeadline 10s"},
		{"lease under a second", func(c *Config) { c.LeaseDuration = 900 * time.Millisecond }, "LeaseDuration 900ms must be at least 1s"},
		{"zero retry period", func(c *Config) { c.RetryPeriod = 0 }, "RetryPeriod 0s must be positive"},
		{"several at once", func(c *Config) { c.Namespace, c.Shards = "", -1 }, "Namespace is empty: name the namespace of the Leases; Shards is -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := valid()
			tc.change(&cfg)
			_, err := New(cfg)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("New: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestParseShard(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
		ok   bool
	}{
		{"kubelogd-shard-0", 0, true},
		{"kubelogd-shard-11", 11, true},
		{"kubelogd-shard-12", 0, false}, // beyond the shard count
		{"kubelogd-shard-01", 0, false}, // not a name this package writes
		{"kubelogd-shard--1", 0, false},
		{"kubelogd-replica-a", 0, false},
		{"kube-scheduler", 0, false},
	} {
		if got, ok := parseShard(tc.name, 12); got != tc.want || ok != tc.ok {
			t.Errorf("parseShard(%q) = %d, %v; want %d, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

// Expiry counts whole microseconds of renewTime, not seconds.
func TestFree(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 3, 0, 0, 500_000_000, time.UTC)
	lease := func(holder string, renewed time.Time) *coordinationv1.Lease {
		l := &coordinationv1.Lease{}
		if holder != "" {
			l.Spec.HolderIdentity = new(holder)
		}
		l.Spec.LeaseDurationSeconds = new(int32(3))
		l.Spec.RenewTime = &metav1.MicroTime{Time: renewed}
		return l
	}
	for _, tc := range []struct {
		name string
		l    *coordinationv1.Lease
		now  time.Time
		want bool
	}{
		{"absent", nil, t0, true},
		{"released", lease("", t0), t0, true},
		{"held, renewed just now", lease("a", t0), t0, false},
		{"held, a microsecond before expiry", lease("a", t0), t0.Add(3*time.Second - time.Microsecond), false},
		{"held, at expiry", lease("a", t0), t0.Add(3 * time.Second), false},
		{"held, just past expiry", lease("a", t0), t0.Add(3*time.Second + time.Microsecond), true},
		{"held, no renewTime", &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: new("a")}}, t0, true},
	} {
		if got := free(tc.l, tc.now); got != tc.want {
			t.Errorf("%s: free = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Driven tick by tick on a fake clock against a fake clientset: a replica restarted under
// the same ID takes its former shard only once that Lease expired, at the next epoch;
// Holds follows the injected clock; a shard not renewed in time is stopped.
func TestTicksOnFakeClock(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	now := t0
	prior := func(shard int, id string, renewed time.Time, epoch int32) *coordinationv1.Lease {
		return &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: shardLeaseName(shard), Namespace: "ns"},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: new(id), LeaseDurationSeconds: new(int32(3)),
				RenewTime: &metav1.MicroTime{Time: renewed}, LeaseTransitions: new(epoch)},
		}
	}
	client := fake.NewClientset(prior(0, "r", t0.Add(-time.Second), 5), prior(1, "other", t0, 2))
	reg := newRegistry()
	owner := &fakeOwner{id: "r", reg: reg}
	m, err := New(Config{Client: client, Namespace: "ns", ReplicaID: "r", Shards: 2,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		Owner: owner, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	step := func(d time.Duration) {
		now = now.Add(d)
		m.tick(ctx)
	}

	step(0) // announces the replica only
	if held := m.Held(); len(held) != 0 {
		t.Fatalf("held %v in the first period", held)
	}
	step(time.Second) // shard 0's Lease, its own from before, still runs until t0+2s
	if held := m.Held(); len(held) != 0 {
		t.Fatalf("held %v before the Leases expired", held)
	}
	if d := m.Unheld(); d != 0 {
		t.Fatalf("Unheld = %s while both Leases run", d)
	}
	step(1500 * time.Millisecond) // t0+2.5s: shard 0 expired, shard 1 not
	if d := m.Unheld(); d != 0 {
		t.Fatalf("Unheld = %s, want 0: shard 0 was found expired only now", d)
	}
	if epoch, ok := m.Holds(0); !ok || epoch != 6 {
		t.Fatalf("Holds(0) = %d, %v; want epoch 6, one above its own former epoch", epoch, ok)
	}
	if _, ok := m.Holds(1); ok {
		t.Fatal("took shard 1 before its Lease expired")
	}
	step(time.Second) // t0+3.5s: shard 1 expired too
	if epoch, ok := m.Holds(1); !ok || epoch != 3 {
		t.Fatalf("Holds(1) = %d, %v; want epoch 3", epoch, ok)
	}

	// The fence follows the clock, not the ticks: no renewal for RenewDeadline ends it.
	now = now.Add(2 * time.Second)
	if held := m.Held(); len(held) != 0 {
		t.Fatalf("held %v past the renew deadline", held)
	}
	m.tick(ctx)
	for range 2 {
		m.stopDone(ctx, <-m.stopped)
	}
	// Both Leases lapse with nobody live to hold them: Unheld grows with the clock.
	now = now.Add(4 * time.Second)
	m.noteUnheld(&view{shards: map[int]*coordinationv1.Lease{0: prior(0, "r", t0, 6), 1: prior(1, "r", t0, 3)}})
	now = now.Add(7 * time.Second)
	if d := m.Unheld(); d != 7*time.Second {
		t.Errorf("Unheld = %s, want 7s", d)
	}
	if starts, stops, running := owner.counts(); starts != 2 || stops != 2 || len(running) != 0 {
		t.Errorf("owner: %d starts, %d stops, writing %v; want 2, 2, none", starts, stops, running)
	}
	if st := m.Stats(); st.Acquired != 2 || st.Lost != 2 {
		t.Errorf("stats %+v, want 2 acquired, 2 lost", st)
	}
	for _, v := range reg.violations() {
		t.Error(v)
	}
}

// A live replica that splits the pods into another number of shards stops the others
// from taking or shedding shards: its shard i holds other pods than theirs. Once its
// membership Lease expired, they go on.
func TestOtherShardCountBlocksRebalance(t *testing.T) {
	t0 := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	now := t0
	peer := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: replicaLeaseName("old"), Namespace: "ns",
			Annotations: map[string]string{shardsAnnotation: "8"}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: new("old"), LeaseDurationSeconds: new(int32(3)),
			RenewTime: &metav1.MicroTime{Time: t0}},
	}
	owner := &fakeOwner{id: "r", reg: newRegistry()}
	m, err := New(Config{Client: fake.NewClientset(peer), Namespace: "ns", ReplicaID: "r", Shards: 4,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
		Owner: owner, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	for range 4 {
		m.tick(t.Context())
		now = now.Add(500 * time.Millisecond)
	}
	if held := m.Held(); len(held) != 0 {
		t.Fatalf("took %v beside a live replica with 8 shards", held)
	}
	now = t0.Add(3*time.Second + time.Millisecond)
	m.tick(t.Context())
	if held := m.Held(); len(held) != 4 {
		t.Fatalf("holds %v once the other replica's Lease expired, want all 4", held)
	}
}
