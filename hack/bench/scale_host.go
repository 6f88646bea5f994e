package main

import (
	"container/heap"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// The kubelet hosts' side of the scale scenario (scale.go): operations on pods of
// several containers named scaleContainer(0…PerPod-1). Each answers for the pods of its
// request, containers in the order pod by pod, then container by container: the order of
// every per-container list (Counts) in requests and answers.

// scaleReq carries the scale scenario's parameters of a host request.
type scaleReq struct {
	PerPod int `json:"per_pod"`
	// Mean is the mean time between two lines of a quiet container, Busy lists the busy
	// containers (pod index × PerPod + container index) and BusyInterval is theirs.
	Mean         time.Duration `json:"mean,omitempty"`
	BusyInterval time.Duration `json:"busy_interval,omitempty"`
	Busy         []int         `json:"busy,omitempty"`
	Seed         uint64        `json:"seed,omitempty"`
	// From and To (Unix nanoseconds) bound the requests scale-polls looks at.
	From int64 `json:"from,omitempty"`
	To   int64 `json:"to,omitempty"`
	// Dir is kubelogd's --output-dir, for scale-check.
	Dir string `json:"dir,omitempty"`
}

// scaleResp is a host's answer to a scale operation.
type scaleResp struct {
	// Follows is the follow streams open now, MaxFollows the most ever (scale-streams).
	Follows    int `json:"follows"`
	MaxFollows int `json:"max_follows"`
	// Intervals are the seconds between two reads without follow of one container with
	// no follow between them; Polls and FollowReqs count the requests (scale-polls).
	Intervals  []float64   `json:"intervals,omitempty"`
	Polls      int         `json:"polls,omitempty"`
	FollowReqs int         `json:"follow_requests,omitempty"`
	Check      *scaleCheck `json:"check,omitempty"`
}

// scaleHandle answers the scale operations; ok is false for other ops.
//
//   - scale-create makes running pods of PerPod containers with Lines lines each;
//   - scale-append appends Lines lines to every container at once (syscalls.go);
//   - scale-emit logs at random moments for Duration (Counts: lines appended, Lag);
//   - scale-counts: the lines the kubelet recorded per container (Counts);
//   - scale-streams: the follow streams open now and the most ever;
//   - scale-polls: the reads without follow between From and To;
//   - scale-check: every container's file in Dir against the kubelet's record.
func (h *host) scaleHandle(ctx context.Context, req hostReq) (resp hostResp, ok bool) {
	if !strings.HasPrefix(req.Op, "scale-") {
		return resp, false
	}
	resp.ID = req.ID
	if req.Scale == nil || req.Scale.PerPod < 1 {
		resp.Err = req.Op + ": no scale parameters"
		return resp, true
	}
	var err error
	switch req.Op {
	case "scale-create":
		err = h.scaleCreate(ctx, req)
	case "scale-append":
		for _, p := range req.Pods {
			if err = h.scaleAppend(req.NS, podName(p), scaleContainers(req.Scale.PerPod), req.Lines, req.Size); err != nil {
				break
			}
		}
	case "scale-emit":
		resp.Counts, resp.Lag, err = h.scaleEmit(ctx, req)
	case "scale-counts":
		resp.Counts = h.scaleCounts(req)
	case "scale-streams":
		resp.Scale = &scaleResp{Follows: h.k.FollowStreams(), MaxFollows: h.k.MaxFollowStreams()}
	case "scale-polls":
		resp.Scale = h.scalePolls(req)
	case "scale-check":
		resp.Scale = &scaleResp{Check: h.scaleCheck(req)}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		resp.Err = err.Error()
	}
	return resp, true
}

// scaleContainer names container c of a scale pod.
func scaleContainer(c int) string { return fmt.Sprintf("c%d", c) }

// scaleContainers names the n containers of a scale pod.
func scaleContainers(n int) []string {
	names := make([]string, n)
	for c := range names {
		names[c] = scaleContainer(c)
	}
	return names
}

// scaleText is the text of line seq of a container, padded to size bytes: unique in the
// whole run, so that the oracle tells a lost line from a reordered one.
func scaleText(pod, ctr string, seq int, at time.Time, size int) string {
	return fill(fmt.Sprintf("scale %s/%s %d %d", pod, ctr, seq, at.UnixNano()), size)
}

// scaleCreate is createRunning's create for pods of req.Scale.PerPod containers, started
// together with one status write.
func (h *host) scaleCreate(ctx context.Context, req hostReq) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range max(req.Workers, 1) {
		wg.Go(func() {
			for ctx.Err() == nil {
				j := int(next.Add(1) - 1)
				if j >= len(req.Pods) {
					return
				}
				name := podName(req.Pods[j])
				if err := h.scaleCreateOne(ctx, req, name); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("pod %s/%s: %w", req.NS, name, err); cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	return firstErr
}

func (h *host) scaleCreateOne(ctx context.Context, req hostReq, name string) error {
	p := podSpec(req.NS, name, h.k.NodeName(), corev1.RestartPolicyAlways)
	names := scaleContainers(req.Scale.PerPod)
	p.Spec.Containers = nil
	for _, n := range names {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
	}
	if _, err := h.client.CoreV1().Pods(req.NS).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		return err
	}
	if err := h.k.StartContainers(ctx, req.NS, name, names...); err != nil {
		return err
	}
	return h.scaleAppend(req.NS, name, names, req.Lines, req.Size)
}

// scaleAppend appends lines lines of size bytes to each container ctrs of pod, numbered
// on from the lines the kubelet recorded for it.
func (h *host) scaleAppend(ns, pod string, ctrs []string, lines, size int) error {
	for _, ctr := range ctrs {
		first := len(h.k.Emitted(ns, pod, ctr))
		batch := make([]fakekubelet.Line, lines)
		for i := range batch {
			t := time.Now()
			batch[i] = fakekubelet.Line{Time: t.UTC(), Text: scaleText(pod, ctr, first+i, t, size)}
		}
		if err := h.k.Append(ns, pod, ctr, batch...); err != nil {
			return err
		}
	}
	return nil
}

// emitDue is one container's next line in scaleEmit's schedule.
type emitDue struct {
	at time.Time
	i  int // index in the request's container order
}

// dueHeap orders the containers by their next line, earliest first.
type dueHeap []emitDue

func (d dueHeap) Len() int           { return len(d) }
func (d dueHeap) Less(i, j int) bool { return d[i].at.Before(d[j].at) }
func (d dueHeap) Swap(i, j int)      { d[i], d[j] = d[j], d[i] }
func (d *dueHeap) Push(x any)        { *d = append(*d, x.(emitDue)) }
func (d *dueHeap) Pop() any {
	old := *d
	x := old[len(old)-1]
	*d = old[:len(old)-1]
	return x
}

// scaleEmit appends lines at random moments for req.Duration: each container's lines
// are a Poisson process (exponential gaps) of mean req.Scale.Mean, or BusyInterval for
// the busy ones, drawn from a generator seeded with Seed and the host's first pod, so
// that a run's schedule is repeatable. Counts are the lines appended per container; Lag
// is how late a line was against its schedule at worst.
func (h *host) scaleEmit(ctx context.Context, req hostReq) ([]int, time.Duration, error) {
	sr := req.Scale
	n := len(req.Pods) * sr.PerPod
	counts := make([]int, n)
	if n == 0 {
		return counts, 0, nil
	}
	busy := map[int]bool{}
	for _, g := range sr.Busy {
		busy[g] = true
	}
	rng := rand.New(rand.NewPCG(sr.Seed, uint64(req.Pods[0])))
	mean := make([]time.Duration, n)
	names := make([][2]string, n)
	start := time.Now()
	end := start.Add(req.Duration)
	due := make(dueHeap, 0, n)
	for j, p := range req.Pods {
		for c := range sr.PerPod {
			i := j*sr.PerPod + c
			mean[i] = sr.Mean
			if busy[p*sr.PerPod+c] {
				mean[i] = sr.BusyInterval
			}
			names[i] = [2]string{podName(p), scaleContainer(c)}
			due = append(due, emitDue{at: start.Add(time.Duration(rng.ExpFloat64() * float64(mean[i]))), i: i})
		}
	}
	heap.Init(&due)
	seq := make([]int, n) // initial lines come first: sequence numbers go on from them
	for i := range n {
		seq[i] = len(h.k.Emitted(req.NS, names[i][0], names[i][1]))
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lag time.Duration
	for due[0].at.Before(end) {
		if d := time.Until(due[0].at); d > 0 {
			timer.Reset(d)
			select {
			case <-ctx.Done():
				return counts, lag, ctx.Err()
			case <-timer.C:
			}
		}
		now := time.Now()
		for due[0].at.Before(end) && !due[0].at.After(now) {
			it := &due[0]
			lag = max(lag, now.Sub(it.at))
			t := time.Now()
			pod, ctr := names[it.i][0], names[it.i][1]
			line := fakekubelet.Line{Time: t.UTC(), Text: scaleText(pod, ctr, seq[it.i], t, req.Size)}
			if err := h.k.Append(req.NS, pod, ctr, line); err != nil {
				return counts, lag, err
			}
			seq[it.i]++
			counts[it.i]++
			it.at = it.at.Add(time.Duration(rng.ExpFloat64() * float64(mean[it.i])))
			heap.Fix(&due, 0)
		}
	}
	return counts, lag, nil
}

// scaleCounts is how many lines the kubelet recorded for each container of the request.
func (h *host) scaleCounts(req hostReq) []int {
	var out []int
	for _, p := range req.Pods {
		for c := range req.Scale.PerPod {
			out = append(out, len(h.k.Emitted(req.NS, podName(p), scaleContainer(c))))
		}
	}
	return out
}

// scalePolls reads the kubelet's log requests of the namespace: the reads without follow
// that arrived between From and To, and the time between two of one container's that
// both did, with no follow request between them (a stream in between is no poll interval).
func (h *host) scalePolls(req hostReq) *scaleResp {
	from, to := time.Unix(0, req.Scale.From), time.Unix(0, req.Scale.To)
	in := func(t time.Time) bool { return !t.Before(from) && !t.After(to) }
	last := map[string]time.Time{}
	out := &scaleResp{}
	for _, r := range h.k.Requests(req.NS, "", "") { // oldest first
		key := r.Pod + "/" + r.Container
		if r.Options.Follow || r.Query.Get("follow") == "true" {
			delete(last, key)
			if in(r.Time) {
				out.FollowReqs++
			}
			continue
		}
		if !in(r.Time) {
			last[key] = r.Time
			continue
		}
		out.Polls++
		if prev, ok := last[key]; ok && in(prev) {
			out.Intervals = append(out.Intervals, r.Time.Sub(prev).Seconds())
		}
		last[key] = r.Time
	}
	return out
}

// scaleCheck compares every container's file in kubelogd's output directory with the
// lines the kubelet recorded for it.
func (h *host) scaleCheck(req hostReq) *scaleCheck {
	out := &scaleCheck{}
	for _, p := range req.Pods {
		for c := range req.Scale.PerPod {
			pod, ctr := podName(p), scaleContainer(c)
			path := filepath.Join(req.Scale.Dir, req.NS, pod, ctr+".log")
			out.add(checkContainerFile(req.NS+"/"+pod+"/"+ctr, h.k.Emitted(req.NS, pod, ctr), path))
		}
	}
	return out
}

// scaleCheck sums the exactness of containers' files: each emitted line exactly once, in
// order, nothing else, and no marker (the scenario gives kubelogd no reason for one).
type scaleCheck struct {
	Containers int `json:"containers"`
	Exact      int `json:"exact"`
	Lines      int `json:"lines"`     // emitted lines compared
	Collected  int `json:"collected"` // application lines in the files
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	Reordered  int `json:"reordered"`
	Unexpected int `json:"unexpected"`
	Markers    int `json:"markers"`
	Unreadable int `json:"unreadable"` // files missing or not parsed
	// Failures describes the first containers that were not exact.
	Failures []string `json:"failures,omitempty"`
}

// scaleFailuresShown bounds the failures kept in a scaleCheck.
const scaleFailuresShown = 5

func (s *scaleCheck) add(o scaleCheck) {
	s.Containers += o.Containers
	s.Exact += o.Exact
	s.Lines += o.Lines
	s.Collected += o.Collected
	s.Lost += o.Lost
	s.Duplicated += o.Duplicated
	s.Reordered += o.Reordered
	s.Unexpected += o.Unexpected
	s.Markers += o.Markers
	s.Unreadable += o.Unreadable
	for _, f := range o.Failures {
		if len(s.Failures) < scaleFailuresShown {
			s.Failures = append(s.Failures, f)
		}
	}
}

// checkContainerFile judges one container's file (with its backups, if kubelogd rotated
// it) against the emitted lines with the oracle; name labels a failure.
func checkContainerFile(name string, emitted []string, path string) scaleCheck {
	out := scaleCheck{Containers: 1, Lines: len(emitted)}
	lines, markers, err := oracle.ReadRotated(path, "timestamped")
	if err == nil {
		if _, serr := os.Stat(path); serr != nil && len(lines)+len(markers) == 0 {
			err = serr // neither the file nor a backup: never written
		}
	}
	if err != nil {
		out.Unreadable, out.Lost = 1, len(emitted)
		out.Failures = []string{fmt.Sprintf("%s: %v", name, err)}
		return out
	}
	r := oracle.Compare(emitted, lines)
	r.Markers = markers
	out.Collected, out.Markers = len(lines), len(markers)
	out.Lost, out.Duplicated, out.Reordered, out.Unexpected = len(r.Lost), len(r.Duplicated), len(r.Reordered), len(r.Unexpected)
	if r.OK() && len(markers) == 0 {
		out.Exact = 1
		return out
	}
	s := r.String()
	if ls := strings.Split(s, "\n"); len(ls) > 6 {
		s = strings.Join(append(slices.Clip(ls[:6]), fmt.Sprintf("  … %d more lines of the report", len(ls)-6)), "\n")
	}
	out.Failures = []string{name + ": " + s}
	return out
}
