package main

import (
	"context"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"time"
)

// report is everything a run measured; it is printed as one table and written as JSON.
type report struct {
	Commit      string  `json:"commit"`
	Dirty       bool    `json:"dirty"` // the working tree had uncommitted changes
	CPUs        int     `json:"cpus"`
	CPUModel    string  `json:"cpu_model,omitempty"`
	GoVersion   string  `json:"go_version"`
	Kernel      string  `json:"kernel,omitempty"`
	Started     string  `json:"started"`
	Seconds     float64 `json:"seconds"`
	LoadStart   string  `json:"loadavg_start,omitempty"`
	LoadEnd     string  `json:"loadavg_end,omitempty"`
	Inotify     string  `json:"inotify,omitempty"`
	KubelogdBin string  `json:"kubelogd_binary"`
	// SternBin is the peer's binary and SternVersion its module version, from the build
	// information Go records in it.
	SternBin     string `json:"stern_binary,omitempty"`
	SternVersion string `json:"stern_version,omitempty"`
	// ProfileDir is set when kubelogd ran in-process in the bench binary with pprof
	// (--profile): its figures are of that build, not of the kubelogd binary.
	ProfileDir string `json:"profile_dir,omitempty"`

	Single   *singleResult     `json:"single,omitempty"`
	Coverage []*coverageResult `json:"coverage,omitempty"`
	Syscalls *syscallsResult   `json:"syscalls,omitempty"`
	Memory   []*memoryResult   `json:"memory,omitempty"`
	Latency  *latencyResult    `json:"latency,omitempty"`
	Polled   *polledResult     `json:"polled,omitempty"`
	Go       *goResult         `json:"go_bench,omitempty"`
	HA       *haResult         `json:"ha,omitempty"`
	Scale    *scaleResult      `json:"scale,omitempty"`

	Targets []target `json:"targets"`
	Errors  []string `json:"errors,omitempty"`

	start time.Time
}

// target is one figure checked against its goal. Benchmarks are not pass/fail: a miss is
// reported, not failed on.
type target struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Goal   float64 `json:"goal"`
	Unit   string  `json:"unit"`
	Met    bool    `json:"met"`
	Detail string  `json:"detail,omitempty"`

	short string // the measure column of the table, where the name is too long
}

// addTarget records a target in report.finish; a scenario's targets method takes it.
type addTarget func(name string, value, goal float64, unit string, lowerIsBetter bool, detail string) *target

func newReport(ctx context.Context, cfg *config) *report {
	r := &report{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), start: time.Now(),
		Started: time.Now().UTC().Format(time.RFC3339), KubelogdBin: cfg.kubelogd, ProfileDir: cfg.profileDir}
	git := func(args ...string) string {
		cmd := exec.CommandContext(ctx, "git", args...)
		cmd.Dir = cfg.repo
		out, err := cmd.Output()
		if err != nil {
			return ""
		}
		return strings.TrimSpace(string(out))
	}
	if cfg.stern != "" {
		r.SternBin, r.SternVersion = cfg.stern, moduleVersion(cfg.stern, "github.com/stern/stern")
	}
	r.Commit = git("rev-parse", "--short=12", "HEAD")
	r.Dirty = git("status", "--porcelain", "--untracked-files=no") != ""
	r.Kernel = readTrim("/proc/sys/kernel/osrelease")
	r.LoadStart = loadAvg()
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				r.CPUModel = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return r
}

// moduleVersion is the version of module in the Go binary at path ("" if unknown).
func moduleVersion(path, module string) string {
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return ""
	}
	for _, m := range append([]*debug.Module{&info.Main}, info.Deps...) {
		if m.Path == module {
			return m.Version
		}
	}
	return ""
}

