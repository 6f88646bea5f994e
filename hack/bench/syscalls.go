package main

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// The syscalls scenario (issue #17: "halve the system calls and syncs per new container")
// counts, with strace -c, the file and descriptor system calls and the syncs kubelogd
// makes for containers new to it, for each case of --syscalls-pods (pods × containers
// per pod).
//
// Method. A fresh control plane holds the case's pods, each container running with
// coverageLines lines already in its CRI file, on enough fake kubelets that kubelogd's
// default follow budget (50 streams per node) streams every container. kubelogd starts
// with its default flags on an empty output directory under
//
//	strace -I 2 -f -c -o FILE -e trace=file,desc,fsync,fdatasync,syncfs,sync_file_range
//
// Once every container's lines are in its file (the scale scenario's fileScanner), the
// bench waits syscallsSyncWait, past kubelogd's sync interval (10 s by default; it has no
// flag), and appends one more line to every container. A container's first synced
// cursor save comes with the first save after that interval, and a save comes only with
// new lines (or at close): without that line no sync at all would be counted. Once the
// line is in every file and every cursor file was written after it was appended, the
// bench gives the syncs that follow that write syscallsSettle, scrapes /metrics once and
// sends SIGTERM to strace, which passes it on to kubelogd, detaches and writes its
// summary: kubelogd's shutdown is not counted (-I 2 lets strace take the signal; with
// -o FILE PROG it blocks it by default).
//
// The informer, the metrics server and the idle loops make calls too, so after the
// cases the same kubelogd runs on a control plane without pods, as long from exec to the
// SIGTERM as each case, and its counts are subtracted: per container is (with pods −
// baseline) ÷ containers. Counts are of calls, not time: the 2 shared CPUs and strace's
// slowing of kubelogd change when calls come, not how many (except the idle loops', which
// the baseline takes out).

const (
	nsSyscalls = "syscalls"
	// syscallsSyncWait is how long after coverage the extra line comes: kubelogd's sync
	// interval (sink.DefaultSyncInterval, 10 s; it has no flag) and 2 s of margin.
	syscallsSyncWait = 12 * time.Second
	// syscallsSettle is how long the bench waits after the last cursor file was written:
	// the cursor's fdatasync and the pod directory's fsync come right after the write.
	syscallsSettle = time.Second
	// syscallsFilter is strace's -e: what issue #17 counted, and the other syncs.
	syscallsFilter = "trace=file,desc,fsync,fdatasync,syncfs,sync_file_range"
	// syscallsTop is how many syscalls the table lists by their count per container.
	syscallsTop = 8
)

// The counts before the work, which the targets halve.
const (
	syscallsSyncsBefore  = 2.5
	syscallsOpenatBefore = 21
)

// syscallsCase is one pod shape of the scenario.
type syscallsCase struct{ pods, perPod int }

// parseSyscallsCases parses --syscalls-pods, "PODSxCONTAINERS" cases separated by commas.
// Every container must fit in kubelogd's default follow budget, so that all are streamed.
func parseSyscallsCases(s string) ([]syscallsCase, error) {
	var out []syscallsCase
	for _, f := range strings.Split(s, ",") {
		p, c, ok := strings.Cut(strings.TrimSpace(f), "x")
		pods, err1 := strconv.Atoi(p)
		perPod, err2 := strconv.Atoi(c)
		switch {
		case !ok || err1 != nil || err2 != nil || pods <= 0 || perPod <= 0:
			return nil, fmt.Errorf("bad case %q in %q: want PODSxCONTAINERS", f, s)
		case perPod > scaleBudgetPerNode || pods*perPod > scaleBudgetTotal:
			return nil, fmt.Errorf("case %q: more than the follow budget streams (%d per pod, %d in all)", f, scaleBudgetPerNode, scaleBudgetTotal)
		}
		out = append(out, syscallsCase{pods, perPod})
	}
	return out, nil
}

// syscallsResult is the syscalls scenario: one run per case, or why it was skipped.
type syscallsResult struct {
	Skipped string         `json:"skipped,omitempty"`
	Strace  string         `json:"strace,omitempty"` // strace -V
	Filter  string         `json:"filter"`
	Cases   []*syscallsRun `json:"cases,omitempty"`
}

