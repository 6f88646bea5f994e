package oracle

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s %d", prefix, i)
	}
	return out
}

// counts is a report reduced to its numbers, for table tests.
type counts struct{ lost, dup, reord, unexp int }

func countsOf(r Report) counts {
	return counts{len(r.Lost), len(r.Duplicated), len(r.Reordered), len(r.Unexpected)}
}

func TestCompare(t *testing.T) {
	lines := seq("line", 10)
	tests := []struct {
		name      string
		emitted   []string
		collected []string
		want      counts
		check     func(t *testing.T, r Report)
	}{
		{name: "exact", emitted: lines, collected: lines},
		{name: "both empty"},
		{name: "nothing collected", emitted: lines, want: counts{lost: 10}},
		{
			name: "drop", emitted: lines, collected: slices.Delete(slices.Clone(lines), 4, 5), want: counts{lost: 1},
			check: func(t *testing.T, r Report) {
				if r.Lost[0] != (Entry{Line: "line 4", Emitted: 4, Collected: -1}) {
					t.Errorf("lost %+v", r.Lost)
				}
			},
		},
		{
			name: "duplicate", emitted: lines, collected: slices.Insert(slices.Clone(lines), 6, "line 5"), want: counts{dup: 1},
			check: func(t *testing.T, r Report) {
				if r.Duplicated[0] != (Entry{Line: "line 5", Emitted: -1, Collected: 6}) {
					t.Errorf("duplicated %+v", r.Duplicated)
				}
			},
		},
		{
			name:    "duplicate of a repeated line",
			emitted: []string{"start", "tick", "tick", "tick", "end"}, collected: []string{"start", "tick", "tick", "tick", "tick", "end"},
			want: counts{dup: 1},
		},
		{
			name:    "drop of a repeated line",
			emitted: []string{"start", "tick", "tick", "tick", "end"}, collected: []string{"start", "tick", "tick", "end"},
			want: counts{lost: 1},
		},
		{
			name:    "repeated line written twice is collected twice",
			emitted: []string{"a", "same", "b", "same", "c"}, collected: []string{"a", "same", "b", "same", "c"},
		},
		{
			name:    "one of two identical lines lost far apart",
			emitted: []string{"a", "same", "b", "same", "c"}, collected: []string{"a", "same", "b", "c"},
			want: counts{lost: 1},
			check: func(t *testing.T, r Report) {
				if r.Lost[0].Emitted != 3 {
					t.Errorf("lost %+v, want the second copy", r.Lost)
				}
			},
		},
		{
			name: "swap", emitted: lines, collected: swap(lines, 3, 4), want: counts{reord: 1},
		},
		{
			name:    "swap of stdout and stderr lines in a burst of repeats",
			emitted: []string{"x", "x", "err", "x", "x"}, collected: []string{"x", "x", "x", "err", "x"},
			want: counts{reord: 1},
		},
		{
			name: "moved far", emitted: lines, collected: append(slices.Clone(lines[1:]), lines[0]), want: counts{reord: 1},
		},
		{
			name: "whole stream replayed", emitted: lines, collected: append(slices.Clone(lines), lines...), want: counts{dup: 10},
		},
		{
			name: "torn line", emitted: lines, collected: slices.Insert(slices.Clone(lines[:9]), 9, "line"), want: counts{lost: 1, unexp: 1},
		},
		{
			name:    "several problems at once",
			emitted: lines,
			collected: []string{"line 0", "line 2", "line 1", "line 3", "line 3", "line 4", "garbage",
				"line 6", "line 7", "line 8", "line 9"},
			want: counts{reord: 1, dup: 1, unexp: 1, lost: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Compare(tt.emitted, tt.collected)
			if got := countsOf(r); got != tt.want {
				t.Fatalf("got %+v, want %+v\n%s", got, tt.want, r)
			}
			if r.OK() != (tt.want == counts{}) {
				t.Errorf("OK() = %v\n%s", r.OK(), r)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
		})
	}
}

func swap(lines []string, i, j int) []string {
	out := slices.Clone(lines)
	out[i], out[j] = out[j], out[i]
	return out
}

func TestString(t *testing.T) {
	emitted := seq("l", 100)
	r := Compare(emitted, emitted[50:])
	r.Markers = []string{"kubelogd: gap"}
	s := r.String()
	for _, want := range []string{"100 emitted, 50 collected: 50 lost", `lost       emitted #0: "l 0"`, "... and 30 more", `"kubelogd: gap"`} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	if got := strings.Count(s, "\n  lost"); got != maxShown {
		t.Errorf("%d problems listed, want %d", got, maxShown)
	}
	if s := Compare(emitted, emitted).String(); s != "100 emitted, 100 collected: OK" {
		t.Errorf("String() of a match: %q", s)
	}
}

// TestCompareLarge checks that 100k lines with scattered problems are judged exactly and
// fast, including when most lines repeat (no unique anchors).
func TestCompareLarge(t *testing.T) {
	const n = 100_000
	tests := []struct {
		name  string
		lines func() []string
	}{
		{name: "unique lines", lines: func() []string { return seq("line", n) }},
		{name: "ten distinct texts", lines: func() []string {
			out := make([]string, n)
			for i := range out {
				out[i] = fmt.Sprintf("tick %d", i%10)
			}
			return out
		}},
		{name: "all identical", lines: func() []string { return slices.Repeat([]string{"same"}, n) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			emitted := tt.lines()
			rng := rand.New(rand.NewPCG(1, 2))
			collected := slices.Clone(emitted)
			// Drops, duplicates and unexpected lines at random places, far apart.
			var drops, dups int
			for k := 0; k < 50; k++ {
				i := rng.IntN(len(collected)-1) + 1
				switch k % 2 {
				case 0:
					collected = slices.Delete(collected, i, i+1)
					drops++
				case 1:
					collected = slices.Insert(collected, i, collected[i-1])
					dups++
				}
			}
			collected = slices.Insert(collected, n/2, "torn li")
			start := time.Now()
			r := Compare(emitted, collected)
			elapsed := time.Since(start)
			if len(r.Lost)-len(r.Duplicated) != drops-dups || len(r.Unexpected) != 1 {
				t.Errorf("lost %d, duplicated %d, unexpected %d; want %d drops and %d duplicates net",
					len(r.Lost), len(r.Duplicated), len(r.Unexpected), drops, dups)
			}
			if tt.name == "unique lines" && (len(r.Lost) != drops || len(r.Duplicated) != dups || len(r.Reordered) != 0) {
				t.Errorf("unique lines: %+v, want %d lost and %d duplicated", countsOf(r), drops, dups)
			}
			if elapsed > 5*time.Second {
				t.Errorf("Compare of %d lines took %v", n, elapsed)
			}
			t.Logf("%s: %v, %+v", tt.name, elapsed, countsOf(r))
		})
	}
}

// TestCompareLargeSwaps checks that adjacent swaps of unique lines in a large input are
// each one reordered line.
func TestCompareLargeSwaps(t *testing.T) {
	emitted := seq("line", 100_000)
	collected := slices.Clone(emitted)
	for i := 1000; i < len(collected)-1; i += 5000 {
		collected[i], collected[i+1] = collected[i+1], collected[i]
	}
	r := Compare(emitted, collected)
	if got := countsOf(r); got != (counts{reord: 20}) {
		t.Errorf("got %+v, want 20 reordered", got)
	}
}

func BenchmarkCompare(b *testing.B) {
	emitted := seq("line", 100_000)
	collected := slices.Delete(slices.Clone(emitted), 500, 510)
	for b.Loop() {
		Compare(emitted, collected)
	}
}

// TestCompareFallback checks a large region without unique lines and with a huge edit
// distance, which Myers gives up on: the greedy matching still finishes fast with exact
// per-text counts.
func TestCompareFallback(t *testing.T) {
	const n = 20_000
	emitted := slices.Repeat([]string{"a", "b"}, n)
	collected := append(slices.Repeat([]string{"a"}, n), slices.Repeat([]string{"b"}, n+1)...)
	start := time.Now()
	r := Compare(emitted, collected)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("took %v", elapsed)
	}
	if len(r.Lost) != 0 || len(r.Duplicated) != 1 || len(r.Unexpected) != 0 || len(r.Reordered) == 0 {
		t.Errorf("got %+v", countsOf(r))
	}
}

