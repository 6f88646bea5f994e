package collector

import (
	"log/slog"
	"strings"
	"sync"
	"time"
)

// inotifyError is what a kubelet writes into a follow stream when it cannot create the
// fsnotify watcher that following needs (cri-client ReadLogs): its node is out of inotify
// instances, one of which every follow stream holds (fs.inotify.max_user_instances is 128
// per user on many distributions, shared with everything else root runs).
const inotifyError = "failed to create fsnotify watcher"

// isInotifyExhausted reports whether a kubelet error text says its node is out of inotify
// instances (or of file descriptors for them).
func isInotifyExhausted(text string) bool { return strings.Contains(text, inotifyError) }

// Bounds of how long a node out of inotify instances gets no follow streams. The first
// follow after that is a trial: it ends within a second on a node still out, and then the
// node waits twice as long.
const (
	nodeBackoffMin = 30 * time.Second
	nodeBackoffMax = 5 * time.Minute
	// nodeTrialOK is how long a trial follow must stay open to show that the node has
	// instances again (the kubelet fails right after the lines that exist, when its
	// reader reaches the end of the file).
	nodeTrialOK = 5 * time.Second
	// nodePollInterval is the least time between two polls of one container of an
	// exhausted node: its kubelet is struggling already.
	nodePollInterval = 5 * time.Second
)

// nodes tracks the nodes whose kubelet cannot follow logs, so that their containers are
// polled rather than reconnected in a loop: a reconnect per container and second through
// the API server would break `kubectl logs -f` for everyone on that node. Safe for
// concurrent use by the streams.
type nodes struct {
	logger *slog.Logger
	now    func() time.Time
	onSet  func(exhausted int) // told the number of exhausted nodes after each change

	mu sync.Mutex
	m  map[string]*nodeState
}

type nodeState struct {
	until   time.Time     // no follow streams before this
	backoff time.Duration // the next period out, should a trial fail
	trial   bool          // a trial follow is out; the others keep polling
}

func newNodes(logger *slog.Logger, now func() time.Time, onSet func(int)) *nodes {
	return &nodes{logger: logger, now: now, onSet: onSet, m: map[string]*nodeState{}}
}

// mayFollow reports whether a container of node may open a follow stream now. On a node out
// of inotify instances it is false until the period out has passed; then one caller is
// granted a trial (trial true) and the others keep polling until it has shown the node
// recovered.
func (n *nodes) mayFollow(node string) (ok, trial bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.m[node]
	switch {
	case st == nil:
		return true, false
	case st.trial || n.now().Before(st.until):
		return false, false
	default:
		st.trial = true
		return true, true
	}
}

// out reports whether node is out of inotify instances, as far as is known; unlike
// mayFollow it grants no trial.
func (n *nodes) out(node string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[node] != nil
}

// exhausted records that a follow on node failed for want of inotify instances.
func (n *nodes) exhausted(node string) {
	n.mu.Lock()
	st := n.m[node]
	first := st == nil
	if first {
		st = &nodeState{backoff: nodeBackoffMin}
		n.m[node] = st
	}
	d := st.backoff
	if st.trial {
		// A trial failed: the node is still out; wait longer before the next one.
		st.backoff = min(2*st.backoff, nodeBackoffMax)
		d = st.backoff
	}
	st.trial = false
	st.until = n.now().Add(d)
	count := len(n.m)
	n.mu.Unlock()
	if first {
		n.logger.Warn("node is out of inotify instances: its kubelet cannot follow logs; polling its containers until it recovers (raise fs.inotify.max_user_instances on the node)",
			"node", node, "retry_in", d)
		n.onSet(count)
	}
}

// trialEnded reports how a trial follow on node ended: ok if it stayed open long enough
// to show the node recovered, otherwise it is given back for another container to try.
func (n *nodes) trialEnded(node string, ok bool) {
	n.mu.Lock()
	st := n.m[node]
	if st == nil {
		n.mu.Unlock()
		return
	}
	if !ok {
		st.trial = false
		n.mu.Unlock()
		return
	}
	delete(n.m, node)
	count := len(n.m)
	n.mu.Unlock()
	n.logger.Info("node can follow logs again", "node", node)
	n.onSet(count)
}
