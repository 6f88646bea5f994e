package tail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// Config is one `kubelogd tail` invocation, as flags describe it.
type Config struct {
	// Dir is the daemon's output directory.
	Dir string
	// Namespaces limits reading to these namespaces; empty means all.
	Namespaces []string
	// Pod and Container select by name: a glob matching the whole name, or a regular
	// expression matching anywhere in it (see ParsePattern). Empty selects all.
	Pod, Container string
	// Selector is a label selector matched against the pods' saved metadata
	// (layout.MetaFileName); a pod without metadata does not match one.
	Selector string
	// Since and Until bound the lines' times; zero means unbounded. In raw files lines
	// have no time: whole files are selected by their modification time instead.
	Since, Until time.Time
	// Tail is how many lines to print per container, counted from the end after the
	// filters; negative (TailAll) means all, and 0 none (with Follow: only new lines).
	Tail int
	// Grep and GrepV are regular expressions the message must match (any of Grep) and
	// must not match (none of GrepV). The timestamp is not part of the message.
	Grep, GrepV []string
	// Format is the files' format; layout.FormatAuto detects it per file.
	Format layout.Format
	// Output is how lines are printed; Timestamps puts the line's time before the
	// message; Color colours the prefixes.
	Output     Output
	Timestamps bool
	Color      bool
	// Follow keeps printing lines as they are written, across rotations, and the lines
	// of containers that appear later, until the context is cancelled.
	Follow bool
	// PollInterval is how often, while following, files are checked even without an
	// event (a safety net: fsnotify can drop events); 0 means one second.
	PollInterval time.Duration
	// Logger receives warnings (an unreadable file); nil discards them.
	Logger *slog.Logger

	// bufSize, when set by a test, replaces the read buffer size so that tests can put
	// lines across buffer boundaries without writing megabytes.
	bufSize int
	// following, when set by a test, is called once the history is printed and the
	// follower watches the tree: what is written from then on is printed.
	following func()
	// noWatch, when set by a test, makes the follower poll as it does where inotify
	// is unavailable.
	noWatch bool
}

// TailAll is the Tail that prints every line.
const TailAll = -1

// ErrUsage marks errors in the invocation itself (a bad flag, pattern or directory):
// the command exits 2 for them.
var ErrUsage = errors.New("usage error")

// ErrNoMatch is returned when no container's files match the selection.
var ErrNoMatch = errors.New("no matching container logs")

type usageError struct{ error }

func (e usageError) Is(target error) bool { return target == ErrUsage }
func (e usageError) Unwrap() error        { return e.error }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// plan is a Config checked and compiled.
type plan struct {
	cfg    Config
	sel    selector
	filter lineFilter
	log    *slog.Logger
}

func newPlan(cfg Config) (*plan, error) {
	p := &plan{cfg: cfg, log: cfg.Logger}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.cfg.PollInterval <= 0 {
		p.cfg.PollInterval = time.Second
	}
	st, err := os.Stat(cfg.Dir)
	switch {
	case err != nil && isNotExist(err):
		return nil, usagef("output directory %s does not exist: set --output-dir (or KUBELOGD_OUTPUT_DIR) to the daemon's", cfg.Dir)
	case err != nil:
		return nil, usagef("cannot use output directory: %w", err)
	case !st.IsDir():
		return nil, usagef("output directory %s is not a directory", cfg.Dir)
	}
	if cfg.Format < layout.FormatTimestamped || cfg.Format > layout.FormatAuto {
		return nil, usagef("unknown file format %v", cfg.Format)
	}
	if cfg.Follow && !cfg.Until.IsZero() {
		return nil, usagef("--until cannot be combined with --follow")
	}
	if !cfg.Since.IsZero() && !cfg.Until.IsZero() && cfg.Until.Before(cfg.Since) {
		return nil, usagef("--until %s is before --since %s", cfg.Until.Format(time.RFC3339), cfg.Since.Format(time.RFC3339))
	}
	p.sel.log = p.log
	if len(cfg.Namespaces) > 0 {
		p.sel.namespaces = map[string]bool{}
		for _, ns := range cfg.Namespaces {
			p.sel.namespaces[ns] = true
		}
	}
	if p.sel.pod, err = ParsePattern(cfg.Pod); err != nil {
		return nil, usagef("invalid pod pattern: %w", err)
	}
	if p.sel.cont, err = ParsePattern(cfg.Container); err != nil {
		return nil, usagef("invalid --container: %w", err)
	}
	if cfg.Selector != "" {
		if p.sel.labels, err = labels.Parse(cfg.Selector); err != nil {
			return nil, usagef("invalid --selector %q: %w", cfg.Selector, err)
		}
	}
	if p.filter.grep, err = compileMatcher("--grep", cfg.Grep); err != nil {
		return nil, usageError{err}
	}
	if p.filter.grepV, err = compileMatcher("--grep-v", cfg.GrepV); err != nil {
		return nil, usageError{err}
	}
	if !cfg.Since.IsZero() {
		p.filter.since, p.filter.hasSince = cfg.Since.UnixNano(), true
	}
	if !cfg.Until.IsZero() {
		p.filter.until, p.filter.hasUntil = cfg.Until.UnixNano(), true
	}
	return p, nil
}

