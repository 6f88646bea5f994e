package soak

// The schedule: one seed and a duration decide, before anything runs, which containers
// exist, how each logs, and the list of steps with every parameter. Running it twice with
// the same seed runs the same steps in the same order (the real processes' timing differs;
// the schedule does not). Each fault kind is one entry of kinds below: what it needs of
// the generator's state, and the step it makes.

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/kubelogd/kubelogd/internal/failpoint"
)

// The topology: pods p-00..p-11 over three namespaces, two containers each, running from
// the start with restartPolicy Always; job pods are created by steps.
const (
	soakPods  = 12
	jobNS     = "soak-jobs"
	maxJobs   = 6
	stallTime = 2 * time.Second // kubelogd's --stall-timeout in the soak
)

var soakContainers = []string{"app", "aux"}

func podNS(i int) string   { return fmt.Sprintf("soak-%d", i%3) }
func podName(i int) string { return fmt.Sprintf("p-%02d", i) }

// kind names a fault (or an action) of the vocabulary.
type kind string

// scope tells what a step of a kind targets.
type scope int

const (
	scopeContainer scope = iota // one of the pods' containers
	scopePod                    // one of the pods, all its containers
	scopeGlobal                 // kubelogd, the API server, the node
)

// step is one entry of a schedule. Target indexes containers (pod*2+container) or pods by
// scope; the other fields are the kind's parameters.
type step struct {
	Kind   kind
	Target int
	N      int
	D      time.Duration
	Code   int
	Flag   bool
	Name   string
	// Pause is how long the driver waits before the step.
	Pause time.Duration
}

func (s step) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-18s", s.Kind)
	switch kinds[s.Kind].scope {
	case scopeContainer:
		fmt.Fprintf(&b, " %s/%s/%s", podNS(s.Target/2), podName(s.Target/2), soakContainers[s.Target%2])
	case scopePod:
		fmt.Fprintf(&b, " %s/%s", podNS(s.Target), podName(s.Target))
	}
	if s.N != 0 {
		fmt.Fprintf(&b, " n=%d", s.N)
	}
	if s.D != 0 {
		fmt.Fprintf(&b, " d=%s", s.D)
	}
	if s.Code != 0 {
		fmt.Fprintf(&b, " code=%d", s.Code)
	}
	if s.Flag {
		b.WriteString(" flag")
	}
	if s.Name != "" {
		fmt.Fprintf(&b, " %s", s.Name)
	}
	return b.String()
}

// writerSpec is how one container logs in the background: batch lines every period, text
// padded to about pad bytes, a share of them on stderr, timestamps skewed by up to skew
// either way (stdout and stderr out of order, as runtimes stamp them).
type writerSpec struct {
	Period time.Duration
	Batch  int
	Pad    int
	Stderr int // percent
	Skew   time.Duration
}

// schedule is what a seed and a duration decide.
type schedule struct {
	Seed     uint64
	Duration time.Duration
	Writers  []writerSpec // per container index
	Steps    []step
}

// genState is what the generator knows of the world it plans for, so that every step it
// draws is valid where the schedule puts it.
type genState struct {
	rng          *rand.Rand
	n            int // steps so far
	kubelogdUp   bool
	blind, hold  bool
	stalled      map[int]bool // containers with a Stall on
	lastRecreate map[int]int  // pod → step of its last recreation
	jobs         int
	// due are the steps that end a window (bring kubelogd up, lift a stall), with the
	// step number at which they come.
	due []dueStep
}

type dueStep struct {
	at int
	s  step
}

// kindSpec is one entry of the vocabulary.
type kindSpec struct {
	scope  scope
	weight int
	// nominal is how long a step of this kind takes, roughly, for the schedule's length.
	nominal time.Duration
	// ok tells whether the kind may be drawn now; nil: always.
	ok func(g *genState, target int) bool
	// make fills the step's parameters (Kind and Target are set) and may plan a later
	// step through g.due.
	make func(g *genState, s *step)
}

// soakPending lists the kinds the generator does not draw yet because kubelogd does not
// handle them yet, with why and the issue item that fixes them. Enabling one is deleting
// its line here.
var soakPending = map[kind]string{}

