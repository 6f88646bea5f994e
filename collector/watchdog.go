package collector

import (
	"bytes"
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/sink"
)

// instanceGrace is how long a stream may stay open after the pod status showed that its
// instance was replaced or exited; the kubelet ends such a follow within about a second.
const instanceGrace = 3 * time.Second

// replayIdle is how long a stream may pause while replayed lines are held unverified.
const replayIdle = 2 * time.Second

// resumePoint is what a probe needs to know about the lines written so far.
type resumePoint struct {
	since   *metav1.Time
	skip    int64
	started bool
	// byContent: the stream was resumed by content (sink.Cursor.ByContent), so skip means
	// nothing; last identifies the last line written.
	byContent bool
	last      pendingLine
}

// watchdog guards one open stream. Quiet streams are normal, so silence alone proves
// nothing: after StallTimeout without a byte it probes with a non-follow read from the
// cursor. If the kubelet has more lines than were written the stream is stalled and is
// cancelled; if not, the stream is quiet and the next probe waits twice as long, so that
// thousands of idle containers cost few requests. It also ends the stream after its
// jittered maximum lifetime, before the kubelet's own write timeout cuts it mid-line.
//
// It has no goroutine of its own: time.AfterFunc runs each check (and a probe) on a
// short-lived goroutine, one check at a time, so an idle stream costs two timers, not a
// stack. stop waits for a check that runs.
type watchdog struct {
	lastRead atomic.Int64                // UnixNano of the last byte read
	point    atomic.Pointer[resumePoint] // published by the owner after each flush
	// replaying is set while replayed lines are held unverified. A follow stream that
	// goes quiet then is most likely serving another instance than the cursor's (the
	// kubelet serves the container's current instance, and its restart can reach the
	// stream before the pod status does): it is ended after replayIdle so the status can
	// decide, instead of holding lines until more arrive.
	replaying atomic.Bool
	// answering is set at the stream's first byte. Until then a replay is not quiet but
	// not yet begun: the kubelet may take seconds to find sinceTime in a large file, or
	// be busy, and cutting it then would only ask again.
	answering atomic.Bool
	// instanceGone is when (UnixNano) the pod status first showed that the stream's
	// instance was replaced or had exited; 0 while it runs. Set by the reconcile loop.
	instanceGone atomic.Int64

	ctx              context.Context
	cancel           context.CancelCauseFunc
	t                *target
	follow, previous bool
	slow, fast       time.Duration // check intervals while idle, and while something is pending
	// slot is the budget pool of the follow slot the stream holds (see budget), "" if none.
	slot string

	mu       sync.Mutex
	stopped  bool
	check    *time.Timer // armed at most once at a time; a running check re-arms it
	lifetime *time.Timer
	pending  sync.WaitGroup // 1 while the check timer is armed or its check runs
	// Only the running check touches these.
	interval  time.Duration
	lastProbe int64
}

// startWatchdog arms the guard; stop must be called when the stream ends.
func (t *target) startWatchdog(ctx context.Context, cancel context.CancelCauseFunc, follow, previous bool) *watchdog {
	cfg := &t.c.cfg
	w := &watchdog{ctx: ctx, cancel: cancel, t: t, follow: follow, previous: previous, interval: cfg.StallTimeout}
	if follow && !previous {
		w.slot = t.slot
	}
	// Tick slowly while the stream is merely idle (thousands of idle streams must cost
	// next to nothing) and fast while a replay or an instance change is pending.
	w.slow = max(cfg.StallTimeout/4, 10*time.Millisecond)
	w.fast = min(w.slow, replayIdle/4)
	w.lastRead.Store(cfg.Now().UnixNano())
	t.publish(w)
	if follow && cfg.MaxStreamLifetime > 0 {
		// Jitter spreads the reopen of streams that started together.
		d := cfg.MaxStreamLifetime - time.Duration(rand.Int64N(int64(cfg.MaxStreamLifetime/10)+1))
		w.lifetime = time.AfterFunc(d, func() { cancel(errLifetime) })
	}
	w.mu.Lock()
	w.pending.Add(1)
	w.check = time.AfterFunc(w.slow, w.run)
	w.mu.Unlock()
	return w
}

