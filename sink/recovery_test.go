package sink

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// crash abandons f the way a SIGKILL would: buffered records are lost, the cursor is not
// saved, the file is left as it is.
func crash(f *File) {
	f.mu.Lock()
	_ = f.closeLogger()
	f.mu.Unlock()
	f.closed = true
	f.m.release(f)
}

func TestRecovery(t *testing.T) {
	type state struct {
		dir, podDir string
		p           paths
		before      []byte // current file content at the clean Close
	}
	write := func(path string, data string) func(*testing.T, state) {
		return func(t *testing.T, s state) {
			fd, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
			if err != nil {
				t.Fatal(err)
			}
			defer fd.Close()
			if _, err := fd.WriteString(data); err != nil {
				t.Fatal(err)
			}
		}
	}
	rotateAway := func(t *testing.T, s state) {
		backup := filepath.Join(s.podDir, "app-"+time.Now().UTC().Format(backupTimeLayout)+".log")
		if err := os.Rename(s.p.current, backup); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name      string
		noCursor  bool
		damage    func(*testing.T, state)
		want      func(s state) string // current file after Open
		wantRec   Recovery
		wantLines int64 // cursor.Lines after Open
	}{
		{
			name:      "clean",
			damage:    func(*testing.T, state) {},
			want:      func(s state) string { return string(s.before) },
			wantRec:   Recovery{HadCursor: true, KeptBytes: 200},
			wantLines: 5,
		},
		{
			name:      "written after the cursor",
			damage:    func(t *testing.T, s state) { write(s.p.current, "extra 1\nextra 2\n")(t, s) },
			want:      func(s state) string { return string(s.before) },
			wantRec:   Recovery{HadCursor: true, TruncatedBytes: 16, KeptBytes: 200},
			wantLines: 5,
		},
		{
			name: "rotated after the cursor",
			damage: func(t *testing.T, s state) {
				rotateAway(t, s)
				write(s.p.current, "after rotation\n")(t, s)
			},
			want:      func(state) string { return "" },
			wantRec:   Recovery{HadCursor: true, TruncatedBytes: 15},
			wantLines: 5,
		},
		{
			name: "rotated after the cursor, backup short",
			damage: func(t *testing.T, s state) {
				if err := os.Truncate(s.p.current, 120); err != nil {
					t.Fatal(err)
				}
				rotateAway(t, s)
			},
			want:      func(state) string { return "" },
			wantRec:   Recovery{HadCursor: true, ShortBy: 80},
			wantLines: 5,
		},
		{
			name:      "shorter than the cursor (power loss)",
			damage:    func(t *testing.T, s state) { _ = os.Truncate(s.p.current, 190) },
			want:      func(s state) string { return string(s.before[:160]) },
			wantRec:   Recovery{HadCursor: true, ShortBy: 10, TruncatedBytes: 30, KeptBytes: 160},
			wantLines: 5,
		},
		{
			name:     "no cursor, torn line",
			noCursor: true,
			damage:   func(t *testing.T, s state) { write(s.p.current, "torn")(t, s) },
			want:     func(s state) string { return string(s.before) },
			wantRec:  Recovery{TruncatedBytes: 4, KeptBytes: 200},
		},
		{
			name:     "no cursor, no newline at all",
			noCursor: true,
			damage: func(t *testing.T, s state) {
				if err := os.WriteFile(s.p.current, bytes.Repeat([]byte("x"), 100<<10), 0o640); err != nil {
					t.Fatal(err)
				}
			},
			want:    func(state) string { return "" },
			wantRec: Recovery{TruncatedBytes: 100 << 10},
		},
		{
			name:     "no cursor, whole lines",
			noCursor: true,
			damage:   func(*testing.T, state) {},
			want:     func(s state) string { return string(s.before) },
			wantRec:  Recovery{KeptBytes: 200},
		},
		{
			name: "corrupt cursor",
			damage: func(t *testing.T, s state) {
				_ = os.WriteFile(s.p.cursor, []byte("{"), 0o640)
				write(s.p.current, "torn")(t, s)
			},
			want:    func(s state) string { return string(s.before) },
			wantRec: Recovery{TruncatedBytes: 4, KeptBytes: 200}, // and CursorError
		},
		{
			// Removed outside kubelogd: the collector writes a marker.
			name:      "current file missing",
			damage:    func(t *testing.T, s state) { _ = os.Remove(s.p.current) },
			want:      func(state) string { return "" },
			wantRec:   Recovery{HadCursor: true, RemovedBytes: 200},
			wantLines: 5,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Dir: dir, Format: FormatRaw}
			m := newTestManager(t, cfg)
			f := mustOpen(t, m, testKey)
			for i := range 5 {
				if err := f.Write(rec(i, fmt.Sprintf("line %d %s", i, strings.Repeat("-", 32)))); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			s := state{dir: dir, podDir: f.p.dir, p: f.p}
			s.before, _ = os.ReadFile(f.p.current)
			if len(s.before) != 200 {
				t.Fatalf("setup wrote %d bytes, the cases assume 200", len(s.before))
			}
			if tc.noCursor {
				_ = os.Remove(f.p.cursor)
			}
			tc.damage(t, s)
			// Leftovers of interrupted cursor saves and compressions go; another container's stay.
			leftovers := []string{".app.cursor.tmp-1", ".app-2024-05-06T07-08-09.123.log.gz.tmp-2"}
			foreign := ".app-b.cursor.tmp-3"
			for _, name := range append(leftovers, foreign) {
				_ = os.WriteFile(filepath.Join(s.podDir, name), []byte("partial"), 0o640)
			}

			f = mustOpen(t, m, testKey)
			defer f.Close()
			got := f.Recovered()
			if tc.name == "corrupt cursor" {
				if got.CursorError == nil {
					t.Error("no CursorError for a corrupt cursor")
				}
				got.CursorError = nil
			}
			if got != tc.wantRec {
				t.Errorf("Recovered() = %+v, want %+v", got, tc.wantRec)
			}
			if data, _ := os.ReadFile(f.p.current); string(data) != tc.want(s) {
				t.Errorf("current file after recovery:\n%q\nwant\n%q", data, tc.want(s))
			}
			if f.Cursor().Lines != tc.wantLines {
				t.Errorf("cursor has %d lines, want %d", f.Cursor().Lines, tc.wantLines)
			}
			for _, name := range leftovers {
				if _, err := os.Stat(filepath.Join(s.podDir, name)); err == nil {
					t.Errorf("leftover %s not removed", name)
				}
			}
			if _, err := os.Stat(filepath.Join(s.podDir, foreign)); err != nil {
				t.Errorf("another container's %s was removed", foreign)
			}
			if st, _ := os.Stat(f.p.current); st.Mode().Perm() != fileMode {
				t.Errorf("mode %03o after recovery", st.Mode().Perm())
			}
		})
	}
}

