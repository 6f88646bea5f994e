package shard

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

const (
	// shardLeasePrefix names the Lease of shard i kubelogd-shard-<i>, i unpadded so that
	// a shard keeps its Lease when the shard count changes width.
	shardLeasePrefix = "kubelogd-shard-"
	// replicaLeasePrefix names the membership Lease of a replica.
	replicaLeasePrefix = "kubelogd-replica-"
	// shardsAnnotation on a membership Lease tells the replica's shard count: replicas
	// that split the pods differently must not share them (see rebalance).
	shardsAnnotation = "kubelogd.io/shards"
	// memberGCLeases is after how many LeaseDurations past its expiry a dead replica's
	// membership Lease is deleted: a Deployment's pod names never come back.
	memberGCLeases = 10
)

func shardLeaseName(i int) string { return shardLeasePrefix + strconv.Itoa(i) }

func replicaLeaseName(id string) string { return replicaLeasePrefix + id }

// parseShard returns the shard a Lease name stands for, if it is one of shards.
func parseShard(name string, shards int) (int, bool) {
	rest, ok := strings.CutPrefix(name, shardLeasePrefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	if err != nil || i < 0 || i >= shards || strconv.Itoa(i) != rest {
		return 0, false
	}
	return i, true
}

// holder returns the Lease's holder, "" when released or never held.
func holder(l *coordinationv1.Lease) string {
	if l == nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// epochOf returns the Lease's spec.leaseTransitions, 0 for none.
func epochOf(l *coordinationv1.Lease) int64 {
	if l == nil || l.Spec.LeaseTransitions == nil {
		return 0
	}
	return int64(*l.Spec.LeaseTransitions)
}

// expiresAt returns when the Lease lapses: its renewTime plus leaseDurationSeconds, as
// written by the holder's clock. renewTime is a MicroTime; it is used as such, not
// through metav1.Time, which would cut it to whole seconds. A Lease missing either
// field has always expired.
func expiresAt(l *coordinationv1.Lease) time.Time {
	s := l.Spec
	if s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return time.Time{}
	}
	return s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)
}

// free reports whether a replica may take the Lease at now: absent, released, or not
// renewed within its duration.
func free(l *coordinationv1.Lease, now time.Time) bool {
	return l == nil || holder(l) == "" || expiresAt(l).Before(now)
}

// view is what one List of the namespace's Leases showed.
type view struct {
	shards  map[int]*coordinationv1.Lease // by shard; absent: no Lease yet
	self    *coordinationv1.Lease         // this replica's membership Lease, if any
	members []*coordinationv1.Lease       // the other replicas' membership Leases
}

// observe lists the Leases. One List per period serves every decision of the period,
// whatever the number of shards.
func (m *Manager) observe(ctx context.Context) (*view, error) {
	list, err := m.leases.List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, fmt.Errorf("listing the Leases in namespace %s: %w", m.cfg.Namespace, err)
	}
	v := &view{shards: map[int]*coordinationv1.Lease{}}
	self := replicaLeaseName(m.cfg.ReplicaID)
	for i := range list.Items {
		l := &list.Items[i]
		if s, ok := parseShard(l.Name, m.cfg.Shards); ok {
			v.shards[s] = l
		} else if l.Name == self {
			v.self = l
		} else if strings.HasPrefix(l.Name, replicaLeasePrefix) {
			v.members = append(v.members, l)
		}
	}
	return v, nil
}

// liveReplicas counts the replicas whose membership Lease has not expired, this one
// included whether or not its own renewal went through. It also names a live replica
// with another shard count, if any.
func (m *Manager) liveReplicas(v *view, now time.Time) (n int, odd string) {
	n = 1
	want := strconv.Itoa(m.cfg.Shards)
	for _, l := range v.members {
		if free(l, now) {
			continue
		}
		if got := l.Annotations[shardsAnnotation]; got != want {
			odd = fmt.Sprintf("%s (shards %q)", holder(l), got)
			continue
		}
		n++
	}
	return n, odd
}

// renewMember creates or renews this replica's membership Lease, from the List's copy when
// there is one (its resourceVersion is the latest), else from the last one written.
func (m *Manager) renewMember(ctx context.Context, v *view) {
	base := m.member
	if v != nil {
		base = v.self
	}
	l := &coordinationv1.Lease{}
	if base != nil {
		l = base.DeepCopy()
	}
	l.Name, l.Namespace = replicaLeaseName(m.cfg.ReplicaID), m.cfg.Namespace
	if l.Annotations == nil {
		l.Annotations = map[string]string{}
	}
	l.Annotations[shardsAnnotation] = strconv.Itoa(m.cfg.Shards)
	now := metav1.NewMicroTime(m.now())
	l.Spec.HolderIdentity = new(m.cfg.ReplicaID)
	l.Spec.LeaseDurationSeconds = new(m.durationSeconds)
	l.Spec.RenewTime = &now
	var out *coordinationv1.Lease
	var err error
	if base == nil {
		l.Spec.AcquireTime = &now
		out, err = m.leases.Create(ctx, l, metav1.CreateOptions{})
	} else {
		out, err = m.leases.Update(ctx, l, metav1.UpdateOptions{})
	}
	if err != nil {
		m.warnFailure(&m.memberFailing, err, "renewing this replica's membership lease", "lease", l.Name)
		return
	}
	m.member, m.memberFailing = out, false
}

// leave deletes this replica's membership Lease, so that the others count one replica
// less at once, grow their fair share and take the shards this one is about to release.
func (m *Manager) leave(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.RenewDeadline)
	defer cancel()
	name := replicaLeaseName(m.cfg.ReplicaID)
	if err := m.leases.Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		m.logger.Warn("deleting this replica's membership lease; the others will count it until it expires", "lease", name, "err", err)
	}
}

// collectGarbage deletes at most one membership Lease that expired long ago. The
// resourceVersion precondition keeps it from deleting one its replica renewed meanwhile.
func (m *Manager) collectGarbage(ctx context.Context, v *view) {
	cutoff := m.now().Add(-memberGCLeases * m.cfg.LeaseDuration)
	for _, l := range v.members {
		if !expiresAt(l).Before(cutoff) {
			continue
		}
		err := m.leases.Delete(ctx, l.Name, metav1.DeleteOptions{
			Preconditions: &metav1.Preconditions{ResourceVersion: &l.ResourceVersion},
		})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			m.logger.Warn("deleting the membership lease of a replica gone long ago", "lease", l.Name, "err", err)
		}
		return
	}
}
