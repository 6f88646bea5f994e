package tail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// defaultOutputDir is the daemon's default --output-dir.
const defaultOutputDir = "/var/log/kubelogd"

const usageHead = `Usage: kubelogd tail [POD] [flags]

Print the container logs kubelogd collected, merged across containers in time order,
each line prefixed with namespace/pod/container. It reads the files under --output-dir
(current files, rotated backups and their .gz) and needs no cluster access, so it works
for pods that are long gone.

POD is a glob matched against the whole pod name (web-*, web-[0-9]), or else a regular
expression matched anywhere in it, as in stern (web, ^api-[a-z0-9]+-[a-z0-9]{5}$).
--container takes the same.

Examples:
  kubelogd tail -n shop web --since 15m
  kubelogd tail -l app=api --grep 'timeout|refused' --tail 50
  kubelogd tail -n shop -c proxy -f
  kubelogd tail --since 2026-11-27T03:00:00Z --until 2026-11-27T03:10:00Z -o json

Flags:
`

const usageTail = `
Files in the raw format (--format raw) hold no timestamps: their lines are printed file
by file in name order (namespace, pod, container; oldest backup first, current file
last) instead of interleaved, and --since/--until select whole files by modification
time (a backup's by the rotation time in its name), not lines.

Environment: KUBELOGD_OUTPUT_DIR and KUBELOGD_FORMAT set --output-dir and --format, as
for the daemon; NO_COLOR turns colour off for --color auto.

Exit status: 0 on success (also when --follow is interrupted; unreadable files are
warnings), 1 when no container matched or the output failed, 2 for invalid flags,
patterns or directories.
`

// options are the flags as given, before they become a Config.
type options struct {
	namespaces          []string
	selector, container string
	since, until        string
	tail                int
	grep, grepV         []string
	outputDir, format   string
	output, color       string
	follow, timestamps  bool
	allNamespaces       bool
}

func newFlagSet(o *options, env func(string) (string, bool)) *pflag.FlagSet {
	fs := pflag.NewFlagSet("kubelogd tail", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	dir := defaultOutputDir
	if v, ok := env("KUBELOGD_OUTPUT_DIR"); ok && v != "" {
		dir = v
	}
	format := "timestamped"
	if v, ok := env("KUBELOGD_FORMAT"); ok && v != "" {
		format = v
	}
	fs.StringSliceVarP(&o.namespaces, "namespace", "n", nil, "namespace to read (repeatable or comma-separated; default: all)")
	fs.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "read every namespace (the default; overrides --namespace)")
	fs.StringVarP(&o.selector, "selector", "l", "", "label selector (app=web,tier!=db), matched against the pod labels the daemon saved; pods without saved labels never match")
	fs.StringVarP(&o.container, "container", "c", "", "container name: glob or regular expression, like POD")
	fs.StringVar(&o.since, "since", "", "only lines newer than a duration ago (15m, 2h, 3d) or than an RFC 3339 time")
	fs.StringVar(&o.until, "until", "", "only lines older than a duration ago or than an RFC 3339 time (not with --follow)")
	fs.IntVar(&o.tail, "tail", -1, "the last N lines of each container (after --grep and --since); -1: all")
	fs.StringArrayVar(&o.grep, "grep", nil, "only lines whose message matches this regular expression (repeatable: any)")
	fs.StringArrayVar(&o.grepV, "grep-v", nil, "drop lines whose message matches this regular expression (repeatable)")
	fs.BoolVarP(&o.follow, "follow", "f", false, "keep printing new lines, across rotations; pods and containers that appear later are printed from their first line; Ctrl-C stops")
	fs.StringVarP(&o.output, "output", "o", "default", "default (namespace/pod/container prefix), raw (message only) or json (the daemon's json format)")
	fs.BoolVar(&o.timestamps, "timestamps", false, "print each line's timestamp before the message")
	fs.StringVar(&o.color, "color", "auto", "colour the prefixes: auto (on a terminal), always or never")
	fs.StringVar(&o.outputDir, "output-dir", dir, "the daemon's --output-dir")
	fs.StringVar(&o.format, "format", format, "format of the files: timestamped, raw, json, or auto to detect it per file")
	return fs
}

// Usage returns the help text of `kubelogd tail`.
func Usage() string {
	return usageHead + FlagSet().FlagUsages() + usageTail
}

