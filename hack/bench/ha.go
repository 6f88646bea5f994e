package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kubelogd/kubelogd/internal/shard"
)

// The ha scenario (issue #16) runs kubelogd replicas that share one output directory
// through shard Leases, with kubelogd's default Lease durations because the target is
// stated against them. It measures two things:
//
//   - takeover: haReplicas replicas with --shards haShards follow containers that each
//     log a line every haEmitInterval. Each round SIGKILLs one replica and times, for each
//     shard it held, the SIGKILL → another replica holds the shard's Lease (the Leases
//     listed every haLeasePoll) and the SIGKILL → every container of the shard has a line
//     emitted after the SIGKILL readable on disk. Then a new replica joins and the round
//     ends once the shards are shared evenly again and every container is written.
//   - coverage: the backlog of runCoverage (pods that exist with their lines before
//     start) collected once by one kubelogd without --shards, the single-writer
//     deployment and so the fair baseline, and once by haReplicas replicas with --shards
//     haShards in one directory; reported as the ratio of the two times.

const (
	haShards        = 12
	haReplicas      = 3
	haLeaseDuration = 15 * time.Second // kubelogd's --lease-duration default
	haEmitInterval  = 250 * time.Millisecond
	haLeasePoll     = 100 * time.Millisecond
	haLineSize      = 100
	haLeaseNS       = "kubelogd-leases"
	nsHALive        = "ha-live"
	nsHABacklog     = "ha-backlog"
)

// haResult is the ha scenario.
type haResult struct {
	Takeover *takeoverResult   `json:"takeover,omitempty"`
	Coverage *haCoverageResult `json:"coverage,omitempty"`
}

// takeoverResult is the takeover after SIGKILL. A sample is one shard of a killed
// replica; its times run from just before the SIGKILL.
type takeoverResult struct {
	Replicas             int     `json:"replicas"`
	Shards               int     `json:"shards"`
	Pods                 int     `json:"pods"`
	Rounds               int     `json:"rounds"`
	LeaseDurationSeconds float64 `json:"lease_duration_seconds"`
	EmitIntervalSeconds  float64 `json:"emit_interval_seconds"`
	Samples              int     `json:"samples"`
	// Lease*: until another replica holds the shard's Lease (poll resolution 100 ms).
	LeaseP50 float64 `json:"lease_p50_seconds"`
	LeaseP99 float64 `json:"lease_p99_seconds"`
	LeaseMax float64 `json:"lease_max_seconds"`
	// Lines*: until every container of the shard has a line emitted after the SIGKILL
	// readable in its file: the takeover as the user sees it, and the one with the target.
	LinesP50 float64 `json:"lines_p50_seconds"`
	LinesP99 float64 `json:"lines_p99_seconds"`
	LinesMax float64 `json:"lines_max_seconds"`
	// RejoinMax is the longest a new replica took from its start to the even share.
	RejoinMax float64 `json:"rejoin_max_seconds"`
	// Duplicates counts lines read again from a file (none expected: handovers are exact).
	Duplicates int `json:"duplicates"`
}

// haCoverageResult compares one kubelogd with replicas on the same backlog.
type haCoverageResult struct {
	Pods         int     `json:"pods"`
	LinesPerPod  int     `json:"lines_per_pod"`
	Nodes        int     `json:"nodes"`
	Replicas     int     `json:"replicas"`
	Shards       int     `json:"shards"`
	SetupSeconds float64 `json:"setup_seconds"`
	// SingleSeconds runs from the exec of one kubelogd without --shards, ReplicasSeconds
	// from the first replica's, until every line is readable.
	SingleSeconds   float64 `json:"single_seconds"`
	ReplicasSeconds float64 `json:"replicas_seconds"`
	Ratio           float64 `json:"ratio_replicas_over_single"`
	// Extra lines beyond the backlog, for each (none expected).
	SingleExtra   int `json:"single_extra_lines"`
	ReplicasExtra int `json:"replicas_extra_lines"`
}

