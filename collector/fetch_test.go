package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
)

// TestFetchPodBatches: a first-line check makes its own GET at once while few are under
// way in its namespace; once many are (a fresh start on recent logs), the others share
// LISTs — every check waiting while one is in flight is answered by the next — each with
// its own pod, or "not found" for a pod the API server does not have.
func TestFetchPodBatches(t *testing.T) {
	for _, tc := range []struct {
		name    string
		getting int // checks whose GETs are held
		listing int // checks that come then: the first makes a LIST, held; the rest wait
		lists   int
		missing string
	}{
		{name: "few: a GET each, at once", getting: 3, missing: "p2"},
		{name: "many: the rest share LISTs", getting: listMinChecks - 1, listing: 5, lists: 2, missing: "p9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.getting + tc.listing
			var objs []runtime.Object
			for i := range n {
				if name := fmt.Sprintf("p%d", i); name != tc.missing {
					objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}})
				}
			}
			client := fake.NewClientset(objs...)
			releaseGets, releaseList := make(chan struct{}), make(chan struct{})
			var mu sync.Mutex
			gets, lists := 0, 0
			count := func(p *int) int { mu.Lock(); defer mu.Unlock(); return *p }
			// Not reactors: the fake clientset runs them under one lock.
			pods := heldPods{PodsGetter: client.CoreV1(),
				get: countHeld(&mu, &gets, releaseGets),
				list: func(context.Context) error {
					mu.Lock()
					lists++
					first := lists == 1
					mu.Unlock()
					if first {
						<-releaseList
					}
					return nil
				}}
			c := New(Config{}, pods, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			results := make(chan fetchResult, n)
			fetch := func(i int) {
				name := fmt.Sprintf("p%d", i)
				p, err := c.fetchPod(t.Context(), "ns", name)
				results <- fetchResult{name, p, err}
			}
			for i := range tc.getting {
				go fetch(i)
			}
			// All at once: none waits for another's GET.
			waitFor(t, "GETs under way", func() bool { return count(&gets) == tc.getting })
			if tc.listing > 0 {
				go fetch(tc.getting)
				waitFor(t, "a LIST under way", func() bool { return count(&lists) == 1 })
				for i := tc.getting + 1; i < n; i++ {
					go fetch(i)
				}
				waitFor(t, "checks waiting for the next LIST", func() bool {
					c.fetches.mu.Lock()
					defer c.fetches.mu.Unlock()
					return len(c.fetches.ns["ns"].waiting) == tc.listing-1
				})
				close(releaseList)
			}
			close(releaseGets)
			for range n {
				r := <-results
				switch {
				case r.name == tc.missing:
					if !podGone(r.err) {
						t.Errorf("%s: %v, want the API server's not found", r.name, r.err)
					}
				case r.err != nil || r.pod.Name != r.name:
					t.Errorf("%s: got %v, %v", r.name, r.pod, r.err)
				}
			}
			if count(&gets) != tc.getting || count(&lists) != tc.lists {
				t.Errorf("%d GETs and %d LISTs, want %d and %d", gets, lists, tc.getting, tc.lists)
			}
			c.fetches.mu.Lock()
			defer c.fetches.mu.Unlock()
			if n := len(c.fetches.ns); n != 0 {
				t.Errorf("%d namespaces left with fetches", n)
			}
		})
	}
}

