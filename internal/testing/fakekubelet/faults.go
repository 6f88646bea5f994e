package fakekubelet

import (
	"context"
	"fmt"
	"time"
)

// Fault hooks select containers by namespace, pod and container name; an empty name matches
// any, so ("", "", "") targets every container and ("ns", "p", "") every container of a pod.

// target selects containers by names; an empty field matches any.
type target struct{ ns, pod, container string }

func (t target) matches(ns, pod, container string) bool {
	return (t.ns == "" || t.ns == ns) && (t.pod == "" || t.pod == pod) && (t.container == "" || t.container == container)
}

// faults holds the hooks that apply to future requests. Guarded by Kubelet.mu.
type faults struct {
	stalls   []target
	failures []*failure
	// forgotten are containers whose previous instance the kubelet no longer knows.
	forgotten []target
	// changed is closed and replaced whenever stalls change, to wake stalled writers.
	changed chan struct{}
	// scripts wait for the next follow streams of their containers (ScriptNext).
	scripts []*scripted
	// inotifyExhausted makes every follow stream end, at the end of the log, with the
	// error a kubelet out of inotify instances writes (ExhaustInotify).
	inotifyExhausted bool
}

// failure answers matching log requests with an HTTP error, n times or until a deadline.
type failure struct {
	target
	remaining int       // requests left to fail; unused when until is set
	until     time.Time // fail every request before this time, when set
	code      int
	body      string
}

func (f *faults) stalled(ns, pod, container string) bool {
	for _, t := range f.stalls {
		if t.matches(ns, pod, container) {
			return true
		}
	}
	return false
}

func (f *faults) forgets(ns, pod, container string) bool {
	for _, t := range f.forgotten {
		if t.matches(ns, pod, container) {
			return true
		}
	}
	return false
}

func (f *faults) notify() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// takeFailure returns the failure that applies to a request now, consuming one of its
// requests, and drops failures that are used up or expired.
func (f *faults) takeFailure(ns, pod, container string, now time.Time) *failure {
	var hit *failure
	kept := f.failures[:0]
	for _, fl := range f.failures {
		if !fl.until.IsZero() && !now.Before(fl.until) {
			continue // expired
		}
		if hit == nil && fl.matches(ns, pod, container) {
			hit = fl
			if fl.until.IsZero() {
				fl.remaining--
				if fl.remaining == 0 {
					continue
				}
			}
		}
		kept = append(kept, fl)
	}
	f.failures = kept
	return hit
}

// CutStreams abruptly ends the open log streams of the selected containers: the connection
// is closed without the end of the chunked body (HTTP/1.1) or the stream is reset (HTTP/2).
// Through the apiserver's proxy the client sees a clean EOF. With midLine the cut waits for
// the next line the stream sends, writes only its first half, and then cuts, so the client
// gets a torn line. It returns the number of streams affected.
func (k *Kubelet) CutStreams(namespace, pod, container string, midLine bool) int {
	t := target{namespace, pod, container}
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for s := range k.streams {
		if !s.matches(t) {
			continue
		}
		n++
		if midLine {
			s.midCut = true
		} else {
			s.end(endCut)
		}
	}
	return n
}

// Stall stops (on) or resumes (off) the log streams of the selected containers: open streams
// stop sending bytes and new ones do not even send their response headers, while every
// connection stays open, as with a node that stopped answering. Turning a stall off removes
// the stalls set with exactly these names; ("", "", "", false) removes them all.
func (k *Kubelet) Stall(namespace, pod, container string, on bool) {
	t := target{namespace, pod, container}
	k.mu.Lock()
	defer k.mu.Unlock()
	if on {
		k.faults.stalls = append(k.faults.stalls, t)
	} else {
		kept := k.faults.stalls[:0]
		for _, s := range k.faults.stalls {
			if s != t && t != (target{}) {
				kept = append(kept, s)
			}
		}
		k.faults.stalls = kept
	}
	k.faults.notify()
}

// StallOpen stops the log streams of the selected containers that are open now, and only
// those: they send nothing more while their connections stay open, as a stream whose reader
// on the node got stuck, while new requests (a client's probe or reconnect) are served
// normally. ResumeOpen or ResetFaults lets them go on; a stalled stream also ends when its
// client goes away or a hook ends it. It returns the number of streams stalled.
func (k *Kubelet) StallOpen(namespace, pod, container string) int {
	return k.setStalled(target{namespace, pod, container}, true)
}

// ResumeOpen lets the streams of the selected containers that StallOpen stopped send again.
// It returns the number of streams resumed.
func (k *Kubelet) ResumeOpen(namespace, pod, container string) int {
	return k.setStalled(target{namespace, pod, container}, false)
}

func (k *Kubelet) setStalled(t target, on bool) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for s := range k.streams {
		if s.matches(t) && s.stalled != on {
			s.stalled = on
			n++
		}
	}
	k.faults.notify()
	return n
}

// ForgetPrevious makes the kubelet answer previous=true for the selected containers as if
// they had no previous instance, with 400 `previous terminated container "c" in pod "p" not
// found`, while the pod status in the API still names it: the kubelet's own status lost the
// instance (as after a kubelet restart). Requests without previous are not affected;
// ResetFaults undoes it.
func (k *Kubelet) ForgetPrevious(namespace, pod, container string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults.forgotten = append(k.faults.forgotten, target{namespace, pod, container})
}

