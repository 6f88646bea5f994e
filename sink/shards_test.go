package sink

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A directory shared by replicas: no lock, the shard count recorded once, and a
// replica with another count, or none, refused with the count to use.
func TestShardedDirectory(t *testing.T) {
	dir := t.TempDir()
	a := newTestManager(t, Config{Dir: dir, Shards: 12})
	b := newTestManager(t, Config{Dir: dir, Shards: 12}) // a second replica: no lock to fight over
	if a.lock != nil || b.lock != nil {
		t.Fatal("a sharded Manager took the directory lock")
	}
	if raw, err := os.ReadFile(filepath.Join(dir, shardsFileName)); err != nil || string(raw) != "12\n" {
		t.Fatalf("%s = %q, %v; want \"12\\n\"", shardsFileName, raw, err)
	}
	for _, tc := range []struct {
		shards int
		want   string
	}{
		{0, "start with --shards 12"},
		{4, "--shards 12"},
	} {
		_, err := NewManager(Config{Dir: dir, Shards: tc.shards})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewManager with Shards %d: %v, want an error saying %q", tc.shards, err, tc.want)
		}
	}
	// And a locked single-writer directory stays that.
	single := t.TempDir()
	newTestManager(t, Config{Dir: single})
	if _, err := os.Stat(filepath.Join(single, shardsFileName)); !os.IsNotExist(err) {
		t.Errorf("an unsharded Manager recorded a shard count: %v", err)
	}
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, shardsFileName), []byte("twelve\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := NewManager(Config{Dir: bad, Shards: 12}); err == nil || !strings.Contains(err.Error(), "not a shard count") {
		t.Errorf("NewManager on a damaged %s: %v", shardsFileName, err)
	}
}

// The sweep leaves other replicas' pods alone: not removed when deleted long ago, not
// counted against the budget, which this replica enforces for its share.
func TestSweepOnlyOwnedPods(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	old := now.Add(-8 * 24 * time.Hour)
	dir := t.TempDir()
	plantPod := func(ns, pod string, at time.Time) {
		for _, name := range []string{"app.log", backupName("app", at.Add(-time.Hour), true), ".app" + cursorSuffix} {
			plant(t, filepath.Join(dir, ns, pod, name), 1<<10, at)
		}
	}
	plantPod("gone", "mine", old)   // deleted a week ago: removed
	plantPod("gone", "theirs", old) // the same, in another replica's shard: kept
	plantPod("live", "mine", now)   // 3 KiB over this replica's 2 KiB: its backup goes
	plantPod("live", "theirs", old) // older, so first in line if it were counted
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now, Shards: 2,
		Owns:  func(ns, pod string) bool { return pod == "mine" },
		Share: func() float64 { return 0.5 }})
	m.cfg.totalBytes = 4 << 10
	m.started = now.Add(-startupGrace)
	m.sweep(t.Context())
	if _, err := os.Stat(filepath.Join(dir, "gone", "mine")); !os.IsNotExist(err) {
		t.Errorf("the owned pod deleted a week ago was not removed: %v", err)
	}
	for _, pod := range []string{"gone/theirs", "live/theirs"} {
		if got := tree(t, filepath.Join(dir, pod)); len(got) != 3 {
			t.Errorf("another replica's pod %s changed by the sweep: %q", pod, got)
		}
	}
	if got := tree(t, filepath.Join(dir, "live", "mine")); len(got) != 2 {
		t.Errorf("live/mine after the sweep: %q, want its backup deleted for the budget share", got)
	}
}

// holder is a stand-in for a replica's shard Lease: the epoch it holds, and whether it
// holds it at all.
type holder struct {
	epoch int64
	held  bool
}

func (h *holder) fence(string, string) (int64, bool) { return h.epoch, h.held }

