package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubelogd/kubelogd/internal/config"
	"github.com/kubelogd/kubelogd/internal/daemon"
	"github.com/kubelogd/kubelogd/sink"
)

const usageHead = `Usage: kubelogd [flags]
       kubelogd tail [POD] [flags]    read the collected files (see kubelogd tail --help)

Collect the logs of every container in the cluster, through the API server, into one
rotated file per container under --output-dir, each line exactly once across stream
breaks, container restarts, log rotation and restarts of kubelogd itself.

Examples:
  kubelogd --kubeconfig ~/.kube/config --output-dir /var/log/kubelogd
  kubelogd --namespace shop --namespace payments --format json --compress
  kubelogd --selector app=web --max-total-size-mb 20000 --max-total-age-days 14
`

const usageTail = `
Environment: every flag can also be set with a variable named after it, --max-size-mb
as KUBELOGD_MAX_SIZE_MB. A flag on the command line wins; for repeatable flags both add
up.

Configuration file: --config FILE sets flags from YAML keys named like them
(max-size-mb: 100, namespace: [a, b]). The command line wins over the environment, which
wins over the file; a key set by either is ignored in the file. The file is reloaded when
it changes and on SIGHUP (see the README for what a reload changes).

Exit status: 0 after SIGTERM or SIGINT (a second one exits at once, 1), 1 on a failure
while running, 2 for invalid flags, an unreachable API server, missing permissions or an
unusable output directory.
`

// flagGroup is one section of --help: the daemon has thirty flags, which read best by
// what they are about, as kubectl's do.
type flagGroup struct {
	title string
	fs    *pflag.FlagSet
}

// options are the flags that are not Config fields as given.
type options struct {
	namespaces, excludeNS       stringList
	format, logFormat, logLevel string
	config                      string
	qps, pollQPS                float64
	showVersion, help           bool
}

