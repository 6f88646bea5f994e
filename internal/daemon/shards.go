package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubelogd/kubelogd/collector"
	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/internal/rbac"
	"github.com/kubelogd/kubelogd/internal/shard"
)

// tombstoneTTL is how long the gate remembers a deleted pod: a replica that takes its
// shard over within that time finishes its files (the gap marker of a pod deleted before
// its log was read to the end) if the previous holder had not.
const tombstoneTTL = time.Hour

// sweepGrace is how long a replica holds a shard before its sweep acts on the shard's
// pods: right after taking it over no file of it is open yet, so every quiet container
// would look deleted (sink's startup grace, per shard).
const sweepGrace = 10 * time.Minute

// shardGate stands between the informer and the collector when replicas share the pods
// through shard Leases: it passes on the pods of the shards this replica holds, gives
// the collector a shard's pods when the shard is taken (shard.Owner.Start) and takes them
// back, files closed, before it is given up (Stop). It remembers the latest state of
// every pod, held or not, so that a shard taken over starts from the informer's view.
type shardGate struct {
	shards  int
	next    informer.Handler
	release func(ctx context.Context, match func(namespace, pod string) bool) error
	logger  *slog.Logger
	now     func() time.Time

	mu     sync.Mutex
	pods   map[types.UID]informer.Pod
	tombs  map[types.UID]time.Time // deleted pods in pods, and when they were deleted
	pruned time.Time               // when tombs past tombstoneTTL were last dropped
	held   map[int]time.Time       // the shards held, and since when
}

var (
	_ informer.Handler = (*shardGate)(nil)
	_ shard.Owner      = (*shardGate)(nil)
)

// newShardGate returns a gate; next and release are set once the collector exists.
func newShardGate(shards int, logger *slog.Logger) *shardGate {
	return &shardGate{shards: shards, logger: logger, now: time.Now,
		pods: map[types.UID]informer.Pod{}, tombs: map[types.UID]time.Time{}, held: map[int]time.Time{}}
}

// replicas is what a replica sharing the pods (--shards) adds to the daemon: the gate
// and the manager of its shard Leases.
type replicas struct {
	gate *shardGate
	m    *shard.Manager
}

