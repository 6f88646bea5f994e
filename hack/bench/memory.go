package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The memory scenario (issue #17) measures what n idle containers cost their reader and
// the API server, for three readers of the same pods, one after the other:
//
//   - kubelogd with its default flags: the follow budget (50 streams per node, 2,000 in
//     all) gives 200 of the containers on the bench's 4 fake nodes a follow stream and
//     polls the others;
//   - kubelogd all-follow (allFollowFlags): a follow stream per container, as before the
//     budget;
//   - stern --qps -1: a follow stream per container.
//
// Method. One control plane and 4 kubelet hosts serve the n pods (one container each,
// coverageLines lines written, then quiet) to the three runs in turn, kubelogd's default
// first, so that the kubelets' count of the most follow streams ever open at once is its
// own. Before each run the API server is restarted (etcd keeps the pods): a Go process
// keeps freed memory for minutes, and what one reader's streams left behind would make the
// next reader's growth look smaller. The restarted API server settles (restartAPIServer), then
// its baseline is the largest of apiWindow readings of VmRSS (/proc/<pid>/status) half a
// second apart. The reader starts; once it has every line (kubelogd: written, by
// kubelogd_lines_written_total; stern: printed), has read every container (kubelogd:
// each streaming or polling, all streaming without a budget; stern: the kubelets serve
// its n follow streams) and, with the budget, its polls have slowed to their steady rate
// (waitPollsSteady), it is given --memory-settle (3 s) to settle. Then the reader's RSS is
// the median of three readings half a second apart, as in the earlier memory rows, and the
// API server's loaded RSS is read as its baseline was: the growth is loaded − baseline. The
// largest reading of a window rather than a single one because the API server's RSS moves
// with its GC cycles and, under kubelogd's default, with its polls; both ends are read
// alike.

const (
	nsMemory = "memory"
	// kubelogdPollMax is kubelogd's --poll-max-interval default.
	kubelogdPollMax = 30 * time.Second
	// memoryTargetContainers is the container count issue #17 states its targets at.
	memoryTargetContainers = 5000
)

// allFollowFlags turn kubelogd's follow budget off: a stream per container.
var allFollowFlags = []string{"--max-streams-per-node", "0", "--max-streams", "0"}

// memoryResult is the memory scenario for one container count.
type memoryResult struct {
	Containers        int `json:"containers"`
	Nodes             int `json:"nodes"`
	LinesPerContainer int `json:"lines_per_container"`
	// SettleSeconds is how long each reader settled before its RSS was read
	// (--memory-settle).
	SettleSeconds float64 `json:"settle_seconds"`
	// Default, AllFollow and Stern are the three readers' runs (Stern nil without stern).
	Default   *memoryRun `json:"kubelogd_default"`
	AllFollow *memoryRun `json:"kubelogd_all_follow"`
	Stern     *memoryRun `json:"stern,omitempty"`
	// RSSRatioStern is kubelogd default's RSS over stern's (issue #17: ≤ 0.5 at 5,000);
	// RSSRatioAllFollow the same over kubelogd all-follow's.
	RSSRatioStern     float64 `json:"rss_ratio_default_vs_stern,omitempty"`
	RSSRatioAllFollow float64 `json:"rss_ratio_default_vs_all_follow"`
	// APIRatioAllFollow is the API server's RSS growth under kubelogd default over its
	// growth under kubelogd all-follow (issue #17: ≤ 0.3 at 5,000); APIRatioStern is
	// stern's growth over all-follow's, for information.
	APIRatioAllFollow float64 `json:"apiserver_growth_ratio_default_vs_all_follow"`
	APIRatioStern     float64 `json:"apiserver_growth_ratio_stern_vs_all_follow,omitempty"`
	// LiveRatioAllFollow is the same ratio of the API server's live heap growth (see
	// apiMemory), for information.
	LiveRatioAllFollow float64 `json:"apiserver_live_heap_ratio_default_vs_all_follow,omitempty"`
}

// memoryRun is one reader with the scenario's containers idle.
type memoryRun struct {
	Reader string `json:"reader"`
	Flags  string `json:"flags"`
	// ReadySeconds runs from the reader's exec until it had every line and every
	// container was read; PollWaitSeconds from then until its polls were steady.
	ReadySeconds    float64 `json:"ready_seconds"`
	PollWaitSeconds float64 `json:"poll_wait_seconds,omitempty"`
	PollSteady      bool    `json:"poll_steady,omitempty"`
	// RSSBytes is the reader's VmRSS (median of three readings).
	RSSBytes           int64   `json:"rss_bytes"`
	RSSKiBPerContainer float64 `json:"rss_kib_per_container"`
	// Kubelogd is kubelogd's breakdown (per-stream figures divided by the containers);
	// Stern is stern's.
	Kubelogd *memResult   `json:"kubelogd,omitempty"`
	Stern    *sternMemory `json:"stern,omitempty"`
	// Targets by state, from kubelogd_targets (kubelogd only).
	Streaming float64 `json:"targets_streaming,omitempty"`
	Polling   float64 `json:"targets_polling,omitempty"`
	Waiting   float64 `json:"targets_waiting,omitempty"`
	// MaxFollowsPerNode is, per kubelet, the most follow streams it ever served at once:
	// the default run comes first on fresh kubelets, so it is that run's (not set for
	// the others).
	MaxFollowsPerNode []int `json:"max_follow_streams_per_node,omitempty"`
	// PollsPerSecond and PollIntervalMeanSeconds are from kubelogd_polls_total and
	// kubelogd_poll_interval_seconds over the PollSeconds from 30 s before the steady
	// state to the end of the samples: containers read at the same moment poll in
	// bursts, so a shorter span could hold none. The report sets the rate beside
	// polling ÷ 30 s.
	PollSeconds             float64   `json:"poll_seconds,omitempty"`
	PollsPerSecond          float64   `json:"polls_per_second,omitempty"`
	PollIntervalMeanSeconds float64   `json:"poll_interval_mean_seconds,omitempty"`
	APIServer               apiMemory `json:"apiserver"`
}

func runMemory(ctx context.Context, cfg *config, n int) (*memoryResult, error) {
	res := &memoryResult{Containers: n, Nodes: coverageNodes, LinesPerContainer: coverageLines, SettleSeconds: cfg.memorySettle.Seconds()}
	e, err := startEnv(ctx, cfg.self, coverageNodes, nil)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	start := time.Now()
	if _, err := e.createRunning(ctx, nsMemory, 0, n, coverageLines, coverageLineSize); err != nil {
		return nil, err
	}
	cfg.progress("memory %d: %d running pods with %d lines each created in %s", n, n, coverageLines, time.Since(start).Round(time.Millisecond))

	if res.Default, err = memoryKubelogd(ctx, cfg, e, n, "default", nil); err != nil {
		return nil, fmt.Errorf("kubelogd default: %w", err)
	}
	if res.AllFollow, err = memoryKubelogd(ctx, cfg, e, n, "all-follow", allFollowFlags); err != nil {
		return nil, fmt.Errorf("kubelogd all-follow: %w", err)
	}
	if cfg.stern != "" {
		if res.Stern, err = memoryStern(ctx, cfg, e, n); err != nil {
			return nil, fmt.Errorf("stern: %w", err)
		}
		res.RSSRatioStern = float64(res.Default.RSSBytes) / float64(res.Stern.RSSBytes)
	}
	res.RSSRatioAllFollow = float64(res.Default.RSSBytes) / float64(res.AllFollow.RSSBytes)
	// A growth of zero or less under all-follow (which opens n streams) would mean the
	// measure failed; the ratios are left 0 then, and the report says so.
	if g := res.AllFollow.APIServer.GrowthBytes; g > 0 {
		res.APIRatioAllFollow = float64(res.Default.APIServer.GrowthBytes) / float64(g)
		if res.Stern != nil {
			res.APIRatioStern = float64(res.Stern.APIServer.GrowthBytes) / float64(g)
		}
	}
	if g, d := res.AllFollow.APIServer.liveGrowth(), res.Default.APIServer.liveGrowth(); g > 0 && !math.IsNaN(d) {
		res.LiveRatioAllFollow = d / g
	}
	return res, nil
}

// memoryKubelogd runs kubelogd with flags on the n idle containers of nsMemory, after a
// restart of the API server, and measures both (see the method above).
func memoryKubelogd(ctx context.Context, cfg *config, e *env, n int, name string, flags []string) (*memoryRun, error) {
	run := &memoryRun{Reader: "kubelogd " + name, Flags: strings.Join(flags, " ")}
	budget := len(flags) == 0
	api, err := restartAPIServer(ctx, e)
	if err != nil {
		return nil, err
	}
	cfg.progress("memory %d, %s: API server restarted, settled in %.1fs, baseline RSS %.1f MiB", n, run.Reader, api.SettleSeconds, mib(api.BaselineBytes))
	label := fmt.Sprintf("memory-%d-%s", n, name)
	dir := filepath.Join(cfg.workDir, label)
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	d, err := startKubelogdWith(cfg, label, e.c.Kubeconfig, dir, dir+".out", flags...)
	if err != nil {
		return nil, err
	}
	defer d.stop()
	_, err = d.waitFor(ctx, 5*time.Minute, "every line written and every container read", func(m map[string]float64) bool {
		streaming, polling := m[`kubelogd_targets{state="streaming"}`], m[`kubelogd_targets{state="polling"}`]
		if !budget {
			polling = 0 // every container streamed, or the measure is not of all-follow
		}
		return m["kubelogd_lines_written_total"] >= float64(n*coverageLines) && streaming+polling >= float64(n)
	})
	if err != nil {
		return nil, err
	}
	run.ReadySeconds = time.Since(d.Start).Seconds()
	var polls pollsWait
	if budget {
		if polls, err = waitPollsSteady(ctx, d); err != nil {
			return nil, err
		}
		run.PollWaitSeconds, run.PollSteady = polls.waited.Seconds(), polls.steady
		cfg.progress("memory %d, %s: polls steady %.0fs after every container was read: %v", n, run.Reader, polls.waited.Seconds(), polls.steady)
	}
	if err := sleepCtx(ctx, cfg.memorySettle); err != nil { // cursor saves and GC cycles after the burst
		return nil, err
	}
	mem, err := readMemory(ctx, cfg, d, n, label)
	if err != nil {
		return nil, err
	}
	run.Kubelogd, run.RSSBytes = &mem, mem.RSSBytes
	run.RSSKiBPerContainer = float64(mem.RSSBytes) / 1024 / float64(n)
	m, err := d.metrics(ctx)
	if err != nil {
		return nil, err
	}
	run.Streaming, run.Polling, run.Waiting = m[`kubelogd_targets{state="streaming"}`], m[`kubelogd_targets{state="polling"}`], m[`kubelogd_targets{state="waiting"}`]
	if err := api.loaded(ctx, e); err != nil {
		return nil, err
	}
	run.APIServer = *api
	if budget {
		// The polls of a whole cycle and more: from 30 s before the steady state to the
		// end of the samples.
		m, err := d.metrics(ctx)
		if err != nil {
			return nil, err
		}
		run.PollSeconds = time.Since(polls.fromTime).Seconds()
		run.PollsPerSecond, run.PollIntervalMeanSeconds = pollRates(polls.from, m, run.PollSeconds)
		// The default run comes first on these kubelets: their maximum is its own.
		if run.MaxFollowsPerNode, err = e.maxFollows(ctx); err != nil {
			return nil, err
		}
	}
	cfg.progress("memory %d, %s: RSS %.1f MiB (%.1f KiB/container), %.0f streams, %.0f polled; API server +%.1f MiB (%.0f log requests)",
		n, run.Reader, mib(run.RSSBytes), run.RSSKiBPerContainer, mem.ActiveStreams, run.Polling, mib(api.GrowthBytes), api.LogRequests)
	d.stop()
	// So that the next run is not charged with the API server's ending these streams.
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return run, e.waitClosed(wctx, nsMemory)
}

// memoryStern runs stern on the n idle containers of nsMemory, after a restart of the API
// server, and measures both (see the method above).
func memoryStern(ctx context.Context, cfg *config, e *env, n int) (*memoryRun, error) {
	run := &memoryRun{Reader: "stern", Flags: fmt.Sprintf("--qps -1 --max-log-requests %d", n+100)}
	api, err := restartAPIServer(ctx, e)
	if err != nil {
		return nil, err
	}
	cfg.progress("memory %d, stern: API server restarted, settled in %.1fs, baseline RSS %.1f MiB", n, api.SettleSeconds, mib(api.BaselineBytes))
	st, err := runSternCoverage(ctx, cfg, e, nsMemory, n, coverageLines, coverageLineSize, func(p *sternProc) error {
		sm, err := sampleSternMemory(ctx, p, n, cfg.memorySettle) // settles first, as kubelogd's runs
		if err != nil {
			return err
		}
		run.Stern, run.RSSBytes = &sm, sm.RSSBytes
		run.RSSKiBPerContainer = float64(sm.RSSBytes) / 1024 / float64(n)
		return api.loaded(ctx, e)
	})
	if err != nil {
		return nil, err
	}
	run.ReadySeconds = st.Seconds
	run.APIServer = *api
	cfg.progress("memory %d, stern: RSS %.1f MiB (%.1f KiB/container); API server +%.1f MiB (%.0f log requests)",
		n, mib(run.RSSBytes), run.RSSKiBPerContainer, mib(api.GrowthBytes), api.LogRequests)
	return run, nil
}

// waitPollsSteady waits until kubelogd polls its polled containers at their longest
// interval. A polled container is read again 1 s after a read that found lines (its
// backlog), then twice as long after each that found none, up to --poll-max-interval
// (30 s): a minute or more after kubelogd read the backlog, and memory read before then
// would count the faster polls of that ramp. Steady: the polls of the last 5 s came, on
// average, at least 0.9 × 30 s after their container's previous one (the mean of
// kubelogd_poll_interval_seconds over the window). The rate over a window this short is
// no measure — containers read at the same moment poll in bursts — so it returns the
// metrics of a scrape at least --poll-max-interval before that moment (or the first),
// from which the caller measures the rate over a whole cycle and more. It gives up after
// 3 minutes, saying so.
func waitPollsSteady(ctx context.Context, d *kubelogdProc) (pollsWait, error) {
	start := time.Now()
	m0, err := d.metrics(ctx)
	if err != nil {
		return pollsWait{}, err
	}
	type scrape struct {
		m  map[string]float64
		at time.Time
	}
	hist := []scrape{{m0, time.Now()}}
	done := func(steady bool) (pollsWait, error) {
		i := len(hist) - 1
		for i > 0 && time.Since(hist[i].at) < kubelogdPollMax {
			i--
		}
		return pollsWait{from: hist[i].m, fromTime: hist[i].at, steady: steady, waited: time.Since(start)}, nil
	}
	for {
		if m0[`kubelogd_targets{state="polling"}`] == 0 {
			return done(true) // the budget holds them all
		}
		if err := sleepCtx(ctx, 5*time.Second); err != nil {
			return pollsWait{}, err
		}
		if err := d.alive(); err != nil {
			return pollsWait{}, err
		}
		m1, err := d.metrics(ctx)
		if err != nil {
			return pollsWait{}, err
		}
		hist = append(hist, scrape{m1, time.Now()})
		c := m1["kubelogd_poll_interval_seconds_count"] - m0["kubelogd_poll_interval_seconds_count"]
		mean := (m1["kubelogd_poll_interval_seconds_sum"] - m0["kubelogd_poll_interval_seconds_sum"]) / c
		if steady := c > 0 && mean >= 0.9*kubelogdPollMax.Seconds(); steady || time.Since(start) > 3*time.Minute {
			return done(steady)
		}
		m0 = m1
	}
}

// pollsWait is what waitPollsSteady saw: whether the polls became steady and how long
// that took, and a scrape from which to measure their rate.
type pollsWait struct {
	from     map[string]float64
	fromTime time.Time
	steady   bool
	waited   time.Duration
}

// pollRates are kubelogd's polls per second and their mean interval between two scrapes.
func pollRates(m0, m1 map[string]float64, seconds float64) (rate, meanInterval float64) {
	rate = (m1["kubelogd_polls_total"] - m0["kubelogd_polls_total"]) / seconds
	if c := m1["kubelogd_poll_interval_seconds_count"] - m0["kubelogd_poll_interval_seconds_count"]; c > 0 {
		meanInterval = (m1["kubelogd_poll_interval_seconds_sum"] - m0["kubelogd_poll_interval_seconds_sum"]) / c
	}
	return rate, meanInterval
}

// waitFor scrapes kubelogd's /metrics every 250 ms until cond holds, and returns them
// then; it fails when kubelogd exits or timeout passes first.
func (d *kubelogdProc) waitFor(ctx context.Context, timeout time.Duration, what string, cond func(map[string]float64) bool) (map[string]float64, error) {
	deadline := time.Now().Add(timeout)
	for {
		if err := d.alive(); err != nil {
			return nil, err
		}
		m, err := d.metrics(ctx)
		if err == nil && cond(m) {
			return m, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("kubelogd: not %s after %s (lines written %.0f, streaming %.0f, polling %.0f, waiting %.0f)", what, timeout,
				m["kubelogd_lines_written_total"], m[`kubelogd_targets{state="streaming"}`], m[`kubelogd_targets{state="polling"}`], m[`kubelogd_targets{state="waiting"}`])
		}
		if err := sleepCtx(ctx, 250*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

// maxFollows asks each kubelet for the most follow streams it ever served at once.
func (e *env) maxFollows(ctx context.Context) ([]int, error) {
	out := make([]int, len(e.hosts))
	for h := range e.hosts {
		r, err := e.hosts[h].call(ctx, hostReq{Op: "maxfollows"})
		if err != nil {
			return nil, err
		}
		out[h] = r.Max
	}
	return out, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// memoryTarget names are the targets of the memory scenario in the report.
const (
	memoryTargetStern     = "memory, 5000 idle containers: kubelogd default RSS ÷ stern's"
	memoryTargetAPI       = "memory, 5000 idle containers: API server RSS growth, kubelogd default ÷ all-follow"
	memoryTargetPerStream = "memory per idle stream at 5000 streams" // the name of the row before the budget
)

// targets adds the memory scenario's targets, set at memoryTargetContainers; other counts
// are reported only.
func (r *memoryResult) targets(add addTarget) {
	if r.Containers != memoryTargetContainers {
		return
	}
	if r.Stern != nil {
		add(memoryTargetStern, r.RSSRatioStern, 0.5, "x", true,
			fmt.Sprintf("kubelogd default %.1f MiB, stern %.1f MiB", mib(r.Default.RSSBytes), mib(r.Stern.RSSBytes)))
	}
	add(memoryTargetAPI, r.APIRatioAllFollow, 0.3, "x", true,
		fmt.Sprintf("+%.1f MiB under kubelogd default, +%.1f MiB under all-follow (each over its baseline after a restart)",
			mib(r.Default.APIServer.GrowthBytes), mib(r.AllFollow.APIServer.GrowthBytes))).Met = r.APIRatioAllFollow > 0 && r.APIRatioAllFollow <= 0.3
	if m := r.AllFollow.Kubelogd; m != nil {
		add(memoryTargetPerStream, m.RSSKiBPerStream, 45, "KiB", true,
			fmt.Sprintf("kubelogd all-follow (%s): VmRSS %.1f MiB / %d", r.AllFollow.Flags, mib(m.RSSBytes), m.Streams))
	}
}

// rows prints the memory scenario.
func (r *memoryResult) rows(t *table, goal func(name, text string) string) {
	at := r.Containers == memoryTargetContainers
	target := func(name, text string) string {
		if at {
			return goal(name, text)
		}
		return text + " at 5,000"
	}
	t.row(fmt.Sprintf("3 memory: %s idle containers (%d lines each written), %d fake kubelets; each reader on a freshly restarted API server",
		commas(r.Containers), r.LinesPerContainer, r.Nodes))
	for _, run := range []*memoryRun{r.Default, r.AllFollow, r.Stern} {
		if run == nil {
			continue
		}
		var v string
		switch {
		case run.Kubelogd != nil:
			m := run.Kubelogd
			v = fmt.Sprintf("VmRSS %.1f MiB = %.1f KiB/container (heap in use %.1f, free heap kept %.1f, stacks %.1f KiB/container); %.0f goroutines, %d fds",
				mib(m.RSSBytes), m.RSSKiBPerStream, m.HeapKiBPerStream, m.HeapRetainedKiBPerStream, m.StackKiBPerStream, m.Goroutines, m.FDs)
		case run.Stern != nil:
			m := run.Stern
			v = fmt.Sprintf("VmRSS %.1f MiB = %.1f KiB/container; %d threads; %d fds", mib(m.RSSBytes), m.RSSKiBPerStream, m.Threads, m.FDs)
		}
		g := ""
		if run == r.AllFollow {
			g = target(memoryTargetPerStream, "≤ 45 KiB/stream")
		}
		t.row("", strings.TrimSpace(run.Reader+" "+run.Flags), v, g)
	}
	if d := r.Default; d.Kubelogd != nil {
		v := fmt.Sprintf("kubelogd_streams_active %.0f; targets streaming %s, polling %s, waiting %.0f; most follow streams at once per kubelet %s",
			d.Kubelogd.ActiveStreams, commas(int(d.Streaming)), commas(int(d.Polling)), d.Waiting, ints(d.MaxFollowsPerNode))
		t.row("", "  default: the budget (50 per node on 4 nodes: 200)", v, "")
		steady := fmt.Sprintf("steady (mean interval ≥ 27 s) %.0f s after every container was read", d.PollWaitSeconds)
		if !d.PollSteady {
			steady = fmt.Sprintf("NOT steady %.0f s after every container was read", d.PollWaitSeconds)
		}
		if d.Polling > 0 { // else the budget holds every container: no polls
			t.row("", "  default: polls around the sample", fmt.Sprintf("%.1f/s over %.0f s (polled ÷ 30 s: %.1f/s), mean interval %.1f s; %s",
				d.PollsPerSecond, d.PollSeconds, d.Polling/kubelogdPollMax.Seconds(), d.PollIntervalMeanSeconds, steady), "")
		}
	}
	var parts []string
	for _, run := range []*memoryRun{r.Default, r.AllFollow, r.Stern} {
		if run == nil {
			continue
		}
		a := run.APIServer
		live := "live heap not measured again (no GC)"
		if g := a.liveGrowth(); !math.IsNaN(g) {
			live = fmt.Sprintf("live heap %+.1f", g/(1<<20))
		}
		parts = append(parts, fmt.Sprintf("%s %+.1f MiB (%.1f → %.1f; %s; %.0f log requests)", run.Reader,
			mib(a.GrowthBytes), mib(a.BaselineBytes), mib(a.LoadedBytes), live, a.LogRequests))
	}
	t.row("", "API server VmRSS growth over its baseline", strings.Join(parts, "; "), "")
	if r.Stern != nil {
		t.row("", "RSS: kubelogd default ÷ stern", fmt.Sprintf("%.2f× (÷ kubelogd all-follow %.2f×)", r.RSSRatioStern, r.RSSRatioAllFollow),
			target(memoryTargetStern, "≤ 0.5×"))
	}
	api := fmt.Sprintf("%.2f×", r.APIRatioAllFollow)
	if r.APIRatioAllFollow == 0 {
		api = "not measured: no growth under all-follow"
	}
	if r.LiveRatioAllFollow != 0 {
		api += fmt.Sprintf(" (live heap: %.2f×)", r.LiveRatioAllFollow)
	}
	t.row("", "API server growth: kubelogd default ÷ all-follow", api, target(memoryTargetAPI, "≤ 0.3×"))
	if r.Stern != nil && r.APIRatioStern != 0 {
		t.row("", "API server growth: stern ÷ kubelogd all-follow", fmt.Sprintf("%.2f× (information)", r.APIRatioStern), "")
	}
}

// marginalRows prints, for two container counts, what each extra idle container costs.
func marginalRows(t *table, a, b *memoryResult) {
	dn := float64(b.Containers - a.Containers)
	if dn <= 0 {
		return
	}
	if x, y := a.AllFollow.Kubelogd, b.AllFollow.Kubelogd; x != nil && y != nil {
		t.row("", fmt.Sprintf("marginal %s → %s, kubelogd all-follow", commas(a.Containers), commas(b.Containers)),
			fmt.Sprintf("%.1f KiB, %.2f goroutines, %.3f fds per extra stream",
				float64(y.RSSBytes-x.RSSBytes)/1024/dn, (y.Goroutines-x.Goroutines)/dn, float64(y.FDs-x.FDs)/dn), "")
	}
	if x, y := a.Default.Kubelogd, b.Default.Kubelogd; x != nil && y != nil {
		t.row("", fmt.Sprintf("marginal %s → %s, kubelogd default", commas(a.Containers), commas(b.Containers)),
			fmt.Sprintf("%.1f KiB, %.2f goroutines, %.3f fds per extra container",
				float64(y.RSSBytes-x.RSSBytes)/1024/dn, (y.Goroutines-x.Goroutines)/dn, float64(y.FDs-x.FDs)/dn), "")
	}
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ", ")
}

// parseSizes parses a comma-separated list of positive counts.
func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad count %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out, nil
}
