package collector

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// readMode is what a request for an instance's log is for.
type readMode int

const (
	// readFollow follows the running instance.
	readFollow readMode = iota
	// readToEnd reads what is left of an instance that has ended: where the body ends,
	// the instance's log ends.
	readToEnd
	// readPoll reads what the kubelet has of a running instance now, without follow (its
	// node cannot follow, or the container is quiet): the body's end says nothing about the
	// instance, a last line without newline is still being written, and a replay that
	// falls short is not final.
	readPoll
)

// readInstance makes one request for the cursor's instance and writes what it returns,
// then backs off as the outcome warrants. It reports whether the request was answered, so
// the caller can judge the instance's state afresh.
func (t *target) readInstance(ctx context.Context, p informer.Pod, ct *informer.Container, mode readMode, previous bool) bool {
	progress, err := t.readOnce(ctx, mode, previous)
	if progress {
		t.progress()
		t.aheadOfClock()
	}
	if ctx.Err() == nil {
		t.inst.retry = reasonFor(err)
		if t.inst.answered && mode != readPoll {
			// Only a request answered with a body says how the instance's log ended; a
			// refused one (a 404 for a pod deleted meanwhile) says nothing about it, nor
			// does a poll.
			t.inst.ended = t.inst.retry
		}
	}
	cur := t.out.Cursor()
	again := t.noteEnd(mode, err, err == nil && ctx.Err() == nil)
	switch {
	case ctx.Err() != nil:
		return false
	case err == nil && mode == readToEnd:
		// A read without follow returns everything up to the end of the instance's log,
		// unless the body was cut: the instance is done once a second read ends where
		// the one before it did (endsAgain). The loop reads again at once.
		if again {
			cur.Done = true
		}
		t.flush(ctx)
		return true
	case err == nil && mode == readPoll:
		// Not a reconnect: the next request, poll or follow, is no retry of this one.
		t.inst.retry = ""
		t.inst.quiet = nil
		t.flush(ctx)
		return true
	case errors.Is(err, errBodyError) && isInotifyExhausted(err.Error()):
		// Lines up to the error were written. The node cannot follow: its containers are
		// polled until it can (see nodes), rather than reconnected in a loop.
		t.sm.m.kubeletErrors.WithLabelValues(kubeletErrInotify).Inc()
		t.c.nodes.exhausted(p.Node)
		t.flush(ctx)
		return true
	case err == nil:
		// The kubelet ended a follow stream: the container stopped, the stream was cut (a
		// dying kubelet looks the same), or the log rotated. The pod status decides, so
		// loop. The next read is made at once unless this one only confirmed the end of
		// the one before (nothing came, it ended where that did): a pod deleted before a
		// second read agreed gets a gap marker (instance.confirmed), and a stream that
		// keeps ending is still no hot loop.
		if !progress && again {
			t.sleep(ctx)
		}
		return true
	case errors.Is(err, errNoPrevious):
		t.gap(gapPrevious, fmt.Sprintf("the rest of the log of instance %s (restartCount %d) is no longer available", shortID(cur.ContainerID), cur.RestartCount))
		cur.Done = true
		return true
	case errors.Is(err, errLifetime):
		t.logger.Debug("reopening stream at its maximum lifetime")
		return true
	case errors.Is(err, errDemoted):
		t.demote()
		return true
	case errors.Is(err, errInstanceReplaced):
		// refreshPod has put the new instance into the target's state: the loop reads the
		// old one's remainder with previous=true, then the new one from its start.
		t.logger.Info("container restarted before the pod watch said so; reading the previous instance first")
		return true
	case errors.Is(err, errShortReplay):
		// Not verified yet: read again after the backoff. Where the instance was in
		// doubt, the read loop has fetched the pod already (settle).
		t.logger.Debug("replay not verified; reading again", "err", err)
	case errors.Is(err, errStalled):
		t.logger.Warn("log stream stalled: the kubelet has lines it did not deliver; reconnecting")
	case errors.Is(err, errClockStep):
		// Resume by content from now on (sink.Cursor.ByContent), at once.
		t.logger.Warn("the kubelet holds lines stamped before the resume point, hidden from the stream (the node's clock stepped back?); resuming by content")
		cur.Unordered = true
		return true
	case errors.Is(err, errBodyError):
		t.sm.m.kubeletErrors.WithLabelValues(kubeletErrOther).Inc()
		t.logger.Info("log stream failed, will retry", "err", err)
	case apierrors.IsBadRequest(err) && strings.Contains(err.Error(), "waiting to start"):
		t.logger.Debug("container waiting to start", "err", err)
	case apierrors.IsForbidden(err):
		t.logger.Error("permission denied reading container log (needs get on pods/log)", "err", err)
		t.c.forbidden.Store(&forbiddenAt{msg: err.Error(), at: t.c.cfg.Now()})
	default:
		t.logger.Info("log stream failed, will retry", "err", err)
	}
	t.sleep(ctx)
	return false
}

