package collector

import (
	"strconv"
	"sync"
	"time"

	"github.com/kubelogd/kubelogd/internal/shard"
)

// budget bounds the follow streams open at once: per node, because the kubelet holds one
// inotify instance per follow (fs.inotify.max_user_instances is 128 per user on many
// distributions, shared with everything else root runs on the node), and in all, because
// each costs memory in kubelogd and in the API server that proxies it. A container without
// a slot is polled (see poll). The busiest containers hold the slots: a polled container
// whose polls find lines marks itself as wanting one, and a stream on the same node (or,
// when the total is what is full, anywhere) that has been idle for the stall timeout
// gives its slot up (see watchdog). Safe for concurrent use.
//
// Replicas that share the pods by shard (shards > 0) share each node's budget too, rather
// than each spending all of it: the per-node slots are split among the shards (see pool),
// and a container draws from its pod's shard's part. A shard has one holder at a time and
// its streams stop before its Lease is released, so the slots the replicas hold on a node
// never sum to more than the per-node budget, whoever holds which shard.
type budget struct {
	mu             sync.Mutex
	perNode, total int // 0: unlimited
	shards         int // above 0: perNode is split among this many shards

	open    map[string]int // slots held, by pool
	n       int            // slots held in all
	wanting map[string]int // polled containers whose last poll found lines, by pool
	want    int            // their sum
	shardOf map[string]int // the shard of each pool named (shards > 0)

	// closingIn and closingN are the ended streams closing counts (within open and n),
	// by pool and in all; closedBy is when the last of them stops counting.
	closingIn map[string]int
	closingN  int
	closedBy  time.Time
}

func newBudget(perNode, total, shards int) *budget {
	return &budget{perNode: perNode, total: total, shards: shards,
		open: map[string]int{}, wanting: map[string]int{}, shardOf: map[string]int{}, closingIn: map[string]int{}}
}

// pool names the slots a container of pod namespace/name on node draws from: the node's,
// or with shards the node's part for the pod's shard, whose size is perNode/shards, one
// more for the first perNode%shards shards (the parts sum to perNode exactly; a shard's
// part can be 0, when there are more shards than slots: its containers are polled).
func (b *budget) pool(node, namespace, name string) string {
	if b.shards <= 0 {
		return node
	}
	i := shard.Of(namespace, name, b.shards)
	key := node + "\x00" + strconv.Itoa(i)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.shardOf[key] = i
	return key
}

// full reports whether pool has no free slot by the per-node budget (the total aside);
// b.mu held. A shard's part of 0 slots is full from the start.
func (b *budget) full(pool string) bool {
	limit := b.limit(pool)
	return limit >= 0 && b.open[pool] >= limit
}

// limit is pool's part of the per-node budget, -1 if unlimited; b.mu held.
func (b *budget) limit(pool string) int {
	if b.perNode <= 0 {
		return -1
	}
	limit := b.perNode
	if i, ok := b.shardOf[pool]; ok {
		limit = b.perNode / b.shards
		if i < b.perNode%b.shards {
			limit++
		}
	}
	return limit
}

// closing counts a follow stream of pool that has just ended as open for
// followCloseGrace more: its close reaches the kubelet that much later, and until then
// the kubelet holds its inotify instance. A slot freed meanwhile is not taken.
func (b *budget) closing(pool string) {
	b.mu.Lock()
	b.open[pool]++
	b.n++
	b.closingIn[pool]++
	b.closingN++
	b.closedBy = time.Now().Add(followCloseGrace)
	b.mu.Unlock()
	time.AfterFunc(followCloseGrace, func() { b.closed(pool) })
}

// closed ends what closing counted.
func (b *budget) closed(pool string) {
	b.mu.Lock()
	if b.closingIn[pool]--; b.closingIn[pool] <= 0 {
		delete(b.closingIn, pool)
	}
	b.closingN--
	b.mu.Unlock()
	b.release(pool)
}

// closingUntil is when every stream closing counts now stops counting (the zero time if
// none does): a Release waits for it, so that the replica that takes the pods over next
// finds the node's kubelet rid of the streams given up.
func (b *budget) closingUntil() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closingN == 0 {
		return time.Time{}
	}
	return b.closedBy
}

// over reports whether pool, or the budget in all, holds more streams than it allows,
// the closing ones counted: a target that holds a slot and reopens its follow then
// waits for its own last stream's close (see target.closeWait).
func (b *budget) over(pool string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	limit := b.limit(pool)
	return limit >= 0 && b.open[pool] > limit || b.total > 0 && b.n > b.total
}

// limited reports whether the budget bounds anything.
func (b *budget) limited() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.perNode > 0 || b.total > 0
}

// set changes the bounds (a reload of the configuration). Slots held beyond a lowered
// bound are not taken back: they are given up as their streams end or idle (watchdog),
// and no new one is granted until the count is below the bound.
func (b *budget) set(perNode, total int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.perNode, b.total = perNode, total
}

// acquire takes a slot of pool if one is free.
func (b *budget) acquire(pool string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.full(pool) || b.total > 0 && b.n >= b.total {
		return false
	}
	b.open[pool]++
	b.n++
	return true
}

// release gives back a slot acquire took on pool.
func (b *budget) release(pool string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open[pool]--; b.open[pool] <= 0 {
		delete(b.open, pool)
	}
	b.n--
}

// setWanting records whether a polled container of pool would rather stream: its last poll
// found lines (on), or it found none, streams now or is gone (off). A container calls it
// with the state it last set, so that the counts stay balanced (see target.want).
func (b *budget) setWanting(pool string, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := -1
	if on {
		d = 1
	}
	if b.wanting[pool] += d; b.wanting[pool] <= 0 {
		delete(b.wanting, pool)
	}
	b.want += d
}

// contended reports whether an idle stream of pool should give its slot up: a busy
// polled container waits for a slot that it would free — one of the same pool, which is
// full, or any, when the total is what is full. A slot whose stream is closing is on its
// way to a waiting container already: while as many closing slots as containers waiting
// are counted, no other stream gives its slot up (else one demotion would bring more in
// the second the slot is held for its close).
func (b *budget) contended(pool string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wanting[pool] > b.closingIn[pool] && b.full(pool) {
		return true
	}
	if b.want <= b.closingN || b.total == 0 || b.n < b.total {
		return false
	}
	for m, w := range b.wanting {
		if w > 0 && (!b.full(m) || m == pool) {
			return true
		}
	}
	return false
}
