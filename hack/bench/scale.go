package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The scale scenario (issue #17) puts --scale-containers containers (20,000 by default)
// on one kubelogd with its default flags, spread over --scale-nodes fake kubelets, so
// that the follow budget (50 streams per node, 2,000 in all) leaves most of them polled:
//
//  1. it creates the pods, each of --scale-containers-per-pod containers with
//     scaleInitLines lines, before kubelogd starts, and times kubelogd's exec → every
//     container's lines readable (coverage);
//  2. for --scale-duration every container logs a line at random moments (a Poisson
//     process of mean scaleMean), and scaleBusyShare of them, the busy ones, a line every
//     scaleBusyInterval on average, so that polled containers find lines and earn
//     streams from idle ones (promotions and demotions); the schedule is drawn from
//     --scale-seed;
//  3. once the emitters stop it waits until every line is readable (quiescence), then
//     compares every container's file with the lines the fake kubelet recorded
//     (internal/testing/oracle): each exactly once, in order, and no marker;
//  4. all along, every scaleSampleEvery, it samples the follow streams open on each
//     fake kubelet, kubelogd's metrics, and the RSS of kubelogd and the API server.
//
// The bench's tailer holds every file open; 20,000 of them would not fit under this
// machine's RLIMIT_NOFILE beside everything else, so the scenario reads kubelogd's files
// by scans instead (scale_files.go): a stat of every file, a read of what grew.

// scaleConfig is the scale scenario's part of the command line.
type scaleConfig struct {
	containers, nodes, perPod int
	duration                  time.Duration
	seed                      uint64
}

func (s *scaleConfig) flags(fs *flag.FlagSet) {
	fs.IntVar(&s.containers, "scale-containers", 20_000, "containers of the scale scenario, all collected by one kubelogd")
	fs.IntVar(&s.nodes, "scale-nodes", 20, "fake kubelets of the scale scenario (the follow budget is per node)")
	fs.IntVar(&s.perPod, "scale-containers-per-pod", 4, "containers per pod of the scale scenario; --scale-containers must be a multiple")
	fs.DurationVar(&s.duration, "scale-duration", 5*time.Minute, "how long the scale scenario's containers log")
	fs.Uint64Var(&s.seed, "scale-seed", 0, "seed of the scale scenario's busy containers and line schedule (0: from the clock; reported)")
}

func (s *scaleConfig) validate() error {
	switch {
	case s.containers < 1 || s.nodes < 1 || s.perPod < 1 || s.duration <= 0:
		return errors.New("--scale-containers, --scale-nodes, --scale-containers-per-pod and --scale-duration must be positive")
	case s.containers%s.perPod != 0:
		return fmt.Errorf("--scale-containers %d is not a multiple of --scale-containers-per-pod %d", s.containers, s.perPod)
	}
	return nil
}

const (
	nsScale           = "scale"
	scaleInitLines    = 2
	scaleLineSize     = 100
	scaleMean         = 45 * time.Second
	scaleBusyShare    = 0.02
	scaleBusyInterval = 500 * time.Millisecond
	scaleSampleEvery  = 2 * time.Second
	scaleCreators     = 3 // pods each kubelet host creates at once, as createRunning
	// kubelogd's defaults, which the scenario leaves alone and the targets hold it to.
	scaleBudgetPerNode = 50
	scaleBudgetTotal   = 2000
	scalePollQPS       = 250 // half of --kube-api-qps 500
	scalePollMax       = 30 * time.Second
)

// The scale scenario's targets, by name.
const (
	scaleTargetCovered = "scale: containers covered (their first lines readable)"
	scaleTargetExact   = "scale: containers whose file holds every line exactly once, in order"
	scaleTargetNode    = "scale: follow streams open on one node at once (max)"
	scaleTargetTotal   = "scale: follow streams open in all at once (max of the samples)"
)

// scaleResult is the scale scenario.
type scaleResult struct {
	Containers int    `json:"containers"`
	Pods       int    `json:"pods"`
	PerPod     int    `json:"containers_per_pod"`
	Nodes      int    `json:"nodes"`
	Seed       uint64 `json:"seed"`
	InitLines  int    `json:"initial_lines_per_container"`
	// The logging: quiet containers a line every MeanIntervalSeconds on average, Busy
	// containers BusyLinesPerSecond.
	DurationSeconds     float64 `json:"duration_seconds"`
	MeanIntervalSeconds float64 `json:"mean_interval_seconds"`
	Busy                int     `json:"busy_containers"`
	BusyLinesPerSecond  float64 `json:"busy_lines_per_second"`
	Emitted             int     `json:"lines_emitted_while_logging"`
	EmitBehindMs        float64 `json:"emit_behind_ms"`

	SetupSeconds float64 `json:"setup_seconds"` // creating the pods
	// Reached is the last step the run completed: coverage, logging, quiescence or check.
	Reached string `json:"reached"`
	// Coverage: kubelogd's exec → every container's initial lines readable; Covered
	// containers had them when the wait ended.
	CoverageSeconds    float64 `json:"coverage_seconds"`
	CoverageP50Seconds float64 `json:"coverage_p50_seconds"`
	Covered            int     `json:"covered"`
	// ScanSeconds is the longest scan of all files: the resolution of the times above.
	ScanSeconds float64 `json:"scan_seconds"`
	// QuiescenceSeconds: the emitters stopped → every line readable.
	QuiescenceSeconds float64    `json:"quiescence_seconds"`
	Quiet             bool       `json:"quiet"`
	Check             scaleCheck `json:"check"`
	GapsTotal         float64    `json:"kubelogd_gaps_total"`
	LinesWritten      float64    `json:"kubelogd_lines_written_total"`

	// Follow streams at the fake kubelets: the most one node had open at once (exact,
	// counted by the kubelet), and the most all had at one sample.
	MaxFollowsPerNode int    `json:"max_follows_per_node"`
	MaxFollowsNode    string `json:"max_follows_node"`
	// MaxFollowsByNode is each kubelet's most follow streams at once, in node order.
	MaxFollowsByNode []int   `json:"max_follows_by_node"`
	MaxFollowsTotal  int     `json:"max_follows_total"`
	MaxStreamsActive float64 `json:"max_kubelogd_streams_active"`
	Samples          int     `json:"samples"`
	ScrapeFailures   int     `json:"samples_without_metrics"` // kubelogd's /metrics did not answer
	// Targets are kubelogd_targets by state at the end of the logging.
	Targets map[string]float64 `json:"kubelogd_targets"`

	// Polls while logging: kubelogd_polls_total's rate and the reads without follow the
	// kubelets received; the time between two polls of one container from the kubelets'
	// request times (exact) and from kubelogd_poll_interval_seconds (within its buckets).
	PollsPerSecond        float64 `json:"polls_per_second"`
	KubeletPollsPerSecond float64 `json:"kubelet_polls_per_second"`
	KubeletFollowRequests int     `json:"kubelet_follow_requests"`
	Promotions            float64 `json:"promotions"`
	Demotions             float64 `json:"demotions"`
	PollIntervals         int     `json:"poll_intervals"`
	PollIntervalP50       float64 `json:"poll_interval_p50_seconds"`
	PollIntervalP99       float64 `json:"poll_interval_p99_seconds"`
	PollIntervalMax       float64 `json:"poll_interval_max_seconds"`
	HistP50               float64 `json:"histogram_poll_interval_p50_seconds"`
	HistP99               float64 `json:"histogram_poll_interval_p99_seconds"`

	// Memory: kubelogd's VmRSS once every container was covered, at most while logging
	// and at its end; its descriptors at most and its limit; the others' at most.
	RSSCovered         int64   `json:"rss_covered_bytes"`
	RSSMax             int64   `json:"rss_max_bytes"`
	RSSEnd             int64   `json:"rss_end_bytes"`
	RSSKiBPerContainer float64 `json:"rss_max_kib_per_container"`
	FDsMax             int     `json:"fds_max"`
	FDLimit            int     `json:"fd_limit"`
	APIServerRSSMax    int64   `json:"kube_apiserver_rss_max_bytes"`
	EtcdRSSMax         int64   `json:"etcd_rss_max_bytes"`
	HostsRSSMax        int64   `json:"kubelet_hosts_rss_max_bytes"`
	// CPU while logging: kubelogd's cores, and the share of all CPUs busy.
	KubelogdCores float64 `json:"kubelogd_cores"`
	MachineBusy   float64 `json:"machine_busy"`
}

func runScale(ctx context.Context, cfg *config) (*scaleResult, error) {
	sc := cfg.scale
	res := &scaleResult{Containers: sc.containers, Pods: sc.containers / sc.perPod, PerPod: sc.perPod, Nodes: sc.nodes,
		Seed: sc.seed, InitLines: scaleInitLines, DurationSeconds: sc.duration.Seconds(), MeanIntervalSeconds: scaleMean.Seconds(),
		BusyLinesPerSecond: float64(time.Second) / float64(scaleBusyInterval)}
	if res.Seed == 0 {
		res.Seed = uint64(time.Now().UnixNano())
	}
	// The kubelets hold an inotify instance per follow stream: the budget bounds them.
	// (main raises the limit for the run; this checks it when main could not).
	follows := min(sc.nodes*scaleBudgetPerNode, scaleBudgetTotal)
	if n, err := strconv.Atoi(readTrim("/proc/sys/fs/inotify/max_user_instances")); err == nil && n < follows+512 {
		return nil, fmt.Errorf("fs.inotify.max_user_instances is %d: too few for %d follow streams and the rest", n, follows)
	}
	e, err := startEnv(ctx, cfg.self, sc.nodes, nil)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	if err := e.c.EnsureNamespace(ctx, nsScale); err != nil {
		return nil, err
	}
	pods := make([]int, res.Pods)
	for i := range pods {
		pods[i] = i
	}
	start := time.Now()
	req := hostReq{Op: "scale-create", NS: nsScale, Lines: scaleInitLines, Size: scaleLineSize, Workers: scaleCreators,
		Scale: &scaleReq{PerPod: sc.perPod}}
	_, split, err := e.each(ctx, req, pods)
	if err != nil {
		return nil, err
	}
	res.SetupSeconds = time.Since(start).Seconds()
	cfg.progress("scale: %s pods of %d containers with %d lines each created on %d fake kubelets in %.1fs",
		commas(res.Pods), sc.perPod, scaleInitLines, sc.nodes, res.SetupSeconds)

	dir := filepath.Join(cfg.workDir, "scale")
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	if lim := procFDLimit(os.Getpid()); lim > 0 && lim < sc.containers+512 {
		cfg.progress("scale: WARNING: kubelogd inherits a limit of %d descriptors and keeps a file open per container that wrote in the last --idle-close (5m): expect \"too many open files\"", lim)
	}
	files := newFileScanner(dir, nsScale, split, sc.perPod)
	d, err := startKubelogd(cfg, "scale", e.c.Kubeconfig, dir)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	smp := startScaleSampler(ctx, cfg, e, d)
	err = res.run(ctx, cfg, e, d, files, pods, dir)
	smp.stop()
	// What the run got to is reported even when it failed or was interrupted: the
	// streams above all.
	gctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	res.gather(gctx, e, d, smp)
	cancel()
	return res, err
}

// run is the scenario from kubelogd's start: coverage, logging, quiescence and the check.
// It goes on after a coverage or quiescence that timed out, to report the rest, and
// stops when kubelogd exits or ctx ends.
func (res *scaleResult) run(ctx context.Context, cfg *config, e *env, d *kubelogdProc, files *fileScanner, pods []int, dir string) error {
	sc := cfg.scale
	var errs []error
	fatal := func(err error) error {
		return errors.Join(append(errs, err)...)
	}
	coverTimeout := max(5*time.Minute, time.Duration(sc.containers)*20*time.Millisecond)
	err := files.wait(ctx, d.alive, func(int) int { return scaleInitLines }, true, coverTimeout, 500*time.Millisecond)
	covered := files.coveredTimes(d.Start)
	res.Reached, res.Covered = "coverage", len(covered)
	res.CoverageSeconds, res.CoverageP50Seconds = percentile(covered, 100), percentile(covered, 50)
	res.ScanSeconds = files.longest.Seconds()
	res.RSSCovered, _ = d.rss()
	if err != nil && (d.alive() != nil || ctx.Err() != nil) {
		return fatal(err)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("coverage: %w", err))
	}
	cfg.progress("scale: %s of %s containers covered %.2fs after kubelogd's start (p50 %.2fs); RSS %.0f MiB",
		commas(res.Covered), commas(sc.containers), res.CoverageSeconds, res.CoverageP50Seconds, float64(res.RSSCovered)/(1<<20))

	if err := res.logging(ctx, cfg, e, d, pods); err != nil {
		return fatal(err)
	}
	res.Reached = "logging"
	logEnd := time.Now()
	resps, _, err := e.each(ctx, hostReq{Op: "scale-counts", NS: nsScale, Scale: &scaleReq{PerPod: sc.perPod}}, pods)
	if err != nil {
		return fatal(err)
	}
	var want []int
	for _, r := range resps {
		want = append(want, r.Counts...)
	}
	quietTimeout := max(5*time.Minute, time.Duration(sc.containers)*30*time.Millisecond)
	err = files.wait(ctx, d.alive, func(i int) int { return want[i] }, false, quietTimeout, scaleSampleEvery)
	res.Reached, res.Quiet = "quiescence", err == nil
	res.QuiescenceSeconds = time.Since(logEnd).Seconds()
	res.ScanSeconds = files.longest.Seconds()
	if err != nil && (d.alive() != nil || ctx.Err() != nil) {
		return fatal(err)
	}
	if err != nil {
		errs = append(errs, fmt.Errorf("quiescence: %w", err))
	} else {
		cfg.progress("scale: every line readable %.1fs after the emitters stopped", res.QuiescenceSeconds)
	}

	resps, _, err = e.each(ctx, hostReq{Op: "scale-check", NS: nsScale, Scale: &scaleReq{PerPod: sc.perPod, Dir: dir}}, pods)
	if err != nil {
		return fatal(err)
	}
	for _, r := range resps {
		res.Check.add(*r.Scale.Check)
	}
	res.Reached = "check"
	cfg.progress("scale: %s of %s files exact (%s lines checked), %d markers",
		commas(res.Check.Exact), commas(res.Check.Containers), commas(res.Check.Lines), res.Check.Markers)
	if res.Check.Exact < sc.containers {
		errs = append(errs, fmt.Errorf("%d of %d files not exact: %d lost, %d duplicated, %d reordered, %d unexpected lines, %d markers, %d files unreadable; the first:\n%s",
			sc.containers-res.Check.Exact, sc.containers, res.Check.Lost, res.Check.Duplicated, res.Check.Reordered,
			res.Check.Unexpected, res.Check.Markers, res.Check.Unreadable, strings.Join(res.Check.Failures, "\n")))
	}
	return errors.Join(errs...)
}

