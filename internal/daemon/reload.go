package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"

	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelogd/kubelogd/collector"
	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/internal/config"
	"github.com/kubelogd/kubelogd/internal/rbac"
	"github.com/kubelogd/kubelogd/sink"
)

// fixedSettings are the settings a reload cannot change: they shape the process (the
// API client, the output directory and its lock, the listener, the shard Leases) or the
// streams already open. A reload that changes one warns, naming it, and keeps its value.
var fixedSettings = []struct {
	key string
	get func(*Config) any
}{
	{"kubeconfig", func(c *Config) any { return c.Kubeconfig }},
	{"kube-api-qps", func(c *Config) any { return c.QPS }},
	{"kube-api-burst", func(c *Config) any { return c.Burst }},
	{"sync-warn-interval", func(c *Config) any { return c.Informer.SyncWarnInterval }},
	{"node", func(c *Config) any { return c.Informer.Node }},
	{"output-dir", func(c *Config) any { return c.Sink.Dir }},
	{"max-line-bytes", func(c *Config) any { return c.Sink.MaxLineBytes }},
	{"flush-interval", func(c *Config) any { return c.Sink.FlushInterval }},
	{"idle-close", func(c *Config) any { return c.Sink.IdleClose }},
	{"since", func(c *Config) any { return c.Collector.Since }},
	{"stall-timeout", func(c *Config) any { return c.Collector.StallTimeout }},
	{"max-stream-lifetime", func(c *Config) any { return c.Collector.MaxStreamLifetime }},
	{"shards", func(c *Config) any { return c.HA.Shards }},
	{"lease-namespace", func(c *Config) any { return c.HA.LeaseNamespace }},
	{"replica-id", func(c *Config) any { return c.HA.ReplicaID }},
	{"lease-duration", func(c *Config) any { return c.HA.LeaseDuration }},
	{"renew-deadline", func(c *Config) any { return c.HA.RenewDeadline }},
	{"retry-period", func(c *Config) any { return c.HA.RetryPeriod }},
	{"metrics-addr", func(c *Config) any { return c.MetricsAddr }},
	{"log-format", func(c *Config) any { return c.LogFormat }},
}

// reloader applies a reloaded configuration file to the running daemon.
type reloader struct {
	cur    Config // in force; its fixed settings as at start
	given  Config // as given at start, for the fixed settings' comparison
	client kubernetes.Interface
	sel    *selection
	coll   *collector.Collector
	files  *sink.Manager
	logger *slog.Logger
}

// apply reads the configuration again (flags, environment and the file's new content)
// and applies it. It returns the error that makes the new content unusable; nothing is
// changed then.
func (r *reloader) apply(ctx context.Context) error {
	next, err := r.cur.Reload()
	if err != nil {
		return err
	}
	if err := next.Validate(); err != nil {
		return err
	}
	for _, s := range fixedSettings {
		if old, now := s.get(&r.given), s.get(&next); !reflect.DeepEqual(old, now) {
			r.logger.Warn("this setting does not change while kubelogd runs; keeping its value until a restart",
				"key", s.key, "value", fmt.Sprint(old), "ignored", fmt.Sprint(now))
		}
	}

	// The sink first: its settings are checked and set at once, and undone if the
	// selection cannot change.
	oldSink := r.cur.Sink
	if err := r.files.Reconfigure(next.Sink); err != nil {
		return r.at(err, "max-size-mb", "format", "max-line-bytes")
	}
	sel := r.cur.Informer
	sel.Namespaces, sel.ExcludeNamespaces = next.Informer.Namespaces, next.Informer.ExcludeNamespaces
	sel.LabelSelector, sel.FieldSelector = next.Informer.LabelSelector, next.Informer.FieldSelector
	if !sameSelection(sel, r.cur.Informer) {
		if err := r.changeSelection(ctx, sel); err != nil {
			_ = r.files.Reconfigure(oldSink)
			return r.at(err, "namespace", "exclude-namespace", "selector", "field-selector")
		}
		r.cur.Informer = sel
	}
	r.cur.Sink = next.Sink

	c := next.Collector
	r.coll.SetStreamBudget(c.MaxStreamsPerNode, c.MaxStreams, c.PollQPS, c.PollMaxInterval)
	r.cur.Collector.MaxStreamsPerNode, r.cur.Collector.MaxStreams = c.MaxStreamsPerNode, c.MaxStreams
	r.cur.Collector.PollQPS, r.cur.Collector.PollMaxInterval = c.PollQPS, c.PollMaxInterval

	if r.cur.LogLevel != nil && next.LogLevel != nil {
		r.cur.LogLevel.Set(next.LogLevel.Level())
	}
	return nil
}

// changeSelection checks kubelogd's permissions in the new namespaces, as at start,
// then switches the informers.
func (r *reloader) changeSelection(ctx context.Context, sel informer.Config) error {
	if !slices.Equal(sel.Namespaces, r.cur.Informer.Namespaces) {
		if err := rbac.CheckSelf(ctx, r.client, sel.Namespaces); err != nil {
			return err
		}
	}
	r.logger.Info("changing the pod selection", "namespaces", sel.Namespaces, "excludeNamespaces", sel.ExcludeNamespaces,
		"selector", sel.LabelSelector, "fieldSelector", sel.FieldSelector)
	return r.sel.apply(ctx, sel)
}

// at returns err located at the first of keys that the file sets, so that the ERROR
// names the line to look at; err as it is if the file sets none of them.
func (r *reloader) at(err error, keys ...string) error {
	f, ferr := config.Load(r.cur.ConfigFile)
	if ferr != nil {
		return err
	}
	for _, k := range keys {
		if e, ok := f.Entry(k); ok {
			return &config.Error{Path: f.Path, Line: e.Line, Reason: err.Error()}
		}
	}
	return err
}

func sameSelection(a, b informer.Config) bool {
	return slices.Equal(a.Namespaces, b.Namespaces) && slices.Equal(a.ExcludeNamespaces, b.ExcludeNamespaces) &&
		a.LabelSelector == b.LabelSelector && a.FieldSelector == b.FieldSelector
}

// forget makes the shard gate forget pods that left the selection, so that taking
// their shard over later does not start them again.
func (g *shardGate) forget(uids map[types.UID]bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for uid := range uids {
		delete(g.pods, uid)
		delete(g.tombs, uid)
	}
}
