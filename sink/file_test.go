package sink

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// recordingOutput wraps a File's output and checks every write against the rules
// lumberjack needs: whole lines, never more than the rotation size.
type recordingOutput struct {
	output
	t      *testing.T
	limit  int64
	writes int
}

func (r *recordingOutput) Write(p []byte) (int, error) {
	r.writes++
	if int64(len(p)) > r.limit {
		r.t.Errorf("write of %d bytes exceeds max size %d", len(p), r.limit)
	}
	if len(p) == 0 || p[len(p)-1] != '\n' {
		r.t.Errorf("write does not end with a whole line: %q", p[max(0, len(p)-20):])
	}
	return r.output.Write(p)
}

func TestRotationKeepsEveryLineOnce(t *testing.T) {
	long := strings.Repeat("L", 5000) // longer than a whole file: written in parts across files
	for _, tc := range []struct {
		name     string
		format   Format
		compress bool
		maxLine  int
		lines    func(i int) string
	}{
		{"short lines", FormatTimestamped, false, 0, func(i int) string { return "" }},
		{"varying lengths compressed", FormatRaw, true, 0, func(i int) string { return strings.Repeat("v", i*37%700) }},
		{"json", FormatJSON, false, 0, func(i int) string { return fmt.Sprintf("json line %d \"quoted\"", i) }},
		{"split long lines", FormatRaw, false, 300, func(i int) string {
			if i%50 == 7 {
				return fmt.Sprintf("%d:%s", i, long)
			}
			return strings.Repeat("s", i%400)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			const maxSize = 4096
			m := newTestManager(t, Config{Dir: dir, Format: tc.format, Compress: tc.compress, MaxLineBytes: tc.maxLine, maxSizeBytes: maxSize})
			f := mustOpen(t, m, testKey)
			rec0 := &recordingOutput{output: f.out, t: t, limit: maxSize}
			f.out = rec0
			var want []string
			for i := range 400 {
				r := rec(i, tc.lines(i))
				if err := f.Write(r); err != nil {
					t.Fatal(err)
				}
				want = append(want, string(r.Line))
				if i%13 == 0 {
					if err := f.Flush(); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if f.Stats().Rotations < 3 {
				t.Fatalf("only %d rotations: the test does not exercise rotation", f.Stats().Rotations)
			}
			files := fileSet(t, dir, testKey)
			for _, path := range files {
				if st, _ := os.Stat(path); st.Size() > maxSize {
					t.Errorf("%s has %d bytes, above max size %d", path, st.Size(), maxSize)
				}
				if tc.compress && path != f.Path() && filepath.Ext(path) != gzExt {
					t.Errorf("backup %s is not compressed", path)
				}
			}
			got := decodeLines(t, tc.format, allLines(t, dir, testKey))
			if !slices.Equal(got, want) {
				t.Errorf("lines across %d files differ from the lines written: got %d, want %d", len(files), len(got), len(want))
				for i := range min(len(got), len(want)) {
					if got[i] != want[i] {
						t.Fatalf("first difference at line %d: got %.60q, want %.60q", i, got[i], want[i])
					}
				}
			}
		})
	}
}

// decodeLines undoes a format's layout, joining split lines again.
func decodeLines(t *testing.T, format Format, lines []string) []string {
	t.Helper()
	var out []string
	for _, l := range lines {
		var text string
		cont := false
		switch format {
		case FormatTimestamped:
			_, rest, ok := strings.Cut(l, " ")
			if !ok {
				t.Fatalf("no timestamp in %q", l)
			}
			text = rest
		case FormatRaw:
			text = l
		case FormatJSON:
			var j jsonLine
			if err := json.Unmarshal([]byte(l), &j); err != nil {
				t.Fatalf("%q: %v", l, err)
			}
			text, cont = *j.Line, j.Part > 1
		}
		if c, ok := strings.CutPrefix(text, contPrefix); ok && format != FormatJSON {
			text, cont = c, true
		}
		if cont {
			out[len(out)-1] += text
			continue
		}
		out = append(out, text)
	}
	return out
}

func TestModes(t *testing.T) {
	for _, umask := range []int{0o077, 0o022, 0} {
		t.Run(fmt.Sprintf("umask %03o", umask), func(t *testing.T) {
			old := syscall.Umask(umask)
			defer syscall.Umask(old)
			dir := filepath.Join(t.TempDir(), "out", "logs")
			m := newTestManager(t, Config{Dir: dir, Compress: true, maxSizeBytes: 2048})
			f := mustOpen(t, m, testKey)
			for i := range 100 {
				if err := f.Write(rec(i, strings.Repeat("m", 100))); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if f.Stats().Rotations == 0 {
				t.Fatal("no rotation happened")
			}
			for _, d := range []string{dir, filepath.Dir(dir), filepath.Join(dir, "default"), filepath.Join(dir, "default", "web-0")} {
				if got := mode(t, d); got != dirMode {
					t.Errorf("directory %s has mode %03o, want %03o", d, got, dirMode)
				}
			}
			files := append(fileSet(t, dir, testKey), f.p.cursor, filepath.Join(dir, lockFileName))
			for _, path := range files {
				if got := mode(t, path); got != fileMode {
					t.Errorf("%s has mode %03o, want %03o", path, got, fileMode)
				}
			}
		})
	}
}

// TestChunkingNeverExceedsMaxSize writes records whose sizes straddle the rotation size
// in every way and checks each write lumberjack sees.
func TestChunkingNeverExceedsMaxSize(t *testing.T) {
	const maxSize = 1000
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, MaxLineBytes: 400, maxSizeBytes: maxSize})
	f := mustOpen(t, m, testKey)
	out := &recordingOutput{output: f.out, t: t, limit: maxSize}
	f.out = out
	var want []string
	for i := range 300 {
		r := rec(i, strings.Repeat(string(rune('a'+i%26)), 1+(i*97)%2500))
		if err := f.Write(r); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(r.Line))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := decodeLines(t, FormatRaw, allLines(t, dir, testKey)); !slices.Equal(got, want) {
		t.Errorf("lines differ: got %d, want %d", len(got), len(want))
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Fatalf("first difference at line %d: got %d bytes %.60q, want %d bytes %.60q", i, len(got[i]), got[i], len(want[i]), want[i])
			}
		}
	}
	if f.Stats().SplitLines == 0 || out.writes == 0 {
		t.Errorf("no split lines (%+v)", f.Stats())
	}
}