// noteEnd records how the read that just ended (in mode, with err; clean: its body ended
// without error) left the instance's end, for the deletion rule (instance.confirmed). It
// reports whether the read confirms the end of the instance's log: it ended cleanly where
// the read before it did (endsAgain). A poll's end is no end of the instance's log, so a
// read that ends where a poll did confirms nothing (the container ran on after the poll),
// and a poll confirms nothing either. A refusal because the pod object is gone says
// nothing of its log: an end confirmed before it stands. Any other refusal (a restarting
// kubelet answers 404 for its pods) may follow a cut taken for an end, and takes the
// confirmation back.
func (t *target) noteEnd(mode readMode, err error, clean bool) (again bool) {
	again = t.endsAgain(clean) && !t.inst.endByPoll && mode != readPoll
	t.inst.endByPoll = mode == readPoll
	if t.inst.answered || !podGone(err) {
		t.inst.confirmed = again
	}
	return again
}

// request is one log request for the cursor's instance: its options, and what the read
// loop must know about where it resumes.
type request struct {
	mode     readMode
	previous bool
	opts     *corev1.PodLogOptions
	// since and skip are where the cursor resumes (sink.Cursor.Resume): the request
	// replays skip lines from since, the last of them the last line written. resuming is
	// false while nothing of the instance was written.
	since    time.Time
	skip     int64
	resuming bool
	// byContent: the replay is skipped by content, not by count (sink.Cursor.ByContent).
	byContent bool
	// settled: a replay from here was settled with a gap marker already (instance.settled):
	// every line the request returns is new.
	settled bool
}

func (q request) follow() bool { return q.mode == readFollow }

// sinced reports whether the request reads from a sinceTime. Such a stream may begin with
// the rest of a line whose first CRI record is stamped before it: ReadLogs skips that
// record but writes the next ones of the line without a timestamp (see
// tailOfSkippedLine). Not only at its start: timestamps are not monotonic (stdout and
// stderr, a partial line's records stamped as read), so such a rest may follow lines
// stamped at or after sinceTime; the kubelet then writes it in the middle of the body,
// and failing the stream on it would fail every resume from the same second, for good.
func (q request) sinced() bool { return q.opts.SinceTime != nil }

// newRequest builds the request for the cursor's instance. When the cursor has written
// lines of this instance already, the request resumes a margin before them, and the lines
// it replays are skipped by position and checked against the last line written.
func (t *target) newRequest(mode readMode, previous bool) request {
	cur := t.out.Cursor()
	q := request{mode: mode, previous: previous,
		opts: &corev1.PodLogOptions{Container: t.container, Follow: mode == readFollow, Previous: previous, Timestamps: true}}
	q.since, q.skip, q.resuming = cur.Resume()
	q.byContent = q.resuming && (cur.ByContent() || t.resumeAhead(cur))
	q.settled = q.resuming && t.inst.settled != nil && *t.inst.settled == posOf(cur)
	switch {
	case q.byContent && !cur.NotBefore.IsZero():
		st := metav1.NewTime(cur.NotBefore)
		q.opts.SinceTime = &st
	case q.byContent:
		// The whole current file: no second is safe to resume from (see Cursor.ByContent).
	case q.resuming:
		st := metav1.NewTime(q.since)
		q.opts.SinceTime = &st
	case !cur.NotBefore.IsZero():
		st := metav1.NewTime(cur.NotBefore)
		q.opts.SinceTime = &st
	case t.c.cfg.Since > 0:
		// Nothing of this instance was written yet: --since bounds how far back to go.
		// sinceTime is whole seconds on the wire, so the bound is whole seconds here too,
		// and the cursor keeps it so that a resume never reaches further back.
		cur.NotBefore = t.c.cfg.Now().Add(-t.c.cfg.Since).Truncate(time.Second)
		st := metav1.NewTime(cur.NotBefore)
		q.opts.SinceTime = &st
	}
	return q
}

// aheadOfClock marks the cursor for a resume by content (Cursor.Unordered) when the lines
// just written put its resume second ahead of kubelogd's clock: the node stamped them more
// than the margin ahead, and if its clock steps back, the lines it logs next are stamped
// before that second and a read from it would not see them (the kubelet drops them
// wherever they are). A follow stream still open delivers them, and its probe finds them
// when it is not; a poll has neither, and it resumes from the cursor every time — so the
// next request reads by content, and Observe clears the mark once a line reaches the
// newest second again. Nodes within the margin (2 s) of kubelogd's clock never set it.
func (t *target) aheadOfClock() {
	cur := t.out.Cursor()
	if cur.Lines > 0 && !cur.Unordered && t.resumesAfter(cur, 0) {
		cur.Unordered = true
	}
}

