package e2e

// Product bugs the soak (test/soak) found, each reproduced deterministically here. See
// docs/soak.md for the seed that found each one.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

// TestSoakFoundSkippedLineRestMidStream (seed 458295471, 10 min, soak-0/p-03/app): a line
// split into CRI partial records whose first records are stamped before the resume's
// sinceTime, while lines before it in the kubelet's file are stamped at or after it
// (timestamps are not monotonic: stdout and stderr, skew). ReadLogs writes those lines
// with their timestamps, skips the early records and writes the line's rest without a
// timestamp — in the middle of the body, not at its start. kubelogd took that rest for a
// kubelet error text, failed the stream, and failed every resume from the same second
// after it: the container's collection stopped for good (603 lines never written in the
// soak, "kubelet error inside the log stream: \"… partial 4/4;\"" every few seconds).
func TestSoakFoundSkippedLineRestMidStream(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "midrest", nil, "app")
	e.start("f", "midrest", "app")
	a := time.Now().UTC().Truncate(time.Second).Add(-20 * time.Second)
	var lines []fakekubelet.Line
	for i := range 10 {
		lines = append(lines, fakekubelet.Line{Time: a.Add(-time.Second + time.Duration(i)*time.Millisecond), Text: fmt.Sprintf("before %d", i)})
	}
	// Stamped after the resume second (a+2s below), yet before the split line in the file.
	lines = append(lines,
		fakekubelet.Line{Time: a.Add(2500 * time.Millisecond), Text: "late 0"},
		fakekubelet.Line{Time: a.Add(2600 * time.Millisecond), Text: "late 1"})
	if err := e.k.Append("f", "midrest", "app", lines...); err != nil {
		t.Fatal(err)
	}
	// The first two parts before a+2s, the last after it.
	if err := e.k.AppendParts("f", "midrest", "app",
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
	if err := e.k.Append("f", "midrest", "app", lines...); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.waitCollected(dir, "f", "midrest", "app")
	// The newest line written is at a+4s: the resume starts at a+2s, and its body holds
	// "late 0", "late 1", then " last part" without a timestamp, then "after …".
	e.waitStreams("f", "midrest", "app", 1)
	if n := e.k.CutStreams("f", "midrest", "app", false); n != 1 {
		t.Fatalf("cut %d streams, want 1", n)
	}
	e.emit("f", "midrest", "app", 20)
	if markers := e.waitCollected(dir, "f", "midrest", "app"); len(markers) > 0 {
		t.Fatalf("markers %q, want none", markers)
	}
	if v := d.metric("kubelogd_reconnects_total", "reason=body_error"); v != 0 {
		t.Errorf("kubelogd_reconnects_total{reason=body_error} = %v, want 0: the rest of the split line is no kubelet error", v)
	}
}

// TestSoakFoundRemovedDirThenSIGTERM (seed 458295471, 10 min, soak-1/p-04 and p-07: 6,823
// and 1,287 lines missing at the start of the file, no marker): a pod directory removed
// outside kubelogd, then SIGTERM before the container's next cursor save (up to 5 s) could
// notice it. Close saved the cursor without checking, into the removed directory: the save
// failed, and the next run found neither a cursor nor anything else to tell it what was
// lost, so it read the container afresh with no marker. Close is a cursor save too: it
// must notice the removal and leave a cursor that makes the next run write files_removed.
func TestSoakFoundRemovedDirThenSIGTERM(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "rmterm", nil, "app")
	e.start("f", "rmterm", "app")
	stop := e.flow("f", "rmterm", "app", 50*time.Millisecond, 2, numbered("f", "rmterm", "app", "x"))
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	eventually(t, 30*time.Second, "lines written", func() (bool, string) {
		return len(readLines(t, logPath(dir, "f", "rmterm", "app"))) > 20, ""
	})
	// Right after a cursor save is the widest window: wait for one, then remove.
	cursor := filepath.Join(dir, "f", "rmterm", ".app.cursor")
	st0, err := os.Stat(cursor)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a cursor save", func() (bool, string) {
		st, err := os.Stat(cursor)
		return err == nil && !st.ModTime().Equal(st0.ModTime()), ""
	})
	if err := os.RemoveAll(filepath.Join(dir, "f", "rmterm")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	d.stop()
	if _, err := os.Stat(cursor); err != nil {
		t.Errorf("no cursor after SIGTERM (%v): the next run cannot know the directory was removed", err)
	}
	if !strings.Contains(d.Output(), "reason=files_removed") {
		t.Errorf("the run that found the removal at SIGTERM did not report the gap:\n%s", tail(d.Output(), 20))
	}
	d = e.kubelogd(dir)
	d.waitReady()
	stop()
	eventually(t, 30*time.Second, "a files_removed marker at the start of the file", func() (bool, string) {
		_, markers, err := e.collected(dir, "f", "rmterm", "app")
		if err != nil {
			return false, err.Error()
		}
		return len(markers) == 1, fmt.Sprintf("markers %q", markers)
	})
	// The run that noticed the removal at SIGTERM marked it in the recreated directory
	// (and counted it); this one has nothing more to mark.
	if v := d.metric("kubelogd_gaps_total", "reason=files_removed"); v != 0 {
		t.Errorf("kubelogd_gaps_total{reason=files_removed} = %v in the next run, want 0 (marked once, by the run that noticed)", v)
	}
}