// The vocabulary.
const (
	kCut          kind = "cut"
	kCutMid       kind = "cut-mid"
	kScriptCut    kind = "script-cut"
	kScriptPause  kind = "script-pause"
	kScriptDelay  kind = "script-delay"
	kStallOpen    kind = "stall-open"
	kStallBegin   kind = "stall-begin"
	kStallEnd     kind = "stall-end"
	kFail404      kind = "fail-404"
	kFailHTTP     kind = "fail-http"
	kBodyError    kind = "body-error"
	kEndFollow    kind = "end-follow"
	kRotate       kind = "rotate"
	kRotateBehind kind = "rotate-behind"
	kRestart      kind = "restart"
	kRestartEmpty kind = "restart-empty"
	kRestartN     kind = "restart-n"
	kPartial      kind = "partial"
	kBurst        kind = "burst"
	kKubeletDown  kind = "kubelet-restart"
	kRecreate     kind = "recreate"
	kJob          kind = "job"
	kKill         kind = "kubelogd-kill"
	kTerm         kind = "kubelogd-term"
	kStart        kind = "kubelogd-start"
	kFailpoint    kind = "kubelogd-failpoint"
	kAPIRestart   kind = "apiserver-restart"
	kWatch410     kind = "watch-410"
	kBlindBegin   kind = "blind-begin"
	kBlindEnd     kind = "blind-end"
	kHoldBegin    kind = "hold-begin"
	kHoldEnd      kind = "hold-end"
	kAPILogFail   kind = "api-log-fail"
	kAPILogAbort  kind = "api-log-abort"
	// What operators and nodes do.
	kClockBack  kind = "clock-back"
	kInotify    kind = "inotify-exhausted"
	kRemoveDir  kind = "remove-pod-dir"
	kCopyOutput kind = "copy-output-dir"
	kDiskFull   kind = "disk-full"
)

func ms(g *genState, lo, hi int) time.Duration {
	return time.Duration(lo+g.rng.IntN(hi-lo+1)) * time.Millisecond
}

// calm is true when no window of the API side or of kubelogd is open: kubelogd runs and
// its informer sees.
func calm(g *genState, _ int) bool { return g.kubelogdUp && !g.blind && !g.hold }

