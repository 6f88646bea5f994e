package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

// TestCutMidLineResumesExactly: the kubelet connection is cut in the middle of a line while
// the container runs; the torn line is not written, the stream resumes, every line once.
func TestCutMidLineResumesExactly(t *testing.T) {
	e := newEnv(t)
	e.pod("f", "cut", nil, "app")
	e.start("f", "cut", "app")
	e.emit("f", "cut", "app", 100)
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir)
	d.waitReady()
	e.waitCollected(dir, "f", "cut", "app")
	for i := range 5 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := e.k.WaitForStreams(ctx, "f", "cut", "app", 1); err != nil {
			t.Fatal(err)
		}
		cancel()
		n := e.k.CutStreams("f", "cut", "app", i%2 == 0)
		e.emit("f", "cut", "app", 50)
		t.Logf("cut %d streams", n)
	}
	if markers := e.waitCollected(dir, "f", "cut", "app"); len(markers) > 0 {
		t.Fatalf("markers %q, want none", markers)
	}
}

// TestBurstCutWithRepeatedLines: 1,000 lines inside one second, many identical, cut after
// about 500: position-based skipping writes each exactly once.
func TestBurstCutWithRepeatedLines(t *testing.T) {
	e := newEnv(t)
	e.pod("f", "burst", nil, "app")
	e.start("f", "burst", "app")
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir)
	d.waitReady()
	ts := time.Now().UTC().Truncate(time.Second).Add(500 * time.Millisecond)
	lines := make([]fakekubelet.Line, 1000)
	for i := range lines {
		text := fmt.Sprintf("burst line %d", i)
		if i%3 != 0 {
			text = "repeated identical line"
		}
		lines[i] = fakekubelet.Line{Time: ts.Add(time.Duration(i) * 100 * time.Microsecond), Text: text}
		if i%10 == 0 {
			lines[i].Time = ts // equal timestamps too
		}
	}
	if err := e.k.Append("f", "burst", "app", lines[:500]...); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "first half on disk", func() (bool, string) {
		n := len(readLines(t, logPath(dir, "f", "burst", "app")))
		return n >= 500, fmt.Sprint(n)
	})
	e.k.CutStreams("f", "burst", "app", false)
	if err := e.k.Append("f", "burst", "app", lines[500:]...); err != nil {
		t.Fatal(err)
	}
	if markers := e.waitCollected(dir, "f", "burst", "app"); len(markers) > 0 {
		t.Fatalf("markers %q, want none", markers)
	}
}

// TestStalledKubeletIsDetected: the kubelet stops sending while the container keeps
// logging; the watchdog's probe sees lines the stream did not deliver and reopens it.
func TestStalledKubeletIsDetected(t *testing.T) {
	e := newEnv(t)
	e.pod("f", "stall", nil, "app")
	e.start("f", "stall", "app")
	e.emit("f", "stall", "app", 10)
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir, "--stall-timeout", "2s")
	d.waitReady()
	e.waitCollected(dir, "f", "stall", "app")
	// A quiet stream is left alone: probes find nothing new, and it is not reopened.
	before := countRequests(e.k, "f", "stall", "app")
	time.Sleep(5 * time.Second)
	after := countRequests(e.k, "f", "stall", "app")
	if after.probes == before.probes || after.follows != before.follows {
		t.Fatalf("quiet period: requests before %+v, after %+v; want probes and no new follow", before, after)
	}
	e.k.Stall("f", "stall", "app", true)
	e.emit("f", "stall", "app", 10)
	time.Sleep(3 * time.Second)
	e.k.Stall("f", "stall", "app", false) // new streams answer again; the stalled one stays stuck
	e.emit("f", "stall", "app", 10)
	e.waitCollected(dir, "f", "stall", "app")
}

type requestCounts struct{ follows, probes int }

func countRequests(k *fakekubelet.Kubelet, ns, pod, container string) requestCounts {
	var c requestCounts
	for _, r := range k.Requests(ns, pod, container) {
		if r.Options.Follow {
			c.follows++
		} else {
			c.probes++
		}
	}
	return c
}