// TestFetchPodOutlivesAnotherChecksList: the check that makes a shared LIST passes its own
// context; if it ends before the LIST does (its read ended), the LIST fails for every
// check it answers. Those whose own context lives on wait for the next LIST, which one of
// them makes; only the check that ended gets the error.
func TestFetchPodOutlivesAnotherChecksList(t *testing.T) {
	const waiters = 4
	n := listMinChecks + waiters
	var objs []runtime.Object
	for i := range n {
		name := fmt.Sprintf("p%d", i)
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}})
	}
	client := fake.NewClientset(objs...)
	type nameKey struct{}
	releaseGets, releaseList, firstList := make(chan struct{}), make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	gets, lists := 0, 0
	cancels := map[string]context.CancelFunc{}
	ended := "" // the check that led the second LIST, ended while it was held
	count := func(p *int) int { mu.Lock(); defer mu.Unlock(); return *p }
	pods := heldPods{PodsGetter: client.CoreV1(),
		get: countHeld(&mu, &gets, releaseGets),
		list: func(ctx context.Context) error {
			mu.Lock()
			lists++
			nth := lists
			mu.Unlock()
			switch nth {
			case 1: // held while the other checks come and wait for the next
				close(firstList)
				<-releaseList
			case 2: // its check ends while it is held
				mu.Lock()
				ended = ctx.Value(nameKey{}).(string)
				cancels[ended]()
				mu.Unlock()
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		}}
	c := New(Config{}, pods, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	results := make(chan fetchResult, n)
	fetch := func(i int) {
		name := fmt.Sprintf("p%d", i)
		ctx, cancel := context.WithCancel(context.WithValue(t.Context(), nameKey{}, name))
		defer cancel()
		mu.Lock()
		cancels[name] = cancel
		mu.Unlock()
		p, err := c.fetchPod(ctx, "ns", name)
		results <- fetchResult{name, p, err}
	}
	for i := range listMinChecks - 1 {
		go fetch(i)
	}
	waitFor(t, "GETs under way", func() bool { return count(&gets) == listMinChecks-1 })
	go fetch(listMinChecks - 1)
	<-firstList
	for i := range waiters {
		go fetch(listMinChecks + i)
	}
	waitFor(t, "checks waiting for the next LIST", func() bool {
		c.fetches.mu.Lock()
		defer c.fetches.mu.Unlock()
		return len(c.fetches.ns["ns"].waiting) == waiters
	})
	close(releaseList)
	close(releaseGets)
	for range n {
		r := <-results
		mu.Lock()
		wasEnded := r.name == ended
		mu.Unlock()
		switch {
		case wasEnded:
			if !errors.Is(r.err, context.Canceled) {
				t.Errorf("%s, whose check ended: %v, want context.Canceled", r.name, r.err)
			}
		case r.err != nil || r.pod.Name != r.name:
			t.Errorf("%s: got %v, %v", r.name, r.pod, r.err)
		}
	}
	if n := count(&lists); n < 3 {
		t.Errorf("%d LISTs, want 3 or more: the second, whose check ended, and the next", n)
	}
}

// countHeld returns a hook that counts its calls in n, under mu, and waits for release.
func countHeld(mu *sync.Mutex, n *int, release <-chan struct{}) func() {
	return func() {
		mu.Lock()
		*n++
		mu.Unlock()
		<-release
	}
}

// fetchResult is what one check's fetchPod returned.
type fetchResult struct {
	name string
	pod  *corev1.Pod
	err  error
}

// waitFor polls cond until it holds, for at most 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10 s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// heldPods calls get and list before the pods' Get and List, which may hold them.
type heldPods struct {
	corev1client.PodsGetter
	get  func()
	list func(ctx context.Context) error
}

func (h heldPods) Pods(ns string) corev1client.PodInterface {
	return heldPodInterface{h.PodsGetter.Pods(ns), h}
}

type heldPodInterface struct {
	corev1client.PodInterface
	h heldPods
}

func (p heldPodInterface) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error) {
	p.h.get()
	if err := ctx.Err(); err != nil {
		return nil, err // as a real request cancelled while it was held (the fake ignores ctx)
	}
	return p.PodInterface.Get(ctx, name, opts)
}

func (p heldPodInterface) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	if err := p.h.list(ctx); err != nil {
		return nil, err
	}
	return p.PodInterface.List(ctx, opts)
}

