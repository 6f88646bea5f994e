package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestInotifyExhaustedNodeIsPolled: the node runs out of inotify instances, so its kubelet
// ends every follow request with "failed to create fsnotify watcher: too many open files"
// after the lines that exist. kubelogd recognises it once for the node (one WARN, a
// metric), polls the node's containers no more than once per 5 s each instead of
// reconnecting them in a loop (it used to reconnect one container 82 times in 45 s), loses
// and doubles nothing, and follows again once the node has recovered: stream → poll →
// stream, every file exact.
func TestInotifyExhaustedNodeIsPolled(t *testing.T) {
	e := parallelEnv(t)
	containers := []string{"a", "b", "c"}
	e.pod("f", "inotify", nil, containers...)
	e.start("f", "inotify", containers...)
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	var stops []func() int
	for _, c := range containers {
		stops = append(stops, e.flow("f", "inotify", c, 50*time.Millisecond, 1, numbered("f", "inotify", c, "line")))
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	for _, c := range containers {
		e.waitFollowing("inotify", c)
	}

	e.k.ExhaustInotify(true)
	e.k.CutStreams("f", "inotify", "", false) // open streams hold their watchers: make them ask again
	eventually(t, 30*time.Second, "kubelogd sees the node out of inotify instances", func() (bool, string) {
		v := d.metric("kubelogd_nodes_inotify_exhausted")
		return v == 1, fmt.Sprint(v)
	})
	// Measure from here on: the polls of each container, over a window of 20 s.
	from := time.Now()
	time.Sleep(20 * time.Second)
	to := time.Now()
	window := to.Sub(from)
	for _, c := range containers {
		reqs := e.requestsBetween("f", "inotify", c, from, to)
		// One request per 5 s, and one more for the window's edges.
		if limit := int(window/(5*time.Second)) + 1; len(reqs) > limit {
			t.Errorf("%s: %d requests in %v while the node was out of inotify instances, want ≤ %d", c, len(reqs), window.Round(time.Second), limit)
		}
		if len(reqs) == 0 {
			t.Errorf("%s: not read at all while the node was out of inotify instances", c)
		}
	}
	if v := d.metric("kubelogd_kubelet_errors_total", "reason=inotify_exhausted"); v < 1 {
		t.Errorf("kubelogd_kubelet_errors_total{reason=inotify_exhausted} = %v, want ≥ 1", v)
	}
	if v := d.metric("kubelogd_targets", "state=polling"); v != float64(len(containers)) {
		t.Errorf("kubelogd_targets{state=polling} = %v, want %d", v, len(containers))
	}
	if n := strings.Count(d.Output(), "node is out of inotify instances"); n != 1 {
		t.Errorf("%d WARN lines about the node, want exactly 1", n)
	}
	// Lines keep arriving while polled.
	for _, c := range containers {
		want := len(e.k.Emitted("f", "inotify", c))
		eventually(t, 30*time.Second, c+" polled lines on disk", func() (bool, string) {
			n := len(readLines(t, logPath(dir, "f", "inotify", c)))
			return n >= want, fmt.Sprintf("%d of %d", n, want)
		})
	}

	e.k.ExhaustInotify(false)
	for _, c := range containers {
		e.waitFollowing("inotify", c)
	}
	eventually(t, 30*time.Second, "kubelogd sees the node recovered", func() (bool, string) {
		v := d.metric("kubelogd_nodes_inotify_exhausted")
		return v == 0, fmt.Sprint(v)
	})
	for i, c := range containers {
		t.Logf("%s: %d lines", c, stops[i]())
		e.exact(dir, "f", "inotify", c)
	}
	if v := d.metric("kubelogd_gaps_total"); v != 0 {
		t.Errorf("kubelogd_gaps_total = %v, want 0", v)
	}
}

// waitFollowing waits (up to 2 minutes: a node that recovered is tried again after its
// backoff) until kubelogd follows the container with a watching stream.
func (e *env) waitFollowing(pod, container string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := e.k.WaitForFollowers(ctx, "f", pod, container, 1); err != nil {
		e.t.Fatal(err)
	}
}
