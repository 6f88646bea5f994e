package sink

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cursorSaves returns the copy number of the container's saved cursor, which every save
// increments (0 if there is none).
func cursorSaves(t *testing.T, f *File) uint64 {
	t.Helper()
	_, slots, found, err := loadCursor(f.p.cursor)
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		return 0
	}
	return slots.seq
}

// TestNewContainerCursorSaves checks how often the cursor of a new container is written
// before its first lines are on disk, and that skipping the others loses nothing a crash
// needs: every byte of a file is written after a cursor that recovery cuts it back to.
func TestNewContainerCursorSaves(t *testing.T) {
	t.Run("open, instance, lines", func(t *testing.T) {
		clock := newFakeClock()
		m := newTestManager(t, Config{Now: clock.Now})
		f := mustOpen(t, m, testKey)
		if n := cursorSaves(t, f); n != 0 {
			t.Error("Open of a new container saved a cursor")
		}
		startInstance(t, f)
		first := cursorSaves(t, f)
		if first == 0 {
			t.Fatal("SaveCursor after Reset saved no cursor")
		}
		// The collector saves again while a container waits; nothing changed, nothing written.
		if err := f.SaveCursor(); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if err := f.Write(rec(i, "")); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		if got := cursorSaves(t, f); got != first {
			t.Error("cursor written again before CursorInterval passed")
		}
		pc := readCursorFile(t, f)
		if pc.PodUID != "uid-1" || pc.Lines != 0 || pc.Offset != 0 {
			t.Errorf("saved cursor %+v, want uid-1 with 0 lines at offset 0", pc)
		}
		crash(f)
		g := mustOpen(t, m, testKey)
		defer g.Close()
		if r := g.Recovered(); !r.HadCursor || r.TruncatedBytes == 0 || r.KeptBytes != 0 {
			t.Errorf("Recovered() = %+v, want the uncovered lines cut off", r)
		}
		if c := g.Cursor(); c.PodUID != "uid-1" || c.Lines != 0 {
			t.Errorf("cursor after the crash: %+v", c)
		}
	})

	t.Run("lines without SaveCursor", func(t *testing.T) {
		m := newTestManager(t, Config{})
		f := mustOpen(t, m, testKey)
		if err := f.Write(rec(1, "")); err != nil {
			t.Fatal(err)
		}
		if cursorSaves(t, f) != 0 {
			t.Error("cursor saved by a Write that wrote nothing to the file")
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		// The first write to the file saved the empty cursor before the data.
		if pc := readCursorFile(t, f); pc.PodUID != "" || pc.Lines != 0 || pc.Offset != 0 {
			t.Errorf("cursor before the first write: %+v, want the empty one at offset 0", pc)
		}
		if st, _ := os.Stat(f.Path()); st.Size() == 0 {
			t.Error("the line is not in the file")
		}
		crash(f)
		g := mustOpen(t, m, testKey)
		defer g.Close()
		if r := g.Recovered(); !r.HadCursor || r.KeptBytes != 0 || r.TruncatedBytes == 0 {
			t.Errorf("Recovered() = %+v, want the line cut off", r)
		}
	})

	t.Run("closed without writing", func(t *testing.T) {
		m := newTestManager(t, Config{})
		f := mustOpen(t, m, testKey)
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if cursorSaves(t, f) != 0 {
			t.Error("Close saved the cursor of a container that wrote nothing")
		}
		g := mustOpen(t, m, testKey)
		if r := g.Recovered(); r != (Recovery{}) {
			t.Errorf("Recovered() = %+v, want a fresh start", r)
		}
		// An instance set but nothing written: Close saves it, as before.
		g.Cursor().Reset("uid-2", "containerd://def", 1)
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
		if pc := readCursorFile(t, g); pc.PodUID != "uid-2" || pc.RestartCount != 1 {
			t.Errorf("cursor saved at Close: %+v", pc)
		}
	})

	t.Run("changed cursor still saved", func(t *testing.T) {
		m := newTestManager(t, Config{})
		f := mustOpen(t, m, testKey)
		defer f.Close()
		startInstance(t, f)
		first := cursorSaves(t, f)
		f.Cursor().Done = true
		if err := f.SaveCursor(); err != nil {
			t.Fatal(err)
		}
		if cursorSaves(t, f) == first || !readCursorFile(t, f).Done {
			t.Error("Done not saved")
		}
	})
}

// TestPodDirectoryCache checks that Open finds a pod's directory again after it was
// removed, by the sweep or behind kubelogd's back, although it remembers directories
// it created.
func TestPodDirectoryCache(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now, RetainDeleted: time.Hour})
	key := Key{Namespace: "ns", Pod: "pod", Container: "app"}
	podDir := filepath.Join(dir, "ns", "pod")
	openWrite := func() {
		t.Helper()
		f := mustOpen(t, m, key)
		if err := f.Write(rec(1, "")); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if _, known := m.dirs[podDir]; !known {
			t.Error("pod directory not remembered")
		}
	}
	openWrite()

	// Behind kubelogd's back.
	if err := os.RemoveAll(podDir); err != nil {
		t.Fatal(err)
	}
	openWrite()
	if got := mode(t, podDir); got != dirMode {
		t.Errorf("recreated pod directory has mode %03o", got)
	}

	// By the sweep, with the namespace directory.
	old := clock.Now().Add(-2 * time.Hour)
	for _, name := range tree(t, podDir) {
		_ = os.Chtimes(filepath.Join(podDir, name), old, old)
	}
	m.started = clock.Now().Add(-startupGrace)
	m.sweep(t.Context())
	if _, err := os.Stat(filepath.Join(dir, "ns")); !os.IsNotExist(err) {
		t.Fatalf("the sweep left the namespace directory: %v", err)
	}
	if _, known := m.dirs[podDir]; known {
		t.Error("the sweep removed the pod directory, but it is still remembered")
	}
	openWrite()
}

