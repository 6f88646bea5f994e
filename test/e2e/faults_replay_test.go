package e2e

import (
	"fmt"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

// Replays of resumed streams meet cuts and pauses at exact points (fakekubelet.ScriptNext),
// not wherever a sleep happens to land. Nothing in a replay that was cut, paused or slow to
// start may settle it as "rotated": no marker, no line written twice.

// TestReplayInterruptedTwice holds a resumed stream's replay short twice, with a verified
// replay between the two, in each of the ways the kubelet can: a cut at a line boundary
// (the client sees a clean end), a pause mid-replay, a first byte that comes late (a
// kubelet slow to find sinceTime in a large file, or busy). A replay that was never
// verified must not be settled by the next interruption (issue: a false "rotated" gap that
// wrote lines 0-99 again, and a marker whose span ended before it began).
func TestReplayInterruptedTwice(t *testing.T) {
	e := parallelEnv(t)
	cases := []struct {
		name string
		sc   fakekubelet.Script
	}{
		{"cut at a line", fakekubelet.Script{CutAfter: 10}},
		{"cut mid-line", fakekubelet.Script{CutAfter: 10, MidLine: true}},
		{"pause mid-replay", fakekubelet.Script{PauseAfter: 10, Pause: 4 * time.Second}},
		{"late first byte", fakekubelet.Script{Delay: 4 * time.Second}},
	}
	var pods []string
	for i, c := range cases {
		pod := fmt.Sprintf("replay-%d", i)
		pods = append(pods, pod)
		e.pod("f", pod, nil, "app")
		e.start("f", pod, "app")
		e.emit("f", pod, "app", 100)
		t.Logf("%s: %s", pod, c.name)
	}
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := &env{t: t, c: e.c, k: e.k} // failures belong to the subtest
			pod := pods[i]
			e.waitCollected(dir, "f", pod, "app")
			for round := range 2 {
				e.interruptReplay(pod, c.sc)
				// A line after the interruption: once it is on disk, a replay was verified.
				e.emit("f", pod, "app", 1)
				e.waitCollected(dir, "f", pod, "app")
				t.Logf("round %d: replay verified after the interruption", round)
			}
			e.emit("f", pod, "app", 50)
			if markers := e.waitCollected(dir, "f", pod, "app"); len(markers) > 0 {
				t.Fatalf("markers %q, want none: nothing was rotated", markers)
			}
		})
	}
	t.Cleanup(func() {
		if v := d.metric("kubelogd_gaps_total"); v != 0 && !t.Failed() {
			t.Errorf("kubelogd_gaps_total = %v, want 0", v)
		}
	})
}

// interruptReplay cuts a pod's stream so that kubelogd resumes it, and has the resumed
// stream's replay interrupted as sc says; it returns once that stream has been served.
func (e *env) interruptReplay(pod string, sc fakekubelet.Script) {
	e.t.Helper()
	e.waitStreams("f", pod, "app", 1)
	e.k.ScriptNext("f", pod, "app", sc)
	if n := e.k.CutStreams("f", pod, "app", false); n != 1 {
		e.t.Fatalf("cut %d streams, want 1", n)
	}
	eventually(e.t, 30*time.Second, "the scripted stream is opened", func() (bool, string) {
		return e.k.PendingScripts("f", pod, "app") == 0, "script not taken"
	})
}

// TestPartialLineAcrossResumeSecond: a line the runtime split into CRI partial records,
// its first record stamped before the resume's sinceTime and its last after it. The
// kubelet skips the first and writes the rest without a timestamp at the very start of the
// resumed stream (cri-client ReadLogs). That rest belongs to a line already written: it is
// skipped, not taken for a kubelet error text and retried forever.
func TestPartialLineAcrossResumeSecond(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "parts", nil, "app")
	e.start("f", "parts", "app")
	a := time.Now().UTC().Truncate(time.Second).Add(-20 * time.Second)
	var lines []fakekubelet.Line
	for i := range 10 {
		lines = append(lines, fakekubelet.Line{Time: a.Add(-time.Second + time.Duration(i)*time.Millisecond), Text: fmt.Sprintf("before %d", i)})
	}
	if err := e.k.Append("f", "parts", "app", lines...); err != nil {
		t.Fatal(err)
	}
	// The first part at a, the last at a+3s: the resume second below is a+2s.
	if err := e.k.AppendParts("f", "parts", "app",
		fakekubelet.Line{Time: a.Add(100 * time.Millisecond), Text: "split line, first part;"},
		fakekubelet.Line{Time: a.Add(1500 * time.Millisecond), Text: " middle part;"},
		fakekubelet.Line{Time: a.Add(3 * time.Second), Text: " last part"},
	); err != nil {
		t.Fatal(err)
	}
	lines = lines[:0]
	for i := range 10 {
		lines = append(lines, fakekubelet.Line{Time: a.Add(4*time.Second + time.Duration(i)*time.Millisecond), Text: fmt.Sprintf("after %d", i)})
	}
	if err := e.k.Append("f", "parts", "app", lines...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.waitCollected(dir, "f", "parts", "app")
	// The newest line written is at a+4s: the resume starts at a+2s, between the parts.
	e.waitStreams("f", "parts", "app", 1)
	if n := e.k.CutStreams("f", "parts", "app", false); n != 1 {
		t.Fatalf("cut %d streams, want 1", n)
	}
	e.emit("f", "parts", "app", 20)
	if markers := e.waitCollected(dir, "f", "parts", "app"); len(markers) > 0 {
		t.Fatalf("markers %q, want none", markers)
	}
	if v := d.metric("kubelogd_reconnects_total", "reason=body_error"); v != 0 {
		t.Errorf("kubelogd_reconnects_total{reason=body_error} = %v, want 0: the rest of the split line is no kubelet error", v)
	}
}
