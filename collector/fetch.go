package collector

import (
	"context"
	"errors"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// podFetches serves the checks of what a read served (checkServed, checkFirstLine), which
// need the pod as the API server has it after their read was answered. A check makes its
// own GET, at once, unless many checks of its namespace are under way together — the
// backlog of a fresh start on recent logs — and the namespace is not much larger than
// their number: then one LIST answers every check waiting for it, so that thousands of
// first reads cost a few requests rather than one each. The check that finds no LIST of
// its namespace in flight makes the next one, on its own goroutine, with its context.
type podFetches struct {
	mu sync.Mutex
	ns map[string]*nsFetches
	// listed is how many pods the last LIST of each namespace returned.
	listed map[string]int
}

// nsFetches is one namespace's: the checks under way, whether a LIST is in flight, the
// checks waiting for the next one, and idle, closed when the LIST in flight ends (a
// waiting check may make the next one). pods is how many pods of the namespace the
// collector collects, counted at podsAt.
type nsFetches struct {
	checks  int
	listing bool
	waiting []*podFetch
	idle    chan struct{}
	pods    int
	podsAt  time.Time
}

// podFetch is one check's request: done is closed once pod or err is set.
type podFetch struct {
	name string
	done chan struct{}
	pod  *corev1.Pod
	err  error
}

// listMinChecks is how many checks must be under way in a namespace before they share a
// LIST, and listMaxRatio how many of the namespace's collected pods a LIST may return per
// check under way (a LIST of a large namespace costs more than a few GETs).
const (
	listMinChecks = 8
	listMaxRatio  = 20
)

// fetchPod returns pod ns/name as the API server has it now: fetched after the call began.
func (c *Collector) fetchPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	f := &c.fetches
	f.mu.Lock()
	if f.ns == nil {
		f.ns = map[string]*nsFetches{}
	}
	q := f.ns[ns]
	if q == nil {
		q = &nsFetches{idle: make(chan struct{})}
		f.ns[ns] = q
	}
	q.checks++
	defer func() {
		f.mu.Lock()
		if q.checks--; q.checks == 0 && !q.listing && f.ns[ns] == q {
			delete(f.ns, ns)
		}
		f.mu.Unlock()
	}()
	if q.checks < listMinChecks || q.checks*listMaxRatio < c.podsIn(q, ns) {
		f.mu.Unlock()
		ctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
		defer cancel()
		c.metrics.podFetches.WithLabelValues(fetchGet).Inc()
		return c.pods.Pods(ns).Get(ctx, name, metav1.GetOptions{})
	}
	w := &podFetch{name: name, done: make(chan struct{})}
	q.waiting = append(q.waiting, w)
	for {
		select {
		case <-w.done:
			if errors.Is(w.err, context.Canceled) && ctx.Err() == nil {
				// The LIST was made by another check, which ended before it did: wait
				// for the next one.
				w = &podFetch{name: name, done: make(chan struct{})}
				q.waiting = append(q.waiting, w)
				continue
			}
			f.mu.Unlock()
			return w.pod, w.err
		default:
		}
		if !q.listing && ctx.Err() == nil {
			batch := q.waiting
			q.listing, q.waiting = true, nil
			f.mu.Unlock()
			c.listFetches(ctx, ns, batch)
			f.mu.Lock()
			q.listing = false
			close(q.idle)
			q.idle = make(chan struct{})
			continue // w is answered: it was in the batch
		}
		idle := q.idle
		f.mu.Unlock()
		select {
		case <-w.done:
		case <-idle:
		case <-ctx.Done():
		}
		f.mu.Lock()
		if ctx.Err() != nil {
			select {
			case <-w.done:
				f.mu.Unlock()
				return w.pod, w.err
			default:
			}
			for i, o := range q.waiting {
				if o == w {
					q.waiting = append(q.waiting[:i], q.waiting[i+1:]...)
					break
				}
			}
			f.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// listPageSize is how many pods one page of a shared LIST returns: a LIST of a namespace of
// thousands of pods is read in pages, so that kubelogd never holds the whole of it decoded
// at once, nor keeps a page alive for the checks that took one pod of it.
const listPageSize = 500

// listFetches answers batch, checks of namespace ns, with one LIST, read in pages.
func (c *Collector) listFetches(ctx context.Context, ns string, batch []*podFetch) {
	defer func() {
		for _, w := range batch {
			close(w.done)
		}
	}()
	want := make(map[string][]*podFetch, len(batch))
	for _, w := range batch {
		want[w.name] = append(want[w.name], w)
	}
	// A LIST without resourceVersion is a consistent read, as a GET is; its further
	// pages are read at the first one's resourceVersion.
	opts := metav1.ListOptions{Limit: listPageSize}
	pods, restarted := 0, false
	for {
		c.metrics.podFetches.WithLabelValues(fetchList).Inc()
		pctx, cancel := context.WithTimeout(ctx, c.cfg.ProbeTimeout)
		list, err := c.pods.Pods(ns).List(pctx, opts)
		cancel()
		if err != nil && apierrors.IsResourceExpired(err) && opts.Continue != "" && !restarted {
			// The continue token expired (etcd was compacted past the first page's
			// resourceVersion). Each check needs its pod as the API server had it after
			// the check began, not one snapshot of all: the pods found stay, and the LIST
			// begins again from a first page, once.
			restarted, opts.Continue, pods = true, "", 0
			continue
		}
		if err != nil {
			for _, w := range batch {
				w.err = err
			}
			return
		}
		pods += len(list.Items)
		for i := range list.Items {
			for _, w := range want[list.Items[i].Name] {
				p := list.Items[i] // a copy: the page is not kept alive by it
				w.pod = &p
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	// The namespace may hold far more pods than this kubelogd collects (--node, --shards,
	// selectors): the next decision counts them all.
	c.fetches.mu.Lock()
	if c.fetches.listed == nil {
		c.fetches.listed = map[string]int{}
	}
	c.fetches.listed[ns] = pods
	c.fetches.mu.Unlock()
	for _, w := range batch {
		if w.pod == nil {
			w.err = apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, w.name)
		}
	}
}

// podsIn is how many pods a LIST of namespace ns returns: as many as the last one did, or
// as the collector collects there (counted again at most once a second: the count walks
// every target), whichever is more. Called with the fetches' lock held.
func (c *Collector) podsIn(q *nsFetches, ns string) int {
	if now := time.Now(); now.Sub(q.podsAt) >= time.Second {
		pods := map[string]bool{}
		c.live.Range(func(_, v any) bool {
			if t := v.(*target); t.ns == ns {
				pods[t.pod] = true
			}
			return true
		})
		q.pods, q.podsAt = len(pods), now
	}
	return max(q.pods, c.fetches.listed[ns])
}
