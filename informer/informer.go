package informer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
	// SyncTimeout bounds the wait for the first list. A reflector without list permission
	// retries forever, so without a bound a missing permission would look like a hang.
	SyncTimeout time.Duration
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
	synced    []cache.InformerSynced
	isSynced  atomic.Bool
	lastError atomic.Pointer[string]
}

// Validate checks the selectors and namespaces, with an error a user can act on.
func (c *Config) Validate() error {
	if _, err := labels.Parse(c.LabelSelector); err != nil {
		return fmt.Errorf("invalid --selector %q: %w", c.LabelSelector, err)
	}
	if _, err := fields.ParseSelector(c.FieldSelector); err != nil {
		return fmt.Errorf("invalid --field-selector %q: %w", c.FieldSelector, err)
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
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = 2 * time.Minute
	}
	d := &Discovery{cfg: cfg, handler: handler, logger: logger}
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
		scope := ns
		if scope == "" {
			scope = "all namespaces"
		}
		_ = inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
			d.watchError(scope, err)
			cache.DefaultWatchErrorHandler(ctx, r, err)
		})
		d.factories = append(d.factories, f)
		d.synced = append(d.synced, inf.HasSynced)
	}
	return d, nil
}

func (d *Discovery) watchError(scope string, err error) {
	msg := err.Error()
	if apierrors.IsForbidden(err) {
		msg = fmt.Sprintf("cannot list/watch pods in %s: %v", scope, err)
	}
	d.lastError.Store(&msg)
	d.logger.Warn("pod watch failed", "scope", scope, "err", err)
}

func (d *Discovery) onUpdate(oldObj, newObj any) {
	o, ok1 := oldObj.(*corev1.Pod)
	n, ok2 := newObj.(*corev1.Pod)
	if ok1 && ok2 && o.ResourceVersion == n.ResourceVersion {
		return // a relist replays unchanged objects
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

// Run starts the informers and blocks until ctx is cancelled. It returns an error if the
// caches do not sync within the configured timeout, naming the last watch error.
func (d *Discovery) Run(ctx context.Context) error {
	for _, f := range d.factories {
		f.Start(ctx.Done())
	}
	defer func() {
		for _, f := range d.factories {
			f.Shutdown() // waits for the informer goroutines to exit
		}
	}()
	syncCtx, cancel := context.WithTimeout(ctx, d.cfg.SyncTimeout)
	ok := cache.WaitForCacheSync(syncCtx.Done(), d.synced...)
	cancel()
	if !ok {
		if ctx.Err() != nil {
			return nil
		}
		reason := "no error reported"
		if p := d.lastError.Load(); p != nil {
			reason = *p
		}
		return fmt.Errorf("pod informers did not sync within %s: %s", d.cfg.SyncTimeout, reason)
	}
	d.isSynced.Store(true)
	d.logger.Info("pod informers synced", "informers", len(d.factories))
	<-ctx.Done()
	return nil
}

// Synced reports whether every informer has completed its first list.
func (d *Discovery) Synced() bool { return d.isSynced.Load() }

// ErrNotSynced is returned by checks that need synced informers.
var ErrNotSynced = errors.New("pod informers not synced yet")
