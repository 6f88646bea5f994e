package collector

import (
	"sync"
)

// budget bounds the follow streams open at once: per node, because the kubelet holds one
// inotify instance per follow (fs.inotify.max_user_instances is 128 per user on many
// distributions, shared with everything else root runs on the node), and in all, because
// each costs memory in kubelogd and in the API server that proxies it. A container without
// a slot is polled (see poll). The busiest containers hold the slots: a polled container
// whose polls find lines marks itself as wanting one, and a stream on the same node (or,
// when the total is what is full, anywhere) that has been idle for the stall timeout
// gives its slot up (see watchdog). Safe for concurrent use.
type budget struct {
	mu             sync.Mutex
	perNode, total int // 0: unlimited

	open    map[string]int // slots held, by node
	n       int            // slots held in all
	wanting map[string]int // polled containers whose last poll found lines, by node
	want    int            // their sum
}

func newBudget(perNode, total int) *budget {
	return &budget{perNode: perNode, total: total, open: map[string]int{}, wanting: map[string]int{}}
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

// acquire takes a slot on node if one is free.
func (b *budget) acquire(node string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.perNode > 0 && b.open[node] >= b.perNode || b.total > 0 && b.n >= b.total {
		return false
	}
	b.open[node]++
	b.n++
	return true
}

// release gives back a slot acquire took on node.
func (b *budget) release(node string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.open[node]--; b.open[node] <= 0 {
		delete(b.open, node)
	}
	b.n--
}

// setWanting records whether a polled container of node would rather stream: its last poll
// found lines (on), or it found none, streams now or is gone (off). A container calls it
// with the state it last set, so that the counts stay balanced (see target.want).
func (b *budget) setWanting(node string, on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := -1
	if on {
		d = 1
	}
	if b.wanting[node] += d; b.wanting[node] <= 0 {
		delete(b.wanting, node)
	}
	b.want += d
}

// contended reports whether an idle stream on node should give its slot up: a busy
// polled container waits for a slot that it would free — one on the same node whose
// node budget is full, or any, when the total is what is full.
func (b *budget) contended(node string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.wanting[node] > 0 && b.perNode > 0 && b.open[node] >= b.perNode {
		return true
	}
	if b.want == 0 || b.total == 0 || b.n < b.total {
		return false
	}
	for m, w := range b.wanting {
		if w > 0 && (b.perNode == 0 || b.open[m] < b.perNode || m == node) {
			return true
		}
	}
	return false
}