// FlagSet returns the flags of `kubelogd tail` with their built-in defaults (no
// environment), for commands that pass them on to a kubelogd tail elsewhere, such as the
// kubectl plugin: which flags take a value, their help text.
func FlagSet() *pflag.FlagSet {
	var o options
	return newFlagSet(&o, func(string) (string, bool) { return "", false })
}

// errHelp is returned by ParseArgs for -h and --help.
var errHelp = pflag.ErrHelp

// ParseArgs turns the arguments after "tail" into a Config. env looks up environment
// variables (os.LookupEnv); now anchors durations given to --since and --until; colour
// is decided for output going to stdout.
func ParseArgs(args []string, env func(string) (string, bool), now time.Time, stdout io.Writer) (Config, error) {
	var o options
	fs := newFlagSet(&o, env)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return Config{}, errHelp
		}
		return Config{}, usageError{fmt.Errorf("%w (see kubelogd tail --help)", err)}
	}
	cfg := Config{
		Dir: o.outputDir, Namespaces: o.namespaces, Container: o.container, Selector: o.selector,
		Tail: o.tail, Grep: o.grep, GrepV: o.grepV, Follow: o.follow, Timestamps: o.timestamps,
	}
	if o.allNamespaces {
		cfg.Namespaces = nil
	}
	switch fs.NArg() {
	case 0:
	case 1:
		cfg.Pod = fs.Arg(0)
	default:
		return cfg, usagef("one pod pattern at most, got %q (use a glob or a regular expression such as 'a|b')", fs.Args())
	}
	var err error
	if cfg.Format, err = ParseFormat(o.format); err != nil {
		return cfg, usagef("invalid --format: %w", err)
	}
	if cfg.Output, err = ParseOutput(o.output); err != nil {
		return cfg, usagef("invalid --output: %w", err)
	}
	if cfg.Since, err = parseTimeFlag("--since", o.since, now); err != nil {
		return cfg, err
	}
	if cfg.Until, err = parseTimeFlag("--until", o.until, now); err != nil {
		return cfg, err
	}
	switch o.color {
	case "always":
		cfg.Color = true
	case "never":
	case "auto":
		_, noColor := env("NO_COLOR")
		cfg.Color = !noColor && isTerminal(stdout)
	default:
		return cfg, usagef("invalid --color %q: use auto, always or never", o.color)
	}
	return cfg, nil
}

// parseTimeFlag reads a --since or --until value: a duration before now (Go syntax, plus
// "d" for days) or an RFC 3339 time.
func parseTimeFlag(name, s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		if days, ok := strings.CutSuffix(s, "d"); ok {
			if n, perr := strconv.ParseFloat(days, 64); perr == nil && n >= 0 && n < 1e5 {
				d, err = time.Duration(n*24*float64(time.Hour)), nil
			}
		}
	}
	if err == nil {
		if d < 0 {
			return time.Time{}, usagef("invalid %s %q: a duration must not be negative", name, s)
		}
		return now.Add(-d), nil
	}
	t, terr := time.Parse(time.RFC3339Nano, s)
	if terr != nil {
		return time.Time{}, usagef("invalid %s %q: want a duration such as 15m, 2h or 3d, or an RFC 3339 time such as 2026-11-27T03:04:05Z", name, s)
	}
	return t, nil
}

// isTerminal reports whether w is a terminal, where colours are wanted.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Main runs `kubelogd tail` with the arguments after "tail" and returns the exit code:
// 0 on success, 1 when nothing matched or reading failed, 2 for a usage error. Errors
// are one line on stderr; a cancelled ctx (Ctrl-C) ends a --follow with 0.
func Main(ctx context.Context, args []string, env func(string) (string, bool), stdout, stderr io.Writer) int {
	cfg, err := ParseArgs(args, env, time.Now(), stdout)
	if errors.Is(err, errHelp) {
		fmt.Fprint(stdout, Usage())
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "kubelogd tail:", err)
		return 2
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{
		// A command's warnings need no timestamp.
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	switch err := Run(ctx, cfg, stdout); {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		fmt.Fprintln(stderr, "kubelogd tail:", err)
		return 2
	case errors.Is(err, ErrNoMatch):
		fmt.Fprintf(stderr, "kubelogd tail: %v (check -n, POD, -c and -l; --format %v)\n", err, cfg.Format)
		return 1
	default:
		fmt.Fprintln(stderr, "kubelogd tail:", err)
		return 1
	}
}