var kinds = map[kind]kindSpec{
	kCut:    {scope: scopeContainer, weight: 6, nominal: 200 * time.Millisecond},
	kCutMid: {scope: scopeContainer, weight: 6, nominal: 200 * time.Millisecond},
	// A cut at an exact point of the next stream's replay (its first lines re-send what
	// was written), and of the next read without follow: the current stream is ended to
	// make the next one come.
	kScriptCut: {scope: scopeContainer, weight: 6, nominal: 300 * time.Millisecond, make: func(g *genState, s *step) {
		s.N, s.Flag = 1+g.rng.IntN(12), g.rng.IntN(2) == 0
	}},
	kScriptPause: {scope: scopeContainer, weight: 3, nominal: 300 * time.Millisecond, make: func(g *genState, s *step) {
		s.N, s.D = g.rng.IntN(10), ms(g, 100, 1500)
	}},
	kScriptDelay: {scope: scopeContainer, weight: 3, nominal: 300 * time.Millisecond, make: func(g *genState, s *step) {
		s.D = ms(g, 100, 1500)
	}},
	kStallOpen: {scope: scopeContainer, weight: 3, nominal: 200 * time.Millisecond},
	kStallBegin: {scope: scopeContainer, weight: 2, nominal: 200 * time.Millisecond,
		ok: func(g *genState, c int) bool { return !g.stalled[c] },
		make: func(g *genState, s *step) {
			g.stalled[s.Target] = true
			g.due = append(g.due, dueStep{g.n + 2 + g.rng.IntN(5), step{Kind: kStallEnd, Target: s.Target}})
		}},
	kStallEnd: {scope: scopeContainer, nominal: 100 * time.Millisecond},
	kFail404: {scope: scopeContainer, weight: 3, nominal: 200 * time.Millisecond, make: func(g *genState, s *step) {
		s.N = 1 + g.rng.IntN(3)
	}},
	kFailHTTP: {scope: scopeContainer, weight: 3, nominal: 200 * time.Millisecond, make: func(g *genState, s *step) {
		s.N, s.Code = 1+g.rng.IntN(3), []int{500, 502, 503, 429}[g.rng.IntN(4)]
	}},
	kBodyError: {scope: scopeContainer, weight: 2, nominal: 200 * time.Millisecond},
	kEndFollow: {scope: scopeContainer, weight: 3, nominal: 200 * time.Millisecond},
	// One rotation, after waiting (bounded) for kubelogd to have written every line.
	kRotate: {scope: scopeContainer, weight: 4, nominal: 2 * time.Second},
	// Several rotations while the stream is held (StallOpen) with lines in between: the
	// lines only the rotated files hold are lost, and a rotated marker must say where.
	kRotateBehind: {scope: scopeContainer, weight: 2, nominal: time.Second, make: func(g *genState, s *step) {
		s.N = 1 + g.rng.IntN(3)
	}},
	kRestart: {scope: scopeContainer, weight: 4, nominal: 300 * time.Millisecond, make: func(g *genState, s *step) {
		s.Code = []int{0, 1, 2, 137}[g.rng.IntN(4)]
	}},
	// Two restarts in a row, the instance in between logging nothing.
	kRestartEmpty: {scope: scopeContainer, weight: 2, nominal: 400 * time.Millisecond},
	// restartCount jumps by N in one status write.
	kRestartN: {scope: scopeContainer, weight: 2, nominal: 300 * time.Millisecond, make: func(g *genState, s *step) {
		s.N = 2 + g.rng.IntN(2)
	}},
	// A line in N CRI partial records, stamped across a second boundary.
	kPartial: {scope: scopeContainer, weight: 4, nominal: 200 * time.Millisecond, make: func(g *genState, s *step) {
		s.N, s.Flag = 2+g.rng.IntN(3), g.rng.IntN(2) == 0
	}},
	// N lines with equal timestamps, many of one identical text, cut in the middle.
	kBurst: {scope: scopeContainer, weight: 3, nominal: 400 * time.Millisecond, make: func(g *genState, s *step) {
		s.N, s.Flag = 50+g.rng.IntN(400), g.rng.IntN(2) == 0
	}},
	// The kubelet restarts: its streams die and it answers 404 for the pod for a while.
	kKubeletDown: {scope: scopePod, weight: 2, nominal: 300 * time.Millisecond, make: func(g *genState, s *step) {
		s.D = ms(g, 500, 4000)
	}},
	// The pod is deleted and created again with the same name (a new UID).
	kRecreate: {scope: scopePod, weight: 2, nominal: 2 * time.Second,
		ok: func(g *genState, p int) bool {
			last, seen := g.lastRecreate[p]
			return calm(g, p) && (!seen || g.n-last > 8)
		},
		make: func(g *genState, s *step) { g.lastRecreate[s.Target] = g.n }},
	// A Job pod that logs and succeeds at once, likely before kubelogd first sees it.
	kJob: {scope: scopeGlobal, weight: 2, nominal: 500 * time.Millisecond,
		ok: func(g *genState, _ int) bool { return g.jobs < maxJobs },
		make: func(g *genState, s *step) {
			s.N = g.jobs
			g.jobs++
		}},
	// SIGKILL after D; with Flag kubelogd stays down for a few steps.
	kKill: {scope: scopeGlobal, weight: 3, nominal: time.Second, ok: calm, make: func(g *genState, s *step) {
		s.D, s.Flag = ms(g, 0, 1500), g.rng.IntN(3) == 0
		downFor(g, s)
	}},
	kTerm: {scope: scopeGlobal, weight: 2, nominal: 2 * time.Second, ok: calm, make: func(g *genState, s *step) {
		s.Flag = g.rng.IntN(3) == 0
		downFor(g, s)
	}},
	kStart: {scope: scopeGlobal, nominal: time.Second},
	// Restart kubelogd with a failpoint armed; it kills itself there (or is killed if it
	// never gets there), and starts again.
	kFailpoint: {scope: scopeGlobal, weight: 2, nominal: 8 * time.Second, ok: calm, make: func(g *genState, s *step) {
		s.Name = failpoint.Names[g.rng.IntN(len(failpoint.Names))]
		s.N = 1 + g.rng.IntN(4)
	}},
	kAPIRestart: {scope: scopeGlobal, weight: 1, nominal: 6 * time.Second, make: func(g *genState, s *step) {
		s.D = ms(g, 200, 3000)
	}},
	// The pod watch ends and its resumption is answered 410 Gone: kubelogd relists.
	kWatch410: {scope: scopeGlobal, weight: 2, nominal: 300 * time.Millisecond, ok: calm},
	kBlindBegin: {scope: scopeGlobal, weight: 1, nominal: 300 * time.Millisecond, ok: calm, make: func(g *genState, _ *step) {
		g.blind = true
		g.due = append(g.due, dueStep{g.n + 3 + g.rng.IntN(6), step{Kind: kBlindEnd}})
	}},
	kBlindEnd: {scope: scopeGlobal, nominal: 300 * time.Millisecond},
	kHoldBegin: {scope: scopeGlobal, weight: 1, nominal: 200 * time.Millisecond, ok: calm, make: func(g *genState, _ *step) {
		g.hold = true
		g.due = append(g.due, dueStep{g.n + 2 + g.rng.IntN(4), step{Kind: kHoldEnd}})
	}},
	kHoldEnd: {scope: scopeGlobal, nominal: 200 * time.Millisecond},
	// The API server fails the next N log requests, and the open ones are cut.
	kAPILogFail: {scope: scopeGlobal, weight: 2, nominal: 300 * time.Millisecond, make: func(g *genState, s *step) {
		s.N, s.Code = 1+g.rng.IntN(10), []int{500, 503, 429}[g.rng.IntN(3)]
	}},
	kAPILogAbort: {scope: scopeGlobal, weight: 2, nominal: 300 * time.Millisecond},

	kClockBack: {scope: scopeContainer, weight: 2, nominal: 2 * time.Second, make: func(g *genState, s *step) {
		s.D = ms(g, 3000, 60000)
	}},
	kInotify: {scope: scopeContainer, weight: 2, nominal: 3 * time.Second, make: func(g *genState, s *step) {
		s.D = ms(g, 1000, 5000)
	}},
	kRemoveDir:  {scope: scopePod, weight: 1, nominal: 500 * time.Millisecond, ok: calm},
	kCopyOutput: {scope: scopeGlobal, weight: 1, nominal: 3 * time.Second, ok: calm},
	kDiskFull: {scope: scopeGlobal, weight: 1, nominal: 5 * time.Second, ok: calm, make: func(g *genState, s *step) {
		s.D = ms(g, 1000, 5000)
	}},
}

