package collector

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// instance is what a target keeps about reading the cursor's container instance, from one
// request to the next. beginAt starts each instance with the zero value.
type instance struct {
	// everRead is set once a request for the instance was answered with a body; a pod
	// deleted before that had its log never read.
	everRead bool
	// answered is set when the last request got a body.
	answered bool
	// ended is why the last request for the instance that was answered with a body
	// ended: whether its log was read to the end.
	ended string
	// retry is why the last request for the instance ended, answered or not; the next
	// request for it is counted as a reconnect with that reason.
	retry string
	// fragment remembers an unterminated last line seen at the end of a non-follow read;
	// it is written only when a second read ends with it too (see consumer.take).
	fragment *pendingLine
	// quiet is what the last unverified replay held when the kubelet sent no more: a poll
	// that finds the same settles the replay (see readRunning).
	quiet *replaySig
	// checkServed: the instance began after a restart seen while the target ran. A read
	// by pod name serves whatever pod and instance of that name the API server and the
	// kubelet hold at that moment: if the pod was deleted and created again (a StatefulSet
	// pod) or restarted again, and the watch has not said so, a first read of this instance,
	// which has no replay to check against what was written, would write another's lines
	// here. So before such a read writes anything, the pod is fetched (see checkServed).
	checkServed bool
	// confirmed: the last read, a follow or a read to the end, ended cleanly where the read
	// before it did. One clean end proves nothing (a kubelet that restarts, or an API
	// server, ends its streams cleanly); a pod deleted before a second read agreed gets
	// a gap marker.
	confirmed bool
	// endByPoll: end was set by a poll.
	endByPoll bool
	// end is where the cursor stood when the last read ended cleanly, if the read after it
	// has not ended otherwise: a read to the end that ends there again confirms the end of
	// the instance's log (see endsAgain).
	end *endPos
	// settled is where the cursor stood after a replay was settled with a gap marker
	// because the kubelet no longer has the last line written: a read from there replays
	// nothing to check, or every read would find the same gap again and mark it again
	// (soak seed 690359248: hundreds of markers for one gap, two reads apart).
	settled *endPos
}

// endPos is where a read left the cursor: how many lines, the last of them this one, and
// how much of a line written in parts.
type endPos struct {
	lines     int64
	last      pendingLine
	partBytes int64
}

// endsAgain is told how the read that just ended, ended (clean: its body ended without
// error) and reports whether it ended cleanly where the read before it did. The API server
// ends its response cleanly when the kubelet's breaks (it ignores the error of its copy),
// so one clean end of a read without follow does not prove the instance's log ends there;
// two that agree do, with no line written in between.
func (t *target) endsAgain(clean bool) bool {
	prev := t.inst.end
	t.inst.end = nil
	if !clean {
		return false
	}
	pos := posOf(t.out.Cursor())
	t.inst.end = &pos
	return prev != nil && *prev == pos
}

// posOf is where the cursor stands.
func posOf(cur *sink.Cursor) endPos {
	pos := endPos{lines: cur.Lines, last: pendingLine{ts: cur.LastTime, hash: cur.LastHash}}
	if cur.Partial != nil {
		pos.partBytes = cur.Partial.Bytes
	}
	return pos
}

// refreshPod replaces the target's pod state with the pod as the API server has it now.
// It fails if the pod cannot be fetched or is another pod of the same name (the informer
// will tell about that one).
func (t *target) refreshPod(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, t.c.cfg.ProbeTimeout)
	defer cancel()
	return t.adopt(stateOf(t.c.pods.Pods(t.ns).Get(ctx, t.pod, metav1.GetOptions{})))
}

// stateOf is what a target keeps of a pod fetched (informer.FromPod), or the fetch's error.
func stateOf(pod *corev1.Pod, err error) (informer.Pod, error) {
	if err != nil {
		return informer.Pod{}, err
	}
	return informer.FromPod(pod), nil
}

// adopt is refreshPod's end: it takes the state of the pod fetched, or the fetch's error.
func (t *target) adopt(p informer.Pod, err error) error {
	if err != nil {
		t.logger.Debug("cannot refresh pod status", "err", err)
		return err
	}
	if p.UID != t.snapshot().UID {
		return fmt.Errorf("%w (%s)", errOtherPod, p.UID)
	}
	t.update(p)
	return nil
}