// stop disarms the guard and waits for a check that is running.
func (w *watchdog) stop() {
	w.mu.Lock()
	w.stopped = true
	if w.lifetime != nil {
		w.lifetime.Stop()
	}
	if w.check.Stop() {
		w.pending.Done() // its check will not run
	}
	w.mu.Unlock()
	w.pending.Wait()
}

// run is one check; it re-arms the timer unless it ended the stream or the guard stopped.
func (w *watchdog) run() {
	w.mu.Lock()
	stopped := w.stopped
	w.mu.Unlock()
	if stopped {
		w.pending.Done() // fired as stop came: stop waits for this
		return
	}
	again := w.inspect()
	w.mu.Lock()
	defer w.mu.Unlock()
	if again && !w.stopped {
		// Read now, after the check: hurry may have come while it ran.
		next := w.slow
		if w.instanceGone.Load() != 0 || w.replaying.Load() {
			next = w.fast
		}
		w.check.Reset(next)
		return
	}
	w.pending.Done()
}

// inspect checks the stream once. It returns false once it cancelled the stream, or the
// stream's context is done.
func (w *watchdog) inspect() bool {
	if w.ctx.Err() != nil {
		return false
	}
	t, cfg := w.t, &w.t.c.cfg
	now := cfg.Now()
	if at := w.instanceGone.Load(); at != 0 && now.Sub(time.Unix(0, at)) >= instanceGrace {
		// The pod status says this instance was replaced or ended, yet its stream is
		// still open: a follow of an exited container ends within a second, so this
		// one is stuck (a stalled connection, a kubelet that died).
		w.cancel(errStalled)
		return false
	}
	read := w.lastRead.Load()
	idle := now.Sub(time.Unix(0, read))
	if w.replaying.Load() && w.answering.Load() && idle >= replayIdle {
		w.cancel(errShortReplay)
		return false
	}
	if w.slot != "" && !w.replaying.Load() && idle >= cfg.StallTimeout && t.c.budget.contended(w.slot) {
		// Idle for a stall timeout while a busier container is polled for want of the
		// slot this stream holds: it gives the slot up and is polled itself.
		w.cancel(errDemoted)
		return false
	}
	if read > w.lastProbe {
		w.interval = cfg.StallTimeout // bytes flowed since the last probe: probe promptly
	} else {
		idle = now.Sub(time.Unix(0, w.lastProbe))
	}
	if idle < w.interval {
		return true
	}
	if !w.follow {
		// A read without follow streams what exists without pausing.
		w.cancel(errStalled)
		return false
	}
	stalled, err := t.probe(w.ctx, w.point.Load(), w.previous)
	if err == nil && !stalled {
		var hidden bool
		if hidden, err = t.probeTail(w.ctx, w.point.Load(), w.previous); hidden {
			w.cancel(errClockStep)
			return false
		}
	}
	if err != nil && w.ctx.Err() == nil {
		// The kubelet does not answer a fresh request either: reconnect (and back off).
		t.logger.Info("stall probe failed", "err", err)
		w.cancel(errStalled)
		return false
	}
	if stalled {
		w.cancel(errStalled)
		return false
	}
	w.interval = min(2*w.interval, 32*cfg.StallTimeout)
	w.lastProbe = cfg.Now().UnixNano()
	return true
}

// publish records where a probe should start, after lines were written.
func (t *target) publish(w *watchdog) {
	if w == nil {
		return
	}
	cur := t.out.Cursor()
	p := &resumePoint{last: pendingLine{ts: cur.LastTime, hash: cur.LastHash}}
	if since, skip, ok := cur.Resume(); ok {
		st := metav1.NewTime(since)
		p.since, p.skip, p.started = &st, skip, true
		if cur.ByContent() {
			p.byContent, p.since = true, nil
			if !cur.NotBefore.IsZero() {
				nb := metav1.NewTime(cur.NotBefore)
				p.since = &nb
			}
		}
	} else if !cur.NotBefore.IsZero() {
		nb := metav1.NewTime(cur.NotBefore)
		p.since = &nb
	}
	w.point.Store(p)
}

