package layout

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

func TestAppendJSONString(t *testing.T) {
	got := AppendJSONString(nil, []byte("a\"\\\n\t\x00\x7f\u0085\u2028é\xff"))
	want := `"a\"\\\n\t\u0000\u007f\u0085\u2028é\ufffd"`
	if !bytes.Equal(got, []byte(want)) {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestJSONSafePrefix checks the eight-bytes-at-a-time scan against a byte-at-a-time
// one: every byte value at every position of a word and of the tail, and random runs.
func TestJSONSafePrefix(t *testing.T) {
	ref := func(s []byte) int {
		i := 0
		for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' {
			i++
		}
		return i
	}
	check := func(s []byte) {
		t.Helper()
		if got, want := JSONSafePrefix(s), ref(s); got != want {
			t.Fatalf("JSONSafePrefix(%q) = %d, want %d", s, got, want)
		}
	}
	for n := range 20 {
		for pos := range n {
			for b := range 256 {
				s := bytes.Repeat([]byte{'a'}, n)
				s[pos] = byte(b)
				check(s)
				// The byte below it also varies the borrows and carries between bytes.
				if pos > 0 {
					s[pos-1] = byte(b ^ 0x5a)
					check(s)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		s := make([]byte, rng.IntN(40))
		for i := range s {
			if rng.IntN(10) == 0 {
				s[i] = byte(rng.IntN(256))
			} else {
				s[i] = byte(0x20 + rng.IntN(0x5f))
			}
		}
		check(s)
	}
}

// TestJSONSafeWord checks the word test exactly, both ways (a false alarm would only
// slow JSONSafePrefix down, which TestJSONSafePrefix cannot see): one byte of every value
// at every position, over every safe background byte, and random pairs.
func TestJSONSafeWord(t *testing.T) {
	safe := func(b byte) bool { return b >= 0x20 && b < 0x7f && b != '"' && b != '\\' }
	var w [8]byte
	for bg := range 256 {
		if !safe(byte(bg)) {
			continue
		}
		for pos := range 8 {
			for b := range 256 {
				for i := range w {
					w[i] = byte(bg)
				}
				w[pos] = byte(b)
				if got := jsonSafeWord(binary.LittleEndian.Uint64(w[:])); got != safe(byte(b)) {
					t.Fatalf("jsonSafeWord(%q) = %v", w, got)
				}
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 1_000_000 {
		want := true
		for i := range w {
			w[i] = byte(0x20 + rng.IntN(0x5f))
		}
		for range 2 {
			i, b := rng.IntN(8), byte(rng.IntN(256))
			w[i] = b
		}
		for _, b := range w {
			want = want && safe(b)
		}
		if got := jsonSafeWord(binary.LittleEndian.Uint64(w[:])); got != want {
			t.Fatalf("jsonSafeWord(%q) = %v, want %v", w, got, want)
		}
	}
}