// newFlagSet defines the daemon's flags, bound to cfg and o, in their help groups.
func newFlagSet(cfg *daemon.Config, o *options) (*pflag.FlagSet, []flagGroup) {
	var groups []flagGroup
	group := func(title string) *pflag.FlagSet {
		g := pflag.NewFlagSet(title, pflag.ContinueOnError)
		g.SortFlags = false
		groups = append(groups, flagGroup{title, g})
		return g
	}

	g := group("Cluster")
	g.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "path to a kubeconfig; empty: in-cluster config, else $KUBECONFIG or ~/.kube/config")
	g.Float64Var(&o.qps, "kube-api-qps", 500, "client-side limit on API requests per second, log stream opens included")
	g.IntVar(&cfg.Burst, "kube-api-burst", 500, "burst above --kube-api-qps")
	g.DurationVar(&cfg.Informer.SyncWarnInterval, "sync-warn-interval", 30*time.Second, "while the first pod list has not succeeded, warn this often (kubelogd keeps retrying; /readyz answers 503 until then)")

	g = group("Selection")
	g.Var(&o.namespaces, "namespace", "namespace to collect (repeatable or comma-separated; default: all namespaces)")
	g.Var(&o.excludeNS, "exclude-namespace", "namespace never to collect (repeatable or comma-separated)")
	g.StringVar(&cfg.Informer.LabelSelector, "selector", "", "label selector of the pods to collect")
	g.StringVar(&cfg.Informer.FieldSelector, "field-selector", "", "field selector of the pods to collect")
	g.StringVar(&cfg.Informer.Node, "node", "", "collect only pods bound to this node")

	g = group("Files")
	g.StringVar(&cfg.Sink.Dir, "output-dir", "/var/log/kubelogd", "root of the collected files: <output-dir>/<namespace>/<pod>/<container>.log")
	g.StringVar(&o.format, "format", "timestamped", "file format: timestamped, raw or json")
	g.BoolVar(&cfg.Sink.JSONLabels, "json-labels", false, "with --format json, add the pod's labels to every line")
	g.IntVar(&cfg.Sink.MaxLineBytes, "max-line-bytes", 0, "longer lines are split into parts (0: 1 MiB, less if --max-size-mb needs it)")
	g.DurationVar(&cfg.Sink.FlushInterval, "flush-interval", time.Second, "longest time a received line waits in memory before it is written")
	g.DurationVar(&cfg.Sink.IdleClose, "idle-close", 5*time.Minute, "close the file of a container that wrote nothing this long (reopened on its next line)")

	g = group("Rotation and retention")
	g.IntVar(&cfg.Sink.MaxSizeMB, "max-size-mb", 100, "size in MB at which a container's file is rotated")
	g.IntVar(&cfg.Sink.MaxBackups, "max-backups", 5, "rotated files kept per container (0: all)")
	g.IntVar(&cfg.Sink.MaxAgeDays, "max-age-days", 0, "days a rotated file is kept (0: no limit)")
	g.BoolVar(&cfg.Sink.Compress, "compress", false, "gzip rotated files")
	g.IntVar(&cfg.Sink.MaxTotalSizeMB, "max-total-size-mb", 0, "disk budget for the whole output dir in MB: the oldest rotated files of all containers are deleted first (0: none)")
	g.IntVar(&cfg.Sink.MaxTotalAgeDays, "max-total-age-days", 0, "delete rotated files of every container older than this (0: never)")
	g.DurationVar(&cfg.Sink.RetainDeleted, "retain-deleted", 7*24*time.Hour, "keep the files of a deleted pod this long after its last write")

	g = group("Streams")
	g.DurationVar(&cfg.Collector.Since, "since", 0, "for a container kubelogd has no cursor for, how far back to read (0: everything the kubelet still has)")
	g.DurationVar(&cfg.Collector.StallTimeout, "stall-timeout", 2*time.Minute, "a stream silent this long is probed; if the kubelet has lines it did not deliver, it is reopened")
	g.DurationVar(&cfg.Collector.MaxStreamLifetime, "max-stream-lifetime", time.Hour, "reopen follow streams after this long (0: never)")
	g.IntVar(&cfg.Collector.MaxStreamsPerNode, "max-streams-per-node", 50, "follow streams open at once on one node, each an inotify instance of its kubelet; containers beyond it are polled (0: unlimited)")
	g.IntVar(&cfg.Collector.MaxStreams, "max-streams", 2000, "follow streams open at once in all; containers beyond it are polled (0: unlimited)")
	g.Float64Var(&o.pollQPS, "poll-qps", 0, "polls per second of all polled containers, within --kube-api-qps (0: half of --kube-api-qps)")
	g.DurationVar(&cfg.Collector.PollMaxInterval, "poll-max-interval", 30*time.Second, "longest wait between two polls of a quiet polled container (at least 1s; 5s on a node out of inotify instances)")

	g = group("Replicas")
	g.IntVar(&cfg.HA.Shards, "shards", 0, "share the pods with other replicas in this many shards, each held through a Lease; the output dir must be shared (ReadWriteMany) and every replica given the same count (0: one kubelogd, which locks the output dir)")
	g.StringVar(&cfg.HA.LeaseNamespace, "lease-namespace", "", "namespace of the shard Leases (default: $POD_NAMESPACE, else the service account's namespace, else kubelogd)")
	g.StringVar(&cfg.HA.ReplicaID, "replica-id", "", "this replica's name in the Leases (default: $POD_NAME, else the hostname)")
	g.DurationVar(&cfg.HA.LeaseDuration, "lease-duration", 15*time.Second, "how long a shard's Lease lasts without renewal before another replica may take it")
	g.DurationVar(&cfg.HA.RenewDeadline, "renew-deadline", 10*time.Second, "a replica that has not renewed a shard's Lease this long stops writing its files (less than --lease-duration)")
	g.DurationVar(&cfg.HA.RetryPeriod, "retry-period", 2*time.Second, "how often Leases are renewed and free shards sought")

	g = group("Metrics and logs")
	g.StringVar(&cfg.MetricsAddr, "metrics-addr", ":8080", "address of /metrics, /healthz and /readyz (empty: off)")
	g.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	g.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")

	g = group("Other")
	g.StringVar(&o.config, "config", "", "YAML file of flag values (keys named like the flags), reloaded when it changes and on SIGHUP; the command line and KUBELOGD_* win over it")
	g.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	g.BoolVarP(&o.help, "help", "h", false, "print this help and exit")

	fs := pflag.NewFlagSet("kubelogd", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, and printed as one line by run
	fs.Usage = func() {}
	for _, g := range groups {
		fs.AddFlagSet(g.fs)
	}
	return fs, groups
}