// syscallsRun is one case: kubelogd's calls with the pods, without them, and per container.
type syscallsRun struct {
	Pods              int `json:"pods"`
	PerPod            int `json:"containers_per_pod"`
	Containers        int `json:"containers"`
	Nodes             int `json:"nodes"`
	LinesPerContainer int `json:"lines_per_container"`
	// CoveredSeconds runs from kubelogd's exec (under strace) until every container's
	// first lines were in its file, SavedSeconds until every cursor file was written
	// after the extra line, TracedSeconds until the SIGTERM; BaselineSeconds is the
	// baseline's TracedSeconds.
	CoveredSeconds  float64 `json:"covered_seconds"`
	SavedSeconds    float64 `json:"saved_seconds"`
	TracedSeconds   float64 `json:"traced_seconds"`
	BaselineSeconds float64 `json:"baseline_seconds"`
	// Streaming and Polling are kubelogd_targets by state just before the SIGTERM.
	Streaming float64 `json:"targets_streaming"`
	Polling   float64 `json:"targets_polling"`
	// WithPods and Baseline are strace's calls by syscall; PerContainer is their
	// difference over Containers, for every syscall of either.
	WithPods     map[string]int64   `json:"calls_with_pods"`
	Baseline     map[string]int64   `json:"calls_baseline"`
	PerContainer map[string]float64 `json:"calls_per_container"`
	// The figures of the three.
	WithFigures     syscallFigures `json:"with_pods"`
	BaselineFigures syscallFigures `json:"baseline"`
	Figures         syscallFigures `json:"per_container"`
}

// syscallFigures are the counts the issue is about, drawn from strace's calls by syscall.
type syscallFigures struct {
	// Total is every call counted but the Go runtime's epoll_pwait (its network poller
	// waiting, which says nothing of the work); reads and writes on sockets stay in, as
	// strace cannot tell them from those on files.
	Total         float64 `json:"total_excluding_epoll_pwait"`
	Openat        float64 `json:"openat"`
	Mkdirat       float64 `json:"mkdirat"`
	Renameat      float64 `json:"renameat"` // renameat and renameat2
	Fsync         float64 `json:"fsync"`
	Fdatasync     float64 `json:"fdatasync"`
	Syncfs        float64 `json:"syncfs"`
	SyncFileRange float64 `json:"sync_file_range"`
}

// syncs is every kind of sync together.
func (f syscallFigures) syncs() float64 { return f.Fsync + f.Fdatasync + f.Syncfs + f.SyncFileRange }

// figuresOf draws the figures from calls by syscall.
func figuresOf[T int64 | float64](calls map[string]T) syscallFigures {
	f := syscallFigures{Openat: float64(calls["openat"]), Mkdirat: float64(calls["mkdirat"]),
		Renameat: float64(calls["renameat"] + calls["renameat2"]), Fsync: float64(calls["fsync"]),
		Fdatasync: float64(calls["fdatasync"]), Syncfs: float64(calls["syncfs"]), SyncFileRange: float64(calls["sync_file_range"])}
	for name, n := range calls {
		if name != "epoll_pwait" {
			f.Total += float64(n)
		}
	}
	return f
}

