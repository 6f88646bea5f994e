package collector

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/util/flowcontrol"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// Config tunes the collector.
type Config struct {
	// Since limits how far back a container is read when kubelogd sees it for the first
	// time and has no cursor for it; zero reads everything the kubelet still has.
	Since time.Duration
	// MinRetryDelay and MaxRetryDelay bound the jittered exponential backoff between
	// attempts to open a stream. Defaults 500ms and 30s.
	MinRetryDelay, MaxRetryDelay time.Duration
	// StallTimeout is how long an open stream may deliver nothing before a probe checks
	// whether the kubelet has lines it did not deliver. Default 2m.
	StallTimeout time.Duration
	// ProbeTimeout bounds one probe request. Default 30s.
	ProbeTimeout time.Duration
	// MaxStreamLifetime reopens a follow stream after this long (minus up to 10% jitter),
	// before the kubelet's own streaming timeout cuts it. Default 1h; negative disables it.
	MaxStreamLifetime time.Duration
	// PollMaxInterval caps the wait between two polls of a quiet container (beyond the
	// follow budget, or on a node that cannot follow logs). Default 30s; never below the
	// least interval (1s, 5s on a node out of inotify instances).
	PollMaxInterval time.Duration
	// MaxStreamsPerNode and MaxStreams bound the follow streams open at once on one node
	// and in all (see budget); containers beyond them are polled. 0: unlimited.
	MaxStreamsPerNode, MaxStreams int
	// Shards, above 0, is the shard count of replicas that share the pods (see
	// internal/shard): each node's MaxStreamsPerNode is split among the shards, so that
	// the replicas together stay within it. MaxStreams stays per replica.
	Shards int
	// PollQPS bounds the polls per second of all containers, and PollBurst their burst.
	// Default 250 (half the client's default QPS of 500) and 1.
	PollQPS   float64
	PollBurst int
	// OnPod, if set, is told about every pod that is collected when it is first seen and
	// when it is deleted (for the pod metadata file). It must not block.
	OnPod func(informer.Pod)
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.MinRetryDelay <= 0 {
		c.MinRetryDelay = 500 * time.Millisecond
	}
	if c.MaxRetryDelay <= 0 {
		c.MaxRetryDelay = 30 * time.Second
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = 2 * time.Minute
	}
	if c.ProbeTimeout <= 0 {
		c.ProbeTimeout = 30 * time.Second
	}
	if c.MaxStreamLifetime == 0 {
		c.MaxStreamLifetime = time.Hour
	}
	if c.PollMaxInterval <= 0 {
		c.PollMaxInterval = 30 * time.Second
	}
	if c.PollQPS <= 0 {
		c.PollQPS = 250
	}
	if c.PollBurst <= 0 {
		c.PollBurst = 1
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Collector runs one target per collected container. It implements informer.Handler.
type Collector struct {
	cfg    Config
	pods   corev1client.PodsGetter
	sink   *sink.Manager
	logger *slog.Logger
	start  time.Time

	metrics *metrics
	// nodes are the nodes whose kubelet cannot follow logs now.
	nodes *nodes
	// budget bounds the follow streams; pollRate the polls of the containers beyond it.
	budget   *budget
	pollRate atomic.Pointer[pollLimit]
	// pollMax is Config.PollMaxInterval, which SetStreamBudget changes.
	pollMax atomic.Int64

	mu      sync.Mutex
	pending map[types.UID]informer.Pod // latest state of pods changed since the last reconcile
	wake    chan struct{}              // signalled (capacity 1) when pending gains an entry
	// releases carries Release's requests to Run; stopped is closed when Run has
	// returned, every target ended.
	releases chan *releaseReq
	stopped  chan struct{}

	// fetches batches the pods fetched for first-line checks (see podFetches);
	// earlyAfter is when an early first-line check's fetch begins (earlyQuiet from now;
	// unit tests choose).
	fetches    podFetches
	earlyAfter func() <-chan time.Time

	// forbidden is the last 403 a log stream got, for /readyz.
	forbidden atomic.Pointer[forbiddenAt]

	// live holds every running target (*target by targetKey) for scrapes, which run on
	// other goroutines; Run is the only writer.
	live sync.Map
}

var _ informer.Handler = (*Collector)(nil)

// New returns a Collector that opens log streams through pods and writes to s, with its
// metrics registered on reg. The caller's rest.Config rate limiter (QPS, burst) bounds how
// fast streams are opened.
func New(cfg Config, pods corev1client.PodsGetter, s *sink.Manager, reg prometheus.Registerer, logger *slog.Logger) *Collector {
	cfg.defaults()
	c := &Collector{
		cfg: cfg, pods: pods, sink: s, logger: logger, start: cfg.Now(),
		pending:  map[types.UID]informer.Pod{},
		wake:     make(chan struct{}, 1),
		releases: make(chan *releaseReq),
		stopped:  make(chan struct{}),

		earlyAfter: func() <-chan time.Time { return time.After(earlyQuiet) },
	}
	c.metrics = newMetrics(reg, c.oldestWaiting)
	c.nodes = newNodes(logger, cfg.Now, func(n int) { c.metrics.nodesOut.Set(float64(n)) })
	c.budget = newBudget(0, 0, cfg.Shards)
	c.SetStreamBudget(cfg.MaxStreamsPerNode, cfg.MaxStreams, cfg.PollQPS, cfg.PollMaxInterval)
	return c
}

// pollLimit is the rate limiter of the polls, with the rate it was made for.
type pollLimit struct {
	flowcontrol.RateLimiter
	qps float64
}

// SetStreamBudget sets the bounds of the follow streams (Config.MaxStreamsPerNode and
// MaxStreams), the rate of the polls (PollQPS; 0 keeps it) and the longest wait between
// two polls (PollMaxInterval; 0 keeps it), as a reload of the configuration does. Streams
// beyond a lowered bound are not cut: they give their slots up as they end or idle, and
// the containers beyond the bound are polled from then on.
func (c *Collector) SetStreamBudget(perNode, total int, pollQPS float64, pollMax time.Duration) {
	c.budget.set(perNode, total)
	if pl := c.pollRate.Load(); pollQPS > 0 && (pl == nil || pl.qps != pollQPS) {
		c.pollRate.Store(&pollLimit{flowcontrol.NewTokenBucketRateLimiter(float32(pollQPS), c.cfg.PollBurst), pollQPS})
	}
	if pollMax > 0 {
		c.pollMax.Store(int64(pollMax))
	}
}

// oldestWaiting is how long the target that has waited longest for a log stream has been
// waiting, in seconds.
func (c *Collector) oldestWaiting() float64 {
	now := c.cfg.Now().UnixNano()
	var oldest int64
	c.live.Range(func(_, v any) bool {
		if since := v.(*target).waitingSince.Load(); since > 0 && now-since > oldest {
			oldest = now - since
		}
		return true
	})
	return time.Duration(oldest).Seconds()
}

// OnPod records a pod's latest state for the reconcile loop. It never blocks.
func (c *Collector) OnPod(p informer.Pod) {
	c.mu.Lock()
	if old, ok := c.pending[p.UID]; ok && old.Deleted && !p.Deleted {
		// A delete is final; an add for the same UID cannot follow it.
		p = old
	}
	c.pending[p.UID] = p
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Collector) takePending() map[types.UID]informer.Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.pending) == 0 {
		return nil
	}
	p := c.pending
	c.pending = map[types.UID]informer.Pod{}
	return p
}

