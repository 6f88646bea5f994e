package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// haFlags are the flags of one replica sharing the output directory through shard
// Leases, with short durations so that takeovers happen within the test.
func haFlags(ns, id string, shards int) []string {
	return []string{"--shards", fmt.Sprint(shards), "--lease-namespace", ns, "--replica-id", id,
		"--lease-duration", "3s", "--renew-deadline", "2s", "--retry-period", "500ms"}
}

// heldBy returns the live holder of every shard Lease in ns ("" for none or expired).
func (e *env) heldBy(ns string) (map[string]string, error) {
	leases, err := e.c.Client.CoordinationV1().Leases(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, l := range leases.Items {
		if !strings.HasPrefix(l.Name, "kubelogd-shard-") {
			continue
		}
		out[l.Name] = liveHolder(l)
	}
	return out, nil
}

func liveHolder(l coordinationv1.Lease) string {
	s := l.Spec
	if s.HolderIdentity == nil || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return ""
	}
	if time.Since(s.RenewTime.Time) > time.Duration(*s.LeaseDurationSeconds)*time.Second {
		return ""
	}
	return *s.HolderIdentity
}

// waitShares waits until every one of shards Leases is held, each replica of ids holding
// the count given in want (by id).
func (e *env) waitShares(ns string, shards int, want map[string]int) {
	e.t.Helper()
	eventually(e.t, 3*time.Second+30*time.Second, fmt.Sprintf("shards shared as %v", want), func() (bool, string) {
		held, err := e.heldBy(ns)
		if err != nil {
			return false, err.Error()
		}
		got := map[string]int{}
		for _, h := range held {
			got[h]++
		}
		if len(held) != shards || got[""] > 0 {
			return false, fmt.Sprintf("%d leases, held %v", len(held), got)
		}
		for id, n := range want {
			if got[id] != n {
				return false, fmt.Sprintf("held %v", got)
			}
		}
		return true, ""
	})
}

// haPods creates the lease namespace and pods p-00… in ns, one container each that logs
// a line every interval until the returned stop is called (it waits for every writer).
func (e *env) haPods(ns, leaseNS string, pods int, every time.Duration) (stop func()) {
	e.t.Helper()
	if err := e.c.EnsureNamespace(context.Background(), leaseNS); err != nil {
		e.t.Fatal(err)
	}
	var stops []func() int
	for i := range pods {
		name := fmt.Sprintf("p-%02d", i)
		e.pod(ns, name, nil, "app")
		e.start(ns, name, "app")
		stops = append(stops, e.flow(ns, name, "app", every, 1, numbered(ns, name, "app", ns)))
	}
	return func() {
		var wg sync.WaitGroup
		for _, stop := range stops {
			wg.Add(1)
			go func() { defer wg.Done(); stop() }()
		}
		wg.Wait()
	}
}

