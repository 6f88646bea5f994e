package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCursorSavedInPlace checks that saves after the first overwrite the cursor file in
// place, alternating slots: the inode stays, the size stays two slots, and each load
// returns the newest copy.
func TestCursorSavedInPlace(t *testing.T) {
	clock := newFakeClock()
	m := newTestManager(t, Config{Now: clock.Now, CursorInterval: time.Second})
	f := mustOpen(t, m, testKey)
	defer f.Close()
	startInstance(t, f)
	st, err := os.Stat(f.p.cursor)
	if err != nil {
		t.Fatal(err)
	}
	ino := inodeOf(st)
	for i := range 5 {
		if err := f.Write(rec(i, "")); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		pc, slots, found, err := loadCursor(f.p.cursor)
		if err != nil || !found {
			t.Fatalf("save %d: found %v, %v", i+2, found, err)
		}
		// None of these saves is synced: they overwrite each other in slot 1, and slot 0
		// keeps the file's first copy.
		if pc.Lines != int64(i+1) || slots.seq != uint64(i+2) || slots.newest != 1 || slots.size != cursorSlotAlign {
			t.Errorf("save %d: %d lines in copy %d in slot %d of %d bytes, want %d lines in copy %d in slot 1 of %d",
				i+2, pc.Lines, slots.seq, slots.newest, slots.size, i+1, i+2, cursorSlotAlign)
		}
		if first := slotCopies(t, f.p.cursor)[0]; first == nil || first.PodUID != "uid-1" || first.Lines != 0 {
			t.Errorf("save %d: slot 0 holds %+v, want the first copy", i+2, first)
		}
		st, err := os.Stat(f.p.cursor)
		if err != nil {
			t.Fatal(err)
		}
		if inodeOf(st) != ino || st.Size() != 2*cursorSlotAlign {
			t.Errorf("save %d: inode %d and %d bytes, want inode %d (in place) and %d bytes", i+2, inodeOf(st), st.Size(), ino, 2*cursorSlotAlign)
		}
	}
	entries, err := os.ReadDir(f.p.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), tmpInfix) {
			t.Errorf("temporary file %s left", e.Name())
		}
	}
}

