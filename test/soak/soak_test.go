package soak

import (
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fixedSeeds are seeds that found bugs (docs/soak.md). make test runs the first for 90 s;
// TestScheduleReplayable checks all of them.
var fixedSeeds = []uint64{14, 15879737}

// TestSoak runs the soak: without SOAK_SEED and SOAK_DURATION (make test), fixedSeeds[0]
// and one random seed, 90 s each; SOAK_SEED runs that seed, and SOAK_DURATION alone (or
// SOAK_SEED=random) one random seed, for SOAK_DURATION (default 90 s). A failure prints
// the seed and the command that replays it; docs/soak.md keeps what the seeds found.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("the soak runs for minutes (make test and make soak run it)")
	}
	duration := 90 * time.Second
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SOAK_DURATION=%q: %v", v, err)
		}
		duration = d
	}
	var seeds []uint64
	switch v := os.Getenv("SOAK_SEED"); {
	case v == "random":
		seeds = []uint64{rand.Uint64() % 1e9}
	case v != "":
		seed, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("SOAK_SEED=%q: %v", v, err)
		}
		seeds = []uint64{seed}
	case os.Getenv("SOAK_DURATION") != "":
		seeds = []uint64{rand.Uint64() % 1e9}
	default:
		seeds = []uint64{fixedSeeds[0], rand.Uint64() % 1e9}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { runSoak(t, seed, duration) })
	}
}

// runSoak generates the schedule of a seed, runs it and judges every container.
func runSoak(t *testing.T, seed uint64, duration time.Duration) {
	sc := generate(seed, duration)
	replay := fmt.Sprintf("make soak SEED=%d DURATION=%s", seed, duration)
	t.Logf("soak seed %d: %d steps over %d containers, about %s (replay: %s)", seed, len(sc.Steps), soakPods*len(soakContainers), duration, replay)
	for _, k := range sortedPending() {
		t.Logf("soak seed %d: kind %s pending: %s", seed, k, soakPending[k])
	}
	if b := inotifyBudget(); b < 64 {
		t.Logf("soak seed %d: only %d inotify instances left for the fake kubelet's follow streams: expect fsnotify errors in streams", seed, b)
	}
	for i, s := range sc.Steps {
		t.Logf("soak seed %d step %3d: +%-5s %s", seed, i, s.Pause.Round(10*time.Millisecond), s)
	}

	w := newWorld(t, sc)
	w.startKubelogd()
	w.startWriters()
	started := time.Now()
	for i, s := range sc.Steps {
		if time.Since(started) > 3*duration+5*time.Minute {
			w.violations = append(w.violations, fmt.Sprintf("the schedule ran for %s, three times its length: steps %d and later not run", time.Since(started).Round(time.Second), i))
			break
		}
		if w.d != nil && w.d.Exited() {
			w.violations = append(w.violations, fmt.Sprintf("before step %d kubelogd (pid %d) had exited by itself: %v\n%s",
				i, w.d.Cmd.Process.Pid, w.d.Cmd.ProcessState, lastLines(w.d.Output(), 20)))
			w.d = nil
			w.afterStop(true)
			w.startKubelogd()
		}
		time.Sleep(s.Pause)
		note, err := w.do(i, s)
		switch {
		case err != nil:
			w.violations = append(w.violations, fmt.Sprintf("step %d (%s) failed: %v", i, s, err))
			t.Logf("soak seed %d step %3d at %s: FAILED: %v", seed, i, time.Since(started).Round(time.Millisecond), err)
		case note != "":
			t.Logf("soak seed %d step %3d at %s: %s", seed, i, time.Since(started).Round(time.Millisecond), note)
		}
	}
	t.Logf("soak seed %d: schedule ran in %s; converging", seed, time.Since(started).Round(time.Second))
	verdicts := w.converge()
	w.report(verdicts, replay)
}