type targetKey struct {
	uid       types.UID
	container string
}

// Run reconciles until ctx is cancelled, then stops every target and waits for each to
// flush and close its file before returning.
func (c *Collector) Run(ctx context.Context) error {
	targets := map[targetKey]*target{}
	finished := make(chan targetKey)
	var releasing []*releaseReq
	var wg sync.WaitGroup
	defer close(c.stopped)
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil // Release returns once stopped is closed
		case key := <-finished:
			delete(targets, key)
			c.live.Delete(key)
			c.metrics.desired.Dec()
			releasing = ended(releasing, key)
		case r := <-c.releases:
			if r.start(c, targets) {
				releasing = append(releasing, r)
			}
		case <-c.wake:
			for _, p := range c.takePending() {
				c.reconcile(ctx, p, targets, finished, &wg)
			}
		}
	}
}

// releaseReq is a Release on its way through Run.
type releaseReq struct {
	match   func(namespace, pod string) bool
	waiting map[targetKey]bool // the targets stopped and not ended yet
	done    chan struct{}
}

// start drops the pending states of the matching pods and stops their targets; it tells
// whether any is still to end (else the request is done).
func (r *releaseReq) start(c *Collector, targets map[targetKey]*target) bool {
	c.mu.Lock()
	for uid, p := range c.pending {
		if r.match(p.Namespace, p.Name) {
			delete(c.pending, uid)
		}
	}
	c.mu.Unlock()
	r.waiting = map[targetKey]bool{}
	for key, tg := range targets {
		if r.match(tg.ns, tg.pod) {
			tg.cancel()
			r.waiting[key] = true
		}
	}
	if len(r.waiting) == 0 {
		close(r.done)
		return false
	}
	return true
}