// TestCursorTornCopy damages the newest copy in several ways, as a crash or power loss in
// the middle of its write can (old is what its slot held before: a torn write leaves the
// older copy's bytes), and checks that recovery uses the copy before it: the lines
// written after it are cut off, to be read again.
func TestCursorTornCopy(t *testing.T) {
	seqAt := cursorCRCFrom + len(" seq ")
	lenAt := cursorCRCTo - 8
	for _, tc := range []struct {
		name   string
		damage func(slot, old []byte)
		// torn: the slot still starts like a copy; the next save must create the file anew
		torn bool
	}{
		{"JSON half written", func(s, _ []byte) { clear(s[cursorHeaderLen+40:]) }, true},
		{"header only", func(s, _ []byte) { clear(s[cursorHeaderLen:]) }, true},
		{"nothing written", func(s, _ []byte) { clear(s) }, false},
		{"new header, old JSON", func(s, old []byte) { copy(s[cursorHeaderLen:], old[cursorHeaderLen:]) }, true},
		{"old header, new JSON", func(s, old []byte) { copy(s, old[:cursorHeaderLen]) }, true},
		{"new start, old end", func(s, old []byte) { copy(s[cursorHeaderLen+20:], old[cursorHeaderLen+20:]) }, true},
		{"bit flipped in the JSON", func(s, _ []byte) { s[cursorHeaderLen+10] ^= 4 }, true},
		{"seq changed", func(s, _ []byte) { s[seqAt+15] ^= 1 }, true},
		{"length beyond the slot", func(s, _ []byte) { copy(s[lenAt:], "ffffffff") }, true},
		{"length not hex", func(s, _ []byte) { copy(s[lenAt:], "zz") }, true},
		{"other magic", func(s, _ []byte) { s[0] = 'K' }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			m := newTestManager(t, Config{Now: clock.Now, CursorInterval: time.Second, SyncInterval: time.Second, Format: FormatRaw})
			f := mustOpen(t, m, testKey)
			startInstance(t, f)
			// Copies 2 and 3 cover lines 0-2 and 0-5; copy 2 is synced, so copy 3
			// overwrites copy 1.
			var before []byte
			for i := range 6 {
				if err := f.Write(rec(i, "")); err != nil {
					t.Fatal(err)
				}
				if i == 2 {
					clock.Advance(time.Second)
				}
				if i == 5 {
					before = readFile(t, f.p.cursor)
				}
				if i == 2 || i == 5 {
					if err := f.SaveCursor(); err != nil {
						t.Fatal(err)
					}
				}
			}
			_, slots, _, err := loadCursor(f.p.cursor)
			if err != nil {
				t.Fatal(err)
			}
			crash(f)
			data := readFile(t, f.p.cursor)
			at := func(b []byte) []byte { return b[int64(slots.newest)*slots.size : int64(slots.newest+1)*slots.size] }
			tc.damage(at(data), at(before))
			if err := os.WriteFile(f.p.cursor, data, fileMode); err != nil {
				t.Fatal(err)
			}
			if _, got, _, _ := loadCursor(f.p.cursor); (got.size == 0) != tc.torn {
				t.Errorf("slots after the damage %+v: torn %v, want %v", got, got.size == 0, tc.torn)
			}

			g := mustOpen(t, m, testKey)
			defer g.Close()
			if c := g.Cursor(); c.Lines != 3 || c.PodUID != "uid-1" {
				t.Errorf("recovered cursor has %d lines of %q, want the previous copy's 3 of uid-1", c.Lines, c.PodUID)
			}
			if r := g.Recovered(); !r.HadCursor || r.CursorError != nil || r.TruncatedBytes == 0 {
				t.Errorf("Recovered() = %+v, want the 3 lines after the previous copy cut off", r)
			}
			if got := allLines(t, m.cfg.Dir, testKey); len(got) != 3 {
				t.Errorf("file holds %q, want lines 0-2", got)
			}
			// Open saved the repaired state at once, and left no torn copy that a later
			// torn write could complete.
			data = readFile(t, g.p.cursor)
			pc, after, _, err := loadCursor(g.p.cursor)
			if err != nil || pc.Lines != 3 || pc.Offset == 0 {
				t.Errorf("cursor after recovery: %d lines at offset %d (%v), want 3 lines", pc.Lines, pc.Offset, err)
			}
			for i := range int64(2) {
				slot := data[i*after.size : (i+1)*after.size]
				if _, _, ok := decodeSlot(slot); !ok && bytes.HasPrefix(slot, []byte(cursorMagic)) {
					t.Errorf("slot %d still holds a torn copy", i)
				}
			}
		})
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestCursorFileUnreadable(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"both copies torn", slices2(slotWith(t, `{"version":1}`)[:cursorHeaderLen+5], make([]byte, 2*cursorSlotAlign-cursorHeaderLen-5)), "no intact copy"},
		{"empty", nil, "no intact copy"},
		{"short", []byte(cursorMagic), "no intact copy"},
		{"old layout, torn", []byte(`{"version":1,"podUID":"x`), "decoding cursor"},
		{"newer version", slices2(slotWith(t, `{"version":9}`), make([]byte, cursorSlotAlign)), "has version 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".app.cursor")
			if err := os.WriteFile(path, tc.data, fileMode); err != nil {
				t.Fatal(err)
			}
			_, slots, found, err := loadCursor(path)
			if found || err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("loadCursor: found %v, error %v; want an error naming %s and saying %q", found, err, path, tc.want)
			}
			if slots.size != 0 || slots.keep != keepUnknown {
				t.Errorf("slots %+v: the next save must replace the file, synced", slots)
			}
		})
	}
}