// usage lays out the help text with the flags of groups.
func usage(groups []flagGroup) string {
	var b strings.Builder
	b.WriteString(usageHead)
	for _, g := range groups {
		fmt.Fprintf(&b, "\n%s:\n%s", g.title, g.fs.FlagUsagesWrapped(100))
	}
	b.WriteString(usageTail)
	return b.String()
}

// helpText is the text of kubelogd --help.
func helpText() string {
	_, groups := newFlagSet(new(daemon.Config), new(options))
	return usage(groups)
}

var (
	errVersion = errors.New("version requested")
	errHelp    = errors.New("help requested")
)

// stringList is a repeatable flag; a comma-separated value adds several entries.
type stringList []string

var _ pflag.Value = (*stringList)(nil)

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Type() string   { return "strings" }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

// parse turns flags, KUBELOGD_* environment variables and the --config file into a
// Config, with a logger. Environment variables are named after the flag: --max-size-mb
// is KUBELOGD_MAX_SIZE_MB. It returns errHelp for -h and --help, errVersion for
// --version. The Config's Reload reads everything again, the file's new content with
// the same command line and environment.
func parse(args []string, stderr io.Writer) (daemon.Config, *slog.Logger, error) {
	cfg, o, err := load(args)
	if err != nil {
		return cfg, nil, err
	}
	level := new(slog.LevelVar)
	logger, err := newLogger(stderr, o.logFormat, o.logLevel, level)
	if err != nil {
		return cfg, nil, err
	}
	cfg.LogLevel = level
	if cfg.ConfigFile != "" {
		cfg.Reload = func() (daemon.Config, error) {
			cfg, o, err := load(args)
			if err != nil {
				return cfg, err
			}
			// The format of kubelogd's own logs cannot change (one handler for the whole
			// run); the level can.
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
				return cfg, fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", o.logLevel)
			}
			cfg.LogLevel = new(slog.LevelVar)
			cfg.LogLevel.Set(lvl)
			return cfg, nil
		}
	}
	return cfg, logger, nil
}

// load layers the sources of the settings: defaults, then the --config file, then the
// environment, then the command line, each winning over the ones before. A flag the
// command line or the environment sets is not taken from the file at all, so a
// repeatable flag (--namespace) comes from the file alone or from the environment and
// the command line, which add up as they always did.
func load(args []string) (daemon.Config, options, error) {
	var cfg daemon.Config
	var o options
	fs, _ := newFlagSet(&cfg, &o)
	args = longDashes(fs, args)

	// A first pass over the command line alone finds --config, -h, --version and the
	// flags given there.
	var first options
	pre, _ := newFlagSet(new(daemon.Config), &first)
	if err := pre.Parse(args); err != nil {
		return cfg, o, fmt.Errorf("%w (see kubelogd --help)", err)
	}
	switch {
	case first.help:
		return cfg, o, errHelp
	case first.showVersion:
		return cfg, o, errVersion
	case pre.NArg() > 0:
		return cfg, o, fmt.Errorf("unexpected argument %q (see kubelogd --help)", pre.Arg(0))
	}
	path := first.config
	if v, ok := os.LookupEnv(envName("config")); ok && !pre.Changed("config") {
		path = v
	}
	var file *config.File
	if path != "" {
		var err error
		if file, err = config.Load(path); err != nil {
			return cfg, o, err
		}
		given := func(name string) bool {
			_, inEnv := os.LookupEnv(envName(name))
			return pre.Changed(name) || inEnv
		}
		if err := file.Apply(fs, given); err != nil {
			return cfg, o, err
		}
		cfg.ConfigFile = path
	}
	if err := applyEnv(fs); err != nil {
		return cfg, o, err
	}
	if err := fs.Parse(args); err != nil {
		return cfg, o, fmt.Errorf("%w (see kubelogd --help)", err)
	}
	err := complete(&cfg, &o)
	if file != nil {
		err = file.Locate(err)
	}
	return cfg, o, err
}

