package soak

// The model: what one container's file must hold after the schedule ran. The fake kubelet
// knows every line each instance of each pod UID emitted; the soak adds where it rotated
// the kubelet's log and whether kubelogd could have lost lines there. The file must hold
// those lines in order, each once; between two lines it holds, markers may stand only
// where the model has a boundary (a restart, a recreation, a rotation), the restart and
// recreate markers must stand at theirs, and a line may be missing only where a gap
// marker whose reason covers it stands in its place.

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// segment is the run of lines one log file of one container instance held: an instance
// has one segment per kubelet rotation, plus one.
type segment struct {
	uid      types.UID
	rc       int32
	exitCode int32
	reason   string
	lines    []string
	// rotated is set when the kubelet rotated this file away; lossy when kubelogd had
	// not saved every line of it by then (it was behind, stopped or held).
	rotated, lossy bool
	// multi is set when the restart that ended this instance left it unreadable: the
	// restartCount jumped, or an instance that logged nothing came in between; or when
	// kubelogd did not run all the while it was the previous instance (see kRestart).
	multi bool
	// removed (kind remove-pod-dir) is set when kubelogd's files of the pod were removed
	// after this segment.
	removed bool
	// silent is set when kubelogd was killed (SIGKILL) after a removal of the pod's
	// directory before it noticed it, and this segment ends where kubelogd started again
	// with no cursor: every line up to here may be missing with no marker (see judge).
	silent bool
}

// boundary is the place between two segments, at position pos of the expected lines.
type boundary struct {
	pos        int
	from, into *segment
}

func (b boundary) restart() bool  { return b.from.uid == b.into.uid && b.from.rc != b.into.rc }
func (b boundary) recreate() bool { return b.from.uid != b.into.uid }

// atStart is the where of the gap before the first line of a file.
const atStart = "at the start"

var (
	restartRe   = regexp.MustCompile(`container restarted \(restartCount (\d+)\)(?:: previous instance exited with code (-?\d+))?`)
	recreateRe  = regexp.MustCompile(`recreated with UID (\S+) \(previous UID ([^)]+)\)`)
	prevGoneRe  = regexp.MustCompile(`gap: the rest of the log of instance \w+ \(restartCount (\d+)\) is no longer available`)
	lostInstRe  = regexp.MustCompile(`gap: (\d+) container instance\(s\) between restartCount (\d+) and (\d+)`)
	lostFirstRe = regexp.MustCompile(`gap: (\d+) container instance\(s\) before restartCount (\d+) exited`)
)

const (
	rotatedText = "(its log was probably rotated)"
	deletedText = "gap: pod " // pod_deleted, never_read and deleted_running all start so
	removedText = "removed"   // files_removed: "… was removed …"
)

// verdict is the judgement of one container's file.
type verdict struct {
	problems  []string
	report    oracle.Report // the oracle's diff of expected and collected lines
	emitted   int
	markers   []string
	tolerated int // rotated markers at rotations where nothing was lost
}

func (v verdict) ok() bool { return len(v.problems) == 0 }

func (v verdict) String() string {
	var b strings.Builder
	for _, p := range v.problems {
		fmt.Fprintf(&b, "  - %s\n", p)
	}
	b.WriteString("  oracle: " + strings.ReplaceAll(v.report.String(), "\n", "\n  "))
	return b.String()
}