// runSyscalls measures every case, then each case's baseline on one control plane without
// pods and as many fake kubelets as the largest case (see the method above). Without
// strace it reports the scenario skipped.
func runSyscalls(ctx context.Context, cfg *config) (*syscallsResult, error) {
	res := &syscallsResult{Filter: syscallsFilter}
	strace, err := exec.LookPath("strace")
	if err != nil {
		res.Skipped = "no strace in PATH"
		cfg.progress("syscalls: skipped: %s", res.Skipped)
		return res, nil
	}
	if out, err := exec.CommandContext(ctx, strace, "-V").Output(); err == nil {
		res.Strace, _, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	}
	for i, c := range cfg.syscallsCases {
		if i > 0 {
			settleDisk(cfg)
		}
		run, err := syscallsWithPods(ctx, cfg, strace, c)
		if err != nil {
			return nil, fmt.Errorf("%d pods × %d containers: %w", c.pods, c.perPod, err)
		}
		res.Cases = append(res.Cases, run)
	}
	nodes := 0
	for _, run := range res.Cases {
		nodes = max(nodes, run.Nodes)
	}
	e, err := startEnv(ctx, cfg.self, nodes, nil)
	if err != nil {
		return nil, fmt.Errorf("the baseline's control plane: %w", err)
	}
	defer e.stop()
	for _, run := range res.Cases {
		settleDisk(cfg)
		label := fmt.Sprintf("syscalls-baseline-%dx%d", run.Pods, run.PerPod)
		traced := time.Duration(run.TracedSeconds * float64(time.Second))
		tr, err := traceKubelogd(ctx, cfg, strace, label, e.c.Kubeconfig, func(d *kubelogdProc) error {
			return waitAlive(ctx, d, d.Start.Add(traced))
		})
		if err != nil {
			return nil, fmt.Errorf("baseline of %d pods × %d containers: %w", run.Pods, run.PerPod, err)
		}
		run.Baseline, run.BaselineSeconds = tr.calls, tr.seconds
		run.subtract()
		cfg.progress("syscalls %dx%d: per container %.1f calls (epoll_pwait aside), %.2f openat, %.2f syncs; baseline %.0f calls in %.1fs",
			run.Pods, run.PerPod, run.Figures.Total, run.Figures.Openat, run.Figures.syncs(), run.BaselineFigures.Total, run.BaselineSeconds)
	}
	return res, nil
}

// syscallsWithPods creates the case's pods on a fresh control plane and traces kubelogd
// from its exec until the first synced save of every container, after its extra line
// (see the method above).
func syscallsWithPods(ctx context.Context, cfg *config, strace string, c syscallsCase) (*syscallsRun, error) {
	podsPerNode := scaleBudgetPerNode / c.perPod
	run := &syscallsRun{Pods: c.pods, PerPod: c.perPod, Containers: c.pods * c.perPod, LinesPerContainer: coverageLines,
		Nodes: max(coverageNodes, (c.pods+podsPerNode-1)/podsPerNode)}
	e, err := startEnv(ctx, cfg.self, run.Nodes, nil)
	if err != nil {
		return nil, fmt.Errorf("starting the control plane: %w", err)
	}
	defer e.stop()
	if err := e.c.EnsureNamespace(ctx, nsSyscalls); err != nil {
		return nil, fmt.Errorf("creating namespace %s: %w", nsSyscalls, err)
	}
	pods := make([]int, c.pods)
	for i := range pods {
		pods[i] = i
	}
	start := time.Now()
	_, split, err := e.each(ctx, hostReq{Op: "scale-create", NS: nsSyscalls, Lines: coverageLines, Size: coverageLineSize,
		Workers: scaleCreators, Scale: &scaleReq{PerPod: c.perPod}}, pods)
	if err != nil {
		return nil, fmt.Errorf("creating the pods: %w", err)
	}
	cfg.progress("syscalls %dx%d: %d running pods of %d containers with %d lines each created on %d fake kubelets in %s",
		c.pods, c.perPod, c.pods, c.perPod, coverageLines, run.Nodes, time.Since(start).Round(time.Millisecond))

	label := fmt.Sprintf("syscalls-%dx%d", c.pods, c.perPod)
	files := newFileScanner(filepath.Join(cfg.workDir, label), nsSyscalls, split, c.perPod)
	tr, err := traceKubelogd(ctx, cfg, strace, label, e.c.Kubeconfig, func(d *kubelogdProc) error {
		if err := files.wait(ctx, d.alive, func(int) int { return coverageLines }, false, 5*time.Minute, 200*time.Millisecond); err != nil {
			return fmt.Errorf("the lines written before start: %w", err)
		}
		run.CoveredSeconds = time.Since(d.Start).Seconds()
		cfg.progress("syscalls %dx%d: every container's lines on disk %.2fs after kubelogd's exec (under strace); one more line each in %s",
			c.pods, c.perPod, run.CoveredSeconds, syscallsSyncWait)
		if err := waitAlive(ctx, d, time.Now().Add(syscallsSyncWait)); err != nil {
			return err
		}
		appended := time.Now()
		if _, _, err := e.each(ctx, hostReq{Op: "scale-append", NS: nsSyscalls, Lines: 1, Size: coverageLineSize,
			Scale: &scaleReq{PerPod: c.perPod}}, pods); err != nil {
			return fmt.Errorf("appending a line: %w", err)
		}
		if err := files.wait(ctx, d.alive, func(int) int { return coverageLines + 1 }, false, time.Minute, 200*time.Millisecond); err != nil {
			return fmt.Errorf("the line appended after the sync interval: %w", err)
		}
		if err := waitCursorsSaved(ctx, d, files, appended, time.Minute); err != nil {
			return err
		}
		run.SavedSeconds = time.Since(d.Start).Seconds()
		return waitAlive(ctx, d, time.Now().Add(syscallsSettle))
	})
	if err != nil {
		return nil, err
	}
	run.WithPods, run.TracedSeconds = tr.calls, tr.seconds
	run.Streaming, run.Polling = tr.metrics[`kubelogd_targets{state="streaming"}`], tr.metrics[`kubelogd_targets{state="polling"}`]
	return run, nil
}

