package daemon

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/internal/layout"
)

// TestMetaWriterWritesOnlyChanges checks when .pod.json is written: once per pod UID,
// again when labels, owner or node change or the pod is deleted, and not after a restart
// that finds the same metadata on disk.
func TestMetaWriterWritesOnlyChanges(t *testing.T) {
	dir := t.TempDir()
	clock := time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)
	newWriter := func() *metaWriter {
		w := newMetaWriter(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
		w.now = func() time.Time { return clock }
		return w
	}
	path := layout.MetaPath(dir, "shop", "web-0")
	// inode tells a rewrite (a new file renamed into place) from no write.
	inode := func() uint64 {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Ino
	}
	read := func() layout.PodMeta {
		t.Helper()
		m, err := layout.ReadMeta(dir, "shop", "web-0")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	pod := informer.Pod{UID: "uid-1", Namespace: "shop", Name: "web-0", Node: "node-1",
		Labels: map[string]string{"app": "web"}, OwnerKind: "StatefulSet", OwnerName: "web"}
	first := clock

	w := newWriter()
	w.write(pod)
	ino := inode()
	if m := read(); m.UID != "uid-1" || m.Labels["app"] != "web" || !m.FirstSeen.Equal(first) {
		t.Fatalf("written %+v", m)
	}

	clock = clock.Add(time.Minute)
	w.write(pod) // another container's event, a status update
	if inode() != ino {
		t.Error("rewritten although nothing changed")
	}

	// A restart: the file says the same, so it stays as it is.
	w = newWriter()
	w.write(pod)
	if inode() != ino {
		t.Error("rewritten after a restart although the file says the same")
	}
	if _, known := w.written[pod.UID]; !known {
		t.Error("the pod found on disk is not remembered as written")
	}

	// Labels changed while kubelogd was down.
	w = newWriter()
	pod.Labels = map[string]string{"app": "web", "track": "canary"}
	w.write(pod)
	if m := read(); inode() == ino || m.Labels["track"] != "canary" || !m.FirstSeen.Equal(first) || !m.LastSeen.Equal(clock) {
		t.Errorf("after a label change: %+v", m)
	}
	ino = inode()

	clock = clock.Add(time.Minute)
	pod.Deleted = true
	w.write(pod)
	if m := read(); inode() == ino || !m.LastSeen.Equal(clock) {
		t.Errorf("deletion not recorded: %+v", m)
	}

	// A recreated pod of the same name keeps FirstSeen.
	ino = inode()
	w.write(informer.Pod{UID: "uid-2", Namespace: "shop", Name: "web-0", Node: "node-2"})
	if m := read(); inode() == ino || m.UID != "uid-2" || !m.FirstSeen.Equal(first) {
		t.Errorf("recreated pod: %+v", m)
	}

	// An unreadable file (a power loss before it reached the disk) is written again.
	if err := os.WriteFile(path, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	w = newWriter()
	w.write(informer.Pod{UID: "uid-2", Namespace: "shop", Name: "web-0", Node: "node-2"})
	if m := read(); m.UID != "uid-2" {
		t.Errorf("unreadable file not rewritten: %+v", m)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("pod directory holds %d entries, want only .pod.json", len(entries))
	}
}

// TestMetaWriterRunTrailsAndDrains: Run writes a queued pod's metadata after its delay,
// and what is still queued when it is stopped before then.
func TestMetaWriterRunTrailsAndDrains(t *testing.T) {
	for _, stopEarly := range []bool{false, true} {
		dir := t.TempDir()
		w := newMetaWriter(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
		w.delay = 200 * time.Millisecond
		if stopEarly {
			w.delay = time.Hour
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- w.Run(ctx) }()
		w.OnPod(informer.Pod{UID: "u1", Namespace: "shop", Name: "web-0", Labels: map[string]string{"app": "web"}})
		if !stopEarly {
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := layout.ReadMeta(dir, "shop", "web-0"); err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("no .pod.json 10 s after the pod was queued")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		m, err := layout.ReadMeta(dir, "shop", "web-0")
		if err != nil || m.Labels["app"] != "web" {
			t.Errorf("stopEarly=%v: ReadMeta = %+v, %v; want the queued pod's metadata", stopEarly, m, err)
		}
	}
}