// newReplicas resolves the Leases' namespace and the replica's ID, checks the lease
// permissions (an error wraps ErrUsage; nil with ctx done when stopped meanwhile), and
// sets the sink's sharing, sweep scope and fence in cfg.
func newReplicas(ctx context.Context, cfg *Config, client kubernetes.Interface, logger *slog.Logger) (*replicas, error) {
	cfg.HA.LeaseNamespace, cfg.HA.ReplicaID = leaseNamespace(cfg.HA.LeaseNamespace), replicaID(cfg.HA.ReplicaID)
	if err := retryServerErrors(ctx, logger, "checking kubelogd's lease permissions", func(ctx context.Context) error {
		return rbac.CheckLeases(ctx, client, cfg.HA.LeaseNamespace)
	}); err != nil {
		if ctx.Err() != nil {
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	r := &replicas{gate: newShardGate(cfg.HA.Shards, logger)}
	n := cfg.HA.Shards
	cfg.Sink.Shards, cfg.Sink.Owns, cfg.Sink.Share = n, r.gate.owns, r.gate.share
	cfg.Collector.Shards = n
	// Every write, rotation and cursor save asks (sink/fence.go). r.m is set by attach,
	// before any shard is taken and so before any file is opened.
	cfg.Sink.Fence = func(ns, pod string) (int64, bool) { return r.m.Holds(shard.Of(ns, pod, n)) }
	return r, nil
}

// attach puts the gate in front of the collector and creates the Lease manager; it
// returns the informer's handler.
func (r *replicas) attach(coll *collector.Collector, rc *rest.Config, h HAConfig, logger *slog.Logger) (informer.Handler, error) {
	r.gate.next, r.gate.release = coll, coll.Release
	// A client of its own: renewals must not wait behind a burst of stream opens in the
	// collector's rate limiter, or a busy replica would miss its renew deadline.
	lrc := rest.CopyConfig(rc)
	lrc.QPS, lrc.Burst, lrc.RateLimiter = 50, 100, nil
	client, err := kubernetes.NewForConfig(lrc)
	if err != nil {
		return nil, err
	}
	r.m, err = shard.New(shard.Config{
		Client: client, Namespace: h.LeaseNamespace, ReplicaID: h.ReplicaID,
		Shards: h.Shards, LeaseDuration: h.LeaseDuration, RenewDeadline: h.RenewDeadline, RetryPeriod: h.RetryPeriod,
		Owner: r.gate, Logger: logger,
	})
	if err != nil {
		return nil, err
	}
	return r.gate, nil
}

// manager returns the Lease manager; nil without --shards (r nil).
func (r *replicas) manager() *shard.Manager {
	if r == nil {
		return nil
	}
	return r.m
}

// leaseNamespace is --lease-namespace, else the pod's namespace (downward API), else the
// service account's, else "kubelogd".
func leaseNamespace(flag string) string {
	if flag != "" {
		return flag
	}
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	if raw, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil && len(raw) > 0 {
		return strings.TrimSpace(string(raw))
	}
	return "kubelogd"
}

// replicaID is --replica-id, else the pod's name (downward API), else the hostname.
func replicaID(flag string) string {
	if flag != "" {
		return flag
	}
	if n := os.Getenv("POD_NAME"); n != "" {
		return n
	}
	h, _ := os.Hostname()
	return h
}

// OnPod records p and passes it on if its shard is held. It never blocks.
func (g *shardGate) OnPod(p informer.Pod) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	g.pods[p.UID] = p
	if p.Deleted || p.Excluded {
		g.tombs[p.UID] = now
	}
	if now.Sub(g.pruned) > time.Minute { // not a walk of every tombstone per event
		g.pruned = now
		for uid, at := range g.tombs {
			if now.Sub(at) > tombstoneTTL {
				delete(g.pods, uid)
				delete(g.tombs, uid)
			}
		}
	}
	if _, ok := g.held[shard.Of(p.Namespace, p.Name, g.shards)]; ok {
		g.next.OnPod(p)
	}
}

// Start passes the shard's pods on: it is this replica's from now.
func (g *shardGate) Start(s int, epoch int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.held[s] = g.now()
	n := 0
	for _, p := range g.pods {
		if shard.Of(p.Namespace, p.Name, g.shards) == s {
			g.next.OnPod(p)
			n++
		}
	}
	g.logger.Info("shard taken", "shard", s, "epoch", epoch, "pods", n)
}

// Stop stops passing the shard's pods on and returns once the collector has stopped
// them all: streams closed, files flushed and closed, cursors saved. Only then may the
// shard's Lease go to another replica.
func (g *shardGate) Stop(s int) {
	g.mu.Lock()
	delete(g.held, s)
	g.mu.Unlock()
	// Not cancelled by the daemon's shutdown: the lease waits for the files.
	err := g.release(context.Background(), func(ns, pod string) bool { return shard.Of(ns, pod, g.shards) == s })
	if err != nil {
		g.logger.Error("releasing a shard's pods", "shard", s, "err", err)
	}
	g.logger.Info("shard given up", "shard", s)
}

// owns tells the sink's sweep whether it may act on a pod's directory: its shard is held
// and has been for sweepGrace.
func (g *shardGate) owns(ns, pod string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	since, ok := g.held[shard.Of(ns, pod, g.shards)]
	return ok && g.now().Sub(since) >= sweepGrace
}

// share is the part of the disk budget this replica enforces: its shards out of all.
func (g *shardGate) share() float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return float64(len(g.held)) / float64(g.shards)
}

// registerShardMetrics registers the series of the shard Leases: the shards this
// replica holds, its handovers by reason, its failed renewals and the longest a shard
// has gone without a holder. They are 0 without --shards (m returns nil).
func registerShardMetrics(reg prometheus.Registerer, m func() *shard.Manager) {
	stat := func(v func(shard.Stats) uint64) func() float64 {
		return func() float64 {
			if mm := m(); mm != nil {
				return float64(v(mm.Stats()))
			}
			return 0
		}
	}
	handovers := func(reason string, v func(shard.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "kubelogd_shard_handovers_total",
			Help:        "Shards this replica took or gave up (--shards), by reason: acquired, shed (to even the shares), lost (renewal failed or another replica holds it), released (at shutdown).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, stat(v))
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubelogd_shards_held",
			Help: "Shards whose Lease this replica holds (--shards).",
		}, func() float64 {
			if mm := m(); mm != nil {
				return float64(len(mm.Held()))
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubelogd_shard_unheld_seconds",
			Help: "How long the shard that has gone longest without a live holder has been so, as this replica last saw the Leases (--shards); 0 while every shard is held.",
		}, func() float64 {
			if mm := m(); mm != nil {
				return mm.Unheld().Seconds()
			}
			return 0
		}),
		handovers("acquired", func(s shard.Stats) uint64 { return s.Acquired }),
		handovers("shed", func(s shard.Stats) uint64 { return s.Shed }),
		handovers("lost", func(s shard.Stats) uint64 { return s.Lost }),
		handovers("released", func(s shard.Stats) uint64 { return s.Released }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "kubelogd_lease_renew_failures_total",
			Help: "Shard Lease renewals that failed (--shards); a holder that cannot renew for --renew-deadline stops writing the shard.",
		}, stat(func(s shard.Stats) uint64 { return s.RenewFailures })),
	)
}