// FailNext makes the next n log requests for the selected containers answer an HTTP error
// with code and body, before anything else is checked; for example 404 with
// `pod "p" does not exist`, as a kubelet that just restarted answers.
func (k *Kubelet) FailNext(namespace, pod, container string, n int, code int, body string) {
	if n < 1 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults.failures = append(k.faults.failures, &failure{
		target: target{namespace, pod, container}, remaining: n, code: code, body: body,
	})
}

// FailFor makes every log request for the selected containers answer an HTTP error with
// code and body for the duration d from now.
func (k *Kubelet) FailFor(namespace, pod, container string, d time.Duration, code int, body string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults.failures = append(k.faults.failures, &failure{
		target: target{namespace, pod, container}, until: time.Now().Add(d), code: code, body: body,
	})
}

// InjectBodyError writes text into the body of the open log streams of the selected
// containers, without timestamp or newline, and ends them, as the kubelet does when it
// fails after the stream started (e.g. "failed to create fsnotify watcher: too many open
// files"). It returns the number of streams affected.
func (k *Kubelet) InjectBodyError(namespace, pod, container, text string) int {
	return k.endStreams(target{namespace, pod, container}, false, &injectedError{text: text})
}

// EndFollow ends the open follow streams of the selected containers cleanly (the body ends
// normally) while the containers keep running, as the kubelet's write timeout does after
// hours. It returns the number of streams affected.
func (k *Kubelet) EndFollow(namespace, pod, container string) int {
	return k.endStreams(target{namespace, pod, container}, true, endFollow)
}

func (k *Kubelet) endStreams(t target, followOnly bool, cause error) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for s := range k.streams {
		if s.matches(t) && (s.follow || !followOnly) {
			s.end(cause)
			n++
		}
	}
	return n
}

// ResetFaults removes every stall (StallOpen's included), pending failure and forgotten
// previous instance, and disarms mid-line cuts. Streams already ended stay ended.
func (k *Kubelet) ResetFaults() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.faults.stalls = nil
	k.faults.failures = nil
	k.faults.forgotten = nil
	k.faults.scripts = nil
	k.faults.inotifyExhausted = false
	for s := range k.streams {
		s.midCut = false
		s.stalled = false
	}
	k.faults.notify()
}

// OpenStreams is the number of log streams of the selected containers open now (including
// stalled ones still waiting to send their headers), not counting streams that a hook or the
// client already ended but whose handler has not returned yet.
func (k *Kubelet) OpenStreams(namespace, pod, container string) int {
	t := target{namespace, pod, container}
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	for s := range k.streams {
		if s.matches(t) && s.ctx.Err() == nil {
			n++
		}
	}
	return n
}

// MaxFollowStreams is the most follow streams that were ever open at once on this node:
// each holds an inotify instance of a real kubelet.
func (k *Kubelet) MaxFollowStreams() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.maxFollows
}

// SetCloseDelay makes the kubelet slow to see a follow's client go: such a stream still
// counts in FollowStreams and MaxFollowStreams for d after the client closed it, as a real
// kubelet's inotify instance outlives the close until the close has come through the API
// server's proxy and its read loop has noticed.
func (k *Kubelet) SetCloseDelay(d time.Duration) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.closeDelay = d
}

// FollowStreams is the number of follow streams open on this node now, counted as
// MaxFollowStreams counts them: from the request's arrival until its handler returned.
// A benchmark samples it to sum the streams open on several nodes at one time.
func (k *Kubelet) FollowStreams() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.follows
}

// WaitForStreams waits until at least n log streams of the selected containers are open.
func (k *Kubelet) WaitForStreams(ctx context.Context, namespace, pod, container string, n int) error {
	return poll(ctx, func() bool { return k.OpenStreams(namespace, pod, container) >= n }, func() error {
		return fmt.Errorf("waiting for %d open log streams of %s/%s/%s: %d open: %w",
			n, namespace, pod, container, k.OpenStreams(namespace, pod, container), context.Cause(ctx))
	})
}

// WaitForFollowers waits until at least n follow streams of the selected containers have
// read their file to the end and watch it for changes. Streams already ended (by EndFollow,
// say) do not count, even while their handler is still returning.
//
// The kubelet's ReadLogs sets up its fsnotify watcher only when it first reaches the end of
// the file: a rotation before that goes unnoticed and the stream keeps following the rotated
// file, missing every later line. A test that rotates a followed log waits here first.
func (k *Kubelet) WaitForFollowers(ctx context.Context, namespace, pod, container string, n int) error {
	t := target{namespace, pod, container}
	count := func() int {
		k.mu.Lock()
		defer k.mu.Unlock()
		got := 0
		for s := range k.streams {
			if s.matches(t) && s.follow && s.watching && s.ctx.Err() == nil {
				got++
			}
		}
		return got
	}
	return poll(ctx, func() bool { return count() >= n }, func() error {
		return fmt.Errorf("waiting for %d watching follow streams of %s/%s/%s: %d: %w",
			n, namespace, pod, container, count(), context.Cause(ctx))
	})
}

// poll checks cond every few milliseconds until it holds, or returns fail() once ctx ends.
func poll(ctx context.Context, cond func() bool, fail func() error) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fail()
		case <-tick.C:
		}
	}
	return nil
}

// Requests returns the log requests received for the selected containers, oldest first.
func (k *Kubelet) Requests(namespace, pod, container string) []Request {
	t := target{namespace, pod, container}
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []Request
	for _, r := range k.requests {
		if t.matches(r.Namespace, r.Pod, r.Container) {
			out = append(out, *r)
		}
	}
	return out
}