// TestListFetchesPages: a shared LIST is read in pages of listPageSize, each after the
// first with the continue token of the one before (which holds the first page's
// resourceVersion: the fake clientset does not model that), and every check finds its pod
// on whichever page holds it, or "not found"; the namespace's size counts every page.
func TestListFetchesPages(t *testing.T) {
	const n = 2*listPageSize + 100
	var objs []runtime.Object
	for i := range n {
		name := fmt.Sprintf("p%04d", i)
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}})
	}
	client := fake.NewClientset(objs...)
	var pages []metav1.ListOptions
	c := New(Config{}, pagedPods{PodsGetter: client.CoreV1(), pages: &pages}, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	names := []string{"p0000", "p0499", "p0500", "p1099", "p1099", "gone"}
	var batch []*podFetch
	for _, name := range names {
		batch = append(batch, &podFetch{name: name, done: make(chan struct{})})
	}
	c.listFetches(t.Context(), "ns", batch)
	for _, w := range batch {
		<-w.done
		switch {
		case w.name == "gone":
			if !podGone(w.err) {
				t.Errorf("%s: %v, want the API server's not found", w.name, w.err)
			}
		case w.err != nil || w.pod == nil || w.pod.Name != w.name:
			t.Errorf("%s: got %v, %v", w.name, w.pod, w.err)
		}
	}
	if len(pages) != 3 {
		t.Fatalf("%d LIST requests, want 3 pages", len(pages))
	}
	for i, o := range pages {
		want := "" // pagedPods' token is where the next page begins
		if i > 0 {
			want = strconv.Itoa(i * listPageSize)
		}
		if o.Limit != listPageSize || o.Continue != want || o.ResourceVersion != "" {
			t.Errorf("page %d: limit %d, continue %q, resourceVersion %q; want continue %q", i, o.Limit, o.Continue, o.ResourceVersion, want)
		}
	}
	if got := c.fetches.listed["ns"]; got != n {
		t.Errorf("the namespace counted %d pods, want %d", got, n)
	}
}

// TestListFetchesExpiredContinue: a continue token that expired (410 Expired: etcd was
// compacted between two pages) begins the LIST again from a first page, once; a second
// expiry fails the checks, which read again after a backoff.
func TestListFetchesExpiredContinue(t *testing.T) {
	const n = listPageSize + 10
	var objs []runtime.Object
	for i := range n {
		name := fmt.Sprintf("p%04d", i)
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}})
	}
	for _, tc := range []struct {
		name    string
		expire  int // how many requests with a continue token fail with 410
		pages   int
		wantErr bool
	}{
		{name: "expired once: begun again", expire: 1, pages: 4},
		{name: "expired twice: failed", expire: 2, pages: 4, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var pages []metav1.ListOptions
			expire := tc.expire
			c := New(Config{}, pagedPods{PodsGetter: fake.NewClientset(objs...).CoreV1(), pages: &pages, expire: &expire},
				nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			w := &podFetch{name: "p0509", done: make(chan struct{})}
			c.listFetches(t.Context(), "ns", []*podFetch{w})
			<-w.done
			if tc.wantErr {
				if !apierrors.IsResourceExpired(w.err) {
					t.Errorf("%v, want the 410", w.err)
				}
			} else if w.err != nil || w.pod == nil || w.pod.Name != "p0509" {
				t.Errorf("got %v, %v", w.pod, w.err)
			}
			if len(pages) != tc.pages {
				t.Errorf("%d LIST requests, want %d", len(pages), tc.pages)
			}
		})
	}
}

// pagedPods serves List in pages as the API server does (Limit, Continue; by name), and
// records each request's options. While *expire is above 0, a request with a continue
// token fails with 410 Expired, and counts it down.
type pagedPods struct {
	corev1client.PodsGetter
	pages  *[]metav1.ListOptions
	expire *int
}

func (p pagedPods) Pods(ns string) corev1client.PodInterface {
	return pagedPodInterface{p.PodsGetter.Pods(ns), p}
}

type pagedPodInterface struct {
	corev1client.PodInterface
	p pagedPods
}

func (p pagedPodInterface) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	*p.p.pages = append(*p.p.pages, opts)
	if e := p.p.expire; opts.Continue != "" && e != nil && *e > 0 {
		*e--
		return nil, apierrors.NewResourceExpired("the provided continue parameter is too old")
	}
	all, err := p.PodInterface.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(all.Items, func(a, b corev1.Pod) int { return strings.Compare(a.Name, b.Name) })
	from := 0
	if opts.Continue != "" {
		if from, err = strconv.Atoi(opts.Continue); err != nil {
			return nil, err
		}
	}
	to := min(from+int(opts.Limit), len(all.Items))
	page := &corev1.PodList{Items: all.Items[from:to]}
	if to < len(all.Items) {
		page.Continue = strconv.Itoa(to)
	}
	return page, nil
}