// TestAlignProperties checks on random small inputs that every matching is a common
// subsequence, that Myers finds a longest one, and that the report's counts add up.
func TestAlignProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for iter := range 2000 {
		a := randomIDs(rng, rng.IntN(30), 3)
		b := randomIDs(rng, rng.IntN(30), 3)
		t.Run(fmt.Sprint(iter), func(t *testing.T) {
			al := newAligner(a, b, 3)
			if !al.myers(0, len(a), 0, len(b)) {
				t.Fatal("myers gave up")
			}
			if got, want := checkMatching(t, al), lcsLength(a, b); got != want {
				t.Fatalf("myers matched %d, LCS is %d: %v vs %v", got, want, a, b)
			}
			al = newAligner(a, b, 3)
			al.align(0, len(a), 0, len(b))
			checkMatching(t, al)

			em, col := names(a), names(b)
			r := Compare(em, col)
			for _, text := range []string{"t0", "t1", "t2"} {
				ce, cc := count(em, text), count(col, text)
				lost, dup := countEntries(r.Lost, text), countEntries(r.Duplicated, text)+countEntries(r.Unexpected, text)
				if lost-dup != ce-cc || (lost > 0 && dup > 0) {
					t.Fatalf("%s: emitted %d collected %d, lost %d dup %d\n%s", text, ce, cc, lost, dup, r)
				}
			}
		})
	}
}

func randomIDs(rng *rand.Rand, n, alphabet int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(rng.IntN(alphabet))
	}
	return out
}

// checkMatching fails unless the aligner's matching pairs equal ids, increasing on both
// sides, and returns its size.
func checkMatching(t *testing.T, al *aligner) int {
	t.Helper()
	last, size := -1, 0
	for i, j := range al.ma {
		if j < 0 {
			continue
		}
		if j <= last || al.a[i] != al.b[j] || al.mb[j] != i {
			t.Fatalf("bad matching %v for %v vs %v", al.ma, al.a, al.b)
		}
		last = j
		size++
	}
	return size
}

func lcsLength(a, b []int32) int {
	dp := make([][]int, len(a)+1)
	for i := range dp {
		dp[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				dp[i][j] = dp[i+1][j+1] + 1
			} else {
				dp[i][j] = max(dp[i+1][j], dp[i][j+1])
			}
		}
	}
	return dp[0][0]
}

func names(ids []int32) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = fmt.Sprintf("t%d", id)
	}
	return out
}

func count(lines []string, text string) int {
	n := 0
	for _, l := range lines {
		if l == text {
			n++
		}
	}
	return n
}

func countEntries(entries []Entry, text string) int {
	n := 0
	for _, e := range entries {
		if e.Line == text {
			n++
		}
	}
	return n
}
