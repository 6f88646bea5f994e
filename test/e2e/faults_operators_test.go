package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// TestOpsRestoredCopy (issue 14, case 1): three containers collected, kubelogd stopped,
// its output directory copied with cp -a (a PVC restore, Velero, an rsync to a bigger
// volume: same bytes, new inode numbers), and a new kubelogd started on the copy. The
// copy must be recognised by what it holds: nothing truncated, nothing read twice, the
// new lines appended — every file holds every line exactly once, with no marker.
func TestOpsRestoredCopy(t *testing.T) {
	e := newEnv(t)
	e.pod("ops", "restore", nil, "a", "b", "c")
	e.start("ops", "restore", "a", "b", "c")
	refs := []ref{{"ops", "restore", "a"}, {"ops", "restore", "b"}, {"ops", "restore", "c"}}
	e.emitAll(refs, 2000)
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.allExact(dir, refs, 60*time.Second)
	d.stop()

	cp := filepath.Join(t.TempDir(), "restored")
	if out, err := exec.Command("cp", "-a", dir, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
	sizes := opsSizes(t, cp, refs)
	d2 := e.kubelogd(cp)
	d2.waitReady()
	e.emitAll(refs, 500)
	e.allExact(cp, refs, 60*time.Second)
	for i, r := range refs {
		// The oracle would see a truncation as lost lines already; say it plainly too.
		if st, err := os.Stat(logPath(cp, r.ns, r.pod, r.container)); err != nil || st.Size() <= sizes[i] {
			t.Errorf("%v: file shrank or did not grow from %d bytes: %v", r, sizes[i], err)
		}
	}
	if n := d2.metric("kubelogd_gaps_total"); n != 0 {
		t.Errorf("kubelogd_gaps_total %v after starting on the copy, want 0", n)
	}
}

func opsSizes(t *testing.T, dir string, refs []ref) []int64 {
	t.Helper()
	var out []int64
	for _, r := range refs {
		st, err := os.Stat(logPath(dir, r.ns, r.pod, r.container))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, st.Size())
	}
	return out
}

