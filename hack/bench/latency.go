package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// latencyResult is the latency scenario: from the moment a line is appended to the CRI
// file to the moment it is readable in kubelogd's file.
type latencyResult struct {
	Containers int `json:"containers"`
	// KubelogdFlags set a follow budget above the container count: every container is
	// streamed, as the target is for busy streamed containers, with the budget's code on
	// as by default (the polled containers' latency is the polled scenario's).
	KubelogdFlags   string  `json:"kubelogd_flags"`
	LinesPerSecond  float64 `json:"lines_per_second_per_container"`
	DurationSeconds float64 `json:"duration_seconds"`
	Emitted         int     `json:"emitted"`
	Received        int     `json:"received"`
	Duplicates      int     `json:"duplicates"`
	P50Ms           float64 `json:"p50_ms"`
	P99Ms           float64 `json:"p99_ms"`
	MaxMs           float64 `json:"max_ms"`
	// FirstP99Ms is the p99 of each container's first line alone (which waits for the
	// first-line check unless it was made while the stream was quiet), and SteadyP99Ms
	// that of the lines emitted 5 s or more after their container's first.
	FirstP99Ms  float64 `json:"first_line_p99_ms"`
	SteadyP99Ms float64 `json:"steady_p99_ms"`
	// EmitBehindMs is how far the emitters fell behind their schedule at worst (a busy
	// machine); each line's latency is measured from when it was really appended.
	EmitBehindMs float64 `json:"emit_behind_ms"`
	// Transport is the same measure for a few containers whose streams (follow,
	// timestamps=true) another process copies to files with io.Copy, tailed the same way:
	// the transport's and the measurement's part of the latency.
	Transport struct {
		Streams  int     `json:"streams"`
		Received int     `json:"received"`
		P50Ms    float64 `json:"p50_ms"`
		P99Ms    float64 `json:"p99_ms"`
		MaxMs    float64 `json:"max_ms"`
		// FirstP99Ms and SteadyP99Ms: as the latencyResult's.
		FirstP99Ms  float64 `json:"first_line_p99_ms"`
		SteadyP99Ms float64 `json:"steady_p99_ms"`
	} `json:"transport"`
	// KubelogdCores is kubelogd's CPU time during the emission divided by its duration.
	KubelogdCores float64 `json:"kubelogd_cores"`
	// Cores is the same for every process of the bench during the emission, by command
	// (kube-apiserver, etcd, kubelogd, the bench's own children — the fake kubelets — and
	// "bench", which tails the files); MachineBusy is the share of all CPUs busy, theirs
	// and other users' alike.
	Cores       map[string]float64 `json:"cores"`
	MachineBusy float64            `json:"machine_busy"`
}