// TestCrashAnywhere kills a File at random points of a random workload with rotations
// and lines longer than a file, then resumes the way the collector does, from cursor.Lines, and checks that every line
// ends up in the files exactly once and in order.
func TestCrashAnywhere(t *testing.T) {
	seeds := uint64(40)
	if testing.Short() {
		seeds = 8
	}
	for seed := range seeds {
		t.Run(fmt.Sprintf("seed %d", seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 7))
			clock := newFakeClock()
			dir := t.TempDir()
			m := newTestManager(t, Config{
				Dir: dir, Format: FormatTimestamped, Now: clock.Now, Compress: seed%2 == 0,
				MaxLineBytes: 150, maxSizeBytes: 1500,
			})
			var lines []Record
			for i := range 400 {
				n := rng.IntN(200)
				if i%61 == 5 {
					n = 3000 // longer than a file: written in parts across rotations
				}
				lines = append(lines, rec(i, fmt.Sprintf("%d %s", i, strings.Repeat("z", n))))
			}
			next := 0
			for crashes := 0; next < len(lines); crashes++ {
				f := mustOpen(t, m, testKey)
				if r := f.Recovered(); r.ShortBy != 0 {
					t.Fatalf("ShortBy %d without a power loss", r.ShortBy)
				}
				next = int(f.Cursor().Lines) // resume where the saved cursor says
				steps := rng.IntN(150)
				if crashes > 8 {
					steps = len(lines) // let it finish
				}
				for ; steps > 0 && next < len(lines); steps-- {
					if err := f.Write(lines[next]); err != nil {
						t.Fatal(err)
					}
					next++
					switch rng.IntN(6) {
					case 0:
						clock.Advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
					case 1:
						if err := f.Flush(); err != nil {
							t.Fatal(err)
						}
					}
				}
				if next < len(lines) {
					crash(f)
					continue
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
			var want []string
			for _, r := range lines {
				want = append(want, string(r.RawTime)+" "+string(r.Line))
			}
			got := allLines(t, dir, testKey)
			// Undo the splitting of long lines.
			var joined []string
			for _, l := range got {
				if _, rest, _ := strings.Cut(l, " "); strings.HasPrefix(rest, contPrefix) {
					joined[len(joined)-1] += strings.TrimPrefix(rest, contPrefix)
					continue
				}
				joined = append(joined, l)
			}
			if !slices.Equal(joined, want) {
				t.Errorf("got %d lines, want %d", len(joined), len(want))
				for i := range min(len(joined), len(want)) {
					if joined[i] != want[i] {
						t.Fatalf("first difference at line %d: got %.50q, want %.50q", i, joined[i], want[i])
					}
				}
			}
		})
	}
}

// TestLastLineEnd reads backwards in blocks of several sizes, the newline in the first,
// a middle or the last block, or nowhere.
func TestLastLineEnd(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dir := t.TempDir()
	for _, block := range []int64{1, 2, 3, 7, 64, 16 << 10} {
		for i := range 200 {
			data := make([]byte, rng.IntN(300))
			for j := range data {
				data[j] = 'a' + byte(rng.IntN(3))
				if rng.IntN(40) == 0 {
					data[j] = '\n'
				}
			}
			path := filepath.Join(dir, fmt.Sprintf("f-%d-%d", block, i))
			if err := os.WriteFile(path, append(data, "beyond size\n"...), 0o600); err != nil {
				t.Fatal(err)
			}
			fd, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := lastLineEndBy(fd, int64(len(data)), block)
			fd.Close()
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(bytes.LastIndexByte(data, '\n') + 1); got != want {
				t.Fatalf("block %d, %q: lastLineEnd = %d, want %d", block, data, got, want)
			}
		}
	}
}
