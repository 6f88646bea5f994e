// Command bench measures kubelogd on the local control plane (etcd, kube-apiserver and
// fake kubelets on loopback) and prints one table, also written as JSON:
//
//  1. single stream: 1,000,000 lines of one finished container into rotated files, wall
//     and CPU time of the kubelogd process beside the transport limit (io.Copy of
//     client-go's Stream(), and kubectl logs when bin/kubectl exists) and stern;
//  2. coverage: how long until every line of 1,000 and 5,000 pods is on disk, for pods
//     that exist before kubelogd starts and for pods created after; for the former, beside
//     the transport alone and stern (every line printed, see stern.go);
//  3. memory (memory.go): 1,000 and 5,000 idle containers, kubelogd with its follow budget,
//     kubelogd following all and stern: their RSS and the API server's growth;
//  4. latency from a line's emission to its being readable in the file, 1,000 streamed
//     containers at 10 lines/s each; and (polled.go) of quiet containers, most of them
//     polled under kubelogd's follow budget;
//  5. the in-process line path (go test -bench in collector and sink);
//  6. replicas (ha.go): the takeover of a SIGKILLed replica's shards, and coverage of the
//     backlog of 3,000 pods by 3 replicas against 1 kubelogd.
//  7. scale (scale.go, not run by default): 20,000 containers on one kubelogd, most of
//     them polled beyond the follow budget: coverage, every line exact after minutes of
//     random logging, the streams within the budget, polls, memory per container.
//  8. syscalls (syscalls.go): strace -c of kubelogd's file and descriptor calls and
//     syncs per new container, 200 pods × 1 and 50 pods × 4, less a run without pods.
//
// Benchmarks are not pass/fail: figures are reported against their targets and the run
// succeeds unless a scenario could not be measured. It is what `make bench` runs.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/klog/v2"
)

// config is what the scenarios need from the command line.
type config struct {
	self, kubelogd, kubectl, repo, workDir string
	stern                                  string // the peer; "" when missing
	profileDir                             string
	scenarios                              map[string]bool
	singleLines, singleRuns                int
	coverageSizes                          []int
	latencyContainers                      int
	haPods, haTakeoverPods, haRounds       int
	latencyDuration                        time.Duration
	scale                                  scaleConfig
	memorySizes                            []int
	memorySettle                           time.Duration
	polledContainers                       int
	polledDuration, polledGap              time.Duration
	syscallsCases                          []syscallsCase
	benchCount                             int
	quiet, keep, trace                     bool
}

