package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The kubelet's timestamp with timestamps=true: RFC 3339 with a fixed 9-digit fraction.
const tsLen = len("2006-01-02T15:04:05.000000000Z")

// toolRun is how fast one reader took the single stream.
type toolRun struct {
	Tool        string    `json:"tool"`
	WallSeconds float64   `json:"wall_seconds"` // best of the runs
	CPUSeconds  float64   `json:"cpu_seconds"`  // user+system of the run with the best wall time
	MBPerSec    float64   `json:"mb_per_sec"`   // stream bytes (timestamped lines) / wall, 10^6 bytes
	LinesPerSec float64   `json:"lines_per_sec"`
	Walls       []float64 `json:"walls"` // every run's wall time
}

type singleResult struct {
	Lines       int      `json:"lines"`
	LineBytes   int      `json:"line_bytes"`
	StreamBytes int64    `json:"stream_bytes"` // bytes of the timestamps=true body, = kubelogd's timestamped output
	Files       int      `json:"kubelogd_files"`
	Kubelogd    toolRun  `json:"kubelogd"`
	Copy        toolRun  `json:"io_copy"`
	Kubectl     *toolRun `json:"kubectl,omitempty"`
	Stern       *toolRun `json:"stern,omitempty"`
	// Ratios of kubelogd to the transport limit (io.Copy of client-go's Stream).
	WallRatio float64 `json:"wall_ratio_vs_io_copy"`
	CPURatio  float64 `json:"cpu_ratio_vs_io_copy"`
	// The same against kubectl logs, when bin/kubectl exists.
	WallRatioKubectl float64 `json:"wall_ratio_vs_kubectl,omitempty"`
	CPURatioKubectl  float64 `json:"cpu_ratio_vs_kubectl,omitempty"`
	// And against stern --no-follow, when --stern is given.
	WallRatioStern float64 `json:"wall_ratio_vs_stern,omitempty"`
	CPURatioStern  float64 `json:"cpu_ratio_vs_stern,omitempty"`
}

const singleNS = "single"

// runSingle: one finished container with cfg.singleLines lines, read by io.Copy, kubectl,
// stern and kubelogd in turns, cfg.singleRuns rounds.
func runSingle(ctx context.Context, cfg *config) (*singleResult, error) {
	e, err := startEnv(ctx, cfg.self, 1, nil)
	if err != nil {
		return nil, err
	}
	defer e.stop()
	if err := e.c.EnsureNamespace(ctx, singleNS); err != nil {
		return nil, err
	}
	const size = 100
	start := time.Now()
	if _, err := e.hosts[0].call(ctx, hostReq{Op: "single", NS: singleNS, Lines: cfg.singleLines, Size: size}); err != nil {
		return nil, err
	}
	cfg.progress("single: %d lines of %d bytes written to the CRI log in %s", cfg.singleLines, size, time.Since(start).Round(time.Millisecond))
	res := &singleResult{Lines: cfg.singleLines, LineBytes: size, StreamBytes: int64(cfg.singleLines) * int64(tsLen+1+size+1)}
	work, err := os.MkdirTemp(cfg.workDir, "single-")
	if err != nil {
		return nil, err
	}
	if !cfg.keep {
		defer os.RemoveAll(work)
	}

	runs := map[string]*toolRun{}
	record := func(tool string, wall, cpu time.Duration) {
		r := runs[tool]
		if r == nil {
			r = &toolRun{Tool: tool}
			runs[tool] = r
		}
		r.Walls = append(r.Walls, wall.Seconds())
		if len(r.Walls) == 1 || wall.Seconds() < r.WallSeconds {
			r.WallSeconds, r.CPUSeconds = wall.Seconds(), cpu.Seconds()
		}
	}
	for round := range cfg.singleRuns {
		out := filepath.Join(work, "copy.log")
		wall, cpu, err := timeCommand(ctx, out, res.StreamBytes, cfg.self, "copy-stream", e.c.Kubeconfig, singleNS, "single", container)
		if err != nil {
			return nil, fmt.Errorf("io.Copy reader: %w", err)
		}
		record("io.Copy", wall, cpu)
		cfg.progress("single: round %d: io.Copy of Stream() %s wall, %s CPU", round+1, wall.Round(time.Millisecond), cpu)
		_ = os.Remove(out)

		if cfg.kubectl != "" {
			out := filepath.Join(work, "kubectl.log")
			wall, cpu, err := timeCommand(ctx, out, res.StreamBytes, cfg.kubectl, "--kubeconfig", e.c.Kubeconfig, "logs", "-n", singleNS, "single", "-c", container, "--timestamps")
			if err != nil {
				return nil, fmt.Errorf("kubectl logs: %w", err)
			}
			record("kubectl", wall, cpu)
			cfg.progress("single: round %d: kubectl logs --timestamps %s wall, %s CPU", round+1, wall.Round(time.Millisecond), cpu)
			_ = os.Remove(out)
		}

		if cfg.stern != "" {
			// --no-follow, as kubectl logs without -f: the container has finished, and a
			// follow would wait for more. --timestamps in UTC prints the kubelet's own
			// timestamps, so stern's output is the stream, byte for byte.
			out := filepath.Join(work, "stern.log")
			args := append(sternArgs(e.c.Kubeconfig), "^single$", "--namespace", singleNS, "--container", container,
				"--no-follow", "--output", "raw", "--timestamps", "--timezone", "UTC")
			wall, cpu, err := timeCommand(ctx, out, res.StreamBytes, cfg.stern, args...)
			if err != nil {
				return nil, fmt.Errorf("stern: %w", err)
			}
			record("stern", wall, cpu)
			cfg.progress("single: round %d: stern --no-follow --timestamps %s wall, %s CPU", round+1, wall.Round(time.Millisecond), cpu)
			_ = os.Remove(out)
		}

		dir := filepath.Join(work, fmt.Sprintf("kubelogd-%d", round))
		wall, cpu, files, err := singleKubelogd(ctx, cfg, e.c.Kubeconfig, dir, res.StreamBytes)
		if err != nil {
			return nil, err
		}
		res.Files = files
		record("kubelogd", wall, cpu)
		cfg.progress("single: round %d: kubelogd %s wall, %s CPU, %d files", round+1, wall.Round(time.Millisecond), cpu, files)
		_ = os.RemoveAll(dir)
	}
	fill := func(r *toolRun) {
		r.MBPerSec = float64(res.StreamBytes) / 1e6 / r.WallSeconds
		r.LinesPerSec = float64(res.Lines) / r.WallSeconds
	}
	res.Kubelogd, res.Copy = *runs["kubelogd"], *runs["io.Copy"]
	fill(&res.Kubelogd)
	fill(&res.Copy)
	res.WallRatio = res.Kubelogd.WallSeconds / res.Copy.WallSeconds
	res.CPURatio = res.Kubelogd.CPUSeconds / res.Copy.CPUSeconds
	if k := runs["kubectl"]; k != nil {
		fill(k)
		res.Kubectl = k
		res.WallRatioKubectl = res.Kubelogd.WallSeconds / k.WallSeconds
		res.CPURatioKubectl = res.Kubelogd.CPUSeconds / k.CPUSeconds
	}
	if st := runs["stern"]; st != nil {
		fill(st)
		res.Stern = st
		res.WallRatioStern = res.Kubelogd.WallSeconds / st.WallSeconds
		res.CPURatioStern = res.Kubelogd.CPUSeconds / st.CPUSeconds
	}
	return res, nil
}