// ended notes that the target key ended, and returns the requests still waiting.
func ended(rs []*releaseReq, key targetKey) []*releaseReq {
	out := rs[:0]
	for _, r := range rs {
		delete(r.waiting, key)
		if len(r.waiting) == 0 {
			close(r.done)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Release stops collecting the pods that match, as a shutdown stops every pod: each of
// their targets stops its stream, writes what it read, saves its cursor and closes its
// file. It returns once all have (at the latest when Run has returned) and no follow
// stream closing in this collector counts in the budget any more — the ones they closed,
// and any other that closed in the same second (followCloseGrace at most) — or with ctx's
// error when ctx ends first. The caller must have stopped passing those pods to OnPod:
// states already pending are dropped, so nothing starts them again. Another kubelogd can
// then take the files over exactly where this one stopped.
func (c *Collector) Release(ctx context.Context, match func(namespace, pod string) bool) error {
	r := &releaseReq{match: match, done: make(chan struct{})}
	select {
	case c.releases <- r:
	case <-c.stopped: // every target has ended
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
	case <-c.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The streams just stopped still count for their close (see budget.closing): the
	// replica that takes the pods next opens its follows on the same nodes.
	if d := time.Until(c.budget.closingUntil()); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func hasStarted(p informer.Pod) bool {
	for _, ct := range p.Containers {
		if ct.Started() {
			return true
		}
	}
	return false
}

// reconcile starts a target for every started container of p that has none, and passes
// the new state to the targets that exist. Targets end by themselves once the pod is
// deleted or excluded and their logs are read.
func (c *Collector) reconcile(ctx context.Context, p informer.Pod, targets map[targetKey]*target, finished chan<- targetKey, wg *sync.WaitGroup) {
	known := false
	for key, tg := range targets {
		if key.uid == p.UID {
			tg.update(p)
			known = true
		}
	}
	if p.Excluded {
		return
	}
	if c.cfg.OnPod != nil && (known || p.Deleted || hasStarted(p)) {
		c.cfg.OnPod(p)
	}
	for _, ct := range p.Containers {
		key := targetKey{p.UID, ct.Name}
		if _, ok := targets[key]; ok || !ct.Started() {
			continue
		}
		tg := newTarget(c, p, ct.Name)
		tctx, cancel := context.WithCancel(ctx)
		tg.cancel = cancel
		targets[key] = tg
		c.live.Store(key, tg)
		c.metrics.desired.Inc()
		wg.Add(1)
		// A target runs in a goroutine until it ends, except while it waits for its next
		// poll: then it is parked, and run again in a new goroutine (see target.park).
		var step func()
		resume := func(changed bool) {
			tg.changed = tg.changed || changed
			go step()
		}
		step = func() {
			if tg.run(tctx) {
				tg.park(tctx, resume)
				return
			}
			cancel()
			select {
			case finished <- key:
			case <-ctx.Done():
			}
			wg.Done()
		}
		go step()
	}
}

type forbiddenAt struct {
	msg string
	at  time.Time
}

// forbiddenWindow is how long a refused log stream keeps /readyz failing.
const forbiddenWindow = time.Minute

// Forbidden returns the message of a 403 that a log stream got within the last minute, or
// "" if none did: a permission revoked while running makes kubelogd unready, with the reason.
func (c *Collector) Forbidden() string {
	f := c.forbidden.Load()
	if f == nil || c.cfg.Now().Sub(f.at) > forbiddenWindow {
		return ""
	}
	return f.msg
}
