package shard

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
)

// Manager holds this replica's share of the shard Leases and tells its Owner which
// shards to write. Run drives it; Holds, Held and Stats may be called from any goroutine.
type Manager struct {
	cfg             Config
	leases          coordinationv1client.LeaseInterface
	logger          *slog.Logger
	now             func() time.Time
	durationSeconds int32 // LeaseDuration, rounded up to whole seconds
	running         atomic.Bool

	// stopped receives a shard once its Owner.Stop returned. It has room for every shard
	// and a shard has at most one Stop running, so a Stop never waits on it, even after
	// Run returned.
	stopped chan int

	// The fields below belong to Run's goroutine.
	held      map[int]*heldShard
	member    *coordinationv1.Lease // this replica's membership Lease as last written
	announced bool                  // the membership Lease was written a period ago or more
	oddPeer   string                // the live replica with another shard count last warned about
	// listFailing and memberFailing are true during a streak of failed Lists or
	// membership renewals, which are warned about once per streak (see warnFailure).
	listFailing, memberFailing bool

	// fences are what Holds reads: one per shard whose writers may go on. Run sets one
	// before Owner.Start and deletes it before a release or, for a lost shard, before
	// Owner.Stop.
	mu     sync.RWMutex
	fences map[int]fence

	stats struct{ acquired, shed, lost, released, renewFailures atomic.Uint64 }

	// unheldSince is, for every shard the last List showed with no live holder, since
	// when (Run's); oldestUnheld the oldest of them in Unix nanoseconds, 0 if none, for
	// Unheld.
	unheldSince  map[int]time.Time
	oldestUnheld atomic.Int64
}

// heldShard is a shard Run has acquired and not yet forgotten.
type heldShard struct {
	// lease is the Lease as this replica last wrote it; its resourceVersion guards the
	// next write when the period's List failed.
	lease    *coordinationv1.Lease
	epoch    int64
	stopping bool // Owner.Stop is running; the Lease is released when it returns
	lost     bool // no longer this replica's: neither renewed nor released
	failing  bool // its last renewal failed (see warnFailure)
}

// fence is the epoch of a held shard and when its last successful renewal was sent.
type fence struct {
	epoch   int64
	renewed time.Time
}

// New checks cfg and returns a Manager; Run starts it.
func New(cfg Config) (*Manager, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:             cfg,
		leases:          cfg.Client.CoordinationV1().Leases(cfg.Namespace),
		logger:          cfg.Logger,
		now:             cfg.Now,
		durationSeconds: int32((cfg.LeaseDuration + time.Second - 1) / time.Second),
		stopped:         make(chan int, cfg.Shards),
		held:            map[int]*heldShard{},
		fences:          map[int]fence{},
		unheldSince:     map[int]time.Time{},
	}
	if m.logger == nil {
		m.logger = slog.New(slog.DiscardHandler)
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// Run announces this replica, then every RetryPeriod renews its Leases and acquires or
// sheds shards toward its fair share, until ctx is done. Then it leaves: it deletes its
// membership Lease, stops every held shard through Owner.Stop and releases each Lease as
// soon as its Stop returned, renewing the others meanwhile. It returns nil once all are
// released (or lost); it may be called only once.
func (m *Manager) Run(ctx context.Context) error { return m.run(ctx, nil) }

// run is Run with a test hook: when crash is closed, it returns at once, holding every
// Lease, as a SIGKILLed process would. Only the tests pass a channel.
func (m *Manager) run(ctx context.Context, crash <-chan struct{}) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("shard: Manager.Run called twice")
	}
	ticker := time.NewTicker(m.cfg.RetryPeriod)
	defer ticker.Stop()
	m.tick(ctx)
	for {
		select {
		case <-ctx.Done():
			return m.drain(ctx)
		case <-crash:
			return nil
		case s := <-m.stopped:
			m.stopDone(ctx, s)
		case <-ticker.C:
			m.tick(ctx)
		}
	}
}

// tick is one period's work. Its requests share a budget of one RetryPeriod, so that an
// API server that hangs cannot keep Run from noticing an expired fence for longer.
func (m *Manager) tick(ctx context.Context) {
	m.enforceDeadline()
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RetryPeriod)
	defer cancel()
	v, err := m.observe(ctx)
	if err != nil {
		m.warnFailure(&m.listFailing, err, "observing the shard leases; renewing the held ones blind")
	} else {
		m.listFailing = false
	}
	m.renewMember(ctx, v)
	m.renewShards(ctx, v)
	m.enforceDeadline()
	if v == nil {
		return
	}
	m.noteUnheld(v)
	// A replica that just started takes nothing in its first period, so that replicas
	// started together see each other before they count their fair share.
	if m.announced {
		m.rebalance(ctx, v)
	}
	m.announced = m.member != nil
	m.collectGarbage(ctx, v)
}

