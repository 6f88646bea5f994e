package sink

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// writeInPieces writes line as a reader holding little of it would: pieces of random
// sizes, each appended to what WritePart left, then the rest with Write.
func writeInPieces(t *testing.T, f *File, r Record, rng *rand.Rand) {
	t.Helper()
	line := r.Line
	var held []byte
	for len(line) > 0 {
		n := min(len(line), 1+rng.IntN(700))
		held = append(held, line[:n]...)
		line = line[n:]
		if len(line) == 0 {
			break
		}
		pr := r
		pr.Line = held
		w, err := f.WritePart(pr)
		if err != nil {
			t.Fatal(err)
		}
		held = held[w:]
	}
	r.Line = held
	if err := f.Write(r); err != nil {
		t.Fatal(err)
	}
}

// TestWritePartSameAsWhole: a long line written part by part as it arrives leaves the same
// bytes in the files, and the same cursor, as the line written whole — in every format,
// with multi-byte characters at the part boundaries, across rotations; and a cursor saved
// between two parts says how much of the line is written.
func TestWritePartSameAsWhole(t *testing.T) {
	for _, format := range []Format{FormatTimestamped, FormatRaw, FormatJSON} {
		t.Run(format.String(), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(format)))
			var lines []Record
			for i := range 60 {
				n := rng.IntN(3000)
				if i%7 == 3 {
					n = 6000 + rng.IntN(9000) // longer than a file
				}
				text := strings.Repeat("é€x", n/6+1)[:n] // cuts inside characters too
				lines = append(lines, rec(i, fmt.Sprintf("%d:%s", i, text)))
			}
			run := func(pieces bool) (string, *File) {
				dir := t.TempDir()
				m := newTestManager(t, Config{Dir: dir, Format: format, MaxLineBytes: 512, maxSizeBytes: 8192})
				f := mustOpen(t, m, testKey)
				for _, r := range lines {
					if pieces && len(r.Line) > 512 {
						writeInPieces(t, f, r, rng)
					} else if err := f.Write(r); err != nil {
						t.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				var all bytes.Buffer
				for _, p := range fileSet(t, dir, testKey) {
					b, err := os.ReadFile(p)
					if err != nil {
						t.Fatal(err)
					}
					all.Write(b)
				}
				return all.String(), f
			}
			whole, fw := run(false)
			parts, fp := run(true)
			if whole != parts {
				t.Fatalf("files differ: %d bytes written whole, %d in pieces", len(whole), len(parts))
			}
			cw, cp := fw.Cursor(), fp.Cursor()
			if cw.Lines != cp.Lines || cw.LastHash != cp.LastHash || !cw.LastTime.Equal(cp.LastTime) || cp.Partial != nil {
				t.Fatalf("cursor after pieces %+v, after whole lines %+v", *cp, *cw)
			}
			if fw.Stats().SplitLines != fp.Stats().SplitLines {
				t.Fatalf("split lines: %d in pieces, %d whole", fp.Stats().SplitLines, fw.Stats().SplitLines)
			}
		})
	}
}

// TestPartialLineSurvivesReopen: the cursor saved between two parts of a line keeps the
// partial line; AbandonPartial counts it, identified by the bytes written.
func TestPartialLineSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Dir: dir, Format: FormatTimestamped, MaxLineBytes: 100}
	m := newTestManager(t, cfg)
	f := mustOpen(t, m, testKey)
	f.Cursor().Reset("uid", "cid", 0)
	if err := f.Write(rec(0, "first")); err != nil {
		t.Fatal(err)
	}
	r := rec(1, strings.Repeat("p", 450))
	n, err := f.WritePart(r)
	if err != nil || n != 400 {
		t.Fatalf("WritePart = %d, %v; want 400 (the parts that end where they would in the whole line)", n, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	f = mustOpen(t, newTestManager(t, cfg), testKey)
	defer f.Close()
	p := f.Cursor().Partial
	if p == nil || p.Bytes != 400 || p.Hash != HashLine(r.Line[:400]) || !p.Time.Equal(r.Time) || f.Cursor().Lines != 1 {
		t.Fatalf("reopened cursor %+v, partial %+v; want 1 line and 400 bytes of the next", *f.Cursor(), p)
	}
	if HashMore(p.Hash, r.Line[400:]) != HashLine(r.Line) {
		t.Fatal("HashMore does not continue HashLine")
	}
	f.AbandonPartial()
	if c := f.Cursor(); c.Partial != nil || c.Lines != 2 || c.LastHash != p.Hash {
		t.Fatalf("after AbandonPartial: %+v", *c)
	}
}