// judge compares a container's sections with its segments.
func judge(segs []*segment, got []oracle.Section) verdict {
	var want []string
	var bounds []boundary
	for i, s := range segs {
		if i > 0 {
			bounds = append(bounds, boundary{pos: len(want), from: segs[i-1], into: s})
		}
		want = append(want, s.lines...)
	}
	// A removed pod directory takes everything kubelogd wrote there with it: the lines
	// and markers of every earlier segment, and the lines kubelogd still wrote to the
	// removed file before it noticed (at its next cursor save, up to 5 s later, or later
	// still while its stream was behind). What then stands is a new file that starts with
	// the files_removed marker. So the gap before the first line after that marker lies
	// at the start of the file, and may hold any lost line and any boundary whose marker
	// went with the removed file. removals are the removals' positions (the silent ones
	// among them too).
	//
	// When kubelogd was SIGKILLed before it noticed, nothing is left to say what was lost:
	// the directory and the cursor are gone, so the next run reads the container afresh
	// (the kubelet's current file of the current instance, after the previous instance's),
	// as on first sight, with no marker. Everything before that fresh start may be
	// missing silently (silentPos); past it, the usual rules hold. A SIGTERM is not such
	// a case: the final cursor save at Close is a cursor save, and kubelogd can recreate
	// the directory there and leave the cursor for the next run to report the removal.
	var removals []int
	silentPos := -1
	{
		pos := 0
		for _, s := range segs {
			pos += len(s.lines)
			if s.removed {
				removals = append(removals, pos)
			}
			if s.silent {
				silentPos = pos
			}
		}
	}
	// instStart[i] is where the instance of the expected line i starts. Lines the kubelet
	// rotated away before kubelogd wrote any line of their instance (a rotation right
	// after a restart, while kubelogd was down or behind) are lost without a marker:
	// kubelogd reads a new instance from its start, with no cursor and no replay to
	// check, and the kubelet serves its current file only, so nothing tells kubelogd
	// that the first line it gets is not the instance's first (README, "What kubelogd
	// cannot do"). A rotation after it wrote a line of the instance must be marked.
	var instStart []int
	{
		pos, start := 0, 0
		for i, s := range segs {
			if i == 0 || s.uid != segs[i-1].uid || s.rc != segs[i-1].rc {
				start = pos
			}
			for range s.lines {
				instStart = append(instStart, start)
			}
			pos += len(s.lines)
		}
	}
	segOf := make([]*segment, 0, len(want))
	for _, s := range segs {
		for range s.lines {
			segOf = append(segOf, s)
		}
	}
	// The file as a sequence: markers and lines.
	var lines []string
	markersBefore := map[int][]string{} // index of the next line → markers before it
	var v verdict
	for _, sec := range got {
		if sec.Marker != "" {
			markersBefore[len(lines)] = append(markersBefore[len(lines)], sec.Marker)
			v.markers = append(v.markers, sec.Marker)
		}
		lines = append(lines, sec.Lines...)
	}
	v.emitted = len(want)
	v.report = oracle.Compare(want, lines)
	v.report.Markers = v.markers
	if len(v.report.Duplicated)+len(v.report.Reordered)+len(v.report.Unexpected) > 0 {
		v.problems = append(v.problems, "lines duplicated, reordered or never emitted (see the oracle's diff)")
		return v
	}
	lost := make([]bool, len(want))
	for _, e := range v.report.Lost {
		lost[e.Emitted] = true
	}
	// at[j] is the position in want of the file's line j.
	at := make([]int, 0, len(lines))
	for i := range want {
		if !lost[i] {
			at = append(at, i)
		}
	}
	// Gap j lies before the file's line j (gap len(lines) after the last): it spans the
	// expected positions after line j-1 up to line j.
	for j := 0; j <= len(lines); j++ {
		lo, hi := 0, len(want)
		if j > 0 {
			lo = at[j-1] + 1
		}
		if j < len(lines) {
			hi = at[j]
		}
		var in []boundary
		for _, b := range bounds {
			if b.pos >= lo && b.pos <= hi && (j == 0 || b.pos > at[j-1]) {
				in = append(in, b)
			}
		}
		if len(in) == 0 && len(markersBefore[j]) == 0 && lo == hi {
			continue
		}
		where := atStart
		if j > 0 {
			where = fmt.Sprintf("after line %q", want[at[j-1]])
		}
		g := gap{where: where, markers: markersBefore[j], bounds: in, silentPos: silentPos, lo: lo, instStart: instStart}
		// A removal marker stands only at the start of the file (see above): lines kept
		// before it were in the removed file, so were not removed.
		g.removal = j == 0 && len(removals) > 0
		for i := lo; i < hi; i++ {
			g.lost = append(g.lost, segOf[i])
			g.lostAt = append(g.lostAt, i)
		}
		if hi > lo {
			g.firstLost = want[lo]
		}
		v.problems = append(v.problems, g.check(&v)...)
	}
	return v
}

