package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// coverageResult is the coverage scenario for one pod count, kubelogd with its default
// flags (the follow budget on) beside stern and the transport alone. The memory of idle
// containers, measured here until the budget came, is the memory scenario's (memory.go).
type coverageResult struct {
	Pods         int     `json:"pods"`
	LinesPerPod  int     `json:"lines_per_pod"`
	Nodes        int     `json:"nodes"`
	SetupSeconds float64 `json:"setup_seconds"` // creating the pods that exist before start

	// ExistingSeconds runs from kubelogd's exec until every line of the pods that existed
	// before it started is readable in its files.
	ExistingSeconds float64 `json:"existing_seconds"`
	// TransportSeconds is the same for the transport alone, measured before kubelogd
	// starts: the bench's own client-go, with kubelogd's QPS 500 and burst 500, opens a
	// follow stream (timestamps=true) to every pod at once and reads until it has every line.
	TransportSeconds float64 `json:"transport_seconds"`
	// TransportRetries counts the streams it had to open again, the first for the reason
	// in TransportFirstError.
	TransportRetries    int64  `json:"transport_retries"`
	TransportFirstError string `json:"transport_first_error,omitempty"`
	// TransportCPUSeconds is the bench process's CPU time meanwhile: the client side of
	// the transport alone (nothing else runs in it then; the kubelets are other processes).
	TransportCPUSeconds float64 `json:"transport_cpu_seconds"`
	// Stern is the peer on the same pods, after the transport alone and before kubelogd
	// (see stern.go); the ratio is kubelogd's ExistingSeconds over stern's.
	Stern      *sternCoverage `json:"stern,omitempty"`
	RatioStern float64        `json:"existing_ratio_vs_stern,omitempty"`
	// StartedSeconds and SyncedSeconds are when kubelogd logged "kubelogd started" and
	// "pod informers synced", after its exec (0 if it did not).
	StartedSeconds float64 `json:"started_seconds"`
	SyncedSeconds  float64 `json:"synced_seconds"`
	// ExistingCPUSeconds is kubelogd's CPU time (user+system) from its exec until the
	// existing pods were covered: what opening their streams and files cost it.
	ExistingCPUSeconds float64 `json:"existing_cpu_seconds"`
	// Streaming and Polling are kubelogd_targets by state once the existing pods were
	// covered: the follow budget at work (with the default 50 per node, 200 streams on
	// the 4 nodes).
	Streaming float64 `json:"targets_streaming"`
	Polling   float64 `json:"targets_polling"`

	// Pods created after start, by the bench as fast as the fake kubelets let it:
	// CreatedSeconds runs from the first create until every line is readable,
	// CreatingSeconds until the last pod was running with its lines in its CRI file, and
	// PodLag* is, per pod, from that moment until its lines were readable in kubelogd's file.
	CreatedSeconds  float64 `json:"created_seconds"`
	CreatingSeconds float64 `json:"creating_seconds"`
	PodLagP50       float64 `json:"pod_lag_p50_seconds"`
	PodLagP99       float64 `json:"pod_lag_p99_seconds"`
	PodLagMax       float64 `json:"pod_lag_max_seconds"`

	Markers       int     `json:"marker_lines"`      // kubelogd: lines (none expected)
	ExtraLines    int     `json:"extra_lines"`       // lines beyond what was emitted (none expected)
	Reconnects    float64 `json:"reconnects"`        // kubelogd_reconnects_total at the end
	StreamsOpened float64 `json:"streams_opened"`    // kubelogd_streams_opened_total at the end
	Overflows     int     `json:"inotify_overflows"` // of the bench's own tailer
}

// memResult is kubelogd's footprint while it collects idle containers. Its per-stream
// figures are divided by Streams: the follow streams of a run without a budget, where
// there is one per container, and the containers of a run with one.
type memResult struct {
	Streams             int     `json:"streams"`
	ActiveStreams       float64 `json:"kubelogd_streams_active"`
	RSSBytes            int64   `json:"rss_bytes"`
	RSSKiBPerStream     float64 `json:"rss_kib_per_stream"`
	Goroutines          float64 `json:"goroutines"`
	GoroutinesPerStream float64 `json:"goroutines_per_stream"`
	FDs                 int     `json:"fds"`
	FDsPerStream        float64 `json:"fds_per_stream"`
	// Where the RSS goes, from kubelogd's go_memstats_*: heap in use and goroutine stacks.
	HeapKiBPerStream  float64 `json:"heap_inuse_kib_per_stream"`
	StackKiBPerStream float64 `json:"stack_inuse_kib_per_stream"`
	// The rest of the picture: heap spans free but not yet returned to the OS, and the
	// Go runtime's total claim on the OS.
	HeapRetainedKiBPerStream float64 `json:"heap_free_retained_kib_per_stream"`
	SysKiBPerStream          float64 `json:"go_sys_kib_per_stream"`
}