// probe reads the instance's log without follow from the resume point and reports whether
// it holds more lines than were written from there.
func (t *target) probe(ctx context.Context, p *resumePoint, previous bool) (bool, error) {
	if p == nil || p.byContent {
		return false, nil // see probeTail
	}
	ctx, cancel := context.WithTimeout(ctx, t.c.cfg.ProbeTimeout)
	defer cancel()
	opts := &corev1.PodLogOptions{Container: t.container, Previous: previous, Timestamps: true, SinceTime: p.since}
	body, err := t.c.pods.Pods(t.ns).GetLogs(t.pod, opts).Stream(ctx)
	if err != nil {
		return false, err
	}
	defer body.Close()
	var lines int64
	buf := make([]byte, 32<<10)
	for {
		n, err := body.Read(buf)
		for _, b := range buf[:n] {
			if b == '\n' {
				lines++
			}
		}
		if lines > p.skip {
			return true, nil
		}
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// probeTail reads the newest line of the instance's log, without sinceTime, and reports
// whether it shows lines the stream cannot deliver: the kubelet drops lines stamped before
// sinceTime wherever they are, so a node clock that stepped back after stamping lines in
// its future hides every line logged since from a stream resumed at a second, and from
// probe too. For a stream resumed by content, any newest line other than the last one
// written means lines the stream did not deliver.
func (t *target) probeTail(ctx context.Context, p *resumePoint, previous bool) (bool, error) {
	if p == nil || !p.started {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.c.cfg.ProbeTimeout)
	defer cancel()
	one := int64(1)
	opts := &corev1.PodLogOptions{Container: t.container, Previous: previous, Timestamps: true, TailLines: &one}
	body, err := t.c.pods.Pods(t.ns).GetLogs(t.pod, opts).Stream(ctx)
	if err != nil {
		return false, err
	}
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, maxLineBytes))
	if err != nil {
		return false, err
	}
	ts, _, text, ok := parseLine(bytes.TrimSuffix(b, []byte("\n")))
	if !ok || ts.Equal(p.last.ts) && sink.HashLine(text) == p.last.hash {
		return false, nil
	}
	if p.byContent {
		return true, nil
	}
	return p.since != nil && ts.Before(p.since.Time), nil
}

// countingReader notes the time of every read that returns bytes.
type countingReader struct {
	r   io.Reader
	w   *watchdog
	now func() time.Time
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.w.lastRead.Store(c.now().UnixNano())
		if !c.w.answering.Load() {
			c.w.answering.Store(true)
		}
	}
	return n, err
}

// startReplay tells the guard that replayed lines are held unverified; it checks soon.
// Like publish and endReplay, it does nothing on a nil guard (a body read without one).
func (w *watchdog) startReplay() {
	if w == nil {
		return
	}
	w.replaying.Store(true)
	w.hurry()
}

// endReplay tells the guard that no replayed line is held unverified any more.
func (w *watchdog) endReplay() {
	if w != nil {
		w.replaying.Store(false)
	}
}

// instanceEnded tells the guard that the pod status no longer shows the stream's instance
// running; it checks again soon.
func (w *watchdog) instanceEnded(now time.Time) {
	if !w.instanceGone.CompareAndSwap(0, now.UnixNano()) {
		return
	}
	w.hurry()
}

// hurry moves the next check to the fast interval.
func (w *watchdog) hurry() {
	w.mu.Lock()
	defer w.mu.Unlock()
	// A check that is running re-arms with the fast interval itself.
	if !w.stopped && w.check.Stop() {
		w.check.Reset(w.fast)
	}
}
