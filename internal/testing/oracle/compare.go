// Package oracle judges a collected log file against what the container emitted: which
// lines were lost, duplicated, reordered or never emitted at all.
//
// Compare aligns the two sequences with a real diff (patience anchoring on unique lines,
// Myers in between), so that a repeated identical line written twice counts as one
// duplicate, a missing one as lost, and a swapped pair as one reordered line rather than a
// loss plus a duplicate.
package oracle

import (
	"fmt"
	"strings"
)

// maxShown is how many problems Report.String lists before it summarizes the rest.
const maxShown = 20

// Entry is one line a comparison flags.
type Entry struct {
	// Line is the line's text.
	Line string
	// Emitted is the line's index in the emitted lines, or -1 when it has none there
	// (duplicated and unexpected lines).
	Emitted int
	// Collected is the line's index in the collected lines, or -1 when it has none there
	// (lost lines).
	Collected int
}

// Report is the result of comparing emitted lines with collected lines.
type Report struct {
	// EmittedCount and CollectedCount are the numbers of lines compared.
	EmittedCount, CollectedCount int
	// Lost lines were emitted but are missing from the collection.
	Lost []Entry
	// Duplicated lines were collected more often than they were emitted; each extra copy
	// is one entry.
	Duplicated []Entry
	// Reordered lines were collected as often as emitted, but out of order: each entry
	// pairs the emitted line with the copy found elsewhere.
	Reordered []Entry
	// Unexpected lines were collected but never emitted (torn or corrupted lines).
	Unexpected []Entry
	// Markers are kubelogd's own event lines ("kubelogd: ..."), as ReadFile returns them.
	// Compare leaves them empty; callers attach them so that String shows them. They do
	// not affect OK.
	Markers []string
}

// Compare compares the lines a container emitted with the lines collected for it, both in
// order with repeats. Lines are matched by a longest-common-subsequence alignment; what is
// left over is classified per text: a text collected fewer times than emitted is lost, more
// times duplicated, and an unmatched emitted copy paired with an unmatched collected copy is
// reordered. It takes about linear time when most lines are unique.
func Compare(emitted, collected []string) Report {
	r := Report{EmittedCount: len(emitted), CollectedCount: len(collected)}
	ids := make(map[string]int32, len(emitted))
	a := intern(emitted, ids)
	b := intern(collected, ids)
	al := newAligner(a, b, len(ids))
	al.align(0, len(a), 0, len(b))

	// Unmatched copies, per text id, in order.
	inEmitted := make([]bool, len(ids))
	for _, id := range a {
		inEmitted[id] = true
	}
	deleted := map[int32][]int{}
	for i, j := range al.ma {
		if j < 0 {
			deleted[a[i]] = append(deleted[a[i]], i)
		}
	}
	for j, i := range al.mb {
		if i >= 0 {
			continue
		}
		id := b[j]
		switch del := deleted[id]; {
		case len(del) > 0:
			r.Reordered = append(r.Reordered, Entry{Line: collected[j], Emitted: del[0], Collected: j})
			deleted[id] = del[1:]
		case inEmitted[id]:
			r.Duplicated = append(r.Duplicated, Entry{Line: collected[j], Emitted: -1, Collected: j})
		default:
			r.Unexpected = append(r.Unexpected, Entry{Line: collected[j], Emitted: -1, Collected: j})
		}
	}
	for i, j := range al.ma {
		if j >= 0 {
			continue
		}
		if del := deleted[a[i]]; len(del) > 0 && del[0] == i {
			r.Lost = append(r.Lost, Entry{Line: emitted[i], Emitted: i, Collected: -1})
			deleted[a[i]] = del[1:]
		}
	}
	return r
}

// intern maps lines to small integer ids, shared between both sides through ids.
func intern(lines []string, ids map[string]int32) []int32 {
	out := make([]int32, len(lines))
	for i, l := range lines {
		id, ok := ids[l]
		if !ok {
			id = int32(len(ids))
			ids[l] = id
		}
		out[i] = id
	}
	return out
}

// OK tells whether the collection holds exactly the emitted lines, in order.
func (r Report) OK() bool {
	return len(r.Lost) == 0 && len(r.Duplicated) == 0 && len(r.Reordered) == 0 && len(r.Unexpected) == 0
}

// String summarizes the report and lists the first problems and the markers.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d emitted, %d collected: ", r.EmittedCount, r.CollectedCount)
	if r.OK() {
		b.WriteString("OK")
	} else {
		fmt.Fprintf(&b, "%d lost, %d duplicated, %d reordered, %d unexpected",
			len(r.Lost), len(r.Duplicated), len(r.Reordered), len(r.Unexpected))
	}
	shown, total := 0, 0
	list := func(kind string, entries []Entry) {
		for _, e := range entries {
			total++
			if shown >= maxShown {
				continue
			}
			shown++
			switch {
			case e.Collected < 0:
				fmt.Fprintf(&b, "\n  %-10s emitted #%d: %q", kind, e.Emitted, e.Line)
			case e.Emitted < 0:
				fmt.Fprintf(&b, "\n  %-10s collected #%d: %q", kind, e.Collected, e.Line)
			default:
				fmt.Fprintf(&b, "\n  %-10s emitted #%d collected #%d: %q", kind, e.Emitted, e.Collected, e.Line)
			}
		}
	}
	list("lost", r.Lost)
	list("duplicated", r.Duplicated)
	list("reordered", r.Reordered)
	list("unexpected", r.Unexpected)
	if total > shown {
		fmt.Fprintf(&b, "\n  ... and %d more", total-shown)
	}
	if len(r.Markers) > 0 {
		fmt.Fprintf(&b, "\n%d markers:", len(r.Markers))
		for i, m := range r.Markers {
			if i == maxShown {
				fmt.Fprintf(&b, "\n  ... and %d more", len(r.Markers)-i)
				break
			}
			fmt.Fprintf(&b, "\n  %q", m)
		}
	}
	return b.String()
}
