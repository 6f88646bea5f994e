package collector

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	// errStalled: the kubelet has lines the open stream did not deliver (a dead node or
	// kubelet gives a stalled stream, not an error).
	errStalled = errors.New("stream stalled")
	// errLifetime: the stream reached its maximum lifetime and is reopened.
	errLifetime = errors.New("stream reached its maximum lifetime")
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
}

// watchdog guards one open stream. Quiet streams are normal, so silence alone proves
// nothing: after StallTimeout without a byte it probes with a non-follow read from the
// cursor. If the kubelet has more lines than were written the stream is stalled and is
// cancelled; if not, the stream is quiet and the next probe waits twice as long, so that
// thousands of idle containers cost few requests. It also ends the stream after its
// jittered maximum lifetime, before the kubelet's own write timeout cuts it mid-line.
type watchdog struct {
	lastRead atomic.Int64                // UnixNano of the last byte read
	point    atomic.Pointer[resumePoint] // published by the owner after each flush
	// replaying is set while replayed lines are held unverified. A follow stream that
	// goes quiet then is most likely serving another instance than the cursor's (the
	// kubelet serves the container's current instance, and its restart can reach the
	// stream before the pod status does): it is ended after replayIdle so the status can
	// decide, instead of holding lines until more arrive.
	replaying atomic.Bool
	// instanceGone is when (UnixNano) the pod status first showed that the stream's
	// instance was replaced or had exited; 0 while it runs. Set by the reconcile loop.
	instanceGone atomic.Int64
	// poke wakes the guard at once (capacity 1) when instanceGone is set.
	poke   chan struct{}
	cancel context.CancelCauseFunc
	done   chan struct{}
	wg     sync.WaitGroup
}

// startWatchdog starts the guard goroutine; stop must be called when the stream ends.
func (s *stream) startWatchdog(ctx context.Context, cancel context.CancelCauseFunc, follow, previous bool) *watchdog {
	w := &watchdog{cancel: cancel, done: make(chan struct{}), poke: make(chan struct{}, 1)}
	w.lastRead.Store(s.c.cfg.Now().UnixNano())
	s.publish(w)
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		w.run(ctx, s, follow, previous)
	}()
	return w
}

func (w *watchdog) stop() {
	close(w.done)
	w.wg.Wait()
}

func (w *watchdog) run(ctx context.Context, s *stream, follow, previous bool) {
	cfg := &s.c.cfg
	var lifetime <-chan time.Time
	if follow && cfg.MaxStreamLifetime > 0 {
		// Jitter spreads the reopen of streams that started together.
		d := cfg.MaxStreamLifetime - time.Duration(rand.Int64N(int64(cfg.MaxStreamLifetime/10)+1))
		t := time.NewTimer(d)
		defer t.Stop()
		lifetime = t.C
	}
	interval := cfg.StallTimeout
	// Tick slowly while the stream is merely idle (thousands of idle streams must cost
	// next to nothing) and fast while a replay or an instance change is pending.
	slow := max(cfg.StallTimeout/4, 10*time.Millisecond)
	fast := min(slow, replayIdle/4)
	tick := time.NewTicker(slow)
	defer tick.Stop()
	lastProbe := int64(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.done:
			return
		case <-lifetime:
			w.cancel(errLifetime)
			return
		case <-w.poke:
			tick.Reset(fast)
			continue
		case <-tick.C:
		}
		now := cfg.Now()
		if w.replaying.Load() || w.instanceGone.Load() != 0 {
			tick.Reset(fast)
		} else {
			tick.Reset(slow)
		}
		if at := w.instanceGone.Load(); at != 0 && now.Sub(time.Unix(0, at)) >= instanceGrace {
			// The pod status says this instance was replaced or ended, yet its stream is
			// still open: a follow of an exited container ends within a second, so this
			// one is stuck (a stalled connection, a kubelet that died).
			w.cancel(errStalled)
			return
		}
		read := w.lastRead.Load()
		idle := now.Sub(time.Unix(0, read))
		if w.replaying.Load() && idle >= replayIdle {
			w.cancel(errShortReplay)
			return
		}
		if read > lastProbe {
			interval = cfg.StallTimeout // bytes flowed since the last probe: probe promptly
		} else {
			idle = now.Sub(time.Unix(0, lastProbe))
		}
		if idle < interval {
			continue
		}
		if !follow {
			// A read without follow streams what exists without pausing.
			w.cancel(errStalled)
			return
		}
		stalled, err := s.probe(ctx, w.point.Load(), previous)
		if err != nil && ctx.Err() == nil {
			// The kubelet does not answer a fresh request either: reconnect (and back off).
			s.logger.Info("stall probe failed", "err", err)
			w.cancel(errStalled)
			return
		}
		if stalled {
			w.cancel(errStalled)
			return
		}
		interval = min(2*interval, 32*cfg.StallTimeout)
		lastProbe = cfg.Now().UnixNano()
	}
}

// publish records where a probe should start, after lines were written.
func (s *stream) publish(w *watchdog) {
	if w == nil {
		return
	}
	cur := s.file.Cursor()
	p := &resumePoint{}
	if since, skip, ok := cur.Resume(); ok {
		t := metav1.NewTime(since)
		p.since, p.skip, p.started = &t, skip, true
	} else if !cur.NotBefore.IsZero() {
		t := metav1.NewTime(cur.NotBefore)
		p.since = &t
	}
	w.point.Store(p)
}

// probe reads the instance's log without follow from the resume point and reports whether
// it holds more lines than were written from there.
func (s *stream) probe(ctx context.Context, p *resumePoint, previous bool) (bool, error) {
	if p == nil {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.ProbeTimeout)
	defer cancel()
	opts := &corev1.PodLogOptions{Container: s.container, Previous: previous, Timestamps: true, SinceTime: p.since}
	body, err := s.c.pods.Pods(s.ns).GetLogs(s.pod, opts).Stream(ctx)
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
	}
	return n, err
}

// instanceEnded tells the guard that the pod status no longer shows the stream's instance
// running.
func (w *watchdog) instanceEnded(now time.Time) {
	if w.instanceGone.CompareAndSwap(0, now.UnixNano()) {
		select {
		case w.poke <- struct{}{}:
		default:
		}
	}
}