func (c *config) progress(format string, args ...any) {
	if !c.quiet {
		fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
}

func main() {
	// Subcommands the bench runs as children of itself.
	if len(os.Args) > 1 {
		if sub, ok := subcommands[os.Args[1]]; ok {
			if err := sub(os.Args[2:]); err != nil {
				fmt.Fprintln(os.Stderr, os.Args[1]+":", err)
				os.Exit(1)
			}
			return
		}
	}
	os.Exit(run())
}

var subcommands = map[string]func([]string) error{
	"kubelet-host": runHost,
	"copy-stream":  runCopyStream,
	"copy-follow":  runCopyFollow,
	// kubelogd-pprof is kubelogd in-process with profiles, for --profile.
	"kubelogd-pprof": runKubelogdPprof,
}

func run() int {
	// client-go's klog would print its client-side throttling notices (the transport
	// baseline opens 5,000 streams at kubelogd's QPS) in the middle of the progress.
	klog.SetOutput(io.Discard)
	klog.LogToStderr(false)
	var cfg config
	var scenarios, sizes, memSizes, syscallsPods, jsonOut string
	flag.StringVar(&cfg.kubelogd, "kubelogd", "bin/kubelogd", "kubelogd binary to measure")
	flag.StringVar(&cfg.kubectl, "kubectl", "bin/kubectl", "kubectl binary for the transport comparison; skipped if missing")
	flag.StringVar(&cfg.stern, "stern", "bin/stern", "stern binary, the peer of the single stream, coverage and memory (make bench builds it from hack/tools/stern); skipped if missing")
	flag.StringVar(&cfg.repo, "repo", ".", "the kubelogd module, for go test -bench and the git commit")
	flag.StringVar(&jsonOut, "json", "bin/bench.json", "where to write the results as JSON")
	flag.StringVar(&scenarios, "scenarios", "single,coverage,syscalls,memory,latency,polled,go,ha", "scenarios to run (scale is not in the default: 10 to 15 minutes at its full size)")
	flag.IntVar(&cfg.singleLines, "single-lines", 1_000_000, "lines of the single stream")
	flag.IntVar(&cfg.singleRuns, "single-runs", 2, "rounds of the single stream scenario (best wall time of each reader is reported)")
	flag.StringVar(&sizes, "coverage-pods", "1000,5000", "pod counts of the coverage scenario")
	flag.StringVar(&syscallsPods, "syscalls-pods", "200x1,50x4", "cases of the syscalls scenario, PODSxCONTAINERS (containers per pod), comma-separated")
	flag.StringVar(&memSizes, "memory-pods", "1000,5000", "idle container counts of the memory scenario")
	flag.DurationVar(&cfg.memorySettle, "memory-settle", 3*time.Second, "how long each reader of the memory scenario settles, once it has read every container, before its RSS is read (Go runs a forced GC every 2 minutes)")
	flag.IntVar(&cfg.polledContainers, "polled-containers", 1000, "quiet containers of the polled scenario (200 streamed, the others polled)")
	flag.DurationVar(&cfg.polledDuration, "polled-duration", 3*time.Minute, "how long they log")
	flag.DurationVar(&cfg.polledGap, "polled-gap", 40*time.Second, "mean time between two lines of one of them (random)")
	flag.IntVar(&cfg.latencyContainers, "latency-containers", 1000, "containers emitting in the latency scenario")
	flag.DurationVar(&cfg.latencyDuration, "latency-duration", time.Minute, "how long they emit")
	flag.IntVar(&cfg.haPods, "ha-pods", 3000, "pods of the ha scenario's coverage, by 3 replicas and by 1 kubelogd")
	flag.IntVar(&cfg.haTakeoverPods, "ha-takeover-pods", 300, "logging containers of the ha scenario's takeover")
	flag.IntVar(&cfg.haRounds, "ha-rounds", 5, "replicas SIGKILLed, one per round, in the ha scenario's takeover")
	flag.IntVar(&cfg.benchCount, "bench-count", 3, "go test -count for the in-process benchmarks (medians reported)")
	flag.BoolVar(&cfg.quiet, "quiet", false, "no progress on stderr")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the work directory (kubelogd's output and logs) and print its path")
	flag.BoolVar(&cfg.trace, "trace", false, "print kubelogd's stream and line counters every 250ms while waiting for coverage (they cost kubelogd a scrape each)")
	flag.StringVar(&cfg.profileDir, "profile", "", "run kubelogd's code in-process with pprof and write CPU, heap and goroutine profiles here (the figures then are of that build)")
	cfg.scale.flags(flag.CommandLine)
	flag.Parse()

	cfg.scenarios = map[string]bool{}
	for _, s := range strings.Split(scenarios, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.scenarios[s] = true
		}
	}
	if cfg.haPods <= 0 || cfg.haTakeoverPods <= 0 || cfg.haRounds <= 0 {
		fmt.Fprintln(os.Stderr, "bench: --ha-pods, --ha-takeover-pods and --ha-rounds must be positive")
		return 2
	}
	if err := cfg.scale.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fmt.Fprintf(os.Stderr, "bench: bad --coverage-pods %q\n", sizes)
			return 2
		}
		cfg.coverageSizes = append(cfg.coverageSizes, n)
	}
	var err error
	if cfg.memorySettle < 0 {
		fmt.Fprintf(os.Stderr, "bench: --memory-settle %s is negative\n", cfg.memorySettle)
		return 2
	}
	if cfg.memorySizes, err = parseSizes(memSizes); err != nil || cfg.polledContainers <= 0 || cfg.polledGap <= 0 {
		fmt.Fprintf(os.Stderr, "bench: bad --memory-pods %q, or --polled-containers, --polled-gap not positive\n", memSizes)
		return 2
	}
	if cfg.syscallsCases, err = parseSyscallsCases(syscallsPods); err != nil {
		fmt.Fprintln(os.Stderr, "bench: --syscalls-pods:", err)
		return 2
	}
	if cfg.self, err = os.Executable(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	for _, p := range []*string{&cfg.kubelogd, &cfg.repo, &jsonOut, &cfg.profileDir} {
		if *p == "" {
			continue
		}
		if *p, err = filepath.Abs(*p); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if _, err := os.Stat(cfg.kubelogd); err != nil {
		fmt.Fprintf(os.Stderr, "bench: kubelogd binary: %v (make build)\n", err)
		return 2
	}
	for _, p := range []*string{&cfg.kubectl, &cfg.stern} {
		if *p == "" {
			continue
		}
		if abs, err := filepath.Abs(*p); err == nil {
			if _, err := os.Stat(abs); err == nil {
				*p = abs
			} else {
				*p = ""
			}
		}
	}
	if cfg.stern == "" && (cfg.scenarios["single"] || cfg.scenarios["coverage"] || cfg.scenarios["memory"]) {
		fmt.Fprintln(os.Stderr, "bench: no stern binary (make bench builds bin/stern): its comparisons are skipped")
	}
	if cfg.profileDir != "" {
		if err := os.MkdirAll(cfg.profileDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if cfg.workDir, err = os.MkdirTemp("", "kubelogd-bench-"); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if cfg.keep {
		defer fmt.Fprintf(os.Stderr, "bench: work directory kept: %s\n", cfg.workDir)
	} else {
		defer os.RemoveAll(cfg.workDir)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep := newReport(ctx, &cfg)
	// The fake kubelets' readers hold one inotify instance per followed container, and
	// the default limit of 128 per user is far below 10,000. At scale, the budget bounds them.
	if cfg.scenarios["coverage"] || cfg.scenarios["syscalls"] || cfg.scenarios["memory"] || cfg.scenarios["latency"] || cfg.scenarios["polled"] || cfg.scenarios["ha"] || cfg.scenarios["scale"] {
		counts := slices.Concat(cfg.coverageSizes, cfg.memorySizes, []int{cfg.latencyContainers, cfg.polledContainers, cfg.haPods, cfg.haTakeoverPods})
		if cfg.scenarios["scale"] {
			counts = append(counts, min(cfg.scale.nodes*scaleBudgetPerNode, scaleBudgetTotal))
		}
		for _, c := range cfg.syscallsCases {
			counts = append(counts, c.pods*c.perPod)
		}
		want := 2*slices.Max(counts) + 4096
		s, err := raiseSysctl("fs.inotify.max_user_instances", want)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		rep.Inotify = fmt.Sprintf("fs.inotify.max_user_instances raised from %d to %d for the run, restored after", s.old, s.set)
		if s.set == s.old {
			rep.Inotify = fmt.Sprintf("fs.inotify.max_user_instances is %d: not changed", s.old)
		}
		cfg.progress("%s", rep.Inotify)
		defer func() {
			if err := s.restore(); err != nil {
				fmt.Fprintln(os.Stderr, "bench: restoring fs.inotify.max_user_instances:", err)
			}
		}()
	}

	failed := false
	step := func(name string, f func() error) {
		if !cfg.scenarios[name] || ctx.Err() != nil {
			return
		}
		settleDisk(&cfg)
		start := time.Now()
		cfg.progress("%s: start", name)
		if err := f(); err != nil {
			failed = true
			rep.Errors = append(rep.Errors, fmt.Sprintf("%s: %v", name, err))
			fmt.Fprintf(os.Stderr, "bench: %s failed: %v\n", name, err)
			return
		}
		cfg.progress("%s: done in %s", name, time.Since(start).Round(time.Second))
	}
	step("single", func() (err error) { rep.Single, err = runSingle(ctx, &cfg); return })
	step("coverage", func() error {
		for i, n := range cfg.coverageSizes {
			if i > 0 {
				settleDisk(&cfg)
			}
			r, err := runCoverage(ctx, &cfg, n)
			if err != nil {
				return err
			}
			rep.Coverage = append(rep.Coverage, r)
		}
		return nil
	})
	step("syscalls", func() (err error) { rep.Syscalls, err = runSyscalls(ctx, &cfg); return })
	step("memory", func() error {
		for i, n := range cfg.memorySizes {
			if i > 0 {
				settleDisk(&cfg)
			}
			r, err := runMemory(ctx, &cfg, n)
			if err != nil {
				return err
			}
			rep.Memory = append(rep.Memory, r)
		}
		return nil
	})
	step("latency", func() (err error) { rep.Latency, err = runLatency(ctx, &cfg); return })
	step("polled", func() (err error) { rep.Polled, err = runPolled(ctx, &cfg); return })
	step("ha", func() (err error) { rep.HA, err = runHA(ctx, &cfg); return })
	step("scale", func() (err error) { rep.Scale, err = runScale(ctx, &cfg); return })
	step("go", func() (err error) { rep.Go, err = runGoBench(ctx, &cfg); return })

	rep.finish()
	rep.print(os.Stdout)
	if err := rep.writeJSON(jsonOut); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	fmt.Printf("\nJSON: %s\n", jsonOut)
	if failed || ctx.Err() != nil {
		return 1
	}
	return 0
}

// settleDisk writes back what the previous scenario left dirty (its files, and the
// deletion of its work directory, which ext4 carries on with after RemoveAll returns),
// so that a scenario's figures are not charged with the previous one's disk work.
func settleDisk(cfg *config) {
	start := time.Now()
	syscall.Sync()
	if d := time.Since(start); d > time.Second {
		cfg.progress("disk writeback before the next scenario took %s", d.Round(time.Millisecond))
	}
}
