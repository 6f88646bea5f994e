package shard

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// errTaken means a shard's Lease no longer names this replica at its epoch.
var errTaken = errors.New("lease taken over")

// renewShards renews the Lease of every shard not lost, stopping ones included: their
// writers are still flushing and must stay fenced in. With a view (this period's List),
// a shard whose Lease is gone or names another holder or epoch is lost at once, without
// a request; without one (the List failed), the last Lease written is renewed blind.
func (m *Manager) renewShards(ctx context.Context, v *view) {
	for _, s := range m.sortedHeld() {
		h := m.held[s]
		if h.lost {
			continue
		}
		base := h.lease
		if v != nil {
			cur, ok := v.shards[s]
			if !ok {
				m.lose(s, "lease deleted")
				continue
			}
			if !m.ours(cur, h.epoch) {
				m.lose(s, fmt.Sprintf("lease taken by %q at epoch %d", holder(cur), epochOf(cur)))
				continue
			}
			base = cur
		}
		m.renew(ctx, s, h, base)
	}
}

// renew writes a new renewTime into the shard's Lease. The fence moves to the time taken
// before the request, which is also the renewTime others count the Lease's duration
// from: the fence always ends at least LeaseDuration-RenewDeadline before the Lease.
func (m *Manager) renew(ctx context.Context, s int, h *heldShard, base *coordinationv1.Lease) {
	at := m.now()
	out, err := m.update(ctx, h, base, func(l *coordinationv1.Lease) {
		l.Spec.RenewTime = &metav1.MicroTime{Time: at}
		l.Spec.LeaseDurationSeconds = new(m.durationSeconds)
	})
	switch {
	case err == nil:
		h.lease, h.failing = out, false
		// A renewal that came back after the fence had ended does not reopen it: writers
		// may have seen Holds false, and enforceDeadline is about to stop the shard.
		if _, ok := m.Holds(s); ok {
			m.setFence(s, h.epoch, at)
		}
	case errors.Is(err, errTaken), apierrors.IsConflict(err), apierrors.IsNotFound(err):
		m.lose(s, "renewal refused: "+err.Error())
	default:
		m.stats.renewFailures.Add(1)
		m.warnFailure(&h.failing, err, "renewing shard lease; retrying until the renew deadline", "shard", s, "epoch", h.epoch)
	}
}

// update writes mutate(base) over a held shard's Lease. On a conflict it reads the Lease
// once more before it gives up: an earlier renewal whose request timed out may have been
// applied all the same, which changes the resourceVersion but not the holder or epoch.
func (m *Manager) update(ctx context.Context, h *heldShard, base *coordinationv1.Lease, mutate func(*coordinationv1.Lease)) (*coordinationv1.Lease, error) {
	for attempt := 0; ; attempt++ {
		l := base.DeepCopy()
		mutate(l)
		out, err := m.leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil || !apierrors.IsConflict(err) || attempt > 0 {
			return out, err
		}
		cur, gerr := m.leases.Get(ctx, l.Name, metav1.GetOptions{})
		if gerr != nil {
			return nil, gerr
		}
		if !m.ours(cur, h.epoch) {
			return nil, fmt.Errorf("%w by %q at epoch %d", errTaken, holder(cur), epochOf(cur))
		}
		base = cur
	}
}

// ours reports whether the Lease names this replica as holder at epoch.
func (m *Manager) ours(l *coordinationv1.Lease, epoch int64) bool {
	return holder(l) == m.cfg.ReplicaID && epochOf(l) == epoch
}

// enforceDeadline loses every shard whose fence has ended: Holds already says so, and
// its Lease may go to another replica once it expires.
func (m *Manager) enforceDeadline() {
	for _, s := range m.sortedHeld() {
		if h := m.held[s]; !h.lost {
			if _, ok := m.Holds(s); !ok {
				m.lose(s, "not renewed within the renew deadline")
			}
		}
	}
}

// lose forgets a shard that is no longer this replica's. The fence goes first, so that
// writers stop at once; Owner.Stop follows unless it is already running.
func (m *Manager) lose(s int, reason string) {
	h := m.held[s]
	h.lost = true
	m.clearFence(s)
	m.stats.lost.Add(1)
	m.logger.Warn("shard lost", "shard", s, "epoch", h.epoch, "reason", reason)
	if !h.stopping {
		m.stopAsync(s, h)
	}
}

// stopAsync runs Owner.Stop on a goroutine of its own, so that Run goes on renewing the
// other Leases (and this one) however long the writers take to flush. The shard stays in
// m.held until stopDone, which keeps it from being acquired and started meanwhile.
func (m *Manager) stopAsync(s int, h *heldShard) {
	h.stopping = true
	go func() {
		m.cfg.Owner.Stop(s)
		m.stopped <- s
	}()
}