// subtract sets the per-container calls and the figures from WithPods and Baseline.
func (r *syscallsRun) subtract() {
	r.PerContainer = map[string]float64{}
	for name, n := range r.WithPods {
		r.PerContainer[name] = float64(n-r.Baseline[name]) / float64(r.Containers)
	}
	for name, n := range r.Baseline {
		if _, ok := r.WithPods[name]; !ok {
			r.PerContainer[name] = -float64(n) / float64(r.Containers)
		}
	}
	r.WithFigures, r.BaselineFigures, r.Figures = figuresOf(r.WithPods), figuresOf(r.Baseline), figuresOf(r.PerContainer)
}

// waitCursorsSaved waits until the cursor file of every container of files was written
// at or after since, checking every 200ms that kubelogd still runs, at most timeout.
func waitCursorsSaved(ctx context.Context, d *kubelogdProc, files *fileScanner, since time.Time, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		behind := 0
		for _, f := range files.files {
			ctr := strings.TrimSuffix(filepath.Base(f.path), layout.LogExt)
			info, err := os.Stat(filepath.Join(filepath.Dir(f.path), layout.CursorFileName(ctr)))
			if err != nil || info.ModTime().Before(since) {
				behind++
			}
		}
		if behind == 0 {
			return nil
		}
		if err := d.alive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d cursor files not written in the %s after the extra line was appended", behind, len(files.files), timeout)
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// waitAlive waits until the time until, checking every second that kubelogd still runs.
func waitAlive(ctx context.Context, d *kubelogdProc, until time.Time) error {
	for {
		if err := d.alive(); err != nil {
			return err
		}
		left := time.Until(until)
		if left <= 0 {
			return nil
		}
		if err := sleepCtx(ctx, min(left, time.Second)); err != nil {
			return err
		}
	}
}

// traced is what one traced kubelogd run gave.
type traced struct {
	calls   map[string]int64   // strace's calls by syscall
	seconds float64            // from the exec to the SIGTERM
	metrics map[string]float64 // kubelogd's, just before the SIGTERM
}

// traceKubelogd runs kubelogd with its default flags under strace (see the method above)
// into an empty directory named label, until wait returns; then it scrapes /metrics once,
// sends strace SIGTERM and reads its summary. kubelogd has exited when it returns.
func traceKubelogd(ctx context.Context, cfg *config, strace, label, kubeconfig string, wait func(*kubelogdProc) error) (traced, error) {
	dir := filepath.Join(cfg.workDir, label)
	if !cfg.keep {
		defer os.RemoveAll(dir)
	}
	summary := dir + ".strace"
	d, err := startTraced(cfg, strace, summary, kubeconfig, dir)
	if err != nil {
		return traced{}, err
	}
	defer d.stopTraced()
	if err := wait(d); err != nil {
		return traced{}, err
	}
	var tr traced
	if tr.metrics, err = d.metrics(ctx); err != nil {
		return traced{}, fmt.Errorf("scraping kubelogd's metrics: %w", err)
	}
	tr.seconds = time.Since(d.Start).Seconds()
	if err := d.stopTraced(); err != nil {
		return traced{}, err
	}
	if tr.calls, err = readStraceSummary(summary); err != nil {
		return traced{}, err
	}
	return tr, nil
}

// startTraced starts kubelogd under strace, which writes its summary to summary. The
// returned process's cmd is strace's and its pid kubelogd's: alive reports either's exit,
// cpu, rss and metrics are kubelogd's. Stop it with stopTraced, not stop.
func startTraced(cfg *config, strace, summary, kubeconfig, dir string) (*kubelogdProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Errorf("a port for kubelogd's metrics: %w", err)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("kubelogd's output directory: %w", err)
	}
	logPath := dir + ".out"
	out, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("kubelogd's log: %w", err)
	}
	defer out.Close()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(strace, "-I", "2", "-f", "-c", "-o", summary, "-e", syscallsFilter,
		cfg.kubelogd, "--kubeconfig", kubeconfig, "--output-dir", dir, "--metrics-addr", addr)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	d := &kubelogdProc{cmd: cmd, Dir: dir, Metrics: "http://" + addr, log: logPath, done: make(chan struct{})}
	d.Start = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", strace, err)
	}
	go func() { _ = cmd.Wait(); close(d.done) }()
	if d.pid, err = tracedChild(d); err != nil {
		d.pid = 0
		_ = d.stopTraced()
		return nil, err
	}
	return d, nil
}