func runHA(ctx context.Context, cfg *config) (*haResult, error) {
	// --profile runs kubelogd in-process through a subcommand that knows no HA flags: the
	// replicas always run the kubelogd binary.
	plain := *cfg
	plain.profileDir = ""
	// The parts are independent: a failed takeover still leaves the coverage to measure.
	res := &haResult{}
	var errs []error
	var err error
	if res.Takeover, err = runTakeover(ctx, &plain); err != nil {
		errs = append(errs, fmt.Errorf("takeover: %w", err))
	}
	if ctx.Err() == nil {
		settleDisk(cfg)
		if res.Coverage, err = runHACoverage(ctx, &plain, cfg.haPods); err != nil {
			errs = append(errs, fmt.Errorf("coverage: %w", err))
		}
	}
	return res, errors.Join(errs...)
}

// runTakeover is the takeover part: rounds of SIGKILL, takeover and rejoin.
func runTakeover(ctx context.Context, cfg *config) (*takeoverResult, error) {
	n := cfg.haTakeoverPods
	res := &takeoverResult{Replicas: haReplicas, Shards: haShards, Pods: n, Rounds: cfg.haRounds,
		LeaseDurationSeconds: haLeaseDuration.Seconds(), EmitIntervalSeconds: haEmitInterval.Seconds()}
	e, err := startEnv(ctx, cfg.self, coverageNodes, nil)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	if err := e.c.EnsureNamespace(ctx, haLeaseNS); err != nil {
		return nil, err
	}
	if _, err := e.createRunning(ctx, nsHALive, 0, n, 0, 0); err != nil {
		return nil, err
	}
	idx, all := make([]int, n), make([]string, n)
	byShard := make([][]string, haShards)
	for i := range n {
		idx[i], all[i] = i, podName(i)
		s := shard.Of(nsHALive, all[i], haShards)
		byShard[s] = append(byShard[s], all[i])
	}
	// Every container logs a line every haEmitInterval until the kubelets stop; the
	// emit call itself is only abandoned when the scenario ends.
	ectx, stopEmit := context.WithCancel(ctx)
	emitDone := make(chan struct{})
	go func() {
		defer close(emitDone)
		_, _, _ = e.each(ectx, hostReq{Op: "emit", NS: nsHALive, Interval: haEmitInterval, Duration: 24 * time.Hour, Size: haLineSize}, idx)
	}()
	defer func() { stopEmit(); <-emitDone }()

	dir, cleanup := haWorkDir(cfg, "ha-takeover")
	defer cleanup()
	fresh := newFreshTracker()
	stopTail, err := startTailer(ctx, dir, fresh.onLine)
	if err != nil {
		return nil, err
	}
	defer stopTail()
	rs := newReplicaSet(cfg, e, dir, shardFlags)
	defer rs.stop()
	for range haReplicas {
		if _, err := rs.start(); err != nil {
			return nil, err
		}
	}
	if err := rs.settle(ctx, fresh, all); err != nil {
		return nil, fmt.Errorf("before the first SIGKILL: %w", err)
	}
	cfg.progress("ha takeover: %d replicas hold %d shards evenly, %d containers logging every %s are written %.2fs after the first start",
		haReplicas, haShards, n, haEmitInterval, time.Since(rs.firstStart).Seconds())

	var lease, lines []float64
	for round := range cfg.haRounds {
		r, err := takeoverRound(ctx, rs, fresh, byShard, all)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round+1, err)
		}
		lease, lines = append(lease, r.lease...), append(lines, r.lines...)
		res.RejoinMax = max(res.RejoinMax, r.rejoin)
		cfg.progress("ha takeover round %d: %s SIGKILLed holding shards %v; Lease taken after max %.2fs, new lines readable after max %.2fs; %s joined, even again after %.2fs",
			round+1, r.victim, r.shards, percentile(r.lease, 100), percentile(r.lines, 100), r.joined, r.rejoin)
	}
	res.Samples = len(lease)
	res.LeaseP50, res.LeaseP99, res.LeaseMax = percentile(lease, 50), percentile(lease, 99), percentile(lease, 100)
	res.LinesP50, res.LinesP99, res.LinesMax = percentile(lines, 50), percentile(lines, 99), percentile(lines, 100)
	res.Duplicates = fresh.duplicates()
	return res, nil
}

// roundResult is one SIGKILL: per shard the victim held, the seconds until its Lease
// was taken and until its containers' new lines were readable.
type roundResult struct {
	victim, joined string
	shards         []int
	lease, lines   []float64
	rejoin         float64
}

