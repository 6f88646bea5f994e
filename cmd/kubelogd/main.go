// Command kubelogd collects the logs of every container in a Kubernetes cluster into
// rotated files, one per container.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/kubelogd/kubelogd/internal/daemon"
	"github.com/kubelogd/kubelogd/sink"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "tail" {
		return runTail(args[1:], os.Stdout, stderr)
	}
	cfg, logger, err := parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if errors.Is(err, errVersion) {
		fmt.Fprintln(os.Stdout, "kubelogd", version)
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "kubelogd:", err)
		return 2
	}
	cfg.Version = version
	ctx, stop := signalContext(logger)
	defer stop()
	if err := daemon.Run(ctx, cfg, logger); err != nil {
		fmt.Fprintln(stderr, "kubelogd:", strings.TrimPrefix(err.Error(), daemon.ErrUsage.Error()+": "))
		if errors.Is(err, daemon.ErrUsage) {
			return 2
		}
		return 1
	}
	logger.Info("stopped")
	return 0
}

// signalContext is cancelled by the first SIGTERM or SIGINT; a second one exits at once.
func signalContext(logger *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		select {
		case sig := <-ch:
			logger.Info("signal received, shutting down (send again to exit at once)", "signal", sig.String())
			cancel()
		case <-ctx.Done():
			return
		}
		<-ch
		logger.Warn("second signal: exiting without flushing")
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

var errVersion = errors.New("version requested")

// stringList is a repeatable flag; a comma-separated value adds several entries.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// parse turns flags, and KUBELOGD_* environment variables for flags not given, into a
// Config. Environment variables are named after the flag: --max-size-mb is
// KUBELOGD_MAX_SIZE_MB.
func parse(args []string, stderr io.Writer) (daemon.Config, *slog.Logger, error) {
	var cfg daemon.Config
	fs := flag.NewFlagSet("kubelogd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var namespaces, excludeNS stringList
	var format, logFormat, logLevel string
	var qps float64
	var showVersion bool
	fs.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty: in-cluster config, else $KUBECONFIG or ~/.kube/config")
	fs.Float64Var(&qps, "kube-api-qps", 500, "client-side limit on API requests per second, log stream opens included")
	fs.IntVar(&cfg.Burst, "kube-api-burst", 500, "burst above --kube-api-qps")
	fs.Var(&namespaces, "namespace", "namespace to collect (repeatable; default: all namespaces)")
	fs.Var(&excludeNS, "exclude-namespace", "namespace never to collect (repeatable)")
	fs.StringVar(&cfg.Informer.LabelSelector, "selector", "", "label selector of the pods to collect")
	fs.StringVar(&cfg.Informer.FieldSelector, "field-selector", "", "field selector of the pods to collect")
	fs.StringVar(&cfg.Informer.Node, "node", "", "collect only pods bound to this node")
	fs.DurationVar(&cfg.Collector.Since, "since", 0, "for a container kubelogd has no cursor for, how far back to read (0: everything the kubelet still has)")
	fs.DurationVar(&cfg.Collector.StallTimeout, "stall-timeout", 2*time.Minute, "a stream silent this long is probed; if the kubelet has lines it did not deliver, it is reopened")
	fs.DurationVar(&cfg.Collector.MaxStreamLifetime, "max-stream-lifetime", time.Hour, "reopen follow streams after this long (0: never)")
	fs.DurationVar(&cfg.Collector.PollMaxInterval, "poll-max-interval", 30*time.Second, "longest wait between two polls of a quiet container whose node cannot follow logs (at least 5s)")
	fs.StringVar(&cfg.Sink.Dir, "output-dir", "/var/log/kubelogd", "root of the collected files: <output-dir>/<namespace>/<pod>/<container>.log")
	fs.StringVar(&format, "format", "timestamped", "file format: timestamped, raw or json")
	fs.BoolVar(&cfg.Sink.JSONLabels, "json-labels", false, "with --format json, add the pod's labels to every line")
	fs.IntVar(&cfg.Sink.MaxSizeMB, "max-size-mb", 100, "size in MB at which a container's file is rotated")
	fs.IntVar(&cfg.Sink.MaxBackups, "max-backups", 5, "rotated files kept per container (0: all)")
	fs.IntVar(&cfg.Sink.MaxAgeDays, "max-age-days", 0, "days a rotated file is kept (0: no limit)")
	fs.BoolVar(&cfg.Sink.Compress, "compress", false, "gzip rotated files")
	fs.IntVar(&cfg.Sink.MaxTotalSizeMB, "max-total-size-mb", 0, "disk budget for the whole output dir in MB: the oldest rotated files of all containers are deleted first (0: none)")
	fs.IntVar(&cfg.Sink.MaxTotalAgeDays, "max-total-age-days", 0, "delete rotated files of every container older than this (0: never)")
	fs.DurationVar(&cfg.Sink.RetainDeleted, "retain-deleted", 7*24*time.Hour, "keep the files of a deleted pod this long after its last write")
	fs.DurationVar(&cfg.Sink.IdleClose, "idle-close", 5*time.Minute, "close the file of a container that wrote nothing this long (reopened on its next line)")
	fs.DurationVar(&cfg.Sink.FlushInterval, "flush-interval", time.Second, "longest time a received line waits in memory before it is written")
	fs.IntVar(&cfg.Sink.MaxLineBytes, "max-line-bytes", 0, "longer lines are split into parts (0: 1 MiB, less if --max-size-mb needs it)")
	fs.DurationVar(&cfg.Informer.SyncWarnInterval, "sync-warn-interval", 30*time.Second, "while the first pod list has not succeeded, warn this often (kubelogd keeps retrying; /readyz answers 503 until then)")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", ":8080", "address of /metrics, /healthz and /readyz (empty: off)")
	fs.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.BoolVar(&showVersion, "version", false, "print the version and exit")
	if err := applyEnv(fs); err != nil {
		return cfg, nil, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, nil, err
	}
	if showVersion {
		return cfg, nil, errVersion
	}
	if fs.NArg() > 0 {
		return cfg, nil, fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	cfg.QPS = float32(qps)
	switch lt := cfg.Collector.MaxStreamLifetime; {
	case lt < 0:
		return cfg, nil, errors.New("--max-stream-lifetime must not be negative")
	case lt == 0:
		cfg.Collector.MaxStreamLifetime = -1 // the collector's "never"
	}
	cfg.Informer.Namespaces, cfg.Informer.ExcludeNamespaces = namespaces, excludeNS
	cfg.Sink.Node = cfg.Informer.Node
	var err error
	if cfg.Sink.Format, err = sink.ParseFormat(format); err != nil {
		return cfg, nil, fmt.Errorf("invalid --format: %w", err)
	}
	logger, err := newLogger(stderr, logFormat, logLevel)
	if err != nil {
		return cfg, nil, err
	}
	return cfg, logger, cfg.Validate()
}

func applyEnv(fs *flag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		name := "KUBELOGD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(name); ok && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("invalid %s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid --log-format %q: want text or json", format)
}