// TestCursorFileCut checks a cursor file cut short, as a power loss right after its
// creation can leave it: the intact first copy is used, and the next save replaces the
// file.
func TestCursorFileCut(t *testing.T) {
	slot := slotWith(t, `{"version":1,"lines":7}`)
	for _, size := range []int{cursorSlotAlign, cursorSlotAlign + 1, 2*cursorSlotAlign - 1, 200} {
		path := filepath.Join(t.TempDir(), ".app.cursor")
		if err := os.WriteFile(path, slices2(slot, make([]byte, 2*cursorSlotAlign))[:size], fileMode); err != nil {
			t.Fatal(err)
		}
		pc, slots, found, err := loadCursor(path)
		if !found || err != nil || pc.Lines != 7 || slots.size != 0 {
			t.Errorf("%d bytes: found %v (%v), %d lines, slots %+v; want the first copy's 7 lines and a new file next", size, found, err, pc.Lines, slots)
		}
	}
}

func slotWith(t *testing.T, payload string) []byte {
	t.Helper()
	slot := make([]byte, cursorSlotAlign)
	encodeSlot(slot, 1, []byte(payload))
	return slot
}

func slices2(a, b []byte) []byte { return append(append([]byte{}, a...), b...) }

// TestCursorOldLayout checks that a cursor of the layout before slots (one JSON
// document) is resumed from, and that the next save replaces it with a slotted file.
func TestCursorOldLayout(t *testing.T) {
	m := newTestManager(t, Config{Format: FormatRaw})
	f := mustOpen(t, m, testKey)
	f.Cursor().Reset("uid-1", "containerd://abc", 0)
	for i := range 3 {
		if err := f.Write(rec(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	pc, _, _, err := loadCursor(f.p.cursor)
	if err != nil {
		t.Fatal(err)
	}
	old, err := json.Marshal(pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.p.cursor, append(old, '\n'), fileMode); err != nil {
		t.Fatal(err)
	}

	g := mustOpen(t, m, testKey)
	defer g.Close()
	if r := g.Recovered(); !r.HadCursor || r.CursorError != nil || r.TruncatedBytes != 0 || g.Cursor().Lines != 3 {
		t.Fatalf("Recovered() = %+v with %d lines, want the old cursor's 3", r, g.Cursor().Lines)
	}
	if err := g.Write(rec(3, "")); err != nil {
		t.Fatal(err)
	}
	if err := g.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(g.p.cursor)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte(cursorMagic)) || len(data) != 2*cursorSlotAlign {
		t.Errorf("cursor after a save: %d bytes starting %q, want the slotted layout", len(data), data[:min(len(data), 20)])
	}
	if c, err := ReadCursorFile(g.p.cursor); err != nil || c.Lines != 4 {
		t.Errorf("ReadCursorFile: %d lines, %v; want 4", c.Lines, err)
	}
}

// TestCursorOutgrowsSlot checks that a cursor too large for its slot is saved in a new,
// larger file, and that one removed behind kubelogd's back is created again.
func TestCursorOutgrowsSlot(t *testing.T) {
	m := newTestManager(t, Config{})
	f := mustOpen(t, m, testKey)
	defer f.Close()
	startInstance(t, f)
	// A cursor counting many seconds: a resume margin of an hour, a line a second.
	c := f.Cursor()
	c.MarginSec = 3600
	for i := range 1000 {
		c.ObserveHashed(time.Unix(1_700_000_000+int64(i), 0), uint64(i))
	}
	var synced []string
	syncObserver = func(path string) error { synced = append(synced, path); return nil }
	defer func() { syncObserver = nil }()
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	// The file replaces a cursor, so the save is a synced one: the data, the directory
	// (the first file's creation), the new file, the directory.
	if len(synced) != 4 || synced[0] != f.p.current || synced[1] != f.p.dir || !strings.HasPrefix(synced[2], f.p.cursor+tmpInfix) || filepath.Clean(synced[3]) != f.p.dir {
		t.Errorf("the file replacing an outgrown cursor synced %q, want the data, the directory, the new file, the directory", synced)
	}
	pc, slots, _, err := loadCursor(f.p.cursor)
	if err != nil {
		t.Fatal(err)
	}
	if len(pc.Seconds) != 1000 || slots.size <= cursorSlotAlign || slots.size%cursorSlotAlign != 0 {
		t.Errorf("%d seconds saved in slots of %d bytes; want 1000 in larger slots, a multiple of %d", len(pc.Seconds), slots.size, cursorSlotAlign)
	}
	if err := os.Remove(f.p.cursor); err != nil {
		t.Fatal(err)
	}
	c.Done = true
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	if got, err := ReadCursorFile(f.p.cursor); err != nil || !got.Done || len(got.Seconds) != 1000 {
		t.Errorf("cursor saved after its file was removed: done %v, %d seconds, %v", got.Done, len(got.Seconds), err)
	}
}

// slotCopies decodes both slots of the cursor file at path (nil where a slot holds no
// intact copy).
func slotCopies(t *testing.T, path string) [2]*persistedCursor {
	t.Helper()
	data := readFile(t, path)
	var out [2]*persistedCursor
	size := len(data) / 2
	for i := range 2 {
		if _, p, ok := decodeSlot(data[i*size : (i+1)*size]); ok {
			out[i] = new(persistedCursor)
			if err := json.Unmarshal(p, out[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestCursorKeepsSyncedCopy checks which copy saves spare. The save before a rotation is
// synced, and no unsynced save after it overwrites it: after a power loss, a copy older
// than it would name the rotated file at less than its full size. The next synced save
// takes its place. A cursor file found at Open keeps the copy it was loaded from likewise.
func TestCursorKeepsSyncedCopy(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now, CursorInterval: time.Second, SyncInterval: time.Hour, Format: FormatRaw, maxSizeBytes: 4096})
	f := mustOpen(t, m, testKey)
	startInstance(t, f)
	i := 0
	line := func() {
		t.Helper()
		if err := f.Write(rec(i, fmt.Sprintf("line %d %s", i, strings.Repeat("x", 90)))); err != nil {
			t.Fatal(err)
		}
		i++
	}
	for f.Stats().Rotations == 0 {
		line()
	}
	files := fileSet(t, dir, testKey)
	if len(files) != 2 {
		t.Fatalf("files %v, want a backup and the current file", files)
	}
	st, err := os.Stat(files[0])
	if err != nil {
		t.Fatal(err)
	}
	isRotationCopy := func(c *persistedCursor) bool {
		return c != nil && c.Inode == inodeOf(st) && c.Offset == st.Size()
	}
	hasRotationCopy := func() bool {
		copies := slotCopies(t, f.p.cursor)
		return isRotationCopy(copies[0]) || isRotationCopy(copies[1])
	}
	if !hasRotationCopy() {
		t.Fatalf("no copy names the backup at its full size %d: %+v", st.Size(), slotCopies(t, f.p.cursor))
	}
	saves := func(n int) {
		t.Helper()
		for range n {
			line()
			clock.Advance(time.Second)
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for n := range 4 {
		saves(1)
		if !hasRotationCopy() {
			t.Fatalf("unsynced save %d after the rotation overwrote the copy saved before it", n+1)
		}
	}
	// A synced save, then one more: the copy before the rotation may go now.
	clock.Advance(time.Hour)
	saves(2)
	if hasRotationCopy() {
		t.Error("the copy before the rotation survived a synced save and the save after it")
	}

	// Found at Open: the first save is synced, and kept while unsynced saves follow.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f = mustOpen(t, m, testKey)
	defer f.Close()
	saves(1)
	first := readCursorFile(t, f)
	saves(3)
	copies := slotCopies(t, f.p.cursor)
	if kept := func(c *persistedCursor) bool { return c != nil && c.Lines == first.Lines && c.Offset == first.Offset }; !kept(copies[0]) && !kept(copies[1]) {
		t.Errorf("the first save after Open (%d lines) was overwritten by unsynced saves: %+v, %+v", first.Lines, copies[0], copies[1])
	}
	if c := readCursorFile(t, f); c.Lines != first.Lines+3 {
		t.Errorf("newest copy has %d lines, want %d", c.Lines, first.Lines+3)
	}
}

// TestCursorSyncOrder checks what is synced, in which order, where power-loss safety
// depends on it (see cursorfile.go): at a rotation, at the first save of a cursor found at
// Open, and when a file replaces a cursor.
func TestCursorSyncOrder(t *testing.T) {
	var mu sync.Mutex
	var synced []string
	syncObserver = func(path string) error {
		mu.Lock()
		defer mu.Unlock()
		synced = append(synced, path)
		return nil
	}
	defer func() { syncObserver = nil }()
	took := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := synced
		synced = nil
		return out
	}
	clock := newFakeClock()
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now, CursorInterval: time.Second, SyncInterval: time.Hour, Format: FormatRaw, maxSizeBytes: 4096})
	f := mustOpen(t, m, testKey)
	p := f.p
	startInstance(t, f)
	if got := took(); len(got) != 0 {
		t.Errorf("a new container's first save synced %q", got)
	}
	i := 0
	for f.Stats().Rotations == 0 {
		if err := f.Write(rec(i, fmt.Sprintf("line %d %s", i, strings.Repeat("x", 90)))); err != nil {
			t.Fatal(err)
		}
		i++
	}
	// Data, then the directory (the cursor file's name), then the cursor; the rotation;
	// then the directory again (the rename and the new file).
	if got, want := took(), []string{p.current, p.dir, p.cursor, p.dir}; !slices.Equal(got, want) {
		t.Errorf("rotation synced %q, want %q", got, want)
	}

	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	took()
	f = mustOpen(t, m, testKey)
	if err := f.Write(rec(i, "")); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	// The cursor found is synced before the slot beside it is overwritten.
	if got, want := took(), []string{p.current, p.dir, p.cursor, p.cursor}; !slices.Equal(got, want) {
		t.Errorf("first save after Open synced %q, want %q", got, want)
	}
	if err := f.Write(rec(i+1, "")); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	if got := took(); len(got) != 0 {
		t.Errorf("the second save after Open synced %q", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// A cursor of the old layout: the file replacing it is synced, then its directory.
	pc := readCursorFile(t, f)
	old, err := json.Marshal(pc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.cursor, old, fileMode); err != nil {
		t.Fatal(err)
	}
	took()
	f = mustOpen(t, m, testKey)
	defer f.Close()
	if err := f.Write(rec(i+2, "")); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	got := took()
	if len(got) != 4 || got[0] != p.current || got[1] != p.dir || !strings.HasPrefix(got[2], p.cursor+tmpInfix) || filepath.Clean(got[3]) != p.dir {
		t.Errorf("replacing an old cursor synced %q, want the data, the directory, the new file, the directory", got)
	}
}

// TestDirSyncErrors checks what a failing directory fsync does: a file system that cannot
// fsync directories (EINVAL) is no error, and an I/O error fails the synced save that
// needs it, until the directory syncs again.
func TestDirSyncErrors(t *testing.T) {
	var fail error
	clock := newFakeClock()
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now, CursorInterval: time.Second, SyncInterval: time.Hour, Format: FormatRaw, maxSizeBytes: 4096})
	f := mustOpen(t, m, testKey)
	defer f.Close()
	syncObserver = func(path string) error {
		if path == f.p.dir || filepath.Clean(path) == f.p.dir {
			return fail
		}
		return nil
	}
	defer func() { syncObserver = nil }()
	startInstance(t, f)
	i := 0
	write := func() error {
		err := f.Write(rec(i, fmt.Sprintf("line %d %s", i, strings.Repeat("x", 90))))
		i++
		return err
	}
	fail = syscall.EINVAL
	for f.Stats().Rotations < 2 {
		if err := write(); err != nil {
			t.Fatalf("rotating where directories cannot be fsynced: %v", err)
		}
	}
	// A rotation whose directory sync fails only warns; the next synced save syncs the
	// directory first, and fails while it cannot.
	fail = syscall.EIO
	for rotations := f.Stats().Rotations; f.Stats().Rotations == rotations; {
		if err := write(); err != nil {
			t.Fatalf("rotation with the directory sync failing: %v", err)
		}
	}
	if err := write(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	before := testutil.ToFloat64(m.met.writeErrors.WithLabelValues(reasonOther))
	if err := f.Flush(); !errors.Is(err, syscall.EIO) || !strings.Contains(err.Error(), f.p.dir) {
		t.Errorf("synced save after a rotation whose directory sync failed: %v, want EIO naming %s", err, f.p.dir)
	}
	if got := testutil.ToFloat64(m.met.writeErrors.WithLabelValues(reasonOther)) - before; got != 1 {
		t.Errorf("kubelogd_write_errors_total{reason=other} rose by %v for the failed save, want 1", got)
	}
	fail = nil
	if err := f.Flush(); err != nil {
		t.Errorf("synced save once the directory syncs: %v", err)
	}
}

// TestPodDirSyncShared checks that the containers of a pod share the fsync of their
// directory: a synced save skips it when an fsync that began after the directory's last
// change it made has succeeded, whoever's it was, and makes its own otherwise.
func TestPodDirSyncShared(t *testing.T) {
	var fail error
	var synced []string
	clock := newFakeClock()
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now, CursorInterval: time.Second, SyncInterval: time.Hour, Format: FormatRaw, maxSizeBytes: 4096})
	app := mustOpen(t, m, Key{Namespace: "ns", Pod: "pod", Container: "app"})
	defer app.Close()
	side := mustOpen(t, m, Key{Namespace: "ns", Pod: "pod", Container: "side"})
	defer side.Close()
	podDir := app.p.dir
	syncObserver = func(path string) error {
		synced = append(synced, filepath.Clean(path))
		if filepath.Clean(path) == podDir {
			return fail
		}
		return nil
	}
	defer func() { syncObserver = nil }()
	took := func() []string {
		out := synced
		synced = nil
		return out
	}
	// Both cursor files created unsynced, then one line each.
	for i, f := range []*File{app, side} {
		startInstance(t, f)
		if err := f.Write(rec(i, "")); err != nil {
			t.Fatal(err)
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	took()
	save := func(f *File) error {
		t.Helper()
		if err := f.Write(rec(9, "")); err != nil {
			t.Fatal(err)
		}
		return f.SaveCursor()
	}

	// The directory's fsync fails for the first: the second makes its own, which covers
	// the first's change too.
	clock.Advance(time.Hour)
	fail = syscall.EIO
	if err := save(app); !errors.Is(err, syscall.EIO) {
		t.Fatalf("synced save with the directory sync failing: %v, want EIO", err)
	}
	fail = nil
	if err := save(side); err != nil {
		t.Fatal(err)
	}
	if got, want := took(), []string{app.p.current, podDir, side.p.current, podDir, side.p.cursor}; !slices.Equal(got, want) {
		t.Errorf("synced %q, want %q", got, want)
	}
	if err := app.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	if got, want := took(), []string{app.p.current, app.p.cursor}; !slices.Equal(got, want) {
		t.Errorf("after the other container's directory sync, synced %q, want %q", got, want)
	}

	// A change after that fsync began needs one of its own: a rotation makes it at once.
	for i := 0; side.Stats().Rotations == 0; i++ {
		if err := side.Write(rec(i, strings.Repeat("x", 90))); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := took(), []string{side.p.current, side.p.cursor, podDir}; !slices.Equal(got, want) {
		t.Errorf("rotation synced %q, want %q", got, want)
	}
	// A new cursor file in the directory (after its creation, the sync of another's
	// directory change): the next synced save of its container syncs the directory.
	third := mustOpen(t, m, Key{Namespace: "ns", Pod: "pod", Container: "third"})
	defer third.Close()
	startInstance(t, third)
	clock.Advance(time.Hour)
	if err := save(third); err != nil {
		t.Fatal(err)
	}
	if got, want := took(), []string{third.p.current, podDir, third.p.cursor}; !slices.Equal(got, want) {
		t.Errorf("synced %q, want %q", got, want)
	}
}