// tracedChild waits until strace has forked the process it traces and returns its pid.
func tracedChild(d *kubelogdProc) (int, error) {
	pid := d.cmd.Process.Pid
	path := fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := d.alive(); err != nil {
			return 0, err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return 0, fmt.Errorf("finding kubelogd under strace: %w", err)
		}
		if f := strings.Fields(string(data)); len(f) > 0 {
			return strconv.Atoi(f[0])
		}
		if time.Now().After(deadline) {
			return 0, errors.New("strace started no process in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stopTraced sends strace SIGTERM, which it passes on to kubelogd before it detaches and
// writes its summary, and waits for both to exit: kubelogd, no longer strace's child once
// strace has gone, by its /proc entry, SIGKILLed after 30 s like strace. It may be called
// again; the error says what had to be killed.
func (d *kubelogdProc) stopTraced() error {
	var errs []error
	if !d.stop() {
		errs = append(errs, errors.New("strace did not exit within 30s of SIGTERM: killed, no summary"))
	}
	if d.pid > 0 && !waitGone(d.pid, 30*time.Second) {
		_ = syscall.Kill(d.pid, syscall.SIGKILL)
		waitGone(d.pid, 5*time.Second)
		errs = append(errs, errors.New("kubelogd did not exit within 30s of SIGTERM: killed"))
	}
	d.pid = 0
	return errors.Join(errs...)
}

// waitGone waits at most timeout until pid has exited: its /proc entry is gone, or is a
// zombie (its reaper is init, and may be slow or none in a container).
func waitGone(pid int, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return true
		}
		if s := string(data); strings.HasPrefix(s[strings.LastIndexByte(s, ')')+1:], " Z") {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readStraceSummary reads the calls by syscall from the table strace -c writes:
//
//	% time     seconds  usecs/call     calls    errors syscall
//	------ ----------- ----------- --------- --------- ----------------
//	 44.13    0.001307          38        34        13 openat
//	...
//	100.00    0.002962          22       129        19 total
//
// The errors column is empty for a syscall that had none; the total line is checked
// against the sum.
func readStraceSummary(path string) (map[string]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("strace's summary: %w", err)
	}
	defer f.Close()
	calls := map[string]int64{}
	var sum, total int64 = 0, -1
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "%") || strings.HasPrefix(fields[0], "-") {
			continue
		}
		name := fields[len(fields)-1]
		if name == "total" {
			// Its usecs/call is empty in older strace versions: calls come second to last
			// without errors, third to last with.
			for _, i := range []int{len(fields) - 3, len(fields) - 2} {
				if n, err := strconv.ParseInt(fields[i], 10, 64); err == nil && n == sum {
					total = n
				}
			}
			continue
		}
		if len(fields) < 5 {
			return nil, fmt.Errorf("strace's summary %s: unexpected line %q", path, sc.Text())
		}
		n, err := strconv.ParseInt(fields[3], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("strace's summary %s: calls of %s: %w", path, name, err)
		}
		calls[name] += n
		sum += n
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("strace's summary %s: %w", path, err)
	}
	if total != sum {
		return nil, fmt.Errorf("strace's summary %s: no total line of %d calls (incomplete?)", path, sum)
	}
	return calls, nil
}

// syscallsTarget names the target of a case.
func syscallsTarget(r *syscallsRun) string {
	return fmt.Sprintf("syscalls, %d pods × %d: ≤ half of %g fsync/fdatasync and %g openat per new container (issue #17's strace of the start before the work)",
		r.Pods, r.PerPod, syscallsSyncsBefore, float64(syscallsOpenatBefore))
}

// targets adds each case's target: syncs and openat per container at most half the
// issue's counts before the work.
func (s *syscallsResult) targets(add addTarget) {
	for _, r := range s.Cases {
		f := r.Figures
		add(syscallsTarget(r), f.syncs(), syscallsSyncsBefore/2, "syncs/container", true,
			fmt.Sprintf("openat %.2f per container (goal ≤ %g); fsync %.2f, fdatasync %.2f, syncfs %.2f, sync_file_range %.2f; baseline subtracted",
				f.Openat, syscallsOpenatBefore/2.0, f.Fsync, f.Fdatasync, f.Syncfs, f.SyncFileRange)).Met =
			f.syncs() <= syscallsSyncsBefore/2 && f.Openat <= syscallsOpenatBefore/2.0
	}
}

// rows prints the scenario: per case the figures per container beside the raw counts
// (with pods − baseline), and the syscalls that cost the most per container.
func (s *syscallsResult) rows(t *table, goal func(name, text string) string) {
	t.row(fmt.Sprintf("8 syscalls per new container: strace -f -c -e %s; kubelogd defaults, empty output dir; %d lines per container before start, all on disk, %s later one more (the first synced saves); shutdown not counted; (with pods − baseline: the same kubelogd without pods, as long) ÷ containers",
		s.Filter, coverageLines, syscallsSyncWait))
	if s.Skipped != "" {
		t.row("", "skipped", s.Skipped, "")
		return
	}
	for _, r := range s.Cases {
		w, b, f := r.WithFigures, r.BaselineFigures, r.Figures
		raw := func(x, y float64) string { return fmt.Sprintf("(%s − %s)", commas(int(x)), commas(int(y))) }
		t.row("", fmt.Sprintf("%d pods × %d: all calls but epoll_pwait", r.Pods, r.PerPod),
			fmt.Sprintf("%.1f per container %s", f.Total, raw(w.Total, b.Total)), "")
		t.row("", "  openat", fmt.Sprintf("%.2f %s", f.Openat, raw(w.Openat, b.Openat)), "")
		t.row("", "  mkdirat", fmt.Sprintf("%.2f %s", f.Mkdirat, raw(w.Mkdirat, b.Mkdirat)), "")
		t.row("", "  renameat, renameat2", fmt.Sprintf("%.2f %s", f.Renameat, raw(w.Renameat, b.Renameat)), "")
		t.row("", "  syncs", fmt.Sprintf("%.2f %s: fsync %.2f %s, fdatasync %.2f %s, syncfs %.2f, sync_file_range %.2f",
			f.syncs(), raw(w.syncs(), b.syncs()), f.Fsync, raw(w.Fsync, b.Fsync), f.Fdatasync, raw(w.Fdatasync, b.Fdatasync), f.Syncfs, f.SyncFileRange),
			goal(syscallsTarget(r), fmt.Sprintf("≤ %g syncs, ≤ %g openat", syscallsSyncsBefore/2, syscallsOpenatBefore/2.0)))
		names := make([]string, 0, len(r.PerContainer))
		for name := range r.PerContainer {
			if name != "epoll_pwait" {
				names = append(names, name)
			}
		}
		slices.SortFunc(names, func(a, b string) int { return cmp.Compare(r.PerContainer[b], r.PerContainer[a]) })
		var top []string
		for _, name := range names[:min(len(names), syscallsTop)] {
			top = append(top, fmt.Sprintf("%s %.2f", name, r.PerContainer[name]))
		}
		t.row("", "  the most per container", strings.Join(top, ", "), "")
		t.row("", "  the runs", fmt.Sprintf("%d fake kubelets; under strace, first lines on disk %.2f s after exec, cursors saved after the last line at %.2f s, traced %.1f s (baseline %.1f s); %.0f streamed, %.0f polled",
			r.Nodes, r.CoveredSeconds, r.SavedSeconds, r.TracedSeconds, r.BaselineSeconds, r.Streaming, r.Polling), "")
	}
}
