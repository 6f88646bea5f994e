package e2e

import (
	"testing"
	"time"
)

// The node's clock steps back (an NTP step, a VM migration) after the runtime stamped
// lines in its future. The kubelet drops lines stamped before sinceTime wherever they are
// in its file, so a resume from a second near the newest timestamp written would never see
// the lines logged after the step: kubelogd lost 590 of 1,200 lines that way, wrote 118
// twice and blamed a rotation. Every line must be written exactly once, with no marker.

// TestClockStepBackWhileFollowing: the step happens while kubelogd follows; then the
// stream is cut twice, so it resumes after lines stamped 60 s before the newest.
func TestClockStepBackWhileFollowing(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "clock", nil, "app")
	e.start("f", "clock", "app")
	future := time.Now().UTC().Add(time.Minute)
	if err := e.k.Append("f", "clock", "app", linesAt(future, "future", 100)...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.waitCollected(dir, "f", "clock", "app")
	// The clock is back to now: new lines are stamped a minute before the newest written.
	stop := e.flow("f", "clock", "app", 20*time.Millisecond, 2, numbered("f", "clock", "app", "after the step"))
	defer stop()
	for range 2 {
		time.Sleep(time.Second)
		e.waitStreams("f", "clock", "app", 1)
		if n := e.k.CutStreams("f", "clock", "app", false); n != 1 {
			t.Fatalf("cut %d streams, want 1", n)
		}
	}
	time.Sleep(time.Second)
	t.Logf("%d lines after the step", stop())
	e.exact(dir, "f", "clock", "app")
	if v := d.metric("kubelogd_gaps_total"); v != 0 {
		t.Errorf("kubelogd_gaps_total = %v, want 0", v)
	}
}

// TestClockStepBackWhileStopped: the step happens while kubelogd is down; its resume
// point then lies ahead of every new line, which the kubelet hides from the stream and
// from a probe from that point. The probe's look at the newest line without sinceTime
// finds them, and the stream is resumed by content.
func TestClockStepBackWhileStopped(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "clock2", nil, "app")
	e.start("f", "clock2", "app")
	future := time.Now().UTC().Add(time.Minute)
	if err := e.k.Append("f", "clock2", "app", linesAt(future, "future", 100)...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e.collectThenStop(dir, "f", "clock2", "app")
	e.emit("f", "clock2", "app", 50) // stamped now, a minute before the newest written
	d := e.kubelogd(dir, "--stall-timeout", "2s")
	d.waitReady()
	stop := e.flow("f", "clock2", "app", 50*time.Millisecond, 1, numbered("f", "clock2", "app", "after the restart"))
	time.Sleep(3 * time.Second)
	t.Logf("%d lines after the restart", stop())
	e.exact(dir, "f", "clock2", "app")
	if v := d.metric("kubelogd_gaps_total"); v != 0 {
		t.Errorf("kubelogd_gaps_total = %v, want 0", v)
	}
}

// TestClockStepBackWhilePolled: the step happens while the container is polled (beyond a
// follow budget of 1, polled every second). A poll resumes from a sinceTime too: after a
// poll found lines stamped 6.5 s ahead — within the 5 s beyond the margin that a resume
// second may lie ahead before a request goes by content anyway (clockAllowance) — the
// lines logged next, stamped before the resume second, were hidden from every poll until
// the clock caught up with it, and lost without a marker (soak seed 999076264 with
// KUBELOGD_SOAK_BUDGET=4: 134 lines of a polled container).
func TestClockStepBackWhilePolled(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "hold", nil, "app")
	e.start("f", "hold", "app")
	e.emit("f", "hold", "app", 5)
	dir := t.TempDir()
	d := e.kubelogd(dir, "--max-streams-per-node", "1", "--poll-max-interval", "1s")
	d.waitReady()
	e.waitCollected(dir, "f", "hold", "app")
	e.pod("f", "clock3", nil, "app")
	e.start("f", "clock3", "app")
	e.emit("f", "clock3", "app", 5)
	e.waitCollected(dir, "f", "clock3", "app")
	if err := e.k.Append("f", "clock3", "app", linesAt(time.Now().UTC().Add(6500*time.Millisecond), "ahead", 20)...); err != nil {
		t.Fatal(err)
	}
	e.waitCollected(dir, "f", "clock3", "app")
	// The clock is back to now: new lines are stamped up to 6.5 s before the newest written.
	stop := e.flow("f", "clock3", "app", 20*time.Millisecond, 1, numbered("f", "clock3", "app", "after the step"))
	time.Sleep(8 * time.Second)
	t.Logf("%d lines after the step", stop())
	e.exact(dir, "f", "clock3", "app")
	if v := d.metric("kubelogd_polls_total"); v == 0 {
		t.Error("no poll: the container was not polled")
	}
	if v := d.metric("kubelogd_gaps_total"); v != 0 {
		t.Errorf("kubelogd_gaps_total = %v, want 0", v)
	}
}