// TestOpsFilesRemovedWhileRunning (issue 14, case 2): while kubelogd runs and the
// containers log, an operator removes a pod directory, unlinks another container's current
// file and renames a third one's away. Each container's collection must resume within a
// bounded time with one files_removed marker; every line emitted after the marker is in
// the file exactly once, and the lines before it are in the new file once or gone with
// the old one — never twice.
func TestOpsFilesRemovedWhileRunning(t *testing.T) {
	e := newEnv(t)
	refs := []ref{{"ops", "rmdir", "app"}, {"ops", "unlink", "app"}, {"ops", "rename", "app"}}
	for _, r := range refs {
		e.pod(r.ns, r.pod, nil, r.container)
		e.start(r.ns, r.pod, r.container)
	}
	var stops []func() int
	for _, r := range refs {
		stops = append(stops, e.flow(r.ns, r.pod, r.container, 20*time.Millisecond, 2, numbered(r.ns, r.pod, r.container, "flow")))
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	for _, r := range refs {
		opsWaitLines(t, dir, r, 50)
	}
	actions := []func(r ref){
		func(r ref) { opsMust(t, os.RemoveAll(filepath.Join(dir, r.ns, r.pod))) },
		func(r ref) { opsMust(t, os.Remove(logPath(dir, r.ns, r.pod, r.container))) },
		func(r ref) {
			p := logPath(dir, r.ns, r.pod, r.container)
			opsMust(t, os.Rename(p, p+".moved"))
		},
	}
	for i, r := range refs {
		done := time.Now()
		actions[i](r)
		// Resumed: a marker, then lines emitted after the removal, in the file.
		eventually(t, 30*time.Second, fmt.Sprintf("%v: collection resumed after the removal with a marker", r), func() (bool, string) {
			return opsResumed(dir, r)
		})
		t.Logf("%v: resumed %v after the removal", r, time.Since(done).Round(100*time.Millisecond))
	}
	for _, s := range stops {
		s()
	}
	for _, r := range refs {
		eventually(t, 60*time.Second, fmt.Sprintf("%v: every line after the marker collected exactly once", r), func() (bool, string) {
			return opsCheckAfterMarker(dir, r, e.k.Emitted(r.ns, r.pod, r.container))
		})
	}
	time.Sleep(time.Second)
	for _, r := range refs {
		ok, detail := opsCheckAfterMarker(dir, r, e.k.Emitted(r.ns, r.pod, r.container))
		if !ok {
			t.Errorf("%v changed after it was complete: %s", r, detail)
		}
		t.Logf("%v: %s", r, detail)
	}
	if n := d.metric("kubelogd_gaps_total", "reason=files_removed"); n != float64(len(refs)) {
		t.Errorf("kubelogd_gaps_total{reason=files_removed} = %v, want %d", n, len(refs))
	}
	if n := d.metric("kubelogd_gaps_total"); n != float64(len(refs)) {
		t.Errorf("kubelogd_gaps_total = %v, want %d (no other gap)", n, len(refs))
	}

	// The cursors now describe the new files: a restart resumes them exactly, with no
	// further marker.
	d.stop()
	d2 := e.kubelogd(dir)
	d2.waitReady()
	e.emitAll(refs, 100)
	for _, r := range refs {
		eventually(t, 60*time.Second, fmt.Sprintf("%v: resumed exactly after a restart", r), func() (bool, string) {
			return opsCheckAfterMarker(dir, r, e.k.Emitted(r.ns, r.pod, r.container))
		})
	}
	if n := d2.metric("kubelogd_gaps_total"); n != 0 {
		t.Errorf("kubelogd_gaps_total = %v after the restart, want 0", n)
	}
}

// opsRemovedMarker is what the marker for files removed outside kubelogd says.
const opsRemovedMarker = "outside kubelogd"

func opsMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// opsWaitLines waits until a container's current file holds at least n lines.
func opsWaitLines(t *testing.T, dir string, r ref, n int) {
	t.Helper()
	eventually(t, 60*time.Second, fmt.Sprintf("%v: %d lines collected", r, n), func() (bool, string) {
		got := len(readLines(t, logPath(dir, r.ns, r.pod, r.container)))
		return got >= n, fmt.Sprintf("%d lines", got)
	})
}

// opsResumed reports whether the container's file holds the removal marker followed by
// at least ten application lines.
func opsResumed(dir string, r ref) (bool, string) {
	secs, err := oracle.ReadSections(logPath(dir, r.ns, r.pod, r.container), "timestamped")
	if err != nil {
		return false, err.Error()
	}
	for i, s := range secs {
		if strings.Contains(s.Marker, opsRemovedMarker) {
			n := 0
			for _, later := range secs[i:] {
				n += len(later.Lines)
			}
			return n >= 10, fmt.Sprintf("marker %q, then %d lines", s.Marker, n)
		}
	}
	return false, fmt.Sprintf("no marker containing %q in %d sections", opsRemovedMarker, len(secs))
}

// opsCheckAfterMarker judges a container's files after a removal: exactly one removal
// marker and no other; the lines after it are exactly the emitted lines from the first of
// them on (none lost, doubled or reordered); the lines before it are emitted lines, each
// at most once and in order (the others went with the removed file).
func opsCheckAfterMarker(dir string, r ref, emitted []string) (bool, string) {
	secs, err := oracle.ReadSections(logPath(dir, r.ns, r.pod, r.container), "timestamped")
	if err != nil {
		return false, err.Error()
	}
	at := -1
	var all []string
	for i, s := range secs {
		switch {
		case s.Marker == "":
		case strings.Contains(s.Marker, opsRemovedMarker) && at < 0:
			at = i
		default:
			return false, fmt.Sprintf("unexpected marker %q", s.Marker)
		}
		all = append(all, s.Lines...)
	}
	if at < 0 {
		return false, "no removal marker"
	}
	whole := oracle.Compare(emitted, all)
	if len(whole.Duplicated)+len(whole.Reordered)+len(whole.Unexpected) > 0 {
		return false, "whole file: " + whole.String()
	}
	var after []string
	for _, s := range secs[at:] {
		after = append(after, s.Lines...)
	}
	if len(after) == 0 {
		return false, "no line after the marker"
	}
	first := -1
	for i, l := range emitted {
		if l == after[0] {
			first = i
			break
		}
	}
	if first < 0 {
		return false, fmt.Sprintf("first line after the marker %q was never emitted", after[0])
	}
	rep := oracle.Compare(emitted[first:], after)
	return rep.OK(), fmt.Sprintf("after the marker %q: %s", secs[at].Marker, rep.String())
}