// drain gives every shard up once Run's context is done. Its requests must outlive that
// context; each is bounded by a timeout instead.
func (m *Manager) drain(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	m.leave(ctx)
	for _, s := range m.sortedHeld() {
		if h := m.held[s]; !h.stopping {
			m.stats.released.Add(1)
			m.logger.Info("releasing shard on shutdown", "shard", s, "epoch", h.epoch)
			m.stopAsync(s, h)
		}
	}
	ticker := time.NewTicker(m.cfg.RetryPeriod)
	defer ticker.Stop()
	for len(m.held) > 0 {
		select {
		case s := <-m.stopped:
			m.stopDone(ctx, s)
		case <-ticker.C:
			// Keep the Leases of shards still stopping, so that their last writes are
			// fenced in, not cut off.
			tctx, cancel := context.WithTimeout(ctx, m.cfg.RetryPeriod)
			m.renewShards(tctx, nil)
			cancel()
			m.enforceDeadline()
		}
	}
	return nil
}

// Holds reports whether this replica may write shard now, and under which epoch: it
// acquired the shard's Lease and its last renewal (or the acquisition) was sent less
// than RenewDeadline ago. Writers call it before each write; once it turns false for an
// epoch, it never turns true again for that epoch.
func (m *Manager) Holds(shard int) (epoch int64, ok bool) {
	m.mu.RLock()
	f, ok := m.fences[shard]
	m.mu.RUnlock()
	if !ok || m.now().Sub(f.renewed) >= m.cfg.RenewDeadline {
		return 0, false
	}
	return f.epoch, true
}

// Held returns the shards Holds reports, in increasing order.
func (m *Manager) Held() []int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	now := m.now()
	var out []int
	for s, f := range m.fences {
		if now.Sub(f.renewed) < m.cfg.RenewDeadline {
			out = append(out, s)
		}
	}
	slices.Sort(out)
	return out
}

// Stats returns the counters of handovers so far.
func (m *Manager) Stats() Stats {
	return Stats{
		Acquired:      m.stats.acquired.Load(),
		Shed:          m.stats.shed.Load(),
		Lost:          m.stats.lost.Load(),
		Released:      m.stats.released.Load(),
		RenewFailures: m.stats.renewFailures.Load(),
	}
}

func (m *Manager) setFence(s int, epoch int64, renewed time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.fences[s] = fence{epoch: epoch, renewed: renewed}
}

func (m *Manager) clearFence(s int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.fences, s)
}

// sortedHeld returns the shards in m.held in increasing order, for a stable log.
func (m *Manager) sortedHeld() []int {
	out := make([]int, 0, len(m.held))
	for s := range m.held {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// isCanceled tells a request cut short by Run's end, not worth a warning.
func isCanceled(err error) bool { return errors.Is(err, context.Canceled) }

// warnFailure logs a failed request at Warn when it begins a streak of failures and at
// Debug while the streak lasts, so that an API server down for minutes costs one warning
// per kind of request rather than one per shard and period. The caller ends the streak
// on success. A request cut short by Run's end is not logged.
func (m *Manager) warnFailure(failing *bool, err error, msg string, args ...any) {
	if isCanceled(err) {
		return
	}
	level := slog.LevelDebug
	if !*failing {
		level = slog.LevelWarn
	}
	*failing = true
	m.logger.Log(context.Background(), level, msg, append(args, "err", err)...)
}

// noteUnheld records which shards the List showed with no live holder, and since when.
func (m *Manager) noteUnheld(v *view) {
	now := m.now()
	var oldest time.Time
	for s := range m.cfg.Shards {
		if _, mine := m.held[s]; mine || !free(v.shards[s], now) {
			delete(m.unheldSince, s)
			continue
		}
		since, ok := m.unheldSince[s]
		if !ok {
			since = now
			m.unheldSince[s] = now
		}
		if oldest.IsZero() || since.Before(oldest) {
			oldest = since
		}
	}
	if oldest.IsZero() {
		m.oldestUnheld.Store(0)
	} else {
		m.oldestUnheld.Store(oldest.UnixNano())
	}
}

// Unheld returns how long the shard that has gone longest without a live holder (as the
// last List showed) has been so; 0 when every shard is held.
func (m *Manager) Unheld() time.Duration {
	since := m.oldestUnheld.Load()
	if since == 0 {
		return 0
	}
	return m.now().Sub(time.Unix(0, since))
}