// takeoverRound SIGKILLs the oldest replica, times the takeover of its shards, starts a
// new replica and waits until the shares are even and every container written again.
func takeoverRound(ctx context.Context, rs *replicaSet, fresh *freshTracker, byShard [][]string, all []string) (*roundResult, error) {
	h, err := rs.holders(ctx)
	if err != nil {
		return nil, err
	}
	r := &roundResult{victim: rs.order[0]}
	var pods []string
	for s, id := range h {
		if id == r.victim {
			r.shards = append(r.shards, s)
			pods = append(pods, byShard[s]...)
		}
	}
	// The mark comes first: a line emitted after it cannot reach the victim's files, as
	// the SIGKILL follows within microseconds.
	at := time.Now()
	fresh.mark(at)
	rs.kill()

	deadline := at.Add(4 * haLeaseDuration)
	taken := map[int]float64{}
	for len(taken) < len(r.shards) {
		if err := rs.alive(); err != nil {
			return nil, err
		}
		h, err := rs.holders(ctx)
		now := time.Now()
		if err == nil {
			for _, s := range r.shards {
				if _, ok := taken[s]; !ok && h[s] != "" && h[s] != r.victim {
					taken[s] = now.Sub(at).Seconds()
				}
			}
		}
		if now.After(deadline) {
			return nil, fmt.Errorf("%d of the %d shards of SIGKILLed %s taken after %s", len(taken), len(r.shards), r.victim, now.Sub(at).Round(time.Second))
		}
		if err := sleepCtx(ctx, haLeasePoll); err != nil {
			return nil, err
		}
	}
	covered, err := fresh.wait(ctx, pods, rs.alive, max(time.Until(deadline), 10*time.Second))
	if err != nil {
		return nil, fmt.Errorf("the shards of SIGKILLed %s: %w", r.victim, err)
	}
	for _, s := range r.shards {
		r.lease = append(r.lease, taken[s])
		if len(byShard[s]) == 0 {
			continue // no container to write: the Lease is the whole takeover
		}
		var last time.Time
		for _, p := range byShard[s] {
			if t := covered[p]; t.After(last) {
				last = t
			}
		}
		r.lines = append(r.lines, last.Sub(at).Seconds())
	}

	d, err := rs.start()
	if err != nil {
		return nil, err
	}
	r.joined = rs.order[len(rs.order)-1]
	if err := rs.settle(ctx, fresh, all); err != nil {
		return nil, fmt.Errorf("after %s joined: %w", r.joined, err)
	}
	r.rejoin = fresh.sinceMark().Sub(d.Start).Seconds()
	return r, nil
}

// runHACoverage is the coverage part: the backlog of n pods collected by one kubelogd,
// then by haReplicas replicas.
func runHACoverage(ctx context.Context, cfg *config, n int) (*haCoverageResult, error) {
	res := &haCoverageResult{Pods: n, LinesPerPod: coverageLines, Nodes: coverageNodes, Replicas: haReplicas, Shards: haShards}
	e, err := startEnv(ctx, cfg.self, coverageNodes, nil)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	if err := e.c.EnsureNamespace(ctx, haLeaseNS); err != nil {
		return nil, err
	}
	start := time.Now()
	if _, err := e.createRunning(ctx, nsHABacklog, 0, n, coverageLines, coverageLineSize); err != nil {
		return nil, err
	}
	res.SetupSeconds = time.Since(start).Seconds()
	cfg.progress("ha coverage: %d running pods with %d lines each created in %.2fs", n, coverageLines, res.SetupSeconds)

	noFlags := func(string) []string { return nil }
	if res.SingleSeconds, res.SingleExtra, err = haCover(ctx, cfg, e, n, "ha-coverage-single", 1, noFlags); err != nil {
		return nil, fmt.Errorf("one kubelogd: %w", err)
	}
	cfg.progress("ha coverage: one kubelogd (no --shards) covered %d pods %.2fs after its start", n, res.SingleSeconds)
	settleDisk(cfg)
	if res.ReplicasSeconds, res.ReplicasExtra, err = haCover(ctx, cfg, e, n, "ha-coverage-replicas", haReplicas, shardFlags); err != nil {
		return nil, fmt.Errorf("%d replicas: %w", haReplicas, err)
	}
	res.Ratio = res.ReplicasSeconds / res.SingleSeconds
	cfg.progress("ha coverage: %d replicas (--shards %d) covered %d pods %.2fs after the first one's start (%.2f× one kubelogd)",
		haReplicas, haShards, n, res.ReplicasSeconds, res.Ratio)
	return res, nil
}

