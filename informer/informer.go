package informer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Config selects the pods to collect.
type Config struct {
	// Namespaces to watch; empty watches all namespaces with one cluster-wide informer.
	// Each listed namespace gets its own informer, since a namespaced Role cannot list
	// pods cluster-wide.
	Namespaces []string
	// ExcludeNamespaces are never collected.
	ExcludeNamespaces []string
	// LabelSelector and FieldSelector filter pods server-side.
	LabelSelector string
	FieldSelector string
	// Node restricts collection to pods bound to that node.
	Node string
	// SyncWarnInterval is how often Run logs a WARN while the first list has not
	// succeeded (default 30s). It bounds nothing: a first list that fails or is slow (a
	// large or throttled cluster, an API brownout) is retried by client-go's reflector with
	// backoff for as long as it takes, since exiting would turn a struggling API server into
	// a crash loop. A list refused with 403 ends Run at once instead.
	SyncWarnInterval time.Duration
}

// Handler receives the state of every pod that changes. Calls may come from several
// goroutines (one per watched namespace) and must not block for long.
type Handler interface {
	OnPod(Pod)
}

// Discovery runs the pod informers and reports pod changes to a Handler.
type Discovery struct {
	cfg       Config
	handler   Handler
	logger    *slog.Logger
	factories []informers.SharedInformerFactory
	scopes    []*scope // one per factory, in the same order
	isSynced  atomic.Bool
	// startedAt is when Run started the informers; nil before.
	startedAt atomic.Pointer[time.Time]
	// forbidden receives the first 403 of a list or watch; Run fails with it while it
	// waits for the first sync. Sends never block: one error is enough.
	forbidden chan error
}

// scope is one informer: all namespaces, or one namespace.
type scope struct {
	name    string // "all namespaces" or "namespace <ns>", as in messages
	synced  cache.InformerSynced
	lastErr atomic.Pointer[string] // the last list or watch error, for the sync reason
}

// Validate checks the selectors and namespaces, with an error a user can act on.
func (c *Config) Validate() error {
	if _, err := labels.Parse(c.LabelSelector); err != nil {
		return fmt.Errorf("invalid --selector %q: %w", c.LabelSelector, err)
	}
	if _, err := fields.ParseSelector(c.FieldSelector); err != nil {
		return fmt.Errorf("invalid --field-selector %q: %w", c.FieldSelector, err)
	}
	if c.SyncWarnInterval < 0 {
		return errors.New("--sync-warn-interval must not be negative")
	}
	for _, ns := range c.Namespaces {
		if slices.Contains(c.ExcludeNamespaces, ns) {
			return fmt.Errorf("namespace %q is both in --namespace and --exclude-namespace", ns)
		}
	}
	return nil
}

// fieldSelector combines the user's field selector with the node and excluded namespaces,
// so that the apiserver filters instead of kubelogd.
func (c *Config) fieldSelector() string {
	var sels []fields.Selector
	if c.FieldSelector != "" {
		sel, _ := fields.ParseSelector(c.FieldSelector) // checked by Validate
		sels = append(sels, sel)
	}
	if c.Node != "" {
		sels = append(sels, fields.OneTermEqualSelector("spec.nodeName", c.Node))
	}
	if len(c.Namespaces) == 0 {
		for _, ns := range c.ExcludeNamespaces {
			sels = append(sels, fields.OneTermNotEqualSelector("metadata.namespace", ns))
		}
	}
	if len(sels) == 0 {
		return ""
	}
	return fields.AndSelectors(sels...).String()
}

// New builds the informers and registers the event handlers; nothing runs until Run.
func New(client kubernetes.Interface, cfg Config, handler Handler, logger *slog.Logger) (*Discovery, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.SyncWarnInterval <= 0 {
		cfg.SyncWarnInterval = 30 * time.Second
	}
	d := &Discovery{cfg: cfg, handler: handler, logger: logger, forbidden: make(chan error, 1)}
	namespaces := cfg.Namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	tweak := func(o *metav1.ListOptions) {
		o.LabelSelector = cfg.LabelSelector
		o.FieldSelector = cfg.fieldSelector()
	}
	for _, ns := range namespaces {
		// Resync is off: every change arrives as an event, and periodic resyncs would only
		// replay the cache.
		f := informers.NewSharedInformerFactoryWithOptions(client, 0,
			informers.WithNamespace(ns), informers.WithTweakListOptions(tweak), informers.WithTransform(slim))
		inf := f.Core().V1().Pods().Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { d.onPod(obj, false) },
			UpdateFunc: d.onUpdate,
			DeleteFunc: func(obj any) { d.onPod(obj, true) },
		}); err != nil {
			return nil, err
		}
		sc := &scope{name: "all namespaces", synced: inf.HasSynced}
		if ns != metav1.NamespaceAll {
			sc.name = "namespace " + ns
		}
		// The reflector calls this for every failed list or watch, then retries with its
		// backoff (800ms doubling to 30s, jittered) for as long as the informer runs.
		_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
			d.watchError(sc, err)
			cache.DefaultWatchErrorHandler(ctx, r, err)
		})
		d.factories = append(d.factories, f)
		d.scopes = append(d.scopes, sc)
	}
	return d, nil
}

