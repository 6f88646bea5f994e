package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The API server's side of the memory scenario (see memory.go for the method): its
// process, its VmRSS and its own metrics.

const (
	// apiWindow readings of the API server's RSS, apiEvery apart, make one measure.
	apiWindow = 10
	apiEvery  = 500 * time.Millisecond
)

// apiMemory is the API server's memory before a reader started and with its containers
// idle (see the method in memory.go).
type apiMemory struct {
	BaselineBytes int64 `json:"baseline_rss_bytes"`
	LoadedBytes   int64 `json:"loaded_rss_bytes"`
	GrowthBytes   int64 `json:"growth_rss_bytes"`
	// BaselineLive and LoadedLive are go_gc_heap_live_bytes of the API server's /metrics
	// at the same two moments: the heap its last GC found live. VmRSS moves with when
	// the GC last ran and what the runtime has not yet returned to the OS; the live heap
	// does not, so its growth is the steadier cross-check.
	BaselineLive float64 `json:"baseline_heap_live_bytes"`
	LoadedLive   float64 `json:"loaded_heap_live_bytes"`
	// GCCycles counts the API server's GC cycles between the two: with none, the live
	// heap was not measured again and its growth says nothing.
	GCCycles float64 `json:"gc_cycles"`
	// LogRequests is apiserver_longrunning_requests of pods/log at the loaded reading:
	// the log requests it was serving (follow streams, and polls in flight).
	LogRequests float64 `json:"log_requests"`
	// SettleSeconds is how long the restarted API server took to settle (apiSettle).
	SettleSeconds float64 `json:"settle_seconds"`
	pid           int
}

// restartAPIServer restarts the API server, lets it settle and takes its baseline. It
// settles when three readings of its RSS a second apart are within 2% of each other (the
// kubelets' informers have listed again), or after 30 s.
func restartAPIServer(ctx context.Context, e *env) (*apiMemory, error) {
	start := time.Now()
	if err := e.c.RestartAPIServer(ctx); err != nil {
		return nil, err
	}
	pid, err := apiserverPID(e)
	if err != nil {
		return nil, err
	}
	var last []int64
	for time.Since(start) < 30*time.Second {
		r, err := procRSS(pid)
		if err != nil {
			return nil, err
		}
		if last = append(last, r); len(last) > 3 {
			last = last[1:]
		}
		if len(last) == 3 && float64(max(last[0], last[1], last[2])) <= 1.02*float64(min(last[0], last[1], last[2])) {
			break
		}
		if err := sleepCtx(ctx, time.Second); err != nil {
			return nil, err
		}
	}
	a := &apiMemory{pid: pid, SettleSeconds: time.Since(start).Seconds()}
	if a.BaselineBytes, err = apiRSS(ctx, pid); err != nil {
		return nil, err
	}
	m, err := apiMetrics(ctx, e)
	if err != nil {
		return nil, err
	}
	a.BaselineLive, a.GCCycles = m["go_gc_heap_live_bytes"], -m["go_gc_duration_seconds_count"]
	return a, nil
}

// liveGrowth is the growth of the API server's live heap, NaN if no GC measured it.
func (a *apiMemory) liveGrowth() float64 {
	if a.GCCycles <= 0 {
		return math.NaN()
	}
	return a.LoadedLive - a.BaselineLive
}

// loaded takes the API server's reading with the reader's containers idle.
func (a *apiMemory) loaded(ctx context.Context, e *env) error {
	var err error
	if a.LoadedBytes, err = apiRSS(ctx, a.pid); err != nil {
		return err
	}
	a.GrowthBytes = a.LoadedBytes - a.BaselineBytes
	m, err := apiMetrics(ctx, e)
	if err != nil {
		return err
	}
	a.LoadedLive = m["go_gc_heap_live_bytes"]
	a.GCCycles += m["go_gc_duration_seconds_count"]
	for k, v := range m {
		if strings.HasPrefix(k, "apiserver_longrunning_requests{") && strings.Contains(k, `resource="pods"`) && strings.Contains(k, `subresource="log"`) {
			a.LogRequests += v
		}
	}
	return nil
}

// apiRSS is the largest of apiWindow readings of the process's VmRSS, apiEvery apart.
func apiRSS(ctx context.Context, pid int) (int64, error) {
	var most int64
	for i := range apiWindow {
		if i > 0 {
			if err := sleepCtx(ctx, apiEvery); err != nil {
				return 0, err
			}
		}
		r, err := procRSS(pid)
		if err != nil {
			return 0, err
		}
		most = max(most, r)
	}
	return most, nil
}

// apiserverPID finds the control plane's kube-apiserver: the process whose command line
// names the cluster's certificate directory. cluster.Cluster does not expose its
// processes, and each restart changes the pid.
func apiserverPID(e *env) (int, error) {
	want := []byte("--cert-dir=" + filepath.Join(e.c.Dir, "apiserver-certs") + "\x00")
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		if cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && bytes.Contains(cmdline, want) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no kube-apiserver process of %s", e.c.Dir)
}

// apiMetrics scrapes the API server's /metrics with the admin client.
func apiMetrics(ctx context.Context, e *env) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	data, err := e.c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("API server /metrics: %w", err)
	}
	return parseMetrics(bytes.NewReader(data))
}