// haCover starts replicas kubelogd processes with flags into a new directory and returns
// how long after the first one's exec every line of the backlog was readable, and the
// lines read beyond it.
func haCover(ctx context.Context, cfg *config, e *env, n int, name string, replicas int, flags func(string) []string) (float64, int, error) {
	dir, cleanup := haWorkDir(cfg, name)
	defer cleanup()
	tr := newCoverTracker(coverageLines, map[string]int{nsHABacklog: n})
	stopTail, err := startTailer(ctx, dir, tr.onLine)
	if err != nil {
		return 0, 0, err
	}
	defer stopTail()
	rs := newReplicaSet(cfg, e, dir, flags)
	defer rs.stop()
	for range replicas {
		if _, err := rs.start(); err != nil {
			return 0, 0, err
		}
	}
	if err := tr.wait(ctx, rs.alive, nsHABacklog, 5*time.Minute); err != nil {
		return 0, 0, err
	}
	tr.mu.Lock()
	extra := tr.extra
	tr.mu.Unlock()
	return tr.last(nsHABacklog).Sub(rs.firstStart).Seconds(), extra, nil
}

// haTakeoverTarget names the takeover's target in the report.
const haTakeoverTarget = "HA takeover p99 after SIGKILL: a shard's containers' new lines readable again"

// rows adds the scenario's rows to the report's table; goal appends a target's verdict.
func (h *haResult) rows(t *table, goal func(name, text string) string) {
	if tk := h.Takeover; tk != nil {
		t.row(fmt.Sprintf("6 ha takeover: %d replicas, --shards %d, --lease-duration %.0fs (default); %s containers × a line every %.2f s; rounds of SIGKILL, new replica, even share: %d",
			tk.Replicas, tk.Shards, tk.LeaseDurationSeconds, commas(tk.Pods), tk.EmitIntervalSeconds, tk.Rounds))
		t.row("", "SIGKILL → Lease held by another replica (per shard)", fmt.Sprintf("p50 %.2f s, p99 %.2f s, max %.2f s (%d shards)", tk.LeaseP50, tk.LeaseP99, tk.LeaseMax, tk.Samples), "")
		t.row("", "SIGKILL → the shard's new lines readable", fmt.Sprintf("p50 %.2f s, p99 %.2f s, max %.2f s", tk.LinesP50, tk.LinesP99, tk.LinesMax),
			goal(haTakeoverTarget, fmt.Sprintf("p99 ≤ %.0f s (lease + 5 s)", tk.LeaseDurationSeconds+5)))
		t.row("", "new replica's start → even share", fmt.Sprintf("max %.2f s; %d lines read twice", tk.RejoinMax, tk.Duplicates), "")
	}
	if c := h.Coverage; c != nil {
		t.row(fmt.Sprintf("6 ha coverage: %s pods × %d lines existing before start, %d fake kubelets, one directory", commas(c.Pods), c.LinesPerPod, c.Nodes))
		t.row("", "1 kubelogd (no --shards): exec → all readable", fmt.Sprintf("%.2f s", c.SingleSeconds), "")
		t.row("", fmt.Sprintf("%d replicas, --shards %d: first exec → all readable", c.Replicas, c.Shards), fmt.Sprintf("%.2f s", c.ReplicasSeconds), "")
		t.row("", fmt.Sprintf("%d replicas ÷ 1", c.Replicas), fmt.Sprintf("%.2f×", c.Ratio),
			"no target: the replicas share this machine's CPUs, so no speedup is expected; they take no shard in their first --retry-period (2 s)")
		if c.SingleExtra+c.ReplicasExtra > 0 {
			t.row("", "anomalies", fmt.Sprintf("extra lines: %d (1 kubelogd), %d (replicas)", c.SingleExtra, c.ReplicasExtra), "")
		}
	}
}