// gap is what lies between two lines the file holds: markers, model boundaries and the
// expected lines missing there.
type gap struct {
	where     string
	markers   []string
	bounds    []boundary
	lost      []*segment // the segment of each missing line
	lostAt    []int      // the position of each missing line
	firstLost string
	// removal: the gap is at the start of the file, and the pod's directory was removed.
	removal bool
	// silentPos: lines before it may be missing with no marker, and boundaries up to it
	// may lack their markers (see judge); -1 if none.
	silentPos int
	// lo is the position of the gap's first expected line; instStart as in judge.
	lo        int
	instStart []int
}

// check returns what is wrong in the gap.
func (g gap) check(v *verdict) []string {
	var bad []string
	fail := func(format string, args ...any) {
		bad = append(bad, g.where+": "+fmt.Sprintf(format, args...))
	}
	seen := map[string]bool{}
	restarts := map[int32]bool{}
	var rotated, deleted, removed bool
	var prevGone []int32
	var lostInst [][2]int32
	var lostFirst []instKey // a recreated pod's instances before rc were lost
	for _, m := range g.markers {
		if seen[m] {
			fail("marker %q twice", m)
		}
		seen[m] = true
		switch {
		case restartRe.MatchString(m):
			sub := restartRe.FindStringSubmatch(m)
			rc := atoi32(sub[1])
			b, ok := g.find(func(b boundary) bool { return b.restart() && b.into.rc == rc })
			// The marker reports the last terminated instance: the one right before. A
			// gap can hold restarts to the same restartCount of two pod UIDs (a removal
			// takes every earlier marker), and the marker does not name the UID: any of
			// them may be the one it reports.
			_, codeOK := g.find(func(b boundary) bool {
				return b.restart() && b.into.rc == rc && (sub[2] == "" || atoi32(sub[2]) == b.from.exitCode)
			})
			switch {
			case !ok:
				fail("restart marker %q where no restart to restartCount %d happened", m, rc)
			case restarts[rc]:
				fail("a second restart marker for restartCount %d: %q", rc, m)
			case !codeOK:
				fail("restart marker %q: the previous instance exited with code %d", m, b.from.exitCode)
			}
			restarts[rc] = true
		case recreateRe.MatchString(m):
			sub := recreateRe.FindStringSubmatch(m)
			if _, ok := g.find(func(b boundary) bool {
				return b.recreate() && string(b.into.uid) == sub[1] && string(b.from.uid) == sub[2]
			}); !ok {
				fail("recreate marker %q matches no recreation here", m)
			}
		case strings.Contains(m, rotatedText):
			rotated = true
			if _, ok := g.find(func(b boundary) bool { return b.from.rotated }); !ok {
				fail("rotated marker %q where the kubelet rotated nothing", m)
			}
		case prevGoneRe.MatchString(m):
			rc := atoi32(prevGoneRe.FindStringSubmatch(m)[1])
			if _, ok := g.find(func(b boundary) bool { return b.restart() && b.from.rc == rc && b.from.multi }); !ok {
				fail("gap marker %q, but instance %d was still served with previous=true when it was replaced", m, rc)
			}
			prevGone = append(prevGone, rc)
		case lostInstRe.MatchString(m):
			sub := lostInstRe.FindStringSubmatch(m)
			n, a, b := atoi32(sub[1]), atoi32(sub[2]), atoi32(sub[3])
			_, okA := g.find(func(x boundary) bool { return x.restart() && x.from.rc == a })
			_, okB := g.find(func(x boundary) bool { return x.restart() && x.into.rc == b })
			if !okA || !okB || n != b-a-1 {
				fail("gap marker %q does not match the restarts here", m)
			}
			lostInst = append(lostInst, [2]int32{a, b})
		case lostFirstRe.MatchString(m):
			sub := lostFirstRe.FindStringSubmatch(m)
			n, rc := atoi32(sub[1]), atoi32(sub[2])
			// The first instances of a recreated pod, or, at the start of a file, of
			// the container kubelogd first saw there. A gap at the start can hold
			// several recreations (a removal takes every earlier marker; seed
			// 641127418, soak-0/p-00/app: three recreates, restarts, then the pod
			// directory removed unnoticed): the marker is of any pod with a restart to
			// rc there, not only of the first recreation's.
			var uid types.UID
			if x, ok := g.find(func(x boundary) bool {
				if !x.restart() || x.into.rc != rc {
					return false
				}
				_, recreated := g.find(func(b boundary) bool { return b.recreate() && b.into.uid == x.into.uid })
				return recreated || g.where == atStart
			}); ok {
				uid = x.into.uid
			}
			if uid == "" || n != rc {
				fail("gap marker %q does not match a recreation, or the start of the file, and restarts here", m)
			}
			lostFirst = append(lostFirst, instKey{uid, rc})
		case strings.HasPrefix(strings.TrimPrefix(m, oracle.MarkerPrefix), deletedText):
			deleted = true
			if _, ok := g.find(func(b boundary) bool { return b.recreate() }); !ok {
				fail("deletion gap marker %q where no pod was deleted", m)
			}
		case strings.Contains(m, removedText):
			removed = true
			if !g.removal {
				fail("removal marker %q where no file was removed", m)
			}
		default:
			fail("unexpected marker %q", m)
		}
	}
	absorbed := func(rc int32) bool {
		for _, ab := range lostInst {
			if ab[0] < rc && rc < ab[1] {
				return true
			}
		}
		return false
	}
	// lostBefore: instance (uid, rc) is among the lost first ones; with into, rc may be
	// the first one read, whose restart marker cannot be written either.
	lostBefore := func(uid types.UID, rc int32, into bool) bool {
		for _, k := range lostFirst {
			if k.uid == uid && (rc < k.rc || into && rc == k.rc) {
				return true
			}
		}
		return false
	}
	for _, b := range g.bounds {
		switch {
		case removed || b.pos <= g.silentPos:
			// Its marker may have gone with the removed file (see judge); a marker that
			// stands was checked above.
		case b.restart() && !restarts[b.into.rc] && !absorbed(b.into.rc) && !lostBefore(b.into.uid, b.into.rc, true):
			fail("no restart marker for restartCount %d", b.into.rc)
		case b.recreate() && !seen[findMatching(g.markers, recreateRe, string(b.into.uid))]:
			fail("no recreate marker for UID %s", b.into.uid)
		}
	}
	covered := func(s *segment, at int) bool {
		switch {
		case removed, at < g.silentPos:
			return true
		case s.rotated && s.lossy && g.lo <= g.instStart[at]:
			// Rotated away before kubelogd wrote any line of the instance (see judge).
			return true
		case rotated && s.rotated && s.lossy:
			return true
		case absorbed(s.rc), lostBefore(s.uid, s.rc, false):
			return true
		case deleted && g.recreatedFrom(s.uid):
			return true
		}
		for _, rc := range prevGone {
			if rc == s.rc {
				return true
			}
		}
		return false
	}
	uncovered := 0
	for i, s := range g.lost {
		if !covered(s, g.lostAt[i]) {
			uncovered++
		}
	}
	if uncovered > 0 {
		fail("%d lines missing (first %q) with no gap marker that covers them (markers here: %q)", uncovered, g.firstLost, g.markers)
	}
	if rotated && len(g.lost) == 0 {
		v.tolerated++
	}
	return bad
}

// recreatedFrom tells whether the gap holds the recreation of pod UID uid.
func (g gap) recreatedFrom(uid types.UID) bool {
	_, ok := g.find(func(b boundary) bool { return b.recreate() && b.from.uid == uid })
	return ok
}

// find returns the first boundary of the gap that matches.
func (g gap) find(match func(boundary) bool) (boundary, bool) {
	for _, b := range g.bounds {
		if match(b) {
			return b, true
		}
	}
	return boundary{}, false
}

func findMatching(markers []string, re *regexp.Regexp, first string) string {
	for _, m := range markers {
		if sub := re.FindStringSubmatch(m); sub != nil && sub[1] == first {
			return m
		}
	}
	return "\x00none"
}

func atoi32(s string) int32 {
	n, _ := strconv.Atoi(s)
	return int32(n)
}

// splitAt cuts an instance's lines at points (line counts, ascending).
func splitAt(lines []string, points []int) [][]string {
	var out [][]string
	prev := 0
	for _, p := range points {
		p = min(max(p, prev), len(lines))
		out = append(out, lines[prev:p])
		prev = p
	}
	return append(out, lines[prev:])
}