// converge lifts every fault, stops the writers, logs one last line in every running
// container (so a stream still stuck is found by the watchdog's probe) and waits until
// every file is what the model says, then checks once more that nothing changes after.
func (w *world) converge() map[*contModel]verdict {
	w.px.ClearFailures()
	w.px.Release()
	w.k.ResetFaults()
	if !w.kubelogdUp() {
		w.stopKubelogd(false)
		w.startKubelogd()
	}
	close(w.stopWriters)
	w.writers.Wait()
	for _, c := range w.conts {
		if c.pod.job {
			continue
		}
		c.mu.Lock()
		if err := w.appendLocked(c, 1, "final"); err != nil {
			w.violations = append(w.violations, fmt.Sprintf("final line of %s: %v", c, err))
		}
		c.mu.Unlock()
	}
	var verdicts map[*contModel]verdict
	allOK := func() (bool, string) {
		verdicts = w.judgeAll()
		bad := 0
		for _, v := range verdicts {
			if !v.ok() {
				bad++
			}
		}
		return bad == 0, fmt.Sprintf("%d containers not as the model says", bad)
	}
	if ok, _ := eventually(3*time.Minute, time.Second, allOK); ok {
		time.Sleep(2 * time.Second)
		allOK()
	}
	if w.d != nil && w.d.Exited() {
		w.violations = append(w.violations, fmt.Sprintf("kubelogd (pid %d) exited by itself during the final check: %v", w.d.Cmd.Process.Pid, w.d.Cmd.ProcessState))
	}
	w.stopKubelogd(true)
	return verdicts
}

// report logs what the run drew and fails the test with the seed, the line to replay it,
// every failing container in one line each, and the smallest one's diff, schedule steps
// and kubelogd log lines.
func (w *world) report(verdicts map[*contModel]verdict, replay string) {
	t, seed := w.t, w.sc.Seed
	drawn := map[kind]int{}
	for _, s := range w.sc.Steps {
		drawn[s.Kind]++
	}
	var parts []string
	for _, k := range kindOrder() {
		if drawn[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, drawn[k]))
		}
	}
	lines, markers, tolerated := 0, 0, 0
	var failing []*contModel
	for _, c := range w.conts {
		v := verdicts[c]
		lines += v.emitted
		markers += len(v.markers)
		tolerated += v.tolerated
		if !v.ok() {
			failing = append(failing, c)
		}
	}
	t.Logf("soak seed %d: drawn %s", seed, strings.Join(parts, " "))
	t.Logf("soak seed %d: %d containers, %d lines, %d markers (%d rotated markers where nothing was lost), %d kubelogd runs",
		seed, len(w.conts), lines, markers, tolerated, len(w.runs))
	if len(failing) == 0 && len(w.violations) == 0 {
		return
	}
	w.keepFiles()
	// The summary comes last: CI shows the head and the tail of a long output, and the
	// tail is where the reader looks first.
	summary := append([]string(nil), w.violations...)
	if len(failing) > 0 {
		sort.Slice(failing, func(i, j int) bool { return verdicts[failing[i]].emitted < verdicts[failing[j]].emitted })
		c := failing[0]
		var steps []string
		for _, i := range c.steps {
			steps = append(steps, fmt.Sprintf("  step %3d: %s", i, w.sc.Steps[i]))
		}
		t.Errorf("soak seed %d: smallest failing container %s:\n%s\nmarkers: %q\nsteps that targeted it (global steps apply too):\n%s\nkubelogd's log about it (last 60 lines):\n%s",
			seed, c, verdicts[c], verdicts[c].markers, strings.Join(steps, "\n"), w.logLinesOf(c, 60))
		for _, c := range failing {
			v := verdicts[c]
			summary = append(summary, fmt.Sprintf("%s (%d lines emitted): %s", c, v.emitted, v.problems[0]))
		}
	}
	t.Errorf("soak seed %d FAILED: %d of %d containers, %d other violations; replay with: %s\n  %s",
		seed, len(failing), len(w.conts), len(w.violations), replay, strings.Join(summary, "\n  "))
}

func sortedPending() []kind {
	var out []kind
	for k := range soakPending {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// inotifyBudget is how many more inotify instances this user may create: the fake
// kubelet needs one per follow stream, as a node does (cri-client ReadLogs).
func inotifyBudget() int {
	raw, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances")
	if err != nil {
		return 0
	}
	limit, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
	used := 0
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if st, err := os.Stat("/proc/" + p.Name()); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			continue
		}
		fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
		for _, fd := range fds {
			if target, _ := os.Readlink("/proc/" + p.Name() + "/fd/" + fd.Name()); target == "anon_inode:inotify" {
				used++
			}
		}
	}
	return limit - used
}