// checkInstance is asked before a replay that does not contain the last line written is
// settled with a gap marker. A request without previous=true is served from the
// container's current instance of the pod of that name: if the container restarted, or
// the pod was recreated, and the informer has not said so yet (a blind or lagging watch),
// the replay is another instance's log, not a rotated one. The pod as the API server has
// it now decides; held are the lines the replay would release. It returns nil when the
// replay is the cursor's instance, errInstanceReplaced when the fetched status names a
// newer instance, and errShortReplay when it cannot tell (the fetch failed, the pod of
// that name is another one or gone, or the status still names the cursor's instance
// although it has exited before the held lines were logged): the lines are not settled
// and the stream is read again after a backoff.
func (t *target) checkInstance(held []heldLine) error {
	// Not the request's context: the watchdog may be cancelling the request right now.
	if err := t.refreshPod(t.ctx); err != nil {
		t.logger.Info("cannot check the pod before settling a replay; retrying", "err", err)
		return errShortReplay
	}
	latest := t.snapshot()
	ct := latest.Container(t.container)
	cur := t.out.Cursor()
	switch {
	case ct == nil || !ct.Started():
		return errShortReplay
	case ct.ContainerID != cur.ContainerID:
		return errInstanceReplaced
	case ct.Terminated != nil && len(held) > 0 && !ct.Terminated.FinishedAt.IsZero() &&
		held[0].ts.After(ct.Terminated.FinishedAt.Add(time.Second)):
		// The kubelet already serves a newer instance that its status report to the API
		// server does not show yet.
		return errShortReplay
	}
	return nil
}

// checkServed is asked, once the API server answered a first read of an instance that
// began after a restart (instance.checkServed), whether the pod and instance it served are
// the cursor's. A pod fetched after the request was answered that still has the target's
// UID had it when the request was served too (a UID never comes back), and its status
// names the instance the kubelet serves: surely when the fetch began statusLag or more
// after the answer (as an early check's does, see earlyCheck); sooner, if the kubelet's
// status report of a restart just before the request has reached the API server by then.
// It returns nil when they are the cursor's, errInstanceReplaced when the container
// restarted again (the target's state now says so), and errOtherPod or the fetch's error
// otherwise: the read is not consumed, and is made again after a backoff (the watch will
// tell of a deletion meanwhile). The fetch may be shared with other checks (podFetches).
func (t *target) checkServed(previous bool) error {
	if err := t.adopt(stateOf(t.c.fetchPod(t.ctx, t.ns, t.pod))); err != nil {
		return err
	}
	if previous {
		return t.previousIsCursors()
	}
	latest := t.snapshot()
	if ct := latest.Container(t.container); ct != nil && ct.ContainerID != t.out.Cursor().ContainerID {
		return errInstanceReplaced
	}
	return nil
}

// checkReplayed asks the API server, before a replay without the last line written is
// settled with a gap marker, whether the instance the kubelet served is the cursor's.
func (t *target) checkReplayed(held []heldLine, previous bool) error {
	if previous {
		return t.checkPrevious()
	}
	return t.checkInstance(held)
}

// firstRead is a read that may write the first line of its instance, which nothing has
// checked yet (see checkFirstLine). early, if set, is the check begun before that line.
type firstRead struct {
	previous bool
	early    *earlyCheck
}

// statusLag is how long after the kubelet began to serve a newer instance its status
// report to the API server may still name the older one (see servedAllowance).
const statusLag = 5 * time.Second

// earlyQuiet is how long after a follow read was answered its first-line check is fetched
// if no line came by then (earlyCheck): statusLag, so that the fetch sees any restart that
// came before the answer.
const earlyQuiet = statusLag

// earlyCheck is a first-line check's fetch made ahead of the first line. A follow read
// that delivers nothing after it was answered has no backlog: the container is new or
// quiet, its next line will be fresh and need the check (which the shortcut for old
// lines spares a backlog), and the line would wait for the fetch. A pod fetched
// statusLag or more after the request was answered names the instance the request was
// served from, whatever came later (checkServed), so the fetch is made while the read is
// quiet, and the line finds the verdict ready. A line that comes sooner is checked by a
// fetch of its own (take says so), and no early fetch begins after it.
//
// The fetch runs on a goroutine of its own, with the request's context. The state it
// fetched is handed to the target at once (update, as an informer event is), so that no
// state older than the informer's is adopted later; the early check keeps only the
// verdict. readOnce stops the goroutine (cancel) and waits for it (exited).
type earlyCheck struct {
	mu      sync.Mutex
	taken   bool // the read's first line came: no fetch begins after this
	fetched bool // the fetch began: verdict and err are set once done is closed
	done    chan struct{}
	exited  chan struct{}
	cancel  context.CancelFunc
	// verdict is checkServed's on the pod fetched: nil, errInstanceReplaced or
	// errOtherPod; err is the fetch's error, after which the line is checked by a fetch
	// of its own.
	verdict error
	err     error
}

