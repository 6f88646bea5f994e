package collector

import (
	"context"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// podFetches serves the first-line checks (checkFirstLine), which need the pod as the
// API server has it after their read was answered. A check that finds no fetch of its
// namespace in flight makes one for itself and for every check waiting in that namespace
// meanwhile: one GET each while few wait, one LIST of the namespace when many do (the
// backlog of a fresh start with recent logs), so that thousands of first reads cost a few
// requests rather than one each. No goroutine of its own: the fetch runs on the goroutine
// of the check that makes it, with its context.
type podFetches struct {
	mu sync.Mutex
	ns map[string]*nsFetches
}

// nsFetches is one namespace's: whether a fetch is in flight, the checks waiting for the
// next, and idle, closed when the fetch in flight ends (a waiting check may make the
// next one).
type nsFetches struct {
	busy    bool
	waiting []*podFetch
	idle    chan struct{}
}

// podFetch is one check's request: done is closed once pod or err is set.
type podFetch struct {
	name string
	done chan struct{}
	pod  *corev1.Pod
	err  error
}

// listMinWaiting is how many checks must wait in a namespace before one LIST answers them,
// and listMaxRatio how many of the namespace's collected pods a LIST may return per waiting
// check (a LIST of a large namespace for a few checks costs more than their GETs).
const (
	listMinWaiting = 4
	listMaxRatio   = 20
)

// fetchPod returns pod ns/name as the API server has it now: fetched after the call began.
func (c *Collector) fetchPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	f := &c.fetches
	w := &podFetch{name: name, done: make(chan struct{})}
	f.mu.Lock()
	if f.ns == nil {
		f.ns = map[string]*nsFetches{}
	}
	q := f.ns[ns]
	if q == nil {
		q = &nsFetches{idle: make(chan struct{})}
		f.ns[ns] = q
	}
	q.waiting = append(q.waiting, w)
	for {
		select {
		case <-w.done:
			f.mu.Unlock()
			return w.pod, w.err
		default:
		}
		if !q.busy {
			batch := q.waiting
			q.busy, q.waiting = true, nil
			f.mu.Unlock()
			c.answerFetches(ctx, ns, batch)
			f.mu.Lock()
			q.busy = false
			close(q.idle)
			q.idle = make(chan struct{})
			if len(q.waiting) == 0 {
				delete(f.ns, ns)
			}
			continue // w is answered: it was in the batch
		}
		idle := q.idle
		f.mu.Unlock()
		select {
		case <-w.done:
			return w.pod, w.err
		case <-idle:
		case <-ctx.Done():
			f.mu.Lock()
			for i, o := range q.waiting {
				if o == w {
					q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
					break
				}
			}
			f.mu.Unlock()
			return nil, ctx.Err()
		}
		f.mu.Lock()
	}
}

// answerFetches fetches the pods of batch, all of namespace ns, and answers each.
func (c *Collector) answerFetches(ctx context.Context, ns string, batch []*podFetch) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
	defer cancel()
	defer func() {
		for _, w := range batch {
			close(w.done)
		}
	}()
	if len(batch) < listMinWaiting || len(batch)*listMaxRatio < c.podsIn(ns) {
		for _, w := range batch {
			w.pod, w.err = c.pods.Pods(ns).Get(ctx, w.name, metav1.GetOptions{})
		}
		return
	}
	// A LIST without resourceVersion is a consistent read, as a GET is.
	list, err := c.pods.Pods(ns).List(ctx, metav1.ListOptions{})
	byName := map[string]*corev1.Pod{}
	if err == nil {
		for i := range list.Items {
			byName[list.Items[i].Name] = &list.Items[i]
		}
	}
	for _, w := range batch {
		switch p, ok := byName[w.name]; {
		case err != nil:
			w.err = err
		case ok:
			w.pod = p
		default:
			w.err = apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, w.name)
		}
	}
}

// podsIn is how many pods of namespace ns the collector collects now.
func (c *Collector) podsIn(ns string) int {
	pods := map[string]bool{}
	c.live.Range(func(_, v any) bool {
		if t := v.(*target); t.ns == ns {
			pods[t.pod] = true
		}
		return true
	})
	return len(pods)
}
