package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // the profiles of --profile
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/kubelogd/kubelogd/collector"
	"github.com/kubelogd/kubelogd/internal/daemon"
	"github.com/kubelogd/kubelogd/sink"
)

// kubelogd serves no profiles, so with --profile the bench runs kubelogd's code in-process
// in a child of its own (the kubelogd-pprof subcommand) with net/http/pprof, the CPU
// profile of the whole run written at exit, and heap and goroutine profiles fetched at
// each memory sample. The configuration is kubelogd's defaults, as the flags set them;
// the follow budget's two bounds may be set as kubelogd's flags set them.

// runKubelogdPprof is the kubelogd-pprof subcommand.
func runKubelogdPprof(args []string) error {
	fs := flag.NewFlagSet("kubelogd-pprof", flag.ContinueOnError)
	var cfg daemon.Config
	var pprofAddr, cpuProfile string
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "")
	fs.StringVar(&cfg.Sink.Dir, "output-dir", "", "")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", "", "")
	fs.StringVar(&pprofAddr, "pprof-addr", "", "")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "")
	// kubelogd's flag defaults (cmd/kubelogd parse).
	cfg.Collector = collector.Config{StallTimeout: 2 * time.Minute, MaxStreamLifetime: time.Hour,
		PollMaxInterval: 30 * time.Second, PollQPS: 250}
	fs.IntVar(&cfg.Collector.MaxStreamsPerNode, "max-streams-per-node", 50, "")
	fs.IntVar(&cfg.Collector.MaxStreams, "max-streams", 2000, "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg.QPS, cfg.Burst, cfg.Version = 500, 500, "bench-pprof"
	cfg.Sink.Format, cfg.Sink.MaxSizeMB, cfg.Sink.MaxBackups, cfg.Sink.FlushInterval = sink.FormatTimestamped, 100, 5, time.Second
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ln, err := net.Listen("tcp", pprofAddr)
	if err != nil {
		return err
	}
	go func() { _ = http.Serve(ln, nil) }()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	return daemon.Run(ctx, cfg, logger)
}

// kubelogdCommand returns the command line that runs kubelogd for a scenario named name:
// the binary, or with --profile the kubelogd-pprof subcommand.
func kubelogdCommand(cfg *config, name string) (bin string, args []string, pprofURL string, err error) {
	if cfg.profileDir == "" {
		return cfg.kubelogd, nil, "", nil
	}
	port, err := freePort()
	if err != nil {
		return "", nil, "", err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	return cfg.self, []string{"kubelogd-pprof", "--pprof-addr", addr,
		"--cpuprofile", filepath.Join(cfg.profileDir, name+".cpu.pprof")}, "http://" + addr, nil
}

// saveProfiles writes the heap and goroutine profiles of a --profile run to the
// profile directory as <name>.heap.pprof and <name>.goroutine.txt.
func (d *kubelogdProc) saveProfiles(ctx context.Context, dir, name string) error {
	if d.pprof == "" {
		return nil
	}
	for file, path := range map[string]string{name + ".heap.pprof": "/debug/pprof/heap?gc=1", name + ".goroutine.txt": "/debug/pprof/goroutine?debug=1"} {
		if err := fetch(ctx, d.pprof+path, filepath.Join(dir, file)); err != nil {
			return err
		}
	}
	return nil
}

func fetch(ctx context.Context, url, path string) error {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(url + ": " + resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
