package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
)

// latencyResult is the latency scenario: from the moment a line is appended to the CRI
// file to the moment it is readable in kubelogd's file.
type latencyResult struct {
	Containers      int     `json:"containers"`
	LinesPerSecond  float64 `json:"lines_per_second_per_container"`
	DurationSeconds float64 `json:"duration_seconds"`
	Emitted         int     `json:"emitted"`
	Received        int     `json:"received"`
	Duplicates      int     `json:"duplicates"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	// EmitBehindMs is how far the emitters fell behind their schedule at worst (a busy
	// machine); each line's latency is measured from when it was really appended.
	EmitBehindMs float64 `json:"emit_behind_ms"`
	// Transport is the same measure for a few containers followed directly by the bench
	// with client-go (timestamps=true): the apiserver and kubelet part of the latency.
	Transport struct {
		Streams  int     `json:"streams"`
		Received int     `json:"received"`
		P50Ms    float64 `json:"p50_ms"`
		P99Ms    float64 `json:"p99_ms"`
		MaxMs    float64 `json:"max_ms"`
	} `json:"transport"`
	// KubelogdCores is kubelogd's CPU time during the emission divided by its duration.
	KubelogdCores float64 `json:"kubelogd_cores"`
}

const (
	nsLatency       = "latency"
	latencyNodes    = 4
	latencyInterval = 100 * time.Millisecond
	latencyLineSize = 100
	latencyDirect   = 20
)

func runLatency(ctx context.Context, cfg *config) (*latencyResult, error) {
	n := cfg.latencyContainers
	res := &latencyResult{Containers: n, LinesPerSecond: float64(time.Second / latencyInterval), DurationSeconds: cfg.latencyDuration.Seconds()}
	e, err := startEnv(ctx, cfg.self, latencyNodes, nil)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	if _, err := e.createRunning(ctx, nsLatency, 0, n, 0, 0); err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.workDir, "latency")
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	fileLat := &latencies{seen: map[string]int{}}
	tl, err := newTailer(dir, container+".log", func(path string, line []byte, at time.Time) {
		fileLat.add(path, line, at)
	})
	if err != nil {
		return nil, err
	}
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan struct{})
	go func() { tl.run(tctx); close(tailDone) }()
	defer func() { stopTail(); <-tailDone }()

	d, err := startKubelogd(cfg, "latency", e.c.Kubeconfig, dir)
	if err != nil {
		return nil, err
	}
	defer d.stop()

	// The transport reference: a few containers followed directly.
	direct := &latencies{seen: map[string]int{}}
	client, err := kubernetes.NewForConfig(e.c.Config)
	if err != nil {
		return nil, err
	}
	dctx, stopDirect := context.WithCancel(ctx)
	var dwg sync.WaitGroup
	defer func() { stopDirect(); dwg.Wait() }()
	followers := make([]int, 0, n+latencyDirect)
	for i := range n {
		followers = append(followers, i)
	}
	for i := range min(latencyDirect, n) {
		followers = append(followers, i)
		dwg.Go(func() { followDirect(dctx, client, podName(i), direct) })
	}
	res.Transport.Streams = min(latencyDirect, n)
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = e.waitFollowers(wctx, nsLatency, followers)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("waiting for kubelogd's follow streams: %w", err)
	}
	cfg.progress("latency: %d follow streams watching %.2fs after kubelogd's start (%d of them the bench's own)", len(followers), time.Since(d.Start).Seconds(), res.Transport.Streams)
	_ = start

	cpu0, err := d.cpu()
	if err != nil {
		return nil, err
	}
	emitStart := time.Now()
	resps, _, err := e.each(ctx, hostReq{Op: "emit", NS: nsLatency, Interval: latencyInterval, Duration: cfg.latencyDuration, Size: latencyLineSize}, followers[:n])
	if err != nil {
		return nil, err
	}
	cpu1, err := d.cpu()
	if err != nil {
		return nil, err
	}
	res.KubelogdCores = (cpu1 - cpu0).Seconds() / time.Since(emitStart).Seconds()
	for _, r := range resps {
		for _, c := range r.Counts {
			res.Emitted += c
		}
		res.EmitBehindMs = max(res.EmitBehindMs, ms(r.Lag))
	}
	// Wait for the stragglers.
	deadline := time.Now().Add(30 * time.Second)
	for fileLat.count() < res.Emitted && time.Now().Before(deadline) {
		if err := d.alive(); err != nil {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopDirect()
	dwg.Wait()

	lat := fileLat.values()
	res.Received, res.Duplicates = len(lat), fileLat.dups
	res.P50Ms, res.P99Ms, res.MaxMs = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	dl := direct.values()
	res.Transport.Received = len(dl)
	res.Transport.P50Ms, res.Transport.P99Ms, res.Transport.MaxMs = percentile(dl, 50), percentile(dl, 99), percentile(dl, 100)
	if res.Received < res.Emitted {
		return res, fmt.Errorf("%d of %d lines emitted were readable in kubelogd's files 30s after the emission ended", res.Received, res.Emitted)
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencies collects, per line, how long after its emission it was read.
type latencies struct {
	mu   sync.Mutex
	ms   []float64
	seen map[string]int // source → lines, to spot duplicates
	dups int
}

// add parses a timestamped line whose text starts with "lat <unix nanoseconds> <pod> <n>".
func (l *latencies) add(source string, line []byte, at time.Time) {
	if len(line) <= tsLen+1 {
		return
	}
	f := bytes.Fields(line[tsLen+1:])
	if len(f) < 4 || string(f[0]) != "lat" {
		return
	}
	ns, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return
	}
	seq, err := strconv.Atoi(string(f[3]))
	if err != nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq < l.seen[source] {
		l.dups++
		return
	}
	l.seen[source] = seq + 1
	l.ms = append(l.ms, ms(at.Sub(time.Unix(0, ns))))
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ms)
}

func (l *latencies) values() []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]float64(nil), l.ms...)
}

// followDirect follows a container's log with client-go until ctx ends, recording each
// line's latency.
func followDirect(ctx context.Context, client kubernetes.Interface, pod string, l *latencies) {
	body, err := client.CoreV1().Pods(nsLatency).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}).Stream(ctx)
	if err != nil {
		return
	}
	defer body.Close()
	r := bufio.NewReader(body)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			l.add(pod, line[:len(line)-1], time.Now())
		}
		if err != nil {
			return
		}
	}
}
