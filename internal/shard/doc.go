// Package shard lets several kubelogd replicas share the pods: it splits them into a fixed
// number of shards and gives each shard to one replica at a time through a
// coordination.k8s.io/v1 Lease.
//
// Each replica runs a Manager. The Manager announces the replica with a membership Lease
// (kubelogd-replica-<id>), holds at most its fair share of the shard Leases
// (kubelogd-shard-<i>) — ceil(shards / live replicas) — and renews them every RetryPeriod.
// It tells an Owner when to start and stop writing a shard, and gives a shard's Lease up
// only after the Owner stopped, so that a handover neither loses nor duplicates a line.
//
// Safety rests on client-go leader election's rule: a holder that could not renew a Lease
// for RenewDeadline stops acting on it (Holds turns false, then Owner.Stop), while another
// replica takes it only LeaseDuration after the last renewal, and LeaseDuration is longer.
// Writers check Holds before every write, so a replica that lost its connection to the API
// server stops writing before anyone else may start, as long as clocks agree within
// LeaseDuration - RenewDeadline.
//
// Every acquisition of a shard, by any replica, increments its Lease's
// spec.leaseTransitions; that number is the epoch passed to Owner.Start and returned by
// Holds, a fencing token that only grows as long as the Lease object is not deleted.
package shard
