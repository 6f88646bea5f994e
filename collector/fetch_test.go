package collector

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestFetchPodBatches: first-line checks that wait while a fetch of their namespace is in
// flight are answered together by the next one — GETs while few wait, one LIST when many
// do — each with its own pod, or "not found" for a pod the API server does not have.
func TestFetchPodBatches(t *testing.T) {
	for _, tc := range []struct {
		name        string
		waiting     int // checks that come while the first one's GET is in flight
		gets, lists int
		missing     string
	}{
		{name: "many waiting: one LIST", waiting: 9, gets: 1, lists: 1, missing: "p5"},
		{name: "few waiting: a GET each", waiting: 2, gets: 3, lists: 0, missing: "p2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var objs []runtime.Object
			for i := range tc.waiting + 1 {
				if name := fmt.Sprintf("p%d", i); name != tc.missing {
					objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name)}})
				}
			}
			client := fake.NewClientset(objs...)
			release := make(chan struct{})
			var mu sync.Mutex
			gets, lists := 0, 0
			client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				mu.Lock()
				gets++
				first := gets == 1
				mu.Unlock()
				if first {
					<-release
				}
				return false, nil, nil
			})
			client.PrependReactor("list", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
				mu.Lock()
				lists++
				mu.Unlock()
				return false, nil, nil
			})
			c := New(Config{}, client.CoreV1(), nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			type result struct {
				name string
				pod  *corev1.Pod
				err  error
			}
			results := make(chan result, tc.waiting+1)
			fetch := func(name string) {
				p, err := c.fetchPod(t.Context(), "ns", name)
				results <- result{name, p, err}
			}
			go fetch("p0")
			waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return gets == 1 })
			for i := 1; i <= tc.waiting; i++ {
				go fetch(fmt.Sprintf("p%d", i))
			}
			waitFor(t, func() bool {
				c.fetches.mu.Lock()
				defer c.fetches.mu.Unlock()
				return len(c.fetches.ns["ns"].waiting) == tc.waiting
			})
			close(release)
			for range tc.waiting + 1 {
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
			if gets != tc.gets || lists != tc.lists {
				t.Errorf("%d GETs and %d LISTs, want %d and %d", gets, lists, tc.gets, tc.lists)
			}
			if n := len(c.fetches.ns); n != 0 {
				t.Errorf("%d namespaces left with fetches", n)
			}
		})
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for !cond() {
		select {
		case <-t.Context().Done():
			t.Fatal("condition never held")
		default:
			time.Sleep(time.Millisecond)
		}
	}
}