// timeCommand runs a reader with its stdout in out and checks that it wrote want bytes.
func timeCommand(ctx context.Context, out string, want int64, bin string, args ...string) (wall, cpu time.Duration, err error) {
	f, err := os.Create(out)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout = f
	var stderr tailBuffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	err = cmd.Run()
	wall = time.Since(start)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w: %s", bin, err, stderr.String())
	}
	cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	info, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	if info.Size() != want {
		return 0, 0, fmt.Errorf("%s wrote %d bytes, want %d", bin, info.Size(), want)
	}
	return wall, cpu, nil
}

// singleKubelogd runs kubelogd until the container's files hold the whole stream. Wall
// time runs from the exec to the moment the files reach their full size; CPU time is read
// from /proc at that moment.
func singleKubelogd(ctx context.Context, cfg *config, kubeconfig, dir string, want int64) (wall, cpu time.Duration, files int, err error) {
	d, err := startKubelogd(cfg, "single-"+filepath.Base(dir), kubeconfig, dir)
	if err != nil {
		return 0, 0, 0, err
	}
	defer d.stop()
	podDir := filepath.Join(dir, singleNS, "single")
	deadline := time.Now().Add(10 * time.Minute)
	for {
		got := dirBytes(podDir, container)
		if got == want {
			wall = time.Since(d.Start)
			if cpu, err = d.cpu(); err != nil {
				return 0, 0, 0, err
			}
			break
		}
		if got > want {
			return 0, 0, 0, fmt.Errorf("kubelogd wrote %d bytes, want %d (duplicates or markers?)", got, want)
		}
		if err := d.alive(); err != nil {
			return 0, 0, 0, err
		}
		if time.Now().After(deadline) {
			return 0, 0, 0, fmt.Errorf("kubelogd wrote %d of %d bytes in 10 minutes", got, want)
		}
		select {
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	m, err := d.metrics(ctx)
	if err != nil {
		return 0, 0, 0, err
	}
	if n := m["kubelogd_lines_written_total"]; int(n) != cfg.singleLines {
		return 0, 0, 0, fmt.Errorf("kubelogd_lines_written_total %v, want %d", n, cfg.singleLines)
	}
	ents, _ := os.ReadDir(podDir)
	for _, e := range ents {
		if filepath.Ext(e.Name()) == ".log" {
			files++
		}
	}
	return wall, cpu, files, nil
}

// runCopyStream is the copy-stream subcommand: the transport limit, client-go's Stream()
// of a container's log (follow=false, timestamps=true) copied to stdout with io.Copy.
func runCopyStream(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: copy-stream <kubeconfig> <namespace> <pod> <container>")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", args[0])
	if err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	body, err := client.CoreV1().Pods(args[1]).GetLogs(args[2], &corev1.PodLogOptions{Container: args[3], Timestamps: true}).Stream(context.Background())
	if err != nil {
		return err
	}
	defer body.Close()
	_, err = io.Copy(os.Stdout, body)
	return err
}

// tailBuffer keeps the last 4 KiB written to it.
type tailBuffer struct{ b []byte }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 4096 {
		t.b = t.b[len(t.b)-4096:]
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.b) }