// complete derives the Config fields that are not flags as given, and validates it.
func complete(cfg *daemon.Config, o *options) error {
	cfg.QPS = float32(o.qps)
	switch {
	case o.pollQPS < 0:
		return errors.New("--poll-qps must not be negative")
	case o.pollQPS == 0:
		cfg.Collector.PollQPS = o.qps / 2
	case o.pollQPS > o.qps:
		return fmt.Errorf("--poll-qps %g exceeds --kube-api-qps %g: polls would leave stream opens and probes no room", o.pollQPS, o.qps)
	default:
		cfg.Collector.PollQPS = o.pollQPS
	}
	if cfg.Collector.MaxStreamsPerNode < 0 || cfg.Collector.MaxStreams < 0 {
		return errors.New("--max-streams-per-node and --max-streams must not be negative (0: unlimited)")
	}
	switch lt := cfg.Collector.MaxStreamLifetime; {
	case lt < 0:
		return errors.New("--max-stream-lifetime must not be negative")
	case lt == 0:
		cfg.Collector.MaxStreamLifetime = -1 // the collector's "never"
	}
	cfg.Informer.Namespaces, cfg.Informer.ExcludeNamespaces = o.namespaces, o.excludeNS
	cfg.Sink.Node = cfg.Informer.Node
	cfg.LogFormat = o.logFormat
	var err error
	if cfg.Sink.Format, err = sink.ParseFormat(o.format); err != nil {
		return fmt.Errorf("invalid --format: %w", err)
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(o.logLevel)); err != nil {
		return fmt.Errorf("invalid --log-level %q: want debug, info, warn or error", o.logLevel)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return fmt.Errorf("invalid --log-format %q: want text or json", o.logFormat)
	}
	return cfg.Validate()
}

// applyEnv sets every flag whose KUBELOGD_* variable is set, before the command line is
// parsed: a flag given there then overrides it, and a repeatable one adds to it.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Name == "help" || err != nil {
			return
		}
		name := envName(f.Name)
		if v, ok := os.LookupEnv(name); ok {
			if e := f.Value.Set(v); e != nil {
				err = fmt.Errorf("invalid %s=%q: %w", name, v, e)
			}
		}
	})
	return err
}

// envName is the environment variable of a flag: KUBELOGD_MAX_SIZE_MB for max-size-mb.
func envName(flag string) string {
	return "KUBELOGD_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// longDashes rewrites the single-dash long flags that Go's flag package accepted, and
// earlier versions of kubelogd with it (-compress, -max-size-mb=10, -output-dir /x), to
// pflag's double dash, so that existing command lines and manifests keep working. Only
// names of kubelogd's own long flags are rewritten, never a flag's value (--selector
// -x is left alone) nor anything after "--"; anything else is left for pflag to judge.
func longDashes(fs *pflag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		var f *pflag.Flag
		name, hasValue := "", false
		switch {
		case strings.HasPrefix(a, "--"):
			name, _, hasValue = strings.Cut(a[2:], "=")
			f = fs.Lookup(name)
		case strings.HasPrefix(a, "-") && len(a) > 2:
			name, _, hasValue = strings.Cut(a[1:], "=")
			if f = fs.Lookup(name); f != nil {
				a = "-" + a
			}
		}
		out = append(out, a)
		// A flag that needs a value and has none after "=" takes the next argument,
		// whatever it looks like: pass it through untouched.
		if f != nil && !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}
