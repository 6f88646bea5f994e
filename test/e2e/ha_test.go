package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
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
	e.waitSharesWithin(3*time.Second+30*time.Second, ns, shards, want)
}

// waitSharesWithin is waitShares with another timeout.
func (e *env) waitSharesWithin(timeout time.Duration, ns string, shards int, want map[string]int) {
	e.t.Helper()
	eventually(e.t, timeout, fmt.Sprintf("shards shared as %v", want), func() (bool, string) {
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

// TestHAScale (issue #16): 300 logging containers while the replicas scale 1 → 3, roll
// one at a time as deploy/ha's RollingUpdate does (the new replica first, then SIGTERM to
// the old: maxUnavailable 0), and scale back to 1. Each change moves the fewest shards
// that share the work evenly — a joining replica takes its share and nobody else's shards
// move — and an orderly handover never fences a write (the giver stops writing before it
// releases the Lease). Every file is exact at the end.
//
// The Leases have the shipped durations: an orderly handover does not wait for expiry,
// and on a loaded machine a shorter renew deadline loses shards to slow renewals, which
// is the fence at work, not a handover. A step in which a replica lost a shard that way
// is logged, and its move count not judged.
func TestHAScale(t *testing.T) {
	e := parallelEnv(t)
	const ns, leaseNS, shards = "scale", "kubelogd-scale", 12
	// 300 containers, as the issue asks, when the inotify limit leaves room for their
	// follow streams beside the other parallel tests' (make test raises it when it may).
	pods := 300
	if room := followBudget(t) - 200; room < pods {
		t.Logf("fs.inotify.max_user_instances leaves room for %d follow streams: %d pods instead of %d", room, max(room, 24), pods)
		pods = max(room, 24)
	}
	stopLogging := e.haPods(ns, leaseNS, pods, 2*time.Second)
	dir := t.TempDir()
	r := map[string]*daemon{}
	start := func(id string) {
		r[id] = e.kubelogd(dir, "--shards", fmt.Sprint(shards), "--lease-namespace", leaseNS, "--replica-id", id,
			"--lease-duration", "15s", "--renew-deadline", "10s", "--retry-period", "1s")
		r[id].waitReady()
	}
	counter := func(id, reason string) float64 {
		return r[id].metric("kubelogd_shard_handovers_total", "reason="+reason)
	}
	// healthy checks what a replica must show before it stops, and at the end: a write
	// fenced only if it lost a shard, no gap.
	healthy := func(id string) {
		t.Helper()
		if v, lost := r[id].metric("kubelogd_write_errors_total", "reason=fenced"), counter(id, "lost"); v != 0 && lost == 0 {
			t.Errorf("%s: %v writes fenced in orderly handovers: it wrote a shard it had given up", id, v)
		}
		if v := r[id].metric("kubelogd_gaps_total"); v != 0 {
			t.Errorf("%s: kubelogd_gaps_total = %v, want 0", id, v)
		}
	}
	retire := func(id string) { healthy(id); r[id].stop() }
	// step changes the replicas and checks that exactly gain[id] shards were acquired by
	// each replica of want, once the Leases and the replicas agree on the shares.
	step := func(what string, change func(), want map[string]int, gain map[string]float64) {
		t.Helper()
		acquired, lost := map[string]float64{}, map[string]float64{}
		for id := range want {
			if r[id] != nil {
				acquired[id], lost[id] = counter(id, "acquired"), counter(id, "lost")
			}
		}
		change()
		e.waitSharesWithin(90*time.Second, leaseNS, shards, want)
		eventually(t, 30*time.Second, what+": every replica's own count agrees", func() (bool, string) {
			got := map[string]float64{}
			for id, n := range want {
				if got[id] = r[id].metric("kubelogd_shards_held"); got[id] != float64(n) {
					return false, fmt.Sprintf("kubelogd_shards_held by replica: %v", got)
				}
			}
			return true, ""
		})
		judged := true
		for id := range want {
			if l := counter(id, "lost") - lost[id]; l != 0 {
				t.Logf("%s: %s lost %v shards to slow renewals (machine overloaded): moves not judged", what, id, l)
				judged = false
			}
		}
		for id := range want {
			if got := counter(id, "acquired") - acquired[id]; judged && got != gain[id] {
				t.Errorf("%s: %s acquired %v shards, want %v", what, id, got, gain[id])
			}
		}
	}

	step("start r0", func() { start("r0") }, map[string]int{"r0": 12}, map[string]float64{"r0": 12})
	step("r1 joins", func() { start("r1") }, map[string]int{"r0": 6, "r1": 6}, map[string]float64{"r1": 6})
	step("r2 joins", func() { start("r2") }, map[string]int{"r0": 4, "r1": 4, "r2": 4}, map[string]float64{"r2": 4})
	live := []string{"r0", "r1", "r2"}
	for i, old := range []string{"r0", "r1", "r2"} {
		repl := fmt.Sprintf("r%d", 3+i)
		others := slices.DeleteFunc(slices.Clone(live), func(id string) bool { return id == old })
		want := map[string]int{old: 3, repl: 3, others[0]: 3, others[1]: 3}
		step(repl+" surges", func() { start(repl) }, want, map[string]float64{repl: 3})
		want = map[string]int{repl: 4, others[0]: 4, others[1]: 4}
		step(old+" stops", func() { retire(old) }, want, map[string]float64{repl: 1, others[0]: 1, others[1]: 1})
		live = append(others, repl)
	}
	step("scale to 1", func() { retire(live[0]); retire(live[1]) },
		map[string]int{live[2]: 12}, map[string]float64{live[2]: 8})

	stopLogging()
	for i := range pods {
		e.exact(dir, ns, fmt.Sprintf("p-%02d", i), "app")
	}
	healthy(live[2])
}

// TestHABudgetShared (issues #16, #17): replicas share each node's follow budget rather
// than each spending all of it. Three replicas with --max-streams-per-node 6 collect 24
// containers of one node: the node never has more than 6 follow streams open, the rest
// are polled, and every file is exact. The kubelet sees a follow's client go 500 ms late:
// a replica that gives shards up to one joining stops their streams, and the joining one
// must not open its own before those closes reached the node.
func TestHABudgetShared(t *testing.T) {
	e := parallelEnv(t)
	e.k.SetCloseDelay(500 * time.Millisecond)
	const ns, leaseNS, shards, pods, budget = "hab", "kubelogd-hab", 12, 24, 6
	stopLogging := e.haPods(ns, leaseNS, pods, 200*time.Millisecond)
	dir := t.TempDir()
	var r []*daemon
	for _, id := range []string{"r0", "r1", "r2"} {
		d := e.kubelogd(dir, append(haFlags(leaseNS, id, shards), "--max-streams-per-node", fmt.Sprint(budget))...)
		d.waitReady()
		r = append(r, d)
	}
	e.waitShares(leaseNS, shards, map[string]int{"r0": 4, "r1": 4, "r2": 4})
	eventually(t, 60*time.Second, "every replica polls", func() (bool, string) {
		var polls []float64
		for _, d := range r {
			polls = append(polls, d.metric("kubelogd_polls_total"))
		}
		return !slices.Contains(polls, 0), fmt.Sprintf("polls by replica: %v", polls)
	})
	stopLogging()
	for i := range pods {
		e.exact(dir, ns, fmt.Sprintf("p-%02d", i), "app")
	}
	if n := e.k.MaxFollowStreams(); n > budget {
		t.Errorf("%d follow streams were open at once on the node, over its budget of %d shared by the replicas", n, budget)
	}
}

// TestHAAPIServerDown (issue #16): the API server goes away for 60 s under three
// replicas. None can renew its Leases, so none can prove it holds a shard: each stops
// writing within its renew deadline (the fence), and none takes another's shard, since
// no Lease can be read or written. When the API server is back the shards are shared
// again and collection resumes where each file stopped: every file exact.
func TestHAAPIServerDown(t *testing.T) {
	e := parallelEnv(t)
	const ns, leaseNS, shards, pods = "down", "kubelogd-down", 12, 24
	stopLogging := e.haPods(ns, leaseNS, pods, 100*time.Millisecond)
	dir := t.TempDir()
	r := map[string]*daemon{}
	// The shipped durations (15 s / 10 s), with a 1 s retry period: both are well under
	// the 60 s without the API server, and a 2 s renew deadline times out on a loaded
	// machine once the API server is back — a shard lost then moves mid-check, and its
	// new holder cuts the tail no saved cursor covers and reads it again (seen at load 13).
	for _, id := range []string{"r0", "r1", "r2"} {
		r[id] = e.kubelogd(dir, "--shards", fmt.Sprint(shards), "--lease-namespace", leaseNS, "--replica-id", id,
			"--lease-duration", "15s", "--renew-deadline", "10s", "--retry-period", "1s")
		r[id].waitReady()
	}
	shares := map[string]int{"r0": 4, "r1": 4, "r2": 4}
	e.waitSharesWithin(60*time.Second, leaseNS, shards, shares)

	e.c.StopAPIServer()
	time.Sleep(60 * time.Second)
	fatalIf(t, e.c.StartAPIServer(context.Background()))
	e.waitSharesWithin(60*time.Second, leaseNS, shards, shares)
	for id, d := range r {
		if v := d.metric("kubelogd_lease_renew_failures_total"); v == 0 {
			t.Errorf("%s: kubelogd_lease_renew_failures_total = 0 after 60 s without the API server", id)
		}
	}
	stopLogging()
	for i := range pods {
		e.exact(dir, ns, fmt.Sprintf("p-%02d", i), "app")
	}
}

// TestHAConfigReloadSelection: replicas that share the pods by shard reload the same
// ConfigMap. A namespace added is collected, each pod by the holder of its shard; a
// namespace removed stops on every replica, its files and cursors kept as they were, no
// marker. A shard that moves while its pods are out of the selection (a replica stopped)
// is resumed by its new holder from the cursors when they come back: every line once.
func TestHAConfigReloadSelection(t *testing.T) {
	e := parallelEnv(t)
	const a, b, leaseNS, shards, pods = "hsel-a", "hsel-b", "kubelogd-hsel", 6, 8
	name := func(i int) string { return fmt.Sprintf("p-%02d", i) }
	fatalIf(t, e.c.EnsureNamespace(context.Background(), leaseNS))
	emit := func(ns string, n int) {
		for i := range pods {
			e.emit(ns, name(i), "app", n)
		}
	}
	for _, ns := range []string{a, b} {
		for i := range pods {
			e.pod(ns, name(i), nil, "app")
			e.start(ns, name(i), "app")
		}
		emit(ns, 10)
	}
	dir := t.TempDir()
	collected := func(ns string) {
		t.Helper()
		for i := range pods {
			if markers := e.waitCollected(dir, ns, name(i), "app"); len(markers) > 0 {
				t.Fatalf("%s/%s has markers %q", ns, name(i), markers)
			}
		}
	}
	reloaded := func(r map[string]*daemon, n float64) {
		t.Helper()
		for id, d := range r {
			eventually(t, 10*time.Second, id+" reloaded", func() (bool, string) {
				got := d.metric("kubelogd_config_reloads_total", "result=success")
				return got == n, "kubelogd_config_reloads_total " + fmtFloat(got)
			})
		}
	}

	vol := newConfigVolume(t, "namespace: ["+a+"]\n")
	r := map[string]*daemon{}
	for _, id := range []string{"r0", "r1"} {
		r[id] = e.kubelogd(dir, append(haFlags(leaseNS, id, shards), "--config", vol.path())...)
		r[id].waitReady()
	}
	e.waitShares(leaseNS, shards, map[string]int{"r0": 3, "r1": 3})
	collected(a)
	if _, err := os.Stat(filepath.Join(dir, b)); !os.IsNotExist(err) {
		t.Fatalf("%s collected before it was configured: %v", b, err)
	}

	// Added.
	vol.set("namespace: [" + a + ", " + b + "]\n")
	reloaded(r, 1)
	collected(b)

	// Removed: no replica reads a's pods any more; their files stay as they were.
	vol.set("namespace: [" + b + "]\n")
	reloaded(r, 2)
	eventually(t, 10*time.Second, "only "+b+"'s streams open", func() (bool, string) {
		n := r["r0"].metric("kubelogd_streams_active") + r["r1"].metric("kubelogd_streams_active")
		return n == pods, "kubelogd_streams_active summed over the replicas: " + fmtFloat(n)
	})
	before := map[string][]byte{}
	for i := range pods {
		data, err := os.ReadFile(logPath(dir, a, name(i), "app"))
		fatalIf(t, err)
		before[name(i)] = data
	}
	emit(a, 5)
	emit(b, 5)
	collected(b)
	time.Sleep(time.Second) // more than --flush-interval: a line of a still written would be on disk
	for i := range pods {
		data, err := os.ReadFile(logPath(dir, a, name(i), "app"))
		fatalIf(t, err)
		if !bytes.Equal(data, before[name(i)]) {
			t.Fatalf("%s/%s's file changed after its namespace left the selection:\n%s", a, name(i), data[len(before[name(i)]):])
		}
	}

	// r1's shards move to r0 while a is out; a comes back: r0 resumes every pod of a
	// from its cursor, the lines logged meanwhile once each.
	r["r1"].stop()
	e.waitShares(leaseNS, shards, map[string]int{"r0": shards})
	vol.set("namespace: [" + a + ", " + b + "]\n")
	emit(a, 5)
	collected(a)
	collected(b)
	r["r0"].stop()
}