// A fenced File writes only while its replica holds the pod's shard in the epoch it
// opened in: a lost Lease stops writes, rotations and cursor saves at once, and a holder
// frozen past its Lease cannot save over the cursor of the replica that took over. What
// was refused stays unwritten, and the next holder goes on from its cursor.
func TestFence(t *testing.T) {
	dir := t.TempDir()
	a := &holder{epoch: 1, held: true}
	ma := newTestManager(t, Config{Dir: dir, Shards: 4, Fence: a.fence})
	fa := mustOpen(t, ma, testKey)
	startInstance(t, fa)
	for i := range 3 {
		if err := fa.Write(rec(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	if err := fa.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := fa.SaveCursor(); err != nil {
		t.Fatal(err)
	}

	// The Lease is lost (not renewed within the deadline): nothing more is written.
	a.held = false
	_ = fa.Write(rec(3, ""))
	if err := fa.Flush(); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("Flush after the Lease was lost: %v, want ErrNotHolder", err)
	}
	if err := fa.SaveCursor(); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("SaveCursor after the Lease was lost: %v, want ErrNotHolder", err)
	}
	if got := len(allLines(t, dir, testKey)); got != 3 {
		t.Fatalf("%d lines on disk, want the 3 written while the shard was held", got)
	}
	if _, err := ma.Open(Key{Namespace: "default", Pod: "other", Container: "app"}); !errors.Is(err, ErrNotHolder) {
		t.Errorf("Open of a pod whose shard is not held: %v, want ErrNotHolder", err)
	}

	// Replica b takes the shard over (epoch 2) from a's cursor and writes on.
	b := &holder{epoch: 2, held: true}
	mb := newTestManager(t, Config{Dir: dir, Shards: 4, Fence: b.fence})
	fb := mustOpen(t, mb, testKey)
	if got := fb.Cursor().Lines; got != 3 {
		t.Fatalf("b resumes at line %d, want 3", got)
	}
	_ = fb.Write(rec(3, ""))
	if err := fb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := fb.SaveCursor(); err != nil {
		t.Fatal(err)
	}

	// a wakes up believing it still holds epoch 1 (frozen past expiry): its cursor save
	// finds b's epoch on disk and is refused.
	a.held = true
	if err := fa.SaveCursor(); !errors.Is(err, ErrNotHolder) {
		t.Fatalf("a stale holder's SaveCursor over a newer holder's cursor: %v, want ErrNotHolder", err)
	}
	if got := testutil.ToFloat64(ma.met.writeErrors.WithLabelValues(reasonFenced)); got < 3 {
		t.Errorf("kubelogd_write_errors_total{reason=fenced} = %v, want at least 3", got)
	}
	// Its flush before that save wrote the line it still held, after b's: b moves such
	// bytes aside before its next write, and the file stays exact.
	_ = fb.Write(rec(4, ""))
	if err := fb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := fb.Close(); err != nil {
		t.Fatal(err)
	}
	if kept, err := os.ReadFile(filepath.Join(dir, testKey.Namespace, testKey.Pod, ".app"+fencedSuffix)); err != nil || !strings.HasSuffix(string(kept), " line 3\n") {
		t.Errorf("the stale holder's bytes were not kept aside: %q, %v", kept, err)
	}
	var got []string
	for _, l := range allLines(t, dir, testKey) {
		_, text, _ := strings.Cut(l, " ")
		got = append(got, text)
	}
	if want := []string{"line 0", "line 1", "line 2", "line 3", "line 4"}; !slices.Equal(got, want) {
		t.Errorf("the file holds %q, want %q", got, want)
	}
}

// Replicas sharing the directory hand pods over: a pod directory that one created may
// hold files that another wrote since, so every container's files are looked at. Here
// the other replica was killed right after a rotation renamed the current file away
// (failpoint.RotationAfterRename): a fresh start would write every line again.
func TestShardedOpenRecovers(t *testing.T) {
	dir := t.TempDir()
	ha, hb := &holder{epoch: 1, held: true}, &holder{}
	a := newTestManager(t, Config{Dir: dir, Shards: 2, Fence: ha.fence})
	b := newTestManager(t, Config{Dir: dir, Shards: 2, Fence: hb.fence})
	key := func(c string) Key { return Key{Namespace: "ns", Pod: "pod", Container: c} }
	first := mustOpen(t, a, key("app"))   // a creates the pod directory
	if err := first.Close(); err != nil { // and hands the pod over
		t.Fatal(err)
	}
	ha.held, *hb = false, holder{epoch: 2, held: true}
	side := mustOpen(t, b, key("side"))
	startInstance(t, side)
	for i := range 3 {
		if err := side.Write(rec(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	if err := side.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	crash(side)
	backup := filepath.Join(dir, "ns", "pod", backupName("side", time.Now(), false))
	if err := os.Rename(side.p.current, backup); err != nil {
		t.Fatal(err)
	}
	// The pod back with a: its side container resumes from b's cursor.
	hb.held, *ha = false, holder{epoch: 3, held: true}
	again := mustOpen(t, a, key("side"))
	defer again.Close()
	if r := again.Recovered(); !r.HadCursor || r.RemovedBytes != 0 || r.Unverified != "" {
		t.Errorf("side opened by the replica that created its directory: Recovered() = %+v, want b's cursor, proven by the backup", r)
	}
	if c := again.Cursor(); c.PodUID != "uid-1" || c.Lines != 3 {
		t.Errorf("cursor %+v, want b's: uid-1, 3 lines", *c)
	}
}
