package sink

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// copyDir copies an output directory the way an operator restores or moves one (cp -a):
// the same bytes, the same names and modes, new inode numbers.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v: %s", src, dst, err, out)
	}
	return dst
}

// TestRecoverCopied opens a container's files after its output directory was copied (new
// inodes) or otherwise changed outside kubelogd, and checks that recovery cuts only bytes
// it proved uncovered, keeps everything when in doubt, and says so.
func TestRecoverCopied(t *testing.T) {
	for _, tc := range []struct {
		name string
		// setup writes with f (the last 3 of its lines after the last cursor save unless
		// clean), then may change the files before the copy.
		crash  bool
		rotate bool // a rotation after the last cursor save
		// savedAfter: the cursor is saved once more after the rotation, covering none of
		// the new current file (offset 0, no content identity)
		savedAfter bool
		// long: lines longer than the content identity's tailBytes, alike but for their
		// number, and as many after the last save as before it
		long   bool
		before func(*testing.T, outsideState)
		copy   bool
		after  func(*testing.T, outsideState) // after the copy, in the copy
		// want is the current file after Open, from the current file before it (cur)
		// and the bytes the cursor covers (covered).
		want       func(cur, covered []byte) []byte
		wantLines  int64
		unverified bool // Recovered().Unverified is set
	}{
		{
			name:      "copied after a clean stop",
			copy:      true,
			want:      func(cur, _ []byte) []byte { return cur },
			wantLines: 8,
		},
		{
			name:      "copied after a crash: only what is beyond the cursor is cut",
			crash:     true,
			copy:      true,
			want:      func(_, covered []byte) []byte { return covered },
			wantLines: 5,
		},
		{
			name:      "copied after a rotation that followed the last save: the backup holds the cursor's data",
			crash:     true,
			rotate:    true,
			copy:      true,
			want:      func([]byte, []byte) []byte { return nil },
			wantLines: 5,
		},
		{
			// Seed 458295471 (10 min), soak-0/p-00/app: a crash within a cursor interval
			// of kubelogd's own rotation, then a copy. The offset-0 cursor was taken for
			// one of an earlier kubelogd: file_unverified, and every line of the current
			// file written again.
			name:       "copied after a crash, the last save right after a rotation: nothing to prove",
			crash:      true,
			rotate:     true,
			savedAfter: true,
			copy:       true,
			want:       func([]byte, []byte) []byte { return nil },
			wantLines:  5,
		},
		{
			// Seed 999076264 (5 min, budget 4), soak-0/p-00/app: lines longer than the 256
			// bytes of the content identity, ending alike, and the new current file grown
			// past the cursor's offset before the kill: both files ended in the bytes the
			// cursor identified, and recovery kept every byte with a file_unverified marker.
			name:      "copied after a rotation that followed the last save, long lines that end alike",
			crash:     true,
			rotate:    true,
			long:      true,
			copy:      true,
			want:      func([]byte, []byte) []byte { return nil },
			wantLines: 5,
		},
		{
			name:      "not copied, long lines that end alike, no rotation: only what is beyond the cursor is cut",
			crash:     true,
			long:      true,
			want:      func(_, covered []byte) []byte { return covered },
			wantLines: 5,
		},
		{
			name:   "copied after a rotation that followed the last save, backup compressed",
			crash:  true,
			rotate: true,
			before: func(t *testing.T, s outsideState) {
				backups, err := listBackups(s.p)
				if err != nil || len(backups) != 1 {
					t.Fatalf("backups %v, %v; want one", backups, err)
				}
				if err := compressFile(filepath.Join(s.p.dir, backups[0].name)); err != nil {
					t.Fatal(err)
				}
			},
			copy:      true,
			want:      func([]byte, []byte) []byte { return nil },
			wantLines: 5,
		},
		{
			name:   "rotated after the last save, the backup gone too: every byte kept",
			crash:  true,
			rotate: true,
			before: func(t *testing.T, s outsideState) {
				backups, _ := listBackups(s.p)
				for _, b := range backups {
					mustRemoveAll(t, filepath.Join(s.p.dir, b.name))
				}
			},
			want:       func(cur, _ []byte) []byte { return cur },
			unverified: true,
			wantLines:  5,
		},
		{
			name:       "copied with a cursor of the earlier layout: every byte kept",
			crash:      true,
			copy:       true,
			after:      stripTail,
			want:       func(cur, _ []byte) []byte { return cur },
			unverified: true,
			wantLines:  5,
		},
		{
			name:      "not copied, cursor of the earlier layout: cut as before",
			crash:     true,
			after:     stripTail,
			want:      func(_, covered []byte) []byte { return covered },
			wantLines: 5,
		},
		{
			name:  "same inode, other bytes at the cursor's end: every byte kept",
			crash: true,
			after: func(t *testing.T, s outsideState) {
				fd, err := os.OpenFile(s.p.current, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer fd.Close()
				if _, err := fd.WriteAt([]byte("XXXX"), 180); err != nil {
					t.Fatal(err)
				}
			},
			want:       func(cur, _ []byte) []byte { return cur },
			unverified: true,
			wantLines:  5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, maxSizeBytes: 1 << 20})
			f := mustOpen(t, m, testKey)
			startInstance(t, f)
			pad, padAfter, after := strings.Repeat("-", 30), strings.Repeat("+", 30), 3
			if tc.long {
				pad, after = strings.Repeat("-", 2*tailBytes), 5
				padAfter = pad
			}
			for i := range 5 {
				if err := f.Write(rec(i, fmt.Sprintf("line %d %s", i, pad))); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.SaveCursor(); err != nil {
				t.Fatal(err)
			}
			covered, _ := os.ReadFile(f.p.current)
			if tc.rotate {
				// As makeRoom does: the cursor saved, then the rotation.
				if err := f.rotate(false); err != nil {
					t.Fatal(err)
				}
				if tc.savedAfter {
					if err := f.SaveCursor(); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i := 5; i < 5+after; i++ {
				if err := f.Write(rec(i, fmt.Sprintf("line %d %s", i, padAfter))); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.flushBuffer(); err != nil {
				t.Fatal(err)
			}
			if tc.crash {
				crash(f)
			} else {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				covered, _ = os.ReadFile(f.p.current)
			}
			s := outsideState{dir: dir, p: f.p}
			if tc.before != nil {
				tc.before(t, s)
			}
			if tc.copy {
				s.dir = copyDir(t, dir)
				s.p, _ = pathsFor(s.dir, testKey)
				m = newTestManager(t, Config{Dir: s.dir, Format: FormatRaw, maxSizeBytes: 1 << 20})
			}
			if tc.after != nil {
				tc.after(t, s)
			}
			cur, _ := os.ReadFile(s.p.current)
			g := mustOpen(t, m, testKey)
			defer g.Close()
			got, _ := os.ReadFile(s.p.current)
			if want := tc.want(cur, covered); !bytes.Equal(got, want) {
				t.Errorf("current file after Open:\n%q\nwant\n%q", got, want)
			}
			if n := g.Cursor().Lines; n != tc.wantLines {
				t.Errorf("cursor counts %d lines, want %d", n, tc.wantLines)
			}
			checkUnverified(t, g, tc.unverified)
		})
	}
}

// outsideState is where a test of changes outside kubelogd finds a container's files.
type outsideState struct {
	dir string // the output directory the test opens
	p   paths  // the container's paths in it
}

// stripTail rewrites the cursor as a kubelogd before content identities saved it: one
// JSON document without tailLen and tailCRC.
func stripTail(t *testing.T, s outsideState) {
	t.Helper()
	data, err := os.ReadFile(s.p.cursor)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := pickCopy(data)
	var doc map[string]any
	if err := json.Unmarshal(payload, &doc); err != nil {
		t.Fatal(err)
	}
	delete(doc, "tailLen")
	delete(doc, "tailCRC")
	old, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.p.cursor, append(old, '\n'), fileMode); err != nil {
		t.Fatal(err)
	}
}

// checkUnverified checks whether Open reported that it could not prove the current file
// to be the one its cursor covers.
func checkUnverified(t *testing.T, f *File, want bool) {
	t.Helper()
	if r := f.Recovered(); (r.Unverified != "") != want || r.RemovedBytes != 0 {
		t.Errorf("Recovered() = %+v, want Unverified set: %v", r, want)
	}
}

// TestRemovedWhileWriting removes a container's files behind an open File, as an operator
// freeing space does, and checks that the File notices at its next cursor save, creates
// them again, and goes on: every line written after that is in the new file once, the
// cursor covers the new file, and a restart resumes from it without cutting anything.
func TestRemovedWhileWriting(t *testing.T) {
	for _, tc := range []struct {
		name   string
		idle   bool // the descriptor was closed for idleness before the removal
		remove func(*testing.T, paths)
	}{
		{name: "pod directory removed", remove: func(t *testing.T, p paths) { mustRemoveAll(t, p.dir) }},
		{name: "pod directory removed while idle", idle: true, remove: func(t *testing.T, p paths) { mustRemoveAll(t, p.dir) }},
		{name: "namespace directory removed", remove: func(t *testing.T, p paths) { mustRemoveAll(t, filepath.Dir(p.dir)) }},
		{name: "current file unlinked", remove: func(t *testing.T, p paths) { mustRemoveAll(t, p.current) }},
		{name: "current file unlinked while idle", idle: true, remove: func(t *testing.T, p paths) { mustRemoveAll(t, p.current) }},
		{name: "current file renamed away", remove: func(t *testing.T, p paths) {
			if err := os.Rename(p.current, p.current+".moved"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			dir := t.TempDir()
			cfg := Config{Dir: dir, Format: FormatRaw, Now: clock.Now, CursorInterval: time.Second, SyncInterval: 3 * time.Second}
			m := newTestManager(t, cfg)
			f := mustOpen(t, m, testKey)
			startInstance(t, f)
			next := 0
			write := func(n int) {
				t.Helper()
				for range n {
					if err := f.Write(rec(next, "")); err != nil {
						t.Fatalf("Write(line %d): %v", next, err)
					}
					next++
				}
				clock.Advance(1500 * time.Millisecond)
				if err := f.Flush(); err != nil {
					t.Fatalf("Flush after line %d: %v", next-1, err)
				}
			}
			write(10)
			if tc.idle {
				clock.Advance(10 * time.Minute)
				m.closeIdle(clock.Now())
			}
			tc.remove(t, f.p)
			write(10) // noticed at the save in this Flush at the latest
			after := next
			what := f.TakeOutsideMarked()
			if what == "" || !strings.Contains(what, "outside kubelogd") {
				t.Errorf("TakeOutsideMarked() = %q after the removal, want what happened", what)
			}
			if again := f.TakeOutsideMarked(); again != "" {
				t.Errorf("TakeOutsideMarked() = %q the second time, want it reported once", again)
			}
			if unmarked := f.TakeOutsideChange(); unmarked != "" {
				t.Errorf("TakeOutsideChange() = %q, want nothing left for the collector to mark", unmarked)
			}
			for range 4 { // across synced saves too
				write(10)
			}
			lines := readFileLines(t, f.p.current)
			if len(lines) == 0 || lines[len(lines)-1] != fmt.Sprintf("line %d", next-1) {
				t.Fatalf("current file after the removal holds %d lines, ending %q; want every line after the first save since", len(lines), lastOf(lines))
			}
			// The File's marker stands first in the new file, before every line written
			// there, whatever write or save noticed the change.
			if want := markerPrefix + "gap: " + OutsideDetail(what); !strings.HasSuffix(lines[0], want) {
				t.Errorf("first line of the new file is %q, want the marker %q", lines[0], want)
			}
			if n := countPrefix(lines, markerPrefix); n != 1 {
				t.Errorf("%d markers in the new file, want 1", n)
			}
			checkSuffix(t, lines, next, after)
			if pc := readCursorFile(t, f); pc.Lines != int64(next) {
				t.Errorf("saved cursor counts %d lines, want %d", pc.Lines, next)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			g := mustOpen(t, m, testKey)
			defer g.Close()
			if what := g.TakeOutsideChange(); what != "" {
				t.Errorf("reopened: TakeOutsideChange() = %q, want nothing", what)
			}
			if r := g.Recovered(); r != (Recovery{HadCursor: true, KeptBytes: r.KeptBytes}) || g.Cursor().Lines != int64(next) {
				t.Errorf("reopened: Recovered() = %+v, %d lines; want a clean resume at %d", r, g.Cursor().Lines, next)
			}
			if got := readFileLines(t, g.p.current); len(got) != len(lines) {
				t.Errorf("reopened: %d lines in the file, want the %d there", len(got), len(lines))
			}
		})
	}
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func mustRemoveAll(t *testing.T, path string) {
	t.Helper()
	if err := os.RemoveAll(path); err != nil {
		t.Fatal(err)
	}
}

func readFileLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

func lastOf(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return lines[len(lines)-1]
}

// checkSuffix checks that lines, apart from marker lines, are "line k" to "line next-1"
// for some k <= after, each once and in order.
func checkSuffix(t *testing.T, lines []string, next, after int) {
	t.Helper()
	var app []string
	for _, l := range lines {
		if !strings.HasPrefix(l, markerPrefix) {
			app = append(app, l)
		}
	}
	first := next - len(app)
	if first > after || first < 0 {
		t.Fatalf("%d lines after the removal, want at least the %d written after it was noticed", len(app), next-after)
	}
	for i, l := range app {
		if want := fmt.Sprintf("line %d", first+i); l != want {
			t.Fatalf("line %d of the new file is %q, want %q", i, l, want)
		}
	}
}

// TestTailWindow checks the window of last bytes against the bytes written, in writes of
// every size around its own.
func TestTailWindow(t *testing.T) {
	var w tailWindow
	var all []byte
	for i, n := range []int{0, 1, 5, tailBytes - 1, 3, tailBytes, 2, tailBytes + 7, 0, 100, 200, 1} {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		for j := range p {
			p[j] += byte(j % 3)
		}
		w.add(p)
		all = append(all, p...)
		k := min(len(all), tailBytes)
		if w.n != k || !bytes.Equal(w.b[tailBytes-k:], all[len(all)-k:]) {
			t.Fatalf("after %d writes: window holds %d bytes %q, want %q", i+1, w.n, w.b[tailBytes-max(w.n, 0):], all[len(all)-k:])
		}
	}
	w.n = -1
	w.add([]byte("short"))
	if n, _ := w.identity(1000); n != 0 {
		t.Error("an unknown window gave a content identity")
	}
	w.add(bytes.Repeat([]byte("x"), tailBytes))
	if n, _ := w.identity(1000); n != tailBytes {
		t.Error("a full write did not make the window known again")
	}
}

// TestLineIdentity checks the window's last line, followed through appends of random
// sizes and loaded from the bytes on disk, against the last line of those bytes.
func TestLineIdentity(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var all []byte
	var w tailWindow
	for i := range 400 {
		var p []byte
		for range rng.IntN(4) {
			n := rng.IntN(3 * tailBytes)
			if rng.IntN(20) == 0 {
				n = lineScanBytes + rng.IntN(tailBytes) - tailBytes/2
			}
			p = append(p, fmt.Sprintf("%d ", len(all)+len(p))...)
			p = append(p, bytes.Repeat([]byte{'x'}, n)...)
			if rng.IntN(8) > 0 {
				p = append(p, '\n')
			}
		}
		w.add(p)
		all = append(all, p...)
		if len(all) == 0 {
			continue
		}
		start := bytes.LastIndexByte(all[:len(all)-1], '\n') + 1
		line := all[start:]
		if w.lineLen != int64(len(line)) || !bytes.Equal(w.head[:min(len(line), lineHeadBytes)], line[:min(len(line), lineHeadBytes)]) {
			t.Fatalf("after %d appends: last line %d bytes starting %q, want %d starting %q",
				i+1, w.lineLen, w.head[:min(max(w.lineLen, 0), lineHeadBytes)], len(line), line[:min(len(line), lineHeadBytes)])
		}
		var l tailWindow
		l.load(bytes.NewReader(all), int64(len(all)))
		wantLen, wantCRC := w.lineIdentity(int64(len(all)))
		gotLen, gotCRC := l.lineIdentity(int64(len(all)))
		if (len(line) > tailBytes) != (wantLen > 0) {
			t.Fatalf("after %d appends: last line %d bytes, line identity %d bytes", i+1, len(line), wantLen)
		}
		if gotLen == 0 && len(line) > lineScanBytes {
			gotLen, gotCRC = wantLen, wantCRC // too far back to look for: no line identity
		}
		if gotLen != wantLen || gotCRC != wantCRC {
			t.Fatalf("after %d appends (last line %d bytes): loaded line identity (%d, %x), followed (%d, %x)",
				i+1, len(line), gotLen, gotCRC, wantLen, wantCRC)
		}
		pc := persistedCursor{Offset: int64(len(all))}
		pc.TailLen, pc.TailCRC = w.identity(pc.Offset)
		pc.LineLen, pc.LineCRC = w.lineIdentity(pc.Offset)
		if ok, err := holdsCovered(bytes.NewReader(all), pc.Offset, pc); !ok || err != nil {
			t.Fatalf("after %d appends: the bytes written do not hold their own identity (%v)", i+1, err)
		}
		if pc.LineLen > 0 {
			other := slices.Clone(all)
			other[start] = '#' // the line's first byte: outside the tail, in the head
			if ok, _ := holdsCovered(bytes.NewReader(other), pc.Offset, pc); ok {
				t.Fatalf("after %d appends: a line with another start holds the identity", i+1)
			}
			if start > 0 {
				// The line ends where the cursor's does, but starts elsewhere: the byte
				// before it is no newline.
				other = slices.Clone(all)
				other[start-1] = '#'
				if ok, _ := holdsCovered(bytes.NewReader(other), pc.Offset, pc); ok {
					t.Fatalf("after %d appends: a line that starts elsewhere holds the identity", i+1)
				}
			}
		}
	}
}

// TestRemovedWhileClosedThenCrash: the pod directory or the current file is removed while
// the File has its file closed (a polled container between polls: Rest; or idle), and
// kubelogd is killed right after the next lines reach the file created again. The cursor
// must be in the new directory before those lines (saved when the first record opened the
// file again), so that the restarted File resumes after the lines the removal took and
// cuts the uncovered ones, rather than keeping a file without a cursor, which the collector
// would fill from the start again (seed 257859014: 30 lines twice).
func TestRemovedWhileClosedThenCrash(t *testing.T) {
	for _, tc := range []struct {
		name   string
		close  func(*Manager, *File, *fakeClock)
		remove func(*testing.T, paths)
	}{
		{"pod directory removed while resting", rest, func(t *testing.T, p paths) { mustRemoveAll(t, p.dir) }},
		{"pod directory removed while idle", idleClose, func(t *testing.T, p paths) { mustRemoveAll(t, p.dir) }},
		{"current file removed while resting", rest, func(t *testing.T, p paths) { mustRemoveAll(t, p.current) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			cfg := Config{Dir: t.TempDir(), Format: FormatRaw, Now: clock.Now, CursorInterval: time.Second, SyncInterval: 3 * time.Second}
			m := newTestManager(t, cfg)
			f := mustOpen(t, m, testKey)
			startInstance(t, f)
			for i := range 10 {
				if err := f.Write(rec(i, "")); err != nil {
					t.Fatal(err)
				}
			}
			clock.Advance(2 * time.Second)
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
			tc.close(m, f, clock)
			tc.remove(t, f.p)
			clock.Advance(2 * time.Second) // a save would be due at the next Flush
			if err := f.Write(rec(10, "")); err != nil {
				t.Fatal(err)
			}
			if pc := readCursorFile(t, f); pc.Lines != 10 {
				t.Errorf("cursor in the new directory counts %d lines, want the 10 before the removal", pc.Lines)
			}
			for i := 11; i < 15; i++ {
				if err := f.Write(rec(i, "")); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.flushBuffer(); err != nil { // written, the cursor not saved
				t.Fatal(err)
			}
			crash(f)
			g := mustOpen(t, m, testKey)
			defer g.Close()
			if r := g.Recovered(); !r.HadCursor || r.TruncatedBytes == 0 || g.Cursor().Lines != 10 {
				t.Errorf("after the crash: Recovered() = %+v, cursor at %d lines; want the saved cursor at 10, the lines after it cut", r, g.Cursor().Lines)
			}
			lines := readFileLines(t, g.p.current)
			if len(lines) != 1 || !strings.Contains(lines[0], "outside kubelogd") {
				t.Errorf("after the crash the file holds %q, want only the marker", lines)
			}
		})
	}
}

// rest closes the file as a polled container does between polls.
func rest(_ *Manager, f *File, _ *fakeClock) { f.Rest() }

// idleClose closes the file as the idle sweep does.
func idleClose(m *Manager, _ *File, clock *fakeClock) {
	clock.Advance(10 * time.Minute)
	m.closeIdle(clock.Now())
}