const (
	coverageLines    = 10
	coverageLineSize = 100
	coverageNodes    = 4
	nsExisting       = "existing"
	nsCreated        = "created"
)

func runCoverage(ctx context.Context, cfg *config, n int) (*coverageResult, error) {
	res := &coverageResult{Pods: n, LinesPerPod: coverageLines, Nodes: coverageNodes}
	e, err := startEnv(ctx, cfg.self, coverageNodes, nil)
	if err != nil {
		return nil, err
	}
	defer e.stop()

	start := time.Now()
	if _, err := e.createRunning(ctx, nsExisting, 0, n, coverageLines, coverageLineSize); err != nil {
		return nil, err
	}
	res.SetupSeconds = time.Since(start).Seconds()
	cfg.progress("coverage %d: %d running pods with %d lines each created in %s", n, n, coverageLines, time.Since(start).Round(time.Millisecond))

	cpu0, _ := procCPU(os.Getpid())
	if res.TransportSeconds, res.TransportRetries, res.TransportFirstError, err = transportCoverage(ctx, e, nsExisting, n, coverageLines); err != nil {
		return nil, fmt.Errorf("the transport alone: %w", err)
	}
	if cpu1, err := procCPU(os.Getpid()); err == nil {
		res.TransportCPUSeconds = (cpu1 - cpu0).Seconds()
	}
	cfg.progress("coverage %d: the transport alone (client-go, QPS 500, burst 500) read every line %.2fs after its start (%d streams retried)", n, res.TransportSeconds, res.TransportRetries)
	if cfg.stern != "" {
		if res.Stern, err = runSternCoverage(ctx, cfg, e, nsExisting, n, coverageLines, coverageLineSize, nil); err != nil {
			return nil, fmt.Errorf("stern: %w", err)
		}
	}

	dir := filepath.Join(cfg.workDir, fmt.Sprintf("coverage-%d", n))
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, err
	}
	tr := newCoverTracker(coverageLines, map[string]int{nsExisting: n, nsCreated: n})
	tl, err := newTailer(dir, container+".log", tr.onLine)
	if err != nil {
		return nil, err
	}
	tctx, stopTail := context.WithCancel(ctx)
	tailDone := make(chan struct{})
	go func() { tl.run(tctx); close(tailDone) }()
	defer func() { stopTail(); <-tailDone }()

	d, err := startKubelogd(cfg, fmt.Sprintf("coverage-%d", n), e.c.Kubeconfig, dir)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	stopTrace := traceMetrics(ctx, cfg, d, tr, nsExisting)
	err = tr.wait(ctx, d.alive, nsExisting, 5*time.Minute)
	stopTrace()
	if err != nil {
		return nil, err
	}
	if cpu, err := d.cpu(); err == nil {
		res.ExistingCPUSeconds = cpu.Seconds()
	}
	res.ExistingSeconds = tr.last(nsExisting).Sub(d.Start).Seconds()
	if t, ok := d.logTime("kubelogd started"); ok {
		res.StartedSeconds = t.Seconds()
	}
	if t, ok := d.logTime("pod informers synced"); ok {
		res.SyncedSeconds = t.Seconds()
	}
	if m, err := d.metrics(ctx); err == nil {
		res.Streaming, res.Polling = m[`kubelogd_targets{state="streaming"}`], m[`kubelogd_targets{state="polling"}`]
	}
	cfg.progress("coverage %d: existing pods covered %.2fs after kubelogd's start (%.0f containers streamed, %.0f polled)",
		n, res.ExistingSeconds, res.Streaming, res.Polling)
	if st := res.Stern; st != nil {
		res.RatioStern = res.ExistingSeconds / st.Seconds
	}

	start = time.Now()
	stopTrace = traceMetrics(ctx, cfg, d, tr, nsCreated)
	ready, err := e.createRunning(ctx, nsCreated, 0, n, coverageLines, coverageLineSize)
	if err != nil {
		stopTrace()
		return nil, err
	}
	var lastReady time.Time
	for _, t := range ready {
		if t.After(lastReady) {
			lastReady = t
		}
	}
	res.CreatingSeconds = lastReady.Sub(start).Seconds()
	err = tr.wait(ctx, d.alive, nsCreated, 5*time.Minute)
	stopTrace()
	if err != nil {
		return nil, err
	}
	res.CreatedSeconds = tr.last(nsCreated).Sub(start).Seconds()
	covered := tr.coveredAt(nsCreated)
	lags := make([]float64, 0, n)
	for i, t := range ready {
		if c, ok := covered[podName(i)]; ok {
			lags = append(lags, c.Sub(t).Seconds())
		}
	}
	res.PodLagP50, res.PodLagP99, res.PodLagMax = percentile(lags, 50), percentile(lags, 99), percentile(lags, 100)
	cfg.progress("coverage %d: created pods covered %.2fs after the first create (creating took %.2fs; per pod p50 %.3fs, p99 %.3fs, max %.3fs)",
		n, res.CreatedSeconds, res.CreatingSeconds, res.PodLagP50, res.PodLagP99, res.PodLagMax)

	m, err := d.metrics(ctx)
	if err != nil {
		return nil, err
	}
	res.Reconnects, res.StreamsOpened = m["kubelogd_reconnects_total"], m["kubelogd_streams_opened_total"]
	res.Markers, res.ExtraLines, res.Overflows = tr.markers, tr.extra, tl.Overflows
	return res, nil
}

