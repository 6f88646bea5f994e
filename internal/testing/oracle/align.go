package oracle

import "sort"

// maxMyersD bounds the edit distance Myers' algorithm explores in one region, since its time
// and the trace it keeps grow with it (the trace is about maxMyersD² entries). A region
// that needs more falls back to a greedy in-order matching.
const maxMyersD = 1500

// aligner computes a longest common subsequence of two id sequences, as a matching.
//
// It works like patience diff: trim the common prefix and suffix, anchor on ids that occur
// exactly once on both sides (their longest increasing run), and recurse between anchors.
// Regions without such anchors (runs of repeated lines) go to Myers' O((N+M)D) algorithm.
// Test logs are mostly unique lines, so the common case is close to linear.
type aligner struct {
	a, b   []int32
	ma, mb []int // ma[i] is the index in b matched to a[i], or -1; mb likewise

	// Scratch for counting ids in a region, reset through touched after each use so that
	// a region costs its own size, not the number of distinct ids.
	cntA, cntB []int32
	posA, posB []int32
	touched    []int32
}

func newAligner(a, b []int32, distinct int) *aligner {
	al := &aligner{
		a: a, b: b,
		ma: make([]int, len(a)), mb: make([]int, len(b)),
		cntA: make([]int32, distinct), cntB: make([]int32, distinct),
		posA: make([]int32, distinct), posB: make([]int32, distinct),
	}
	for i := range al.ma {
		al.ma[i] = -1
	}
	for j := range al.mb {
		al.mb[j] = -1
	}
	return al
}

func (al *aligner) match(i, j int) {
	al.ma[i] = j
	al.mb[j] = i
}

// align matches a[a0:a1] with b[b0:b1].
func (al *aligner) align(a0, a1, b0, b1 int) {
	for a0 < a1 && b0 < b1 && al.a[a0] == al.b[b0] {
		al.match(a0, b0)
		a0++
		b0++
	}
	for a0 < a1 && b0 < b1 && al.a[a1-1] == al.b[b1-1] {
		al.match(a1-1, b1-1)
		a1--
		b1--
	}
	if a0 == a1 || b0 == b1 {
		return
	}
	anchors := al.anchors(a0, a1, b0, b1)
	if len(anchors) == 0 {
		if !al.myers(a0, a1, b0, b1) {
			al.greedy(a0, a1, b0, b1)
		}
		return
	}
	pa, pb := a0, b0
	for _, an := range anchors {
		al.align(pa, an[0], pb, an[1])
		al.match(an[0], an[1])
		pa, pb = an[0]+1, an[1]+1
	}
	al.align(pa, a1, pb, b1)
}

// anchors returns the pairs (i, j) of ids unique on both sides of the region that form the
// longest run increasing on both sides.
func (al *aligner) anchors(a0, a1, b0, b1 int) [][2]int {
	for i := a0; i < a1; i++ {
		id := al.a[i]
		if al.cntA[id] == 0 && al.cntB[id] == 0 {
			al.touched = append(al.touched, id)
		}
		al.cntA[id]++
		al.posA[id] = int32(i)
	}
	for j := b0; j < b1; j++ {
		id := al.b[j]
		if al.cntA[id] == 0 && al.cntB[id] == 0 {
			al.touched = append(al.touched, id)
		}
		al.cntB[id]++
		al.posB[id] = int32(j)
	}
	var cand [][2]int // in a order
	for i := a0; i < a1; i++ {
		id := al.a[i]
		if al.cntA[id] == 1 && al.cntB[id] == 1 {
			cand = append(cand, [2]int{i, int(al.posB[id])})
		}
	}
	for _, id := range al.touched {
		al.cntA[id], al.cntB[id] = 0, 0
	}
	al.touched = al.touched[:0]
	return longestIncreasing(cand)
}

// longestIncreasing returns the longest subsequence of cand (sorted by [0]) whose [1] values
// increase, by patience sorting in O(n log n).
func longestIncreasing(cand [][2]int) [][2]int {
	if len(cand) == 0 {
		return nil
	}
	tails := []int{} // tails[l] is the index in cand ending the best run of length l+1
	prev := make([]int, len(cand))
	for k, c := range cand {
		l := sort.Search(len(tails), func(x int) bool { return cand[tails[x]][1] >= c[1] })
		if l > 0 {
			prev[k] = tails[l-1]
		} else {
			prev[k] = -1
		}
		if l == len(tails) {
			tails = append(tails, k)
		} else {
			tails[l] = k
		}
	}
	out := make([][2]int, len(tails))
	for k, l := tails[len(tails)-1], len(tails)-1; l >= 0; k, l = prev[k], l-1 {
		out[l] = cand[k]
	}
	return out
}

// myers matches a[a0:a1] with b[b0:b1] along a shortest edit script (Myers 1986, greedy
// forward search with a trace for backtracking). It gives up, matching nothing, when the
// edit distance exceeds maxMyersD.
func (al *aligner) myers(a0, a1, b0, b1 int) bool {
	a, b := al.a[a0:a1], al.b[b0:b1]
	n, m := len(a), len(b)
	maxD := min(n+m, maxMyersD)
	off := maxD + 1
	v := make([]int, 2*maxD+3)
	var trace [][]int // trace[d] holds v[-d..d] as it was before step d
	for d := 0; d <= maxD; d++ {
		trace = append(trace, append([]int(nil), v[off-d:off+d+1]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1] // down: one line of b inserted
			} else {
				x = v[off+k-1] + 1 // right: one line of a deleted
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x++
				y++
			}
			v[off+k] = x
			if x >= n && y >= m {
				al.backtrack(trace, d, n, m, a0, b0)
				return true
			}
		}
	}
	return false
}

// backtrack walks the trace back from (n, m), matching the diagonal moves.
func (al *aligner) backtrack(trace [][]int, dEnd, n, m, a0, b0 int) {
	x, y := n, m
	for d := dEnd; d > 0; d-- {
		vs := trace[d]
		k := x - y
		var pk int
		if k == -d || (k != d && vs[k-1+d] < vs[k+1+d]) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := vs[pk+d]
		py := px - pk
		for x > px && y > py {
			x--
			y--
			al.match(a0+x, b0+y)
		}
		x, y = px, py
	}
	for x > 0 && y > 0 {
		x--
		y--
		al.match(a0+x, b0+y)
	}
}

// greedy matches each line of b to the next occurrence of the same id in a after the last
// match. It is the fallback for large regions full of repeats and many differences, where
// an exact alignment costs too much; counts of lost and duplicated lines stay exact, only
// the split between reordered and lost+duplicated may be less precise.
func (al *aligner) greedy(a0, a1, b0, b1 int) {
	next := map[int32][]int{} // positions in a, in order, per id
	for i := a0; i < a1; i++ {
		next[al.a[i]] = append(next[al.a[i]], i)
	}
	cursor := a0
	for j := b0; j < b1; j++ {
		id := al.b[j]
		pos := next[id]
		for len(pos) > 0 && pos[0] < cursor {
			pos = pos[1:]
		}
		next[id] = pos
		if len(pos) == 0 {
			continue
		}
		al.match(pos[0], j)
		cursor = pos[0] + 1
		next[id] = pos[1:]
	}
}