// downFor plans the start of kubelogd a few steps after a kill or term that leaves it down.
func downFor(g *genState, s *step) {
	if s.Flag {
		g.kubelogdUp = false
		g.due = append(g.due, dueStep{g.n + 1 + g.rng.IntN(5), step{Kind: kStart}})
	}
}

// kindOrder is the vocabulary in a fixed order: drawing from a map's order would make the
// schedule differ between runs of one seed.
func kindOrder() []kind {
	out := make([]kind, 0, len(kinds))
	for k := range kinds {
		out = append(out, k)
	}
	// Sorted by name: stable and independent of the map.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// generate makes the schedule of a seed: writers for every container, then steps until
// their nominal time reaches the duration. Windows still open at the end are closed.
func generate(seed uint64, duration time.Duration) schedule {
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	sc := schedule{Seed: seed, Duration: duration}
	for c := range soakPods * len(soakContainers) {
		w := writerSpec{
			Period: time.Duration(30+rng.IntN(90)) * time.Millisecond,
			Batch:  1 + rng.IntN(3),
			Pad:    rng.IntN(120),
			Stderr: []int{0, 0, 30, 50}[rng.IntN(4)],
		}
		if rng.IntN(3) == 0 {
			w.Skew = time.Duration(100+rng.IntN(300)) * time.Millisecond
		}
		if c == 0 {
			// One fast writer makes kubelogd rotate its own output (--max-size-mb 1).
			w.Period, w.Batch, w.Pad = 40*time.Millisecond, 10, 400
		}
		sc.Writers = append(sc.Writers, w)
	}
	g := &genState{rng: rng, kubelogdUp: true, stalled: map[int]bool{}, lastRecreate: map[int]int{}}
	order := kindOrder()
	var elapsed time.Duration
	for elapsed < duration || len(g.due) > 0 {
		var s step
		if i := dueIndex(g, elapsed >= duration); i >= 0 {
			s = g.due[i].s
			g.due = append(g.due[:i], g.due[i+1:]...)
			closeWindow(g, s)
		} else {
			s = draw(g, order)
		}
		s.Pause = ms(g, 50, 500)
		sc.Steps = append(sc.Steps, s)
		elapsed += s.Pause + kinds[s.Kind].nominal
		g.n++
	}
	return sc
}

// dueIndex returns the planned step due now (all of them once the time is up), or -1.
func dueIndex(g *genState, flush bool) int {
	for i, d := range g.due {
		if d.at <= g.n || flush {
			return i
		}
	}
	return -1
}

// closeWindow updates the generator's state for a planned step.
func closeWindow(g *genState, s step) {
	switch s.Kind {
	case kStart:
		g.kubelogdUp = true
	case kStallEnd:
		delete(g.stalled, s.Target)
	case kBlindEnd:
		g.blind = false
	case kHoldEnd:
		g.hold = false
	}
}

// draw picks a kind by weight among those enabled and valid now, and a target for it.
func draw(g *genState, order []kind) step {
	for {
		total := 0
		for _, k := range order {
			if _, pending := soakPending[k]; !pending {
				total += kinds[k].weight
			}
		}
		r := g.rng.IntN(total)
		var k kind
		for _, k = range order {
			if _, pending := soakPending[k]; pending {
				continue
			}
			if r -= kinds[k].weight; r < 0 {
				break
			}
		}
		spec := kinds[k]
		target := 0
		switch spec.scope {
		case scopeContainer:
			target = g.rng.IntN(soakPods * len(soakContainers))
		case scopePod:
			target = g.rng.IntN(soakPods)
		}
		if spec.ok != nil && !spec.ok(g, target) {
			continue
		}
		s := step{Kind: k, Target: target}
		if spec.make != nil {
			spec.make(g, &s)
		}
		return s
	}
}
