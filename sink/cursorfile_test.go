package sink

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCursorSavedInPlace checks that saves after the first overwrite the cursor file in
// place, alternating slots: the inode stays, the size stays two slots, and each load
// returns the newest copy.
func TestCursorSavedInPlace(t *testing.T) {
	clock := newFakeClock()
	m := newTestManager(t, Config{Now: clock.Now, CursorInterval: time.Second})
	f := mustOpen(t, m, testKey)
	defer f.Close()
	f.Cursor().Reset("uid-1", "containerd://abc", 0)
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
	}
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
		if pc.Lines != int64(i+1) || slots.seq != uint64(i+2) || slots.newest != (i+1)%2 || slots.size != cursorSlotAlign {
			t.Errorf("save %d: %d lines in copy %d in slot %d of %d bytes, want %d lines in copy %d in slot %d of %d",
				i+2, pc.Lines, slots.seq, slots.newest, slots.size, i+1, i+2, (i+1)%2, cursorSlotAlign)
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
// the middle of its write can, and checks that recovery uses the copy before it: the lines
// written after it are cut off, to be read again.
func TestCursorTornCopy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(slot []byte)
	}{
		{"JSON half written", func(s []byte) { clear(s[cursorHeaderLen+40:]) }},
		{"header only", func(s []byte) { clear(s[cursorHeaderLen:]) }},
		{"nothing written", func(s []byte) { clear(s) }},
		{"bit flipped in the JSON", func(s []byte) { s[cursorHeaderLen+10] ^= 4 }},
		{"seq changed", func(s []byte) { s[len(cursorMagic)+6] = '7' }},
		{"length beyond the slot", func(s []byte) { copy(s[len(cursorMagic)+27:], "ffffffff") }},
		{"length not hex", func(s []byte) { copy(s[len(cursorMagic)+27:], "zz") }},
		{"other magic", func(s []byte) { s[0] = 'K' }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			m := newTestManager(t, Config{Now: clock.Now, CursorInterval: time.Second, Format: FormatRaw})
			f := mustOpen(t, m, testKey)
			f.Cursor().Reset("uid-1", "containerd://abc", 0)
			if err := f.SaveCursor(); err != nil {
				t.Fatal(err)
			}
			// Copies 2 and 3 cover lines 0-2 and 0-5.
			for i := range 6 {
				if err := f.Write(rec(i, "")); err != nil {
					t.Fatal(err)
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
			data, err := os.ReadFile(f.p.cursor)
			if err != nil {
				t.Fatal(err)
			}
			tc.damage(data[int64(slots.newest)*slots.size : int64(slots.newest+1)*slots.size])
			if err := os.WriteFile(f.p.cursor, data, fileMode); err != nil {
				t.Fatal(err)
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
			// Open saved the repaired state at once, into the damaged slot: the intact copy
			// it recovered from stays until the next save.
			data, err = os.ReadFile(g.p.cursor)
			if err != nil {
				t.Fatal(err)
			}
			_, after, _, err := loadCursor(g.p.cursor)
			// (Its number is the torn copy's: one more than the copy recovered from.)
			if err != nil || after.newest != slots.newest || after.seq != slots.seq {
				t.Errorf("save after recovery: copy %d in slot %d (%v), want copy %d in slot %d", after.seq, after.newest, err, slots.seq, slots.newest)
			}
			other := 1 - slots.newest
			if seq, _, ok := decodeSlot(data[int64(other)*slots.size : int64(other+1)*slots.size]); !ok || seq != slots.seq-1 {
				t.Errorf("slot %d holds copy %d (intact %v), want the recovered copy %d", other, seq, ok, slots.seq-1)
			}
		})
	}
}

func TestCursorFileUnreadable(t *testing.T) {
	slot := make([]byte, cursorSlotAlign)
	encodeSlot(slot, 1, []byte(`{"version":1}`))
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"both copies torn", make([]byte, 2*cursorSlotAlign), "no intact copy"},
		{"one slot", slot, "not two slots"},
		{"empty", nil, "not two slots"},
		{"odd size", append(slices2(slot, slot), 0), "not two slots"},
		{"old layout, torn", []byte(`{"version":1,"podUID":"x`), "decoding cursor"},
		{"newer version", slices2(slotWith(t, `{"version":9}`), make([]byte, cursorSlotAlign)), "has version 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), ".app.cursor")
			if err := os.WriteFile(path, tc.data, fileMode); err != nil {
				t.Fatal(err)
			}
			_, _, found, err := loadCursor(path)
			if found || err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("loadCursor: found %v, error %v; want an error naming %s and saying %q", found, err, path, tc.want)
			}
		})
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
	f.Cursor().Reset("uid-1", "containerd://abc", 0)
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
	}
	// A cursor counting many seconds: a resume margin of an hour, a line a second.
	c := f.Cursor()
	c.MarginSec = 3600
	for i := range 1000 {
		c.ObserveHashed(time.Unix(1_700_000_000+int64(i), 0), uint64(i))
	}
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
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