// readMemory reads kubelogd's RSS, goroutines and descriptors three times half a second
// apart, keeping the median, with the per-stream figures divided by streams. With
// --profile it then saves heap and goroutine profiles named name.
func readMemory(ctx context.Context, cfg *config, d *kubelogdProc, streams int, name string) (memResult, error) {
	var rss []int64
	var active []float64
	var gor []float64
	var fds []int
	var heap, stack, retained, sys []float64
	for i := range 3 {
		if i > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		r, err := d.rss()
		if err != nil {
			return memResult{}, err
		}
		f, err := d.fds()
		if err != nil {
			return memResult{}, err
		}
		m, err := d.metrics(ctx)
		if err != nil {
			return memResult{}, err
		}
		rss, gor, fds = append(rss, r), append(gor, m["go_goroutines"]), append(fds, f)
		active = append(active, m["kubelogd_streams_active"])
		heap, stack = append(heap, m["go_memstats_heap_inuse_bytes"]), append(stack, m["go_memstats_stack_inuse_bytes"])
		retained = append(retained, m["go_memstats_heap_idle_bytes"]-m["go_memstats_heap_released_bytes"])
		sys = append(sys, m["go_memstats_sys_bytes"])
	}
	slices.Sort(rss)
	slices.Sort(gor)
	slices.Sort(fds)
	slices.Sort(heap)
	slices.Sort(stack)
	slices.Sort(retained)
	slices.Sort(sys)
	slices.Sort(active)
	r := memResult{Streams: streams, ActiveStreams: active[1], RSSBytes: rss[1], Goroutines: gor[1], FDs: fds[1]}
	r.RSSKiBPerStream = float64(r.RSSBytes) / 1024 / float64(streams)
	r.GoroutinesPerStream = r.Goroutines / float64(streams)
	r.FDsPerStream = float64(r.FDs) / float64(streams)
	r.HeapKiBPerStream = heap[1] / 1024 / float64(streams)
	r.StackKiBPerStream = stack[1] / 1024 / float64(streams)
	r.HeapRetainedKiBPerStream = retained[1] / 1024 / float64(streams)
	r.SysKiBPerStream = sys[1] / 1024 / float64(streams)
	if cfg.profileDir != "" {
		if err := d.saveProfiles(ctx, cfg.profileDir, name); err != nil {
			return r, err
		}
	}
	return r, nil
}

// coverTracker counts the application lines in each pod's file and notes when a pod's
// file first held all of them.
type coverTracker struct {
	want int

	mu      sync.Mutex
	count   map[string]int
	covered map[string]map[string]time.Time // namespace → pod → when
	expect  map[string]int                  // namespace → pods
	done    map[string]chan struct{}
	markers int
	extra   int
}

func newCoverTracker(want int, expect map[string]int) *coverTracker {
	t := &coverTracker{want: want, count: map[string]int{}, covered: map[string]map[string]time.Time{},
		expect: expect, done: map[string]chan struct{}{}}
	for ns := range expect {
		t.covered[ns] = map[string]time.Time{}
		t.done[ns] = make(chan struct{})
	}
	return t
}

var markerPrefix = []byte("kubelogd: ")

// isMarker tells a kubelogd event line from an application line in a timestamped file.
func isMarker(line []byte) bool {
	return len(line) > tsLen && bytes.HasPrefix(line[tsLen+1:], markerPrefix)
}