// logging runs the emitters for the duration and measures polls, streams and CPU meanwhile.
func (res *scaleResult) logging(ctx context.Context, cfg *config, e *env, d *kubelogdProc, pods []int) error {
	sc := cfg.scale
	rng := rand.New(rand.NewPCG(res.Seed, 0))
	busy := rng.Perm(sc.containers)[:int(float64(sc.containers)*scaleBusyShare)]
	slices.Sort(busy)
	res.Busy = len(busy)
	// A scrape that fails (kubelogd out of descriptors, say) leaves its figures at 0.
	m0, _ := d.metrics(ctx)
	cpu0, _ := d.cpu()
	busy0, total0 := machineCPU()
	cfg.progress("scale: logging for %s, seed %d: a line every %.0fs on average, %d busy containers at %.0f lines/s",
		sc.duration, res.Seed, scaleMean.Seconds(), res.Busy, res.BusyLinesPerSecond)
	from := time.Now()
	req := hostReq{Op: "scale-emit", NS: nsScale, Size: scaleLineSize, Duration: sc.duration,
		Scale: &scaleReq{PerPod: sc.perPod, Mean: scaleMean, BusyInterval: scaleBusyInterval, Busy: busy, Seed: res.Seed}}
	resps, _, err := e.each(ctx, req, pods)
	if err != nil {
		return err
	}
	to := time.Now()
	elapsed := to.Sub(from).Seconds()
	m1, _ := d.metrics(ctx)
	if cpu1, err := d.cpu(); err == nil {
		res.KubelogdCores = (cpu1 - cpu0).Seconds() / elapsed
	}
	if busy1, total1 := machineCPU(); total1 > total0 {
		res.MachineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	for _, r := range resps {
		for _, c := range r.Counts {
			res.Emitted += c
		}
		res.EmitBehindMs = max(res.EmitBehindMs, ms(r.Lag))
	}
	res.PollsPerSecond = (m1["kubelogd_polls_total"] - m0["kubelogd_polls_total"]) / elapsed
	res.Promotions = m1["kubelogd_stream_promotions_total"] - m0["kubelogd_stream_promotions_total"]
	res.Demotions = m1["kubelogd_stream_demotions_total"] - m0["kubelogd_stream_demotions_total"]
	h0, h1 := buckets(m0, "kubelogd_poll_interval_seconds"), buckets(m1, "kubelogd_poll_interval_seconds")
	for le := range h1 {
		h1[le] -= h0[le]
	}
	res.HistP50, res.HistP99 = histQuantile(h1, 0.5), histQuantile(h1, 0.99)
	res.Targets = labelled(m1, "kubelogd_targets", "state")

	// The kubelets' view of the same window.
	resps, _, err = e.each(ctx, hostReq{Op: "scale-polls", NS: nsScale, Scale: &scaleReq{PerPod: sc.perPod, From: from.UnixNano(), To: to.UnixNano()}}, nil)
	if err != nil {
		return err
	}
	var iv []float64
	polls := 0
	for _, r := range resps {
		iv = append(iv, r.Scale.Intervals...)
		polls += r.Scale.Polls
		res.KubeletFollowRequests += r.Scale.FollowReqs
	}
	res.KubeletPollsPerSecond = float64(polls) / elapsed
	res.PollIntervals = len(iv)
	res.PollIntervalP50, res.PollIntervalP99, res.PollIntervalMax = percentile(iv, 50), percentile(iv, 99), percentile(iv, 100)
	cfg.progress("scale: logged %s lines; %.1f polls/s (kubelets: %.1f/s), interval p50 %.1fs p99 %.1fs (histogram p50 %.1fs p99 %.1fs); %.0f promotions, %.0f demotions",
		commas(res.Emitted), res.PollsPerSecond, res.KubeletPollsPerSecond, res.PollIntervalP50, res.PollIntervalP99,
		res.HistP50, res.HistP99, res.Promotions, res.Demotions)
	return nil
}

// gather collects the figures of the whole run, as far as they can be had: the most
// follow streams on each kubelet, kubelogd's last metrics and memory, and the samples.
func (res *scaleResult) gather(ctx context.Context, e *env, d *kubelogdProc, smp *scaleSampler) {
	if resps, _, err := e.each(ctx, hostReq{Op: "scale-streams", Scale: &scaleReq{PerPod: res.PerPod}}, nil); err == nil {
		res.MaxFollowsByNode = make([]int, len(resps))
		for h, r := range resps {
			res.MaxFollowsByNode[h] = r.Scale.MaxFollows
			if r.Scale.MaxFollows > res.MaxFollowsPerNode || res.MaxFollowsNode == "" {
				res.MaxFollowsPerNode, res.MaxFollowsNode = r.Scale.MaxFollows, e.hosts[h].node
			}
		}
	}
	if m, err := d.metrics(ctx); err == nil {
		res.GapsTotal, res.LinesWritten = m["kubelogd_gaps_total"], m["kubelogd_lines_written_total"]
	}
	res.FDLimit = procFDLimit(d.pid)
	res.RSSEnd, _ = d.rss()
	for _, s := range smp.all() {
		res.Samples++
		if s.scrapeFailed {
			res.ScrapeFailures++
		}
		res.MaxFollowsTotal = max(res.MaxFollowsTotal, s.follows)
		res.MaxStreamsActive = max(res.MaxStreamsActive, s.active)
		res.RSSMax = max(res.RSSMax, s.rss)
		res.FDsMax = max(res.FDsMax, s.fds)
		res.APIServerRSSMax = max(res.APIServerRSSMax, s.apiRSS)
		res.EtcdRSSMax = max(res.EtcdRSSMax, s.etcdRSS)
		res.HostsRSSMax = max(res.HostsRSSMax, s.hostsRSS)
	}
	res.RSSKiBPerContainer = float64(res.RSSMax) / 1024 / float64(res.Containers)
}

// targets adds the scenario's targets; add is report.finish's. A target is only added
// once its figure was measured; exactness, unchecked, is missed.
func (res *scaleResult) targets(add func(name string, value, goal float64, unit string, lowerIsBetter bool, detail string) *target) {
	n := float64(res.Containers)
	if res.Reached == "" {
		return
	}
	add(scaleTargetCovered, float64(res.Covered), n, "containers", false,
		fmt.Sprintf("all %s; the last %.2f s after kubelogd's exec", commas(res.Containers), res.CoverageSeconds))
	detail := fmt.Sprintf("all %s; %s lines checked, %d lost, %d duplicated, %d reordered, %d unexpected, %d markers", commas(res.Containers),
		commas(res.Check.Lines), res.Check.Lost, res.Check.Duplicated, res.Check.Reordered, res.Check.Unexpected, res.Check.Markers)
	if res.Reached != "check" {
		detail = fmt.Sprintf("not checked: the run ended after its %s", res.Reached)
	}
	add(scaleTargetExact, float64(res.Check.Exact), n, "containers", false, detail)
	if res.MaxFollowsNode != "" {
		add(scaleTargetNode, float64(res.MaxFollowsPerNode), scaleBudgetPerNode, "streams", true,
			fmt.Sprintf("--max-streams-per-node %d (default), on %s", scaleBudgetPerNode, res.MaxFollowsNode))
	}
	if res.Samples > 0 {
		add(scaleTargetTotal, float64(res.MaxFollowsTotal), float64(min(scaleBudgetTotal, res.Nodes*scaleBudgetPerNode)), "streams", true,
			fmt.Sprintf("--max-streams %d (default) or %d nodes × %d, whichever is less", scaleBudgetTotal, res.Nodes, scaleBudgetPerNode))
	}
}

// rows adds the scenario's rows to the report's table, those of the steps the run
// completed; goal appends a target's verdict.
func (res *scaleResult) rows(t *table, goal func(name, text string) string) {
	mib := func(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }
	step := slices.Index([]string{"coverage", "logging", "quiescence", "check"}, res.Reached)
	t.row(fmt.Sprintf("7 scale: %s containers (%s pods × %d) on %d fake kubelets, one kubelogd with its defaults (--max-streams-per-node %d --max-streams %d, --poll-qps %d, --poll-max-interval %s)",
		commas(res.Containers), commas(res.Pods), res.PerPod, res.Nodes, scaleBudgetPerNode, scaleBudgetTotal, scalePollQPS, scalePollMax))
	t.row("", "pods created before kubelogd's start", fmt.Sprintf("%.1f s; %d lines × %d B each container", res.SetupSeconds, res.InitLines, scaleLineSize), "")
	if step < 0 {
		t.row("", "the run ended before coverage", "", "")
		return
	}
	t.row("", "coverage: exec → every container's lines readable", fmt.Sprintf("%.2f s (p50 %.2f s); %s of %s covered; files scanned in ≤ %.2f s",
		res.CoverageSeconds, res.CoverageP50Seconds, commas(res.Covered), commas(res.Containers), res.ScanSeconds), goal(scaleTargetCovered, "all"))
	if step >= 1 {
		t.row("", fmt.Sprintf("logging %.0f s, seed %d", res.DurationSeconds, res.Seed), fmt.Sprintf("a line every %.0f s on average (Poisson), %d busy containers at %.0f lines/s: %s lines; emitters at worst %.0f ms behind",
			res.MeanIntervalSeconds, res.Busy, res.BusyLinesPerSecond, commas(res.Emitted), res.EmitBehindMs), "")
	}
	if step >= 2 {
		q := fmt.Sprintf("%.1f s", res.QuiescenceSeconds)
		if !res.Quiet {
			q = fmt.Sprintf("not reached in %.0f s", res.QuiescenceSeconds)
		}
		t.row("", "emitters stopped → every line readable", q, "")
	}
	if step >= 3 {
		t.row("", "every file against the kubelet's record (oracle)", fmt.Sprintf("%s of %s exact; %s lines checked: %d lost, %d duplicated, %d reordered, %d unexpected; %d markers (kubelogd_gaps_total %.0f)",
			commas(res.Check.Exact), commas(res.Check.Containers), commas(res.Check.Lines), res.Check.Lost, res.Check.Duplicated,
			res.Check.Reordered, res.Check.Unexpected, res.Check.Markers, res.GapsTotal), goal(scaleTargetExact, "all"))
	} else {
		t.row("", "every file against the kubelet's record (oracle)", "not checked", goal(scaleTargetExact, "all"))
	}
	if res.MaxFollowsNode != "" {
		t.row("", "follow streams on one node (the kubelet's count)", fmt.Sprintf("max %d (first: %s); per node %s", res.MaxFollowsPerNode, res.MaxFollowsNode, ints(res.MaxFollowsByNode)),
			goal(scaleTargetNode, fmt.Sprintf("≤ %d", scaleBudgetPerNode)))
	}
	if res.Samples > 0 {
		v := fmt.Sprintf("max %d; kubelogd_streams_active (polls in flight included) max %.0f", res.MaxFollowsTotal, res.MaxStreamsActive)
		if res.ScrapeFailures > 0 {
			v += fmt.Sprintf(" (/metrics did not answer %d of the samples)", res.ScrapeFailures)
		}
		t.row("", fmt.Sprintf("follow streams in all (%d samples, every %s)", res.Samples, scaleSampleEvery), v,
			goal(scaleTargetTotal, fmt.Sprintf("≤ %d", min(scaleBudgetTotal, res.Nodes*scaleBudgetPerNode))))
	}
	if step >= 1 {
		var states []string
		for _, s := range []string{"streaming", "polling", "waiting", "finished"} {
			states = append(states, fmt.Sprintf("%s %.0f", s, res.Targets[s]))
		}
		t.row("", "kubelogd_targets at the end of the logging", strings.Join(states, ", "), "")
		t.row("", "polls while logging", fmt.Sprintf("%.1f/s (kubelogd_polls_total), %.1f/s at the kubelets, %s follow requests; %.0f promotions, %.0f demotions",
			res.PollsPerSecond, res.KubeletPollsPerSecond, commas(res.KubeletFollowRequests), res.Promotions, res.Demotions), "")
		t.row("", "poll interval while logging", fmt.Sprintf("p50 %.1f s, p99 %.1f s, max %.1f s (%s intervals, kubelet request times); kubelogd_poll_interval_seconds p50 %.1f s, p99 %.1f s (within buckets)",
			res.PollIntervalP50, res.PollIntervalP99, res.PollIntervalMax, commas(res.PollIntervals), res.HistP50, res.HistP99), "")
	}
	t.row("", "kubelogd VmRSS", fmt.Sprintf("%s covered, %s max, %s at the end: %.1f KiB per container at the max; fds max %d (limit %d)",
		mib(res.RSSCovered), mib(res.RSSMax), mib(res.RSSEnd), res.RSSKiBPerContainer, res.FDsMax, res.FDLimit), "")
	t.row("", "the rest's VmRSS, max", fmt.Sprintf("kube-apiserver %s, etcd %s, the %d kubelet hosts %s", mib(res.APIServerRSSMax), mib(res.EtcdRSSMax), res.Nodes, mib(res.HostsRSSMax)), "")
	if step >= 1 {
		t.row("", "CPU while logging", fmt.Sprintf("kubelogd %.2f cores; all CPUs %.0f%% busy (other users included)", res.KubelogdCores, 100*res.MachineBusy), "")
	}
}

// procFDLimit is the soft RLIMIT_NOFILE of a process (0 if unknown).
func procFDLimit(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(l, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.Atoi(f[0])
				return n
			}
		}
	}
	return 0
}
