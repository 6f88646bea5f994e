package sink

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