// watchError records a failed list or watch for the sync reason, and hands a 403 to Run.
func (d *Discovery) watchError(sc *scope, err error) {
	msg := err.Error()
	sc.lastErr.Store(&msg)
	d.logger.Warn("pod watch failed", "scope", sc.name, "err", err)
	if apierrors.IsForbidden(err) {
		// The start-up self-check passed, yet the API server refuses: waiting will not
		// help, and a restart repeats the self-check, which names what is missing.
		select {
		case d.forbidden <- fmt.Errorf("cannot list/watch pods in %s: %w", sc.name, err):
		default:
		}
	}
}

func (d *Discovery) onUpdate(oldObj, newObj any) {
	o, ok1 := oldObj.(*corev1.Pod)
	n, ok2 := newObj.(*corev1.Pod)
	if ok1 && ok2 && o.ResourceVersion == n.ResourceVersion {
		return // a relist replays unchanged objects
	}
	if ok1 && ok2 && o.UID != n.UID {
		// The cache is keyed by namespace/name: a relist (after a 410, or a watch that
		// was down) that finds the pod deleted and created again with the same name (a
		// StatefulSet pod) delivers it as an update of the old one. The old pod is gone:
		// its targets must stop reading by that name, which now serves the new pod's log.
		d.onPod(oldObj, true)
	}
	d.onPod(newObj, false)
}

func (d *Discovery) onPod(obj any, deleted bool) {
	if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		// The pod vanished while the watch was down; this is its last known state.
		obj = tomb.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	if slices.Contains(d.cfg.ExcludeNamespaces, pod.Namespace) {
		return
	}
	p := FromPod(pod)
	p.Deleted = deleted
	d.handler.OnPod(p)
}

// Run starts the informers and blocks until ctx is cancelled. It waits for the first list
// for as long as it takes, warning every SyncWarnInterval, and returns an error only if a
// list or watch is refused with 403 before then (apierrors.IsForbidden holds for it).
func (d *Discovery) Run(ctx context.Context) error {
	now := time.Now()
	d.startedAt.Store(&now)
	// The informers stop with this context, cancelled before Shutdown: Shutdown waits for
	// their goroutines, so returning an error with the caller's context still live would
	// otherwise block forever (as the former sync timeout did, leaving kubelogd hung and
	// never ready instead of exiting).
	ctx, cancel := context.WithCancel(ctx)
	for _, f := range d.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		cancel()
		for _, f := range d.factories {
			f.Shutdown() // waits for the informer goroutines to exit
		}
	}()
	if err := d.waitSynced(ctx); err != nil {
		if ctx.Err() != nil {
			return nil // cancelled while waiting: a normal stop
		}
		return err
	}
	d.isSynced.Store(true)
	d.logger.Info("pod informers synced", "informers", len(d.factories), "after", time.Since(now).Round(time.Millisecond))
	<-ctx.Done()
	return nil
}

// waitSynced blocks until every informer has completed its first list, ctx is cancelled
// or a list is refused with 403. Meanwhile it warns every SyncWarnInterval: a first list
// that takes long is worth an operator's look, but not an exit.
func (d *Discovery) waitSynced(ctx context.Context) error {
	poll := time.NewTicker(100 * time.Millisecond) // as cache.WaitForCacheSync polls
	defer poll.Stop()
	warn := time.NewTicker(d.cfg.SyncWarnInterval)
	defer warn.Stop()
	for {
		err := d.pending()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-d.forbidden:
			return err
		case <-warn.C:
			d.logger.Warn("waiting for the first list of pods; collection starts when it succeeds, /readyz answers 503 until then",
				"err", err)
		case <-poll.C:
		}
	}
}

// Synced reports whether every informer has completed its first list.
func (d *Discovery) Synced() bool { return d.isSynced.Load() }

// ErrNotSynced is returned by checks that need synced informers.
var ErrNotSynced = errors.New("pod informers not synced yet")

// SyncError returns nil once Run has seen every informer complete its first list (when
// Synced turns true), and otherwise an error wrapping ErrNotSynced that says which lists
// kubelogd waits for, since how long, and the last error each of them had: the reason
// /readyz gives.
func (d *Discovery) SyncError() error {
	if d.isSynced.Load() {
		return nil
	}
	if err := d.pending(); err != nil {
		return err
	}
	return ErrNotSynced // every list is in; Run is about to mark the informers synced
}

// pending returns nil if every informer has completed its first list, else the reason.
func (d *Discovery) pending() error {
	var waiting, errs []string
	for _, sc := range d.scopes {
		if sc.synced() {
			continue
		}
		waiting = append(waiting, sc.name)
		if p := sc.lastErr.Load(); p != nil && len(d.scopes) == 1 {
			errs = append(errs, *p)
		} else if p != nil {
			errs = append(errs, fmt.Sprintf("%s: %s", sc.name, *p))
		}
	}
	p := d.startedAt.Load()
	switch {
	case p == nil:
		return fmt.Errorf("%w: not started", ErrNotSynced)
	case len(waiting) == 0:
		return nil
	}
	why := "no error so far: the list has not answered yet"
	if len(errs) > 0 {
		why = "last error: " + strings.Join(errs, "; ")
	}
	return fmt.Errorf("%w: waiting %s for the first list of pods in %s (%s)", ErrNotSynced,
		time.Since(*p).Round(time.Second), strings.Join(waiting, ", "), why)
}