// TestCursorCreatedInPlace checks the creation of a new container's cursor file: in
// place, with no temporary file, and what a crash or a failure in the middle leaves.
func TestCursorCreatedInPlace(t *testing.T) {
	var synced []string
	observe := func(fail string) {
		synced = nil
		syncObserver = func(path string) error {
			synced = append(synced, filepath.Clean(path))
			if path == fail {
				return syscall.EIO
			}
			return nil
		}
	}
	t.Cleanup(func() { syncObserver = nil })

	t.Run("synced first save", func(t *testing.T) {
		clock := newFakeClock()
		m := newTestManager(t, Config{Now: clock.Now})
		f := mustOpen(t, m, testKey)
		defer f.Close()
		observe("")
		defer func() { syncObserver = nil }()
		clock.Advance(time.Hour) // past SyncInterval: the save is a synced one
		startInstance(t, f)
		// The data, the cursor file itself (not a temporary one), then its name.
		if want := []string{f.p.current, f.p.cursor, f.p.dir}; !slices.Equal(synced, want) {
			t.Errorf("synced %q, want %q", synced, want)
		}
	})

	t.Run("failed creation leaves nothing", func(t *testing.T) {
		clock := newFakeClock()
		m := newTestManager(t, Config{Now: clock.Now})
		f := mustOpen(t, m, testKey)
		defer f.Close()
		observe(filepath.Join(m.cfg.Dir, testKey.Namespace, testKey.Pod, ".app.cursor"))
		defer func() { syncObserver = nil }()
		clock.Advance(time.Hour)
		f.Cursor().Reset("uid-1", "containerd://abc", 0)
		if err := f.SaveCursor(); !errors.Is(err, syscall.EIO) {
			t.Fatalf("SaveCursor with the cursor's sync failing: %v, want EIO", err)
		}
		if _, err := os.Lstat(f.p.cursor); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("a failed creation left the cursor file: %v", err)
		}
		if err := f.Write(rec(1, "")); err != nil {
			t.Fatal(err)
		}
		if err := f.Flush(); err == nil {
			t.Error("a line was written to a file without a cursor")
		}
		syncObserver = nil
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		// The first write saved the empty cursor before the data (ensureCursor).
		if pc := readCursorFile(t, f); pc.Offset != 0 {
			t.Errorf("cursor after the retry covers %d bytes, want 0", pc.Offset)
		}
		if err := f.SaveCursor(); err != nil {
			t.Fatal(err)
		}
		if pc := readCursorFile(t, f); pc.PodUID != "uid-1" || pc.Lines != 1 {
			t.Errorf("cursor after the retry: %+v", pc)
		}
	})

	t.Run("killed before the first copy", func(t *testing.T) {
		// A kill at failpoint.CursorCreate leaves the file empty, beside an empty current
		// file: recovery takes it for no cursor, and the next save replaces it.
		m := newTestManager(t, Config{})
		f := mustOpen(t, m, testKey)
		crash(f)
		if err := os.WriteFile(f.p.cursor, nil, fileMode); err != nil {
			t.Fatal(err)
		}
		g := mustOpen(t, m, testKey)
		defer g.Close()
		if r := g.Recovered(); r.HadCursor || r.CursorError == nil || r.KeptBytes != 0 || r.TruncatedBytes != 0 {
			t.Errorf("Recovered() = %+v, want an unreadable cursor and nothing kept", r)
		}
		startInstance(t, g)
		if err := g.Write(rec(1, "")); err != nil {
			t.Fatal(err)
		}
		if err := g.Flush(); err != nil {
			t.Fatal(err)
		}
		if pc := readCursorFile(t, g); pc.PodUID != "uid-1" {
			t.Errorf("cursor after the restart: %+v", pc)
		}
	})

	t.Run("file appeared since Open", func(t *testing.T) {
		m := newTestManager(t, Config{})
		f := mustOpen(t, m, testKey)
		defer f.Close()
		if err := os.WriteFile(f.p.cursor, []byte("not kubelogd's"), fileMode); err != nil {
			t.Fatal(err)
		}
		observe("")
		defer func() { syncObserver = nil }()
		f.Cursor().Reset("uid-1", "containerd://abc", 0)
		if err := f.SaveCursor(); !errors.Is(err, fs.ErrExist) {
			t.Errorf("SaveCursor over a file that appeared since Open: %v, want it refused", err)
		}
		if len(synced) != 0 {
			t.Errorf("the refused save synced %q", synced)
		}
		// The next save replaces it as a cursor found: the data, a synced temporary
		// file, the directory.
		if err := f.SaveCursor(); err != nil {
			t.Fatal(err)
		}
		if len(synced) != 3 || synced[0] != f.p.current || !strings.HasPrefix(synced[1], f.p.cursor+tmpInfix) || synced[2] != f.p.dir {
			t.Errorf("synced %q, want the data, a temporary file, the directory", synced)
		}
		if pc := readCursorFile(t, f); pc.PodUID != "uid-1" {
			t.Errorf("cursor: %+v", pc)
		}
	})
}