// TestHAShards (issue #16): replicas share one output directory through shard Leases.
// Three replicas split twelve shards; one is SIGKILLed and the two others take its shards
// once its Leases expire; a fourth joins and takes its share; one leaves with SIGTERM and
// hands its shards over. Meanwhile twelve containers log without pause: every file is
// exact — nothing lost, nothing written twice — through every handover.
func TestHAShards(t *testing.T) {
	e := parallelEnv(t)
	const ns, leaseNS, shards, pods = "ha", "kubelogd-ha", 12, 12
	stopLogging := e.haPods(ns, leaseNS, pods, 40*time.Millisecond)
	dir := t.TempDir()
	start := func(id string) *daemon {
		d := e.kubelogd(dir, haFlags(leaseNS, id, shards)...)
		d.waitReady()
		return d
	}
	r := map[string]*daemon{}
	for _, id := range []string{"r0", "r1", "r2"} {
		r[id] = start(id)
	}
	e.waitShares(leaseNS, shards, map[string]int{"r0": 4, "r1": 4, "r2": 4})

	killed := time.Now()
	r["r1"].Kill()
	e.waitShares(leaseNS, shards, map[string]int{"r0": 6, "r2": 6})
	t.Logf("r1's shards taken %s after SIGKILL", time.Since(killed).Round(100*time.Millisecond))

	r["r3"] = start("r3")
	e.waitShares(leaseNS, shards, map[string]int{"r0": 4, "r2": 4, "r3": 4})
	if moved := r["r3"].metric("kubelogd_shards_held"); moved != 4 {
		t.Errorf("r3 holds %v shards by its metric, want 4", moved)
	}
	if got := r["r0"].metric("kubelogd_shard_handovers_total", "reason=acquired"); got < 4 {
		t.Errorf("r0: kubelogd_shard_handovers_total{reason=acquired} = %v, want at least 4", got)
	}
	// r0 judges from its last List of the Leases, up to a retry period old.
	eventually(t, 10*time.Second, "r0 sees every shard held", func() (bool, string) {
		v := r["r0"].metric("kubelogd_shard_unheld_seconds")
		return v == 0, fmt.Sprintf("kubelogd_shard_unheld_seconds = %v", v)
	})

	r["r0"].stop()
	e.waitShares(leaseNS, shards, map[string]int{"r2": 6, "r3": 6})

	stopLogging()
	for i := range pods {
		e.exact(dir, ns, fmt.Sprintf("p-%02d", i), "app")
	}
	for _, id := range []string{"r2", "r3"} {
		if v := r[id].metric("kubelogd_gaps_total"); v != 0 {
			t.Errorf("%s: kubelogd_gaps_total = %v, want 0", id, v)
		}
	}
}

// TestHAFrozenHolder (issue #16, fencing): a replica frozen past its Leases (SIGSTOP: a
// long GC pause, a partition) is replaced by the other while its pods keep logging; when
// it wakes it must not write into the files the other now holds: it finds its Leases
// taken, writes nothing (a write it still tries is refused and counted as fenced), then
// takes its share back through an ordinary handover. Every file stays exact.
func TestHAFrozenHolder(t *testing.T) {
	e := parallelEnv(t)
	const ns, leaseNS, shards, pods = "frozen", "kubelogd-frozen", 4, 8
	stopLogging := e.haPods(ns, leaseNS, pods, 20*time.Millisecond)
	dir := t.TempDir()
	r0 := e.kubelogd(dir, haFlags(leaseNS, "r0", shards)...)
	r0.waitReady()
	r1 := e.kubelogd(dir, haFlags(leaseNS, "r1", shards)...)
	r1.waitReady()
	e.waitShares(leaseNS, shards, map[string]int{"r0": 2, "r1": 2})
	time.Sleep(time.Second) // both write

	if err := r0.Cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	e.waitShares(leaseNS, shards, map[string]int{"r1": 4})
	time.Sleep(2 * time.Second) // r1 writes r0's former files
	if err := r0.Cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	// r0 finds its Leases gone, stops, and takes its share back through a handover.
	eventually(t, 30*time.Second, "r0 has noticed its shards lost", func() (bool, string) {
		v := r0.metric("kubelogd_shard_handovers_total", "reason=lost")
		return v >= 2, fmt.Sprintf("%v lost", v)
	})
	e.waitShares(leaseNS, shards, map[string]int{"r0": 2, "r1": 2})
	time.Sleep(time.Second)
	stopLogging()
	for i := range pods {
		e.exact(dir, ns, fmt.Sprintf("p-%02d", i), "app")
	}
	// r0's streams woke with lines in their sockets, which r1 had written meanwhile: its
	// writes of them were refused. (Without the fence r1 would have found them appended
	// and moved them aside to .<container>.fenced before its next write.)
	if v := r0.metric("kubelogd_write_errors_total", "reason=fenced"); v == 0 {
		t.Error("r0 wrote nothing after waking, or wrote without being refused: kubelogd_write_errors_total{reason=fenced} = 0")
	}
	for _, d := range []*daemon{r0, r1} {
		if v := d.metric("kubelogd_gaps_total"); v != 0 {
			t.Errorf("kubelogd_gaps_total = %v, want 0", v)
		}
	}
}
