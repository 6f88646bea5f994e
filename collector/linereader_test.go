package collector

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// chunked returns its data in reads of random sizes, then err.
type chunked struct {
	data []byte
	rnd  *rand.Rand
	err  error
}

func (c *chunked) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, c.err
	}
	n := min(len(p), len(c.data), 1+c.rnd.IntN(6000))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	if len(c.data) == 0 && c.rnd.IntN(2) == 0 {
		return n, c.err // data and the error together, as io.Reader allows
	}
	return n, nil
}

type readResult struct {
	line string
	err  error
}

func readAll(t *testing.T, next func() ([]byte, error), buffered func() int) []readResult {
	t.Helper()
	var out []readResult
	for range 100000 {
		line, err := next()
		out = append(out, readResult{string(line), err})
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return out
		}
		if buffered() < 0 {
			t.Fatal("negative Buffered")
		}
	}
	t.Fatal("no end")
	return nil
}

// TestLineReaderIsReadSlice: lineReader returns what bufio.Reader.ReadSlice returns, with
// the same buffer size, for lines short and long, split into reads of any size, ending in
// EOF or an error, with or without a last newline.
func TestLineReaderIsReadSlice(t *testing.T) {
	for seed := range uint64(200) {
		rnd := rand.New(rand.NewPCG(seed, 1))
		var data []byte
		for range rnd.IntN(200) {
			n := rnd.IntN(300)
			if rnd.IntN(20) == 0 {
				n = rnd.IntN(3 * readBufferSize)
			}
			data = append(data, bytes.Repeat([]byte{byte('a' + rnd.IntN(26))}, n)...)
			data = append(data, '\n')
		}
		if rnd.IntN(2) == 0 {
			data = append(data, "torn"...)
		}
		end := io.EOF
		if rnd.IntN(3) == 0 {
			end = errors.New("stream reset")
		}
		br := bufio.NewReaderSize(&chunked{data: data, rnd: rand.New(rand.NewPCG(seed, 2)), err: end}, readBufferSize)
		lr := newLineReader(&chunked{data: data, rnd: rand.New(rand.NewPCG(seed, 2)), err: end})
		want := readAll(t, func() ([]byte, error) { return br.ReadSlice('\n') }, br.Buffered)
		got := readAll(t, func() ([]byte, error) { return lr.ReadSlice('\n') }, lr.Buffered)
		// Reads may split differently (lineReader's idle reads are smaller), so compare the
		// bytes delivered and that every complete line came whole.
		if joined(got) != joined(want) || lastErr(got) != lastErr(want) {
			t.Fatalf("seed %d: lineReader gave %d bytes ending %v, bufio %d bytes ending %v", seed, len(joined(got)), lastErr(got), len(joined(want)), lastErr(want))
		}
		if lines(got) != lines(want) {
			t.Fatalf("seed %d: complete lines differ", seed)
		}
		lr.release()
	}
}

func joined(rs []readResult) string {
	var b []byte
	for _, r := range rs {
		b = append(b, r.line...)
	}
	return string(b)
}

func lastErr(rs []readResult) error { return rs[len(rs)-1].err }

// lines lists the lines that were returned whole (no ErrBufferFull before them).
func lines(rs []readResult) string {
	var b []byte
	partial := false
	for _, r := range rs {
		if r.err == nil && !partial {
			b = append(b, r.line...)
		}
		partial = errors.Is(r.err, bufio.ErrBufferFull)
	}
	return string(b)
}

// TestLineReaderAcrossIdleRead: a line whose first bytes arrive in the small read made
// while idle (the buffer given back) is returned whole once the rest arrives.
func TestLineReaderAcrossIdleRead(t *testing.T) {
	pr, pw := io.Pipe()
	lr := newLineReader(pr)
	go func() { _, _ = pw.Write([]byte("one\ntwo\n")) }()
	for _, want := range []string{"one\n", "two\n"} {
		line, err := lr.ReadSlice('\n')
		if string(line) != want || err != nil {
			t.Fatalf("ReadSlice = %q, %v; want %q", line, err, want)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		line, err := lr.ReadSlice('\n')
		if string(line) != "three\n" || err != nil {
			t.Errorf("ReadSlice = %q, %v", line, err)
		}
	}()
	_, _ = pw.Write([]byte("thr"))
	_, _ = pw.Write([]byte("ee\n"))
	<-done
	lr.release()
	if lr.buf != nil {
		t.Error("buffer kept after release")
	}
}

type nothing struct{}

func (nothing) Read([]byte) (int, error) { return 0, nil }

// TestLineReaderNoProgress: a source that keeps returning nothing is an error, not a spin.
func TestLineReaderNoProgress(t *testing.T) {
	if _, err := newLineReader(nothing{}).ReadSlice('\n'); !errors.Is(err, io.ErrNoProgress) {
		t.Errorf("err = %v, want io.ErrNoProgress", err)
	}
}
