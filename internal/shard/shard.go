package shard

import (
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
)

// Of returns the shard of a pod: FNV-1a (32 bits) of "namespace/name" modulo shards. It
// hashes the pod's name, not its UID, so that a pod recreated under the same name (a
// StatefulSet's) stays with the replica that has its files. shards must be positive.
func Of(namespace, podName string, shards int) int {
	h := fnv.New32a()
	_, _ = io.WriteString(h, namespace+"/"+podName) // a hash.Hash never fails to write
	return int(h.Sum32() % uint32(shards))
}

// Owner does the work of the shards a Manager holds.
type Owner interface {
	// Start begins writing the shard. The Manager calls it right after it acquired the
	// shard's Lease, with the Lease's epoch (see Manager.Holds). It is called on the
	// Manager's goroutine and must return quickly: no Lease is renewed meanwhile.
	Start(shard int, epoch int64)
	// Stop stops writing the shard and returns only once nothing more will be written:
	// streams stopped, files flushed, cursors saved. The Manager gives the Lease up only
	// after Stop returned, and keeps renewing it until then, so Stop may take its time.
	// Stop runs on a goroutine of its own, possibly while Start or Stop runs for another
	// shard; calls for one shard never overlap. When the Lease was lost rather than given
	// up, Holds already reports false when Stop is called.
	Stop(shard int)
}

// Config configures a Manager. Every replica sharing the pods must use the same
// Namespace, Shards and durations, and a ReplicaID of its own.
type Config struct {
	// Client reaches the API server. It should have a rate limiter of its own, not shared
	// with log streams: the Manager sends two requests plus one per held shard every
	// RetryPeriod, and a renewal held up past RenewDeadline costs the shard.
	Client kubernetes.Interface
	// Namespace holds the Leases.
	Namespace string
	// ReplicaID names this replica in the Leases (its pod name). Two live replicas with
	// the same ID would take each other's shards for their own.
	ReplicaID string
	// Shards is the number of shards the pods are split into (see Of).
	Shards int
	// LeaseDuration is how long a shard Lease lasts after its last renewal before another
	// replica may take it. Leases count whole seconds; a fraction is rounded up.
	LeaseDuration time.Duration
	// RenewDeadline is how long the holder of a shard goes on writing it without a
	// successful renewal. It must be shorter than LeaseDuration; the difference is the
	// clock drift between replicas that the Leases tolerate.
	RenewDeadline time.Duration
	// RetryPeriod is how often the Manager renews its Leases and seeks or sheds shards. It
	// must be shorter than RenewDeadline, so that a failed renewal is retried before the
	// deadline.
	RetryPeriod time.Duration
	// Owner starts and stops writing the shards.
	Owner Owner
	// Logger receives handovers and failures. Default: discard.
	Logger *slog.Logger
	// Now is the clock of the Lease times and of Holds. Default: time.Now, whose
	// monotonic reading measures RenewDeadline whatever the wall clock does.
	Now func() time.Time
}

// validate checks c, durations in the order of client-go's leader election: a holder
// must stop acting (RenewDeadline) before another may take over (LeaseDuration), and get
// to retry (RetryPeriod) before it stops. It names every problem at once.
func (c *Config) validate() error {
	var errs []string
	bad := func(format string, args ...any) { errs = append(errs, fmt.Sprintf(format, args...)) }
	if c.Client == nil {
		bad("Client is nil")
	}
	if c.Owner == nil {
		bad("Owner is nil")
	}
	if c.Namespace == "" {
		bad("Namespace is empty: name the namespace of the Leases")
	}
	if c.ReplicaID == "" {
		bad("ReplicaID is empty: give each replica a name of its own (its pod name)")
	} else if msgs := validation.IsDNS1123Subdomain(replicaLeaseName(c.ReplicaID)); len(msgs) > 0 {
		bad("ReplicaID %q cannot name a Lease %q: %s", c.ReplicaID, replicaLeaseName(c.ReplicaID), strings.Join(msgs, "; "))
	}
	if c.Shards <= 0 {
		bad("Shards is %d: it must be positive", c.Shards)
	}
	switch {
	case c.RetryPeriod <= 0:
		bad("RetryPeriod %s must be positive", c.RetryPeriod)
	case c.LeaseDuration < time.Second:
		bad("LeaseDuration %s must be at least 1s: Leases count whole seconds", c.LeaseDuration)
	case c.RenewDeadline >= c.LeaseDuration:
		bad("RenewDeadline %s must be shorter than LeaseDuration %s: a holder must stop writing before another replica may take its shard", c.RenewDeadline, c.LeaseDuration)
	case c.RetryPeriod >= c.RenewDeadline:
		bad("RetryPeriod %s must be shorter than RenewDeadline %s: a holder must get to retry a renewal before it gives up", c.RetryPeriod, c.RenewDeadline)
	}
	if len(errs) > 0 {
		return errors.New("shard: invalid config: " + strings.Join(errs, "; "))
	}
	return nil
}

// Stats counts a Manager's handovers since New, for metrics.
type Stats struct {
	// Acquired counts shards taken: never held, released by another replica or expired.
	Acquired uint64
	// Shed counts shards given up to make room for more replicas (a scale-up).
	Shed uint64
	// Lost counts shards lost: taken by someone else, Lease changed or deleted under
	// this replica, or not renewed within RenewDeadline.
	Lost uint64
	// Released counts shards given up when Run's context ended.
	Released uint64
	// RenewFailures counts shard Lease renewals that failed; the shard is kept until
	// RenewDeadline passes without a successful one.
	RenewFailures uint64
}