// TestNewFilesInCreatedDir checks when Open takes a container for one without files, in
// a pod directory the Manager created, and that it looks at the files otherwise.
func TestNewFilesInCreatedDir(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir})
	key := func(c string) Key { return Key{Namespace: "ns", Pod: "pod", Container: c} }
	podDir := filepath.Join(dir, "ns", "pod")
	write := func(f *File, n int) {
		t.Helper()
		startInstance(t, f)
		for i := range n {
			if err := f.Write(rec(i, "")); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	first := mustOpen(t, m, key("app"))
	if st := m.dirs[podDir]; !st.created || !slices.Equal(st.opened, []string{"app"}) {
		t.Errorf("pod directory %+v, want created here with app opened", st)
	}
	write(first, 2)
	crash(first)

	// Opened before: its files are recovered (the lines after the cursor cut off).
	again := mustOpen(t, m, key("app"))
	if r := again.Recovered(); !r.HadCursor || r.TruncatedBytes == 0 {
		t.Errorf("app opened again: Recovered() = %+v, want its cursor and the uncovered lines cut", r)
	}
	if err := again.Close(); err != nil {
		t.Fatal(err)
	}

	// Never opened, but a file there (not kubelogd's doing): it is looked at and kept.
	if err := os.WriteFile(filepath.Join(podDir, "side.log"), []byte("kept\n"), fileMode); err != nil {
		t.Fatal(err)
	}
	side := mustOpen(t, m, key("side"))
	if r := side.Recovered(); r.KeptBytes != 5 {
		t.Errorf("side with a file there: Recovered() = %+v, want its 5 bytes kept", r)
	}
	if err := side.Close(); err != nil {
		t.Fatal(err)
	}

	// The directory removed behind kubelogd's back: created again, and known so.
	if err := os.RemoveAll(podDir); err != nil {
		t.Fatal(err)
	}
	third := mustOpen(t, m, key("third"))
	if r := third.Recovered(); r != (Recovery{}) {
		t.Errorf("third: Recovered() = %+v, want a fresh start", r)
	}
	write(third, 1)
	if err := third.Close(); err != nil {
		t.Fatal(err)
	}
	if st := m.dirs[podDir]; !st.created || !slices.Equal(st.opened, []string{"third"}) {
		t.Errorf("pod directory created again: %+v, want created here with third opened", st)
	}

	// A directory that was there when the Manager came: every container is looked at.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(podDir, "fourth.log"), []byte("kept\n"), fileMode); err != nil {
		t.Fatal(err)
	}
	m2 := newTestManager(t, Config{Dir: dir})
	fourth := mustOpen(t, m2, key("fourth"))
	defer fourth.Close()
	if r := fourth.Recovered(); r.KeptBytes != 5 {
		t.Errorf("fourth in a directory found: Recovered() = %+v, want its 5 bytes kept", r)
	}
	if st := m2.dirs[podDir]; st.created {
		t.Errorf("a directory found taken for one created: %+v", st)
	}
}