func readTrim(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

func loadAvg() string {
	f := strings.Fields(readTrim("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// finish evaluates the targets.
func (r *report) finish() {
	r.Seconds = time.Since(r.start).Seconds()
	r.LoadEnd = loadAvg()
	var add addTarget = func(name string, value, goal float64, unit string, lowerIsBetter bool, detail string) *target {
		met := value <= goal
		if !lowerIsBetter {
			met = value >= goal
		}
		r.Targets = append(r.Targets, target{Name: name, Value: value, Goal: goal, Unit: unit, Met: met, Detail: detail})
		return &r.Targets[len(r.Targets)-1]
	}
	if s := r.Single; s != nil {
		add("single stream wall time vs the transport limit (io.Copy of Stream())", s.WallRatio, 1.15, "x", true,
			fmt.Sprintf("kubelogd %.2fs, io.Copy %.2fs", s.Kubelogd.WallSeconds, s.Copy.WallSeconds))
	}
	for _, c := range r.Coverage {
		// A ratio to the peer holds at any pod count; the times below are set for 1,000 and
		// 5,000 pods, other counts are reported only.
		if st := c.Stern; st != nil {
			add(fmt.Sprintf("coverage vs stern, %d pods existing before start", c.Pods), c.RatioStern, 1, "x", true,
				fmt.Sprintf("kubelogd %.2fs (every line readable in its files), stern %.2fs (every line printed; --qps -1 --max-log-requests %d)",
					c.ExistingSeconds, st.Seconds, st.MaxLogRequests))
		}
		goal := map[int]float64{1000: 2, 5000: 10}[c.Pods]
		if goal == 0 {
			continue
		}
		add(fmt.Sprintf("coverage, %d pods existing before start", c.Pods), c.ExistingSeconds, goal, "s", true,
			fmt.Sprintf("kubelogd exec → every line readable; the transport alone %.2fs", c.TransportSeconds))
		add(fmt.Sprintf("coverage, %d pods created after start (worst pod)", c.Pods), c.PodLagMax, goal, "s", true,
			fmt.Sprintf("pod running with its lines → readable; all %d covered %.2fs after the first create, creating took %.2fs", c.Pods, c.CreatedSeconds, c.CreatingSeconds))
	}
	if s := r.Syscalls; s != nil {
		s.targets(add)
	}
	for _, m := range r.Memory {
		m.targets(add)
	}
	if l := r.Latency; l != nil {
		add("latency p99, emitted → readable in the file", l.P99Ms, 50, "ms", true,
			fmt.Sprintf("%d containers × %.0f lines/s, every one streamed (kubelogd %s); transport alone p99 %.1fms", l.Containers, l.LinesPerSecond, l.KubelogdFlags, l.Transport.P99Ms))
	}
	if p := r.Polled; p != nil {
		p.targets(add)
	}
	if h := r.HA; h != nil && h.Takeover != nil {
		tk := h.Takeover
		add(haTakeoverTarget, tk.LinesP99, tk.LeaseDurationSeconds+5, "s", true,
			fmt.Sprintf("%d shards of %d SIGKILLed replicas; Lease held by another replica p99 %.2fs", tk.Samples, tk.Rounds, tk.LeaseP99))
	}
	if s := r.Scale; s != nil {
		s.targets(add)
	}
	if g := r.Go; g != nil {
		ts, js := g.find("collector", "BenchmarkReadLoop/timestamped"), g.find("collector", "BenchmarkReadLoop/json")
		if ts != nil && js != nil {
			tns, tal := ts.perLine()
			jns, _ := js.perLine()
			add("json over timestamped, whole line path (collector BenchmarkReadLoop)", jns-tns, 400, "ns/line", true,
				fmt.Sprintf("json %.0f − timestamped %.0f", jns, tns)).short = "json − timestamped, ReadLoop"
			add("allocations on the timestamped line path (collector BenchmarkReadLoop)", tal, 0.05, "allocs/line", true,
				"per-request allocations (client-go, watchdog) spread over 10,000 lines are ~0.012; more means the line path allocates").short = "allocs/line, ReadLoop/timestamped"
		}
		ts, js = g.find("sink", "BenchmarkWriteTimestamped"), g.find("sink", "BenchmarkWriteJSON")
		if ts != nil && js != nil {
			tns, tal := ts.perLine()
			jns, _ := js.perLine()
			add("json over timestamped, sink.File.Write (sink BenchmarkWrite*)", jns-tns, 400, "ns/line", true,
				fmt.Sprintf("json %.0f − timestamped %.0f", jns, tns)).short = "json − timestamped, sink Write"
			add("allocations of sink.File.Write, timestamped", tal, 0, "allocs/line", true, "").short = "allocs/line, sink WriteTimestamped"
		}
	}
}

func (r *report) writeJSON(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// table is rows of cells printed in aligned columns.
type table struct{ rows [][]string }

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) print(w io.Writer) {
	var width []int
	for _, r := range t.rows {
		if len(r) == 1 {
			continue // a section heading spans the table
		}
		for i, c := range r {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, r := range t.rows {
		if len(r) == 1 {
			fmt.Fprintln(w, r[0])
			continue
		}
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))+2))
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func commas(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (r *report) print(w io.Writer) {
	commit := r.Commit
	if r.Dirty {
		commit += " (+ uncommitted changes)"
	}
	fmt.Fprintf(w, "\nkubelogd bench: commit %s, %d CPUs (%s), %s, linux %s, %s, %.0fs\n", commit, r.CPUs, r.CPUModel, r.GoVersion, r.Kernel, r.Started, r.Seconds)
	fmt.Fprintf(w, "load average at start %s, at end %s (a shared machine makes every figure noisy)\n", r.LoadStart, r.LoadEnd)
	if r.Inotify != "" {
		fmt.Fprintln(w, r.Inotify)
	}
	if r.SternBin != "" {
		fmt.Fprintf(w, "peer: stern %s (%s)\n", r.SternVersion, r.SternBin)
	}
	if r.ProfileDir != "" {
		fmt.Fprintf(w, "PROFILED: kubelogd ran in-process in the bench binary with pprof; profiles in %s\n", r.ProfileDir)
	}
	fmt.Fprintln(w)
	t := &table{}
	t.row("scenario", "measure", "value", "target")
	sec := func(s float64) string { return fmt.Sprintf("%.2f s", s) }
	verdicts := map[string]string{}
	for _, tg := range r.Targets {
		v := "MET"
		if !tg.Met {
			v = "MISSED"
		}
		verdicts[tg.Name] = v
	}
	goal := func(name, text string) string {
		if v, ok := verdicts[name]; ok {
			return text + "  " + v
		}
		return text
	}
	if s := r.Single; s != nil {
		t.row(fmt.Sprintf("1 single stream: %s lines × %d B, %.1f MB timestamped, one finished container; best of %d",
			commas(s.Lines), s.LineBytes, float64(s.StreamBytes)/1e6, len(s.Kubelogd.Walls)))
		for _, tr := range []*toolRun{&s.Kubelogd, &s.Copy, s.Kubectl, s.Stern} {
			if tr == nil {
				continue
			}
			name := map[string]string{"kubelogd": "kubelogd → rotated files", "io.Copy": "io.Copy(file, Stream())", "kubectl": "kubectl logs --timestamps > file",
				"stern": "stern --no-follow --timestamps > file"}[tr.Tool]
			t.row("", name, fmt.Sprintf("%.2f s wall, %.2f s CPU, %.1f MB/s, %s lines/s", tr.WallSeconds, tr.CPUSeconds, tr.MBPerSec, commas(int(tr.LinesPerSec))), "")
		}
		t.row("", "kubelogd ÷ io.Copy", fmt.Sprintf("wall %.2f×, CPU %.2f×", s.WallRatio, s.CPURatio),
			goal("single stream wall time vs the transport limit (io.Copy of Stream())", "wall ≤ 1.15×"))
		if s.Kubectl != nil {
			t.row("", "kubelogd ÷ kubectl", fmt.Sprintf("wall %.2f×, CPU %.2f×", s.WallRatioKubectl, s.CPURatioKubectl), "")
		}
		if s.Stern != nil {
			t.row("", "kubelogd ÷ stern", fmt.Sprintf("wall %.2f×, CPU %.2f×", s.WallRatioStern, s.CPURatioStern), "")
		}
		t.row("", "kubelogd files", fmt.Sprintf("%d (--max-size-mb 100: the default)", s.Files), "")
	}
	for _, c := range r.Coverage {
		lim := map[int]string{1000: "≤ 2 s", 5000: "≤ 10 s"}[c.Pods]
		maxLim := ""
		if lim != "" {
			maxLim = "max " + lim
		}
		t.row(fmt.Sprintf("2 coverage: %s pods × %d lines, %d fake kubelets, kubelogd defaults (--kube-api-qps 500 --kube-api-burst 500; follow budget 50 per node, 2,000 in all)", commas(c.Pods), c.LinesPerPod, c.Nodes))
		t.row("", "existing before start: exec → all readable", sec(c.ExistingSeconds), goal(fmt.Sprintf("coverage, %d pods existing before start", c.Pods), lim))
		t.row("", "  kubelogd's start; its CPU until covered", fmt.Sprintf("'kubelogd started' at %.2f s, 'pod informers synced' at %.2f s; %.2f CPU-s = %.2f ms per container",
			c.StartedSeconds, c.SyncedSeconds, c.ExistingCPUSeconds, 1000*c.ExistingCPUSeconds/float64(c.Pods)), "")
		t.row("", "  kubelogd's containers when covered", fmt.Sprintf("%s streamed, %s polled (kubelogd_targets)", commas(int(c.Streaming)), commas(int(c.Polling))), "")
		tv := fmt.Sprintf("%s (kubelogd %.2f×); client CPU %.2f CPU-s = %.2f ms per stream",
			sec(c.TransportSeconds), c.ExistingSeconds/c.TransportSeconds, c.TransportCPUSeconds, 1000*c.TransportCPUSeconds/float64(c.Pods))
		if c.TransportRetries > 0 {
			tv += fmt.Sprintf("; %d streams reopened, the first after: %s", c.TransportRetries, c.TransportFirstError)
		}
		t.row("", "  the transport alone (client-go, same QPS/burst)", tv, "")
		if st := c.Stern; st != nil {
			sv := fmt.Sprintf("%s; %.2f CPU-s = %.2f ms per stream; %s lines", sec(st.Seconds), st.CPUSeconds,
				1000*st.CPUSeconds/float64(c.Pods), commas(st.Lines))
			if st.Duplicates+st.Other == 0 {
				sv += ", each once"
			} else {
				sv += fmt.Sprintf(", %d printed again, %d other lines", st.Duplicates, st.Other)
			}
			if st.Retries > 0 {
				sv += fmt.Sprintf("; %d retries, the first: %s", st.Retries, st.FirstError)
			}
			t.row("", fmt.Sprintf("  stern (follows; --qps -1 --max-log-requests %d): exec → all printed", st.MaxLogRequests), sv, "")
			t.row("", "  coverage vs stern: kubelogd ÷ stern", fmt.Sprintf("%.2f×", c.RatioStern),
				goal(fmt.Sprintf("coverage vs stern, %d pods existing before start", c.Pods), "≤ 1.0×"))
		}
		t.row("", "created after start: pod ready → readable", fmt.Sprintf("p50 %.2f s, p99 %.2f s, max %.2f s", c.PodLagP50, c.PodLagP99, c.PodLagMax),
			goal(fmt.Sprintf("coverage, %d pods created after start (worst pod)", c.Pods), maxLim))
		t.row("", "created after start: first create → all readable", fmt.Sprintf("%.2f s (creating them took %.2f s)", c.CreatedSeconds, c.CreatingSeconds), "")
		if c.Markers+c.ExtraLines > 0 || c.Reconnects > 0 {
			t.row("", "anomalies", fmt.Sprintf("%d marker lines, %d extra lines, %.0f reconnects", c.Markers, c.ExtraLines, c.Reconnects), "")
		}
	}
	if s := r.Syscalls; s != nil {
		s.rows(t, goal)
	}
	for _, m := range r.Memory {
		m.rows(t, goal)
	}
	if len(r.Memory) >= 2 {
		marginalRows(t, r.Memory[0], r.Memory[len(r.Memory)-1])
	}
	if l := r.Latency; l != nil {
		t.row(fmt.Sprintf("4 latency: %s containers × %.0f lines/s for %.0f s (%s lines), emitted → readable in kubelogd's file",
			commas(l.Containers), l.LinesPerSecond, l.DurationSeconds, commas(l.Emitted)))
		t.row("", fmt.Sprintf("kubelogd %s: every container streamed", l.KubelogdFlags), fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms", l.P50Ms, l.P99Ms, l.MaxMs), goal("latency p99, emitted → readable in the file", "p99 ≤ 50 ms"))
		t.row("", "the same, each container's first line; lines 5 s or more after it", fmt.Sprintf("p99 %.1f ms; p99 %.1f ms", l.FirstP99Ms, l.SteadyP99Ms), "")
		t.row("", fmt.Sprintf("transport alone (io.Copy of %d follows to files)", l.Transport.Streams), fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms", l.Transport.P50Ms, l.Transport.P99Ms, l.Transport.MaxMs), "")
		t.row("", "the same, each stream's first line; lines 5 s or more after it", fmt.Sprintf("p99 %.1f ms; p99 %.1f ms", l.Transport.FirstP99Ms, l.Transport.SteadyP99Ms), "")
		t.row("", "kubelogd CPU while emitting", fmt.Sprintf("%.2f cores", l.KubelogdCores), "")
		if len(l.Cores) > 0 {
			names := make([]string, 0, len(l.Cores))
			for n := range l.Cores {
				names = append(names, n)
			}
			sort.Slice(names, func(i, j int) bool { return l.Cores[names[i]] > l.Cores[names[j]] })
			var parts []string
			for _, n := range names {
				label := n
				if strings.HasPrefix(n, "kubelogd-bench") || n == filepath.Base(os.Args[0]) {
					label = "fake kubelets + copier"
				}
				parts = append(parts, fmt.Sprintf("%s %.2f", label, l.Cores[n]))
			}
			t.row("", "CPU of the whole pipeline (cores)", fmt.Sprintf("%s; all CPUs %.0f%% busy (other users included)", strings.Join(parts, ", "), 100*l.MachineBusy), "")
		}
		t.row("", "lines", fmt.Sprintf("%s emitted, %s readable, %d duplicates; emitters at worst %.0f ms behind schedule",
			commas(l.Emitted), commas(l.Received), l.Duplicates, l.EmitBehindMs), "")
	}
	if p := r.Polled; p != nil {
		p.rows(t, goal)
	}
	if h := r.HA; h != nil {
		h.rows(t, goal)
	}
	if s := r.Scale; s != nil {
		s.rows(t, goal)
	}
	if g := r.Go; g != nil {
		t.row("5 in-process line path (go test -bench, median of runs): ns/line, allocs/line")
		for _, b := range g.Benchmarks {
			ns, allocs := b.perLine()
			v := fmt.Sprintf("%.0f ns/line, %.3g allocs/line", ns, allocs)
			if mb, ok := b.Metrics["MB/s"]; ok {
				v += fmt.Sprintf(", %.0f MB/s", mb)
			}
			pkg := b.Package[strings.LastIndexByte(b.Package, '/')+1:]
			t.row("", pkg+" "+strings.TrimPrefix(b.Name, "Benchmark"), v, "")
		}
		for _, tg := range r.Targets {
			if tg.short != "" {
				t.row("", tg.short, fmt.Sprintf("%.3g %s", tg.Value, tg.Unit), goal(tg.Name, fmt.Sprintf("≤ %g %s", tg.Goal, tg.Unit)))
			}
		}
	}
	t.print(w)

	met := 0
	for _, tg := range r.Targets {
		if tg.Met {
			met++
		}
	}
	fmt.Fprintf(w, "\ntargets: %d of %d met\n", met, len(r.Targets))
	for _, tg := range r.Targets {
		if !tg.Met {
			fmt.Fprintf(w, "  MISSED %s: %.3g %s (target %g %s; %s)\n", tg.Name, tg.Value, tg.Unit, tg.Goal, tg.Unit, tg.Detail)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "ERROR %s\n", e)
	}
}