// clockAllowance is how far a node's timestamps may run ahead of kubelogd's clock before
// a resume second beyond them is taken for the mark of a clock that stepped back.
const clockAllowance = 5 * time.Second

// resumeAhead reports whether the cursor's resume second lies in the future: lines were
// stamped ahead of the present by a node whose clock then stepped back, and every line it
// logs now, stamped before that second, would be hidden by sinceTime (the kubelet drops
// such lines wherever they are in its file). A follow finds that out with its stall probe
// (errClockStep); a poll, or any request, must not need one: such a resume goes by content.
func (t *target) resumeAhead(cur *sink.Cursor) bool {
	return t.resumesAfter(cur, clockAllowance)
}

// resumesAfter reports whether the cursor's resume second lies more than allowance
// ahead of kubelogd's clock.
func (t *target) resumesAfter(cur *sink.Cursor, allowance time.Duration) bool {
	return cur.MaxSec-cur.MarginSec > t.c.cfg.Now().Add(allowance).Unix()
}

// checkAnswered is asked once a request was answered: what must be checked before its
// lines are written. A replay checks what the kubelet serves itself (checkReplayed). The
// first read of an instance begun after a restart has the pod fetched now (checkServed).
// Any other read either has nothing of its instance written yet, or is one from where a
// replay was settled, which replays nothing: checkFirst says that its first line is
// checked (see checkFirstLine).
func (t *target) checkAnswered(req request, previous bool) (checkFirst bool, err error) {
	switch {
	case req.resuming && !req.settled:
		return false, nil
	case t.inst.checkServed:
		if err := t.checkServed(previous); err != nil {
			return false, fmt.Errorf("checking the pod before a first read of its new instance: %w", err)
		}
		t.inst.checkServed = false
		return false, nil
	default:
		return true, nil
	}
}

// readOnce opens one log request and writes its lines until it ends (see consume). It
// owns the request: its context, which the watchdog cancels with a cause, and its body.
func (t *target) readOnce(ctx context.Context, mode readMode, previous bool) (progress bool, err error) {
	req := t.newRequest(mode, previous)
	if mode == readPoll {
		t.sm.m.polls.Inc()
	} else if t.inst.retry != "" && (req.follow() || t.inst.retry != reasonEOF) {
		// The same instance again: a reconnect, unless a follow that ended with its
		// container is now only being checked to its end.
		t.sm.m.reconnects.WithLabelValues(t.inst.retry).Inc()
	}
	t.inst.retry = ""
	t.inst.answered = false
	if req.follow() {
		// Deferred first, so run last: once the body is closed, and before the caller
		// handles the outcome (which may give the slot up).
		defer t.followEnded()
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	body, err := t.c.pods.Pods(t.ns).GetLogs(t.pod, req.opts).Stream(ctx)
	if err != nil {
		if previous && apierrors.IsBadRequest(err) && strings.Contains(err.Error(), "previous terminated container") {
			return false, errNoPrevious
		}
		return false, fmt.Errorf("opening log stream: %w", err)
	}
	defer body.Close()
	checkFirst, err := t.checkAnswered(req, previous)
	if err != nil {
		return false, err
	}
	if checkFirst {
		t.firstRead = &firstRead{previous: previous}
		if req.follow() && !previous {
			t.firstRead.early = t.startEarlyCheck(ctx)
			defer t.firstRead.early.stop()
		}
		defer func() { t.firstRead = nil }()
	}
	t.inst.everRead = true
	t.inst.answered = true
	if mode == readPoll {
		t.setState(statePolling)
	} else {
		t.setState(stateStreaming)
		t.sm.m.opened.Inc()
	}
	t.sm.m.streamsOpen.Inc()
	defer t.sm.m.streamsOpen.Dec()
	wd := t.startWatchdog(ctx, cancel, req.follow(), previous)
	defer wd.stop()
	if req.follow() && !previous {
		id := t.out.Cursor().ContainerID
		t.reading.Store(&openRead{containerID: id, wd: wd})
		defer t.reading.Store(nil)
		// The state may have changed between the decision to follow and now.
		p := t.snapshot()
		if ct := p.Container(t.container); ct == nil || ct.ContainerID != id || !ct.Running {
			wd.instanceEnded(t.c.cfg.Now())
		}
	}
	defer func() {
		// A stream the watchdog cancelled ends in a read error; report why instead.
		if cause := context.Cause(ctx); err != nil && (errors.Is(cause, errStalled) || errors.Is(cause, errLifetime) || errors.Is(cause, errShortReplay) || errors.Is(cause, errClockStep) || errors.Is(cause, errDemoted)) {
			err = cause
		}
	}()
	return t.consume(ctx, &countingReader{r: body, w: wd, now: t.c.cfg.Now}, req, wd)
}