// stopDone finishes a shard whose Owner.Stop returned: its fence ends, then its Lease is
// released unless it was lost. Only now may another replica take it.
func (m *Manager) stopDone(ctx context.Context, s int) {
	h := m.held[s]
	delete(m.held, s)
	if h.lost {
		return
	}
	m.clearFence(s)
	m.release(ctx, s, h)
}

// release clears the Lease's holder, which lets any replica take it at once. If that
// fails, the Lease expires instead: slower, as safe.
func (m *Manager) release(ctx context.Context, s int, h *heldShard) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.RenewDeadline)
	defer cancel()
	at := m.now()
	_, err := m.update(ctx, h, h.lease, func(l *coordinationv1.Lease) {
		l.Spec.HolderIdentity = nil
		l.Spec.RenewTime = &metav1.MicroTime{Time: at}
	})
	if err != nil {
		m.logger.Warn("releasing shard lease; it will expire instead", "shard", s, "epoch", h.epoch, "err", err)
		return
	}
	m.logger.Info("shard released", "shard", s, "epoch", h.epoch)
}

// rebalance moves this replica one step toward its fair share, ceil(shards / live
// replicas): above it, it sheds one shard (one per period, so that a scale-up moves
// shards gradually and each moves once); below it, it takes free shards.
func (m *Manager) rebalance(ctx context.Context, v *view) {
	now := m.now()
	live, odd := m.liveReplicas(v, now)
	if odd != m.oddPeer {
		m.oddPeer = odd
		if odd != "" {
			m.logger.Error("a live replica splits the pods into another number of shards; taking and shedding none until it is gone",
				"replica", odd, "shards", m.cfg.Shards)
		}
	}
	if odd != "" {
		return // its shard i is not ours: both could write the same pod
	}
	fair := (m.cfg.Shards + live - 1) / live
	active := m.active()
	if len(active) > fair {
		m.shed(active[len(active)-1])
		return
	}
	for _, s := range m.candidates(v, now) {
		if len(active) >= fair {
			return
		}
		if m.acquire(ctx, s, v.shards[s]) {
			active = append(active, s)
		}
	}
}

// active returns the held shards neither lost nor stopping, in increasing order.
func (m *Manager) active() []int {
	var out []int
	for _, s := range m.sortedHeld() {
		if h := m.held[s]; !h.lost && !h.stopping {
			out = append(out, s)
		}
	}
	return out
}

// shed gives a shard up to make room for other replicas: the highest-numbered, so that
// replicas shedding at once give up different shards than the ones they keep taking.
func (m *Manager) shed(s int) {
	h := m.held[s]
	m.stats.shed.Add(1)
	m.logger.Info("shedding shard above fair share", "shard", s, "epoch", h.epoch)
	m.stopAsync(s, h)
}

// candidates returns the free shards not in m.held, in this replica's own order (highest
// random weight of replica and shard): replicas seeking at once try different shards
// first instead of all racing for the lowest.
func (m *Manager) candidates(v *view, now time.Time) []int {
	var out []int
	for s := range m.cfg.Shards {
		if _, held := m.held[s]; !held && free(v.shards[s], now) {
			out = append(out, s)
		}
	}
	weight := func(s int) uint32 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(m.cfg.ReplicaID + "/" + strconv.Itoa(s)))
		return h.Sum32()
	}
	slices.SortFunc(out, func(a, b int) int { return cmp.Compare(weight(b), weight(a)) })
	return out
}

// acquire takes a free shard: it creates the Lease, or updates the one listed (its
// resourceVersion makes a replica that races for it lose), with leaseTransitions one
// higher — the new epoch. Then it opens the fence and starts the Owner.
func (m *Manager) acquire(ctx context.Context, s int, cur *coordinationv1.Lease) bool {
	at := m.now()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: shardLeaseName(s), Namespace: m.cfg.Namespace}}
	if cur != nil {
		l = cur.DeepCopy()
	}
	l.Spec.HolderIdentity = new(m.cfg.ReplicaID)
	l.Spec.LeaseDurationSeconds = new(m.durationSeconds)
	l.Spec.AcquireTime = &metav1.MicroTime{Time: at}
	l.Spec.RenewTime = &metav1.MicroTime{Time: at}
	l.Spec.LeaseTransitions = new(int32(epochOf(cur) + 1))
	var out *coordinationv1.Lease
	var err error
	if cur == nil {
		out, err = m.leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		out, err = m.leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) && !isCanceled(err) {
			m.logger.Warn("acquiring shard lease", "shard", s, "err", err)
		}
		return false // another replica was faster, or the next period will retry
	}
	epoch := epochOf(out)
	m.held[s] = &heldShard{lease: out, epoch: epoch}
	m.setFence(s, epoch, at)
	m.stats.acquired.Add(1)
	m.logger.Info("shard acquired", "shard", s, "epoch", epoch, "previous_holder", holder(cur))
	m.cfg.Owner.Start(s, epoch)
	return true
}