// Run prints the selected lines to w and, with Follow, goes on until ctx is cancelled.
// Errors wrapping ErrUsage are the invocation's fault; ErrNoMatch means nothing was
// selected (only without Follow, which waits for containers to appear).
func Run(ctx context.Context, cfg Config, w io.Writer) error {
	p, err := newPlan(cfg)
	if err != nil {
		return err
	}
	conts, err := scanTree(p.cfg.Dir, &p.sel)
	if err != nil {
		return err
	}
	if len(conts) == 0 && !cfg.Follow {
		return fmt.Errorf("%w under %s", ErrNoMatch, cfg.Dir)
	}
	pr := newPrinter(w, cfg.Output, cfg.Timestamps)
	hands, err := p.history(ctx, conts, pr)
	if ferr := pr.flush(); err == nil && ferr != nil {
		err = fmt.Errorf("writing output: %w", ferr)
	}
	if err != nil || !cfg.Follow {
		closeHandoffs(hands)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	return p.follow(ctx, pr, hands)
}

// history prints the lines already in the files, merged across containers, and returns
// where each followed current file was left.
func (p *plan) history(ctx context.Context, conts []*container, pr *printer) (map[string]*handoff, error) {
	// Times are needed to merge several containers, or to filter by them; raw files
	// merge file by file and have none.
	p.filter.needTime = p.filter.hasSince || p.filter.hasUntil || (len(conts) > 1 && p.cfg.Format != layout.FormatRaw)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Each stream may hold batchesPerStream buffers: 128 KiB each for up to 128
	// containers (large enough for few read calls, small enough to stay in cache),
	// smaller beyond so that the total stays near 64 MiB, down to 16 KiB (a line longer
	// than the buffer grows it). Every stream also keeps one file open: thousands of
	// containers need as many descriptors, which Go's raised soft limit provides.
	bufSize := min(max((64<<20)/(batchesPerStream*max(len(conts), 1)), 16<<10), 128<<10)
	if p.cfg.bufSize > 0 {
		bufSize = p.cfg.bufSize
	}
	streams := make([]*stream, len(conts))
	var wg sync.WaitGroup
	for i, c := range conts {
		s := newStream(i, c, newStreamInfo(c, p.cfg.Color), bufSize)
		streams[i] = s
		wg.Go(func() { p.produce(ctx, s) })
	}
	err := merge(ctx, streams, pr)
	// The producers stop at their next send once cancelled; wait for them, so that no
	// goroutine outlives Run and every handoff is set.
	cancel()
	wg.Wait()
	hands := map[string]*handoff{}
	for _, s := range streams {
		if s.hand != nil {
			s.hand.c, s.hand.info = s.c, s.info
			hands[s.c.key()] = s.hand
		}
	}
	return hands, err
}

func closeHandoffs(hands map[string]*handoff) {
	for _, h := range hands {
		h.f.Close()
	}
}