const (
	nsLatency       = "latency"
	latencyNodes    = 4
	latencyInterval = 100 * time.Millisecond
	latencyLineSize = 100
	latencyDirect   = 20
	// latencySteady is the line of a container from which its latency counts as steady:
	// 5 s after its first.
	latencySteady = int(5 * time.Second / latencyInterval)
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
	tailDone, tailDone2 := make(chan struct{}), make(chan struct{})
	go func() { tl.run(tctx); close(tailDone) }()
	defer func() { stopTail(); <-tailDone }()

	flags := []string{"--max-streams-per-node", strconv.Itoa(n), "--max-streams", strconv.Itoa(n)}
	res.KubelogdFlags = strings.Join(flags, " ")
	d, err := startKubelogdWith(cfg, "latency", e.c.Kubeconfig, dir, dir+".out", flags...)
	if err != nil {
		return nil, err
	}
	defer d.stop()

	// The transport reference: a few containers copied to files by a child process.
	copyDir := dir + "-copy"
	if !cfg.keep {
		defer os.RemoveAll(copyDir)
	}
	if err := os.MkdirAll(copyDir, 0o750); err != nil {
		return nil, err
	}
	direct := &latencies{seen: map[string]int{}}
	tl2, err := newTailer(copyDir, container+".log", func(path string, line []byte, at time.Time) {
		direct.add(path, line, at)
	})
	if err != nil {
		return nil, err
	}
	go func() { tl2.run(tctx); close(tailDone2) }()
	defer func() { stopTail(); <-tailDone2 }()
	followers := make([]int, 0, n+latencyDirect)
	for i := range n {
		followers = append(followers, i)
	}
	copyArgs := []string{"copy-follow", e.c.Kubeconfig, nsLatency, copyDir}
	for i := range min(latencyDirect, n) {
		followers = append(followers, i)
		copyArgs = append(copyArgs, podName(i))
	}
	res.Transport.Streams = min(latencyDirect, n)
	cp := exec.Command(cfg.self, copyArgs...)
	var cpErr tailBuffer
	cp.Stderr = &cpErr
	cp.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cp.Start(); err != nil {
		return nil, err
	}
	defer func() { _ = cp.Process.Kill(); _ = cp.Wait() }()
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = e.waitFollowers(wctx, nsLatency, followers)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("waiting for the follow streams: %w (copy-follow: %s)", err, cpErr.String())
	}
	cfg.progress("latency: %d follow streams watching %.2fs after kubelogd's start (%d of them copied by io.Copy)", len(followers), time.Since(d.Start).Seconds(), res.Transport.Streams)

	cpu0, err := d.cpu()
	if err != nil {
		return nil, err
	}
	emitStart := time.Now()
	procs0 := cpuByCommand()
	busy0, total0 := machineCPU()
	resps, split, err := e.each(ctx, hostReq{Op: "emit", NS: nsLatency, Interval: latencyInterval, Duration: cfg.latencyDuration, Size: latencyLineSize}, followers[:n])
	if err != nil {
		return nil, err
	}
	cpu1, err := d.cpu()
	if err != nil {
		return nil, err
	}
	elapsed := time.Since(emitStart).Seconds()
	res.KubelogdCores = (cpu1 - cpu0).Seconds() / elapsed
	busy1, total1 := machineCPU()
	if total1 > total0 {
		res.MachineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	res.Cores = map[string]float64{}
	for name, t := range cpuByCommand() {
		if d := (t - procs0[name]).Seconds() / elapsed; d >= 0.005 {
			res.Cores[name] = d
		}
	}
	for _, r := range resps {
		for _, c := range r.Counts {
			res.Emitted += c
		}
		res.EmitBehindMs = max(res.EmitBehindMs, ms(r.Lag))
	}
	copied := 0
	for h, r := range resps {
		for j, c := range r.Counts {
			if split[h][j] < res.Transport.Streams {
				copied += c
			}
		}
	}
	// Wait for the stragglers.
	deadline := time.Now().Add(30 * time.Second)
	for (fileLat.count() < res.Emitted || direct.count() < copied) && time.Now().Before(deadline) {
		if err := d.alive(); err != nil {
			return nil, err
		}
		time.Sleep(50 * time.Millisecond)
	}

	lat := fileLat.values()
	res.Received, res.Duplicates = len(lat), fileLat.dups
	res.P50Ms, res.P99Ms, res.MaxMs = percentile(lat, 50), percentile(lat, 99), percentile(lat, 100)
	first, steady := fileLat.split()
	res.FirstP99Ms, res.SteadyP99Ms = percentile(first, 99), percentile(steady, 99)
	dl := direct.values()
	res.Transport.Received = len(dl)
	res.Transport.P50Ms, res.Transport.P99Ms, res.Transport.MaxMs = percentile(dl, 50), percentile(dl, 99), percentile(dl, 100)
	first, steady = direct.split()
	res.Transport.FirstP99Ms, res.Transport.SteadyP99Ms = percentile(first, 99), percentile(steady, 99)
	if res.Received < res.Emitted {
		return res, fmt.Errorf("%d of %d lines emitted were readable in kubelogd's files 30s after the emission ended", res.Received, res.Emitted)
	}
	return res, nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// latencies collects, per line, how long after its emission it was read: all lines (ms),
// each source's first (first), and those emitted latencySteady lines or more after it
// (steady).
type latencies struct {
	mu     sync.Mutex
	ms     []float64
	first  []float64
	steady []float64
	seen   map[string]int // source → lines, to spot duplicates
	dups   int
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
	d := ms(at.Sub(time.Unix(0, ns)))
	l.ms = append(l.ms, d)
	switch {
	case seq == 0:
		l.first = append(l.first, d)
	case seq >= latencySteady:
		l.steady = append(l.steady, d)
	}
}

func (l *latencies) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ms)
}

// split returns copies of the first lines' latencies and the steady lines'.
func (l *latencies) split() (first, steady []float64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]float64(nil), l.first...), append([]float64(nil), l.steady...)
}

func (l *latencies) values() []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]float64(nil), l.ms...)
}

// runCopyFollow is the copy-follow subcommand: for each pod, a follow stream of its log
// (timestamps=true) copied with io.Copy to <dir>/<namespace>/<pod>/c.log, until killed.
func runCopyFollow(args []string) error {
	if len(args) < 4 {
		return errors.New("usage: copy-follow <kubeconfig> <namespace> <dir> <pod>…")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", args[0])
	if err != nil {
		return err
	}
	cfg.QPS = -1
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ns, dir := args[1], args[2]
	errs := make(chan error, len(args)-3)
	for _, pod := range args[3:] {
		go func() {
			errs <- func() error {
				p := filepath.Join(dir, ns, pod)
				if err := os.MkdirAll(p, 0o750); err != nil {
					return err
				}
				f, err := os.Create(filepath.Join(p, container+".log"))
				if err != nil {
					return err
				}
				defer f.Close()
				body, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}).Stream(context.Background())
				if err != nil {
					return err
				}
				defer body.Close()
				_, err = io.Copy(f, body)
				return err
			}()
		}()
	}
	return <-errs
}