func TestFlushDue(t *testing.T) {
	clock := newFakeClock()
	m := newTestManager(t, Config{FlushInterval: time.Second, Now: clock.Now})
	f := mustOpen(t, m, testKey)
	defer f.Close()
	if f.FlushDue(clock.Now().Add(time.Hour)) {
		t.Error("FlushDue with an empty buffer")
	}
	if err := f.Write(rec(1, "")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(500 * time.Millisecond)
	if err := f.Write(rec(2, "")); err != nil { // does not restart the wait
		t.Fatal(err)
	}
	if f.FlushDue(clock.Now()) {
		t.Error("FlushDue after 500ms")
	}
	clock.Advance(500 * time.Millisecond)
	if !f.FlushDue(clock.Now()) {
		t.Error("not FlushDue after 1s")
	}
	if st, _ := os.Stat(f.Path()); st.Size() != 0 {
		t.Errorf("data written before Flush: %d bytes", st.Size())
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	if f.FlushDue(clock.Now().Add(time.Hour)) {
		t.Error("FlushDue after Flush")
	}
	if got := len(allLines(t, m.cfg.Dir, testKey)); got != 2 {
		t.Errorf("%d lines after Flush, want 2", got)
	}
}

func readCursorFile(t *testing.T, f *File) persistedCursor {
	t.Helper()
	pc, _, found, err := loadCursor(f.p.cursor)
	if err != nil || !found {
		t.Fatalf("cursor %s: found %v, %v", f.p.cursor, found, err)
	}
	return pc
}

func TestCursorPersistence(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Now: clock.Now, CursorInterval: time.Second, maxSizeBytes: 4096})
	f := mustOpen(t, m, testKey)
	startInstance(t, f)

	if err := f.Write(rec(1, "")); err != nil {
		t.Fatal(err)
	}
	if err := f.Write(Record{Time: clock.Now(), Line: []byte("a marker"), Marker: true}); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	if pc := readCursorFile(t, f); pc.Lines != 0 || pc.Offset != 0 {
		t.Errorf("cursor saved before CursorInterval passed: %+v", pc)
	}
	clock.Advance(time.Second)
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	pc := readCursorFile(t, f)
	st, _ := os.Stat(f.Path())
	if pc.Lines != 1 || pc.Offset != st.Size() || pc.Inode != inodeOf(st) || pc.PodUID != "uid-1" || pc.Version != cursorVersion {
		t.Errorf("cursor after interval: %+v, file size %d inode %d; want 1 line (markers not counted)", pc, st.Size(), inodeOf(st))
	}

	// Before each rotation the cursor is saved, covering the whole file about to become
	// a backup.
	for i := 2; f.Stats().Rotations == 0; i++ {
		if err := f.Write(rec(i, strings.Repeat("r", 100))); err != nil {
			t.Fatal(err)
		}
	}
	pc = readCursorFile(t, f)
	files := fileSet(t, dir, testKey)
	bst, _ := os.Stat(files[0])
	if pc.Inode != inodeOf(bst) || pc.Offset != bst.Size() || pc.Lines != f.Cursor().Lines-1 {
		t.Errorf("cursor saved at rotation = %+v; backup %s has inode %d, %d bytes; live cursor %d lines",
			pc, files[0], inodeOf(bst), bst.Size(), f.Cursor().Lines)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	pc = readCursorFile(t, f)
	st, _ = os.Stat(f.Path())
	if pc.Offset != st.Size() || pc.Inode != inodeOf(st) || pc.Lines != f.Cursor().Lines {
		t.Errorf("cursor at Close = %+v, want offset %d inode %d lines %d", pc, st.Size(), inodeOf(st), f.Cursor().Lines)
	}
}

func TestWriteAfterClose(t *testing.T) {
	m := newTestManager(t, Config{})
	f := mustOpen(t, m, testKey)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Write(rec(1, "")); err == nil {
		t.Error("Write after Close succeeded")
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRecordHash checks that a hash the caller computed is the one the cursor keeps.
func TestRecordHash(t *testing.T) {
	m := newTestManager(t, Config{})
	f := mustOpen(t, m, testKey)
	defer f.Close()
	r := rec(1, "hashed by the caller")
	if err := f.Write(r); err != nil {
		t.Fatal(err)
	}
	if got, want := f.Cursor().LastHash, HashLine(r.Line); got != want {
		t.Errorf("hash %x without Record.Hash, want HashLine's %x", got, want)
	}
	r.Hash = 0x1234 // not the real hash: proves the sink did not compute its own
	if err := f.Write(r); err != nil {
		t.Fatal(err)
	}
	if got := f.Cursor().LastHash; got != 0x1234 {
		t.Errorf("hash %x, want Record.Hash 1234", got)
	}
}