func (t *coverTracker) onLine(path string, line []byte, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if isMarker(line) {
		t.markers++
		return
	}
	t.count[path]++
	switch c := t.count[path]; {
	case c == t.want:
		pod := filepath.Base(filepath.Dir(path))
		ns := filepath.Base(filepath.Dir(filepath.Dir(path)))
		cov, ok := t.covered[ns]
		if !ok {
			return
		}
		cov[pod] = at
		if len(cov) == t.expect[ns] {
			close(t.done[ns])
		}
	case c > t.want:
		t.extra++
	}
}

// wait blocks until every pod of ns is covered, alive (polled every second) reports that
// the reader exited, or timeout passes.
func (t *coverTracker) wait(ctx context.Context, alive func() error, ns string, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		select {
		case <-t.done[ns]:
			return nil
		case <-deadline:
			t.mu.Lock()
			defer t.mu.Unlock()
			return fmt.Errorf("%d of %d pods of %s covered after %s", len(t.covered[ns]), t.expect[ns], ns, timeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
			if err := alive(); err != nil {
				return err
			}
		}
	}
}

func (t *coverTracker) coveredAt(ns string) map[string]time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[string]time.Time, len(t.covered[ns]))
	for k, v := range t.covered[ns] {
		out[k] = v
	}
	return out
}

// last is when the last pod of ns was covered.
func (t *coverTracker) last(ns string) time.Time {
	var last time.Time
	for _, at := range t.coveredAt(ns) {
		if at.After(last) {
			last = at
		}
	}
	return last
}

// percentile of xs (sorted in place), p in [0, 100], nearest rank.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	i := int(math.Ceil(float64(len(xs))*p/100)) - 1
	return xs[max(0, min(i, len(xs)-1))]
}

// traceMetrics prints, with --trace, kubelogd's stream and line counters and the pods of ns
// covered, every 250ms until the returned function is called.
func traceMetrics(ctx context.Context, cfg *config, d *kubelogdProc, tr *coverTracker, ns string) func() {
	if !cfg.trace {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if m, err := d.metrics(ctx); err == nil {
				tr.mu.Lock()
				covered := len(tr.covered[ns])
				tr.mu.Unlock()
				cfg.progress("trace %s +%.2fs: opened %.0f active %.0f desired %.0f lines %.0f covered %d goroutines %.0f",
					ns, time.Since(d.Start).Seconds(), m["kubelogd_streams_opened_total"], m["kubelogd_streams_active"],
					m["kubelogd_targets_desired"], m["kubelogd_lines_written_total"], covered, m["go_goroutines"])
			}
			select {
			case <-ctx.Done():
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return func() { cancel(); <-done }
}

// transportCoverage opens a follow stream to each of the n pods of ns with kubelogd's
// client limits and returns how long it took until every stream had delivered lines
// lines; then it closes them. A stream that fails to open or breaks is retried at once
// from its start (at most 5 times), as any client would; retries counts them and firstErr
// says why the first one was needed.
func transportCoverage(ctx context.Context, e *env, ns string, n, lines int) (seconds float64, retries int64, firstErr string, err error) {
	rc := rest.CopyConfig(e.c.Config)
	rc.QPS, rc.Burst = 500, 500
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return 0, 0, "", err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var retried atomic.Int64
	var once sync.Once
	read := func(pod string) error {
		body, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}).Stream(ctx)
		if err != nil {
			return err
		}
		defer body.Close()
		r := bufio.NewReader(body)
		for range lines {
			if _, err := r.ReadSlice('\n'); err != nil {
				return err
			}
		}
		return nil
	}
	start := time.Now()
	errs := make(chan error, n)
	for i := range n {
		go func() {
			var err error
			for attempt := 0; attempt < 6; attempt++ {
				if attempt > 0 {
					retried.Add(1)
					once.Do(func() { firstErr = err.Error() })
				}
				if err = read(podName(i)); err == nil || ctx.Err() != nil {
					break
				}
			}
			if err != nil {
				err = fmt.Errorf("pod %s: %w", podName(i), err)
			}
			errs <- err
		}()
	}
	timeout := time.After(5 * time.Minute)
	for range n {
		select {
		case err := <-errs:
			if err != nil {
				return 0, 0, "", err
			}
		case <-timeout:
			return 0, 0, "", errors.New("the transport alone did not deliver every line in 5 minutes")
		}
	}
	seconds = time.Since(start).Seconds()
	cancel()
	return seconds, retried.Load(), firstErr, nil
}