// startEarlyCheck begins the wait for quiet, and then the fetch, of a first-line check of
// a follow read whose request was answered; ctx is the request's.
func (t *target) startEarlyCheck(ctx context.Context) *earlyCheck {
	ctx, cancel := context.WithCancel(ctx)
	e := &earlyCheck{done: make(chan struct{}), exited: make(chan struct{}), cancel: cancel}
	quiet, cursorID := t.c.earlyAfter(), t.out.Cursor().ContainerID
	go func() {
		defer close(e.exited)
		select {
		case <-ctx.Done():
			return
		case <-quiet:
		}
		e.mu.Lock()
		if e.taken {
			e.mu.Unlock()
			return
		}
		e.fetched = true
		e.mu.Unlock()
		defer close(e.done)
		p, err := stateOf(t.c.fetchPod(ctx, t.ns, t.pod))
		switch {
		case err != nil:
			e.err = err
		case p.UID != t.snapshot().UID:
			e.verdict = fmt.Errorf("%w (%s)", errOtherPod, p.UID)
		default:
			t.update(p)
			if ct := p.Container(t.container); ct != nil && ct.ContainerID != cursorID {
				e.verdict = errInstanceReplaced
			}
		}
	}()
	return e
}

// take is called by the read's goroutine when its first line comes, if the line needs
// checking. It returns the early fetch's verdict, waiting for it if the fetch is under
// way, and ok false if there is none to take: the fetch never began (and now never
// will), or it failed.
func (e *earlyCheck) take() (verdict error, ok bool) {
	if e == nil || !e.release() {
		return nil, false
	}
	<-e.done
	if e.err != nil {
		return nil, false
	}
	return e.verdict, true
}

// release says the read's first line came; no fetch begins after it, and the goroutine
// waiting for quiet ends at once rather than when the quiet would have (a follow that
// finds a backlog releases its check as soon as it was answered). It reports whether a
// fetch began before.
func (e *earlyCheck) release() (fetched bool) {
	if e == nil {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.taken = true
	if !e.fetched {
		e.cancel()
	}
	return e.fetched
}

// stop ends the early check's goroutine and waits for it.
func (e *earlyCheck) stop() {
	e.cancel()
	<-e.exited
}

// servedAllowance is how long before a pod status reached the API server the kubelet may
// have begun to serve a newer instance than that status names (the lag of its status
// reports), plus how far the node's clock may run behind kubelogd's (clockAllowance).
const servedAllowance = statusLag + clockAllowance

// checkFirstLine is asked before the first line of a read is written when nothing has
// checked which instance the read serves: an instance seen first at restartCount 0 (the
// backlog at start, a new pod), or a read from where a replay was settled with nothing
// (instance.settled). A read by pod name serves the instance the kubelet knows now; if
// the container restarted after the status that named the cursor's instance, the read
// serves the next one, and with nothing to replay there is nothing to tell (soak seed
// 690359248: a container that restarted between kubelogd's first list and its first read
// had the next instance's lines written as the first one's, whose own were lost). Every
// pod state the informer gives kubelogd is as of its start or later (its first list,
// which the API server's watch cache may serve a little late: servedAllowance covers
// it), and a newer instance begun before that, less servedAllowance, would be named in
// it: a line stamped earlier is the current instance's and costs no request. Not so for
// previous=true, which serves the last instance that ended, whose lines may be old
// however recently it ended: such reads are always checked. Otherwise the pod must name
// the cursor's instance: as fetched by f's early check if one began (earlyCheck), or as
// fetched now (checkServed).
func (t *target) checkFirstLine(ts time.Time, f *firstRead) error {
	if !f.previous && ts.Before(t.c.start.Add(-servedAllowance)) {
		f.early.release()
		return nil
	}
	err, early := f.early.take()
	if !early {
		err = t.checkServed(f.previous)
	}
	if err != nil {
		return fmt.Errorf("checking the pod before the first line of an instance: %w", err)
	}
	return nil
}

// verifyFirst runs the first-line check of the read in progress (t.firstRead), once,
// before rec is written.
func (t *target) verifyFirst(rec sink.Record) error {
	f := t.firstRead
	if f == nil || rec.Marker {
		return nil
	}
	if err := t.checkFirstLine(rec.Time, f); err != nil {
		return err
	}
	t.firstRead = nil
	return nil
}

// checkPrevious is checkInstance for a previous=true read, which the kubelet serves from
// the last instance that terminated: if the container restarted again and the informer
// has not said so yet, that is a newer instance than the cursor's, and the cursor's is no
// longer served at all (the loop writes a previous_gone gap for it, not a rotated one). It
// returns nil when the status names the cursor's instance as the last terminated,
// errInstanceReplaced when it names another, and errShortReplay when the pod cannot be
// fetched.
func (t *target) checkPrevious() error {
	if err := t.refreshPod(t.ctx); err != nil {
		t.logger.Info("cannot check the pod before settling a replay; retrying", "err", err)
		return errShortReplay
	}
	return t.previousIsCursors()
}

// previousIsCursors reports whether the target's state names the cursor's instance as the
// last terminated one (nil), or another (errInstanceReplaced).
func (t *target) previousIsCursors() error {
	latest := t.snapshot()
	ct := latest.Container(t.container)
	if ct == nil || ct.LastTerminated == nil || ct.LastTerminated.ContainerID != t.out.Cursor().ContainerID {
		return errInstanceReplaced
	}
	return nil
}
