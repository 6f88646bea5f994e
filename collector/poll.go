package collector

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/kubelogd/kubelogd/informer"
)

// readRunning reads a running instance: it follows it when its node can follow, and polls
// it when the node cannot (see nodes).
func (t *target) readRunning(ctx context.Context, p informer.Pod, ct *informer.Container) {
	if t.inst.quiet != nil {
		// A follow's replay went quiet before it was verified: the kubelet may have sent
		// all it has (it rotated the last line written away, and the container is quiet),
		// or it paused. A poll reads to the end of what it has, however slow it is: the
		// same lines again settle the replay, more of them verify it.
		t.readInstance(ctx, p, ct, readPoll, false)
		return
	}
	ok, trial := t.c.nodes.mayFollow(p.Node)
	if !ok {
		t.releaseSlot()
		t.poll(ctx, p, ct)
		return
	}
	if !t.holdSlot(p.Node) {
		// The follow budget is spent (see budget): polled until a slot is free. A trial
		// follow granted on a node that was out of inotify instances is given back for a
		// container that holds a slot.
		if trial {
			t.c.nodes.trialEnded(p.Node, false)
		}
		t.poll(ctx, p, ct)
		return
	}
	if t.closeWait(ctx) {
		// The pod may have changed meanwhile (deleted, recreated): the loop looks again.
		return
	}
	t.readID = ct.ContainerID
	if !trial {
		t.pollEvery = 0
		t.readInstance(ctx, p, ct, readFollow, false)
		return
	}
	// The first follow on a node that was out of inotify instances: if it stays open, the
	// node has recovered and its other containers may follow again.
	probation := time.AfterFunc(nodeTrialOK, func() { t.c.nodes.trialEnded(p.Node, true) })
	t.readInstance(ctx, p, ct, readFollow, false)
	if probation.Stop() {
		t.c.nodes.trialEnded(p.Node, false)
	}
}

// followCloseGrace is how long a follow stream that ended still counts in the budget
// (see budget.closing). The client closes the body at once, but the close reaches the
// kubelet through the API server's proxy some time later: a follow opened on the node
// meanwhile, by this target or by the one its slot goes to, would be one stream (one
// inotify instance) more than the budget there while both are open.
const followCloseGrace = time.Second

// followEnded counts the follow stream that just ended in the budget for
// followCloseGrace more, under the slot the target still holds: readOnce calls it as the
// stream ends, before the outcome is handled — a demotion gives the slot up at once, and
// a follow opened on it by the busy container it goes to must find the closing stream
// counted already. (Counted after the demotion, under no slot, it let the kubelets of the
// 20,000-container bench hold 51 follow streams under a budget of 50.)
func (t *target) followEnded() {
	t.followEnd = t.c.cfg.Now()
	if t.slot != "" {
		t.c.budget.closing(t.slot)
	}
}

// closeWait waits, before the target opens a follow on the slot it holds, for its last
// stream's close when, with it counted, the budget is over (see budget.over); a budget
// with room reopens at once. It reports whether it waited: a change of the pod cuts the
// wait short, and the caller looks at the pod again before it opens anything.
func (t *target) closeWait(ctx context.Context) bool {
	d := t.followEnd.Add(followCloseGrace).Sub(t.c.cfg.Now())
	if d <= 0 || !t.c.budget.over(t.slot) {
		return false
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	case <-t.wake:
		t.changed = true // as in sleep: for waitForChange
	}
	return true
}

// poll reads what the kubelet has of the running instance from the cursor, then waits
// before the next read: the least interval after lines came (pollMinInterval, or
// nodePollInterval on a node out of inotify instances), twice as long after each poll that
// found none, up to PollMaxInterval. Polls share a rate of their own (Config.PollQPS), so
// that stream opens and probes keep their room in the client's: when it cannot poll every
// container within the interval, the interval stretches (kubelogd_poll_interval_seconds
// shows it). A change of the container's instance or state ends the wait.
//
// An instance's first poll does not wait for that rate: it is the read every instance
// gets when kubelogd first sees it running (a streamed one's is its follow), and the
// backlog of thousands of containers found at start — most of them beyond the budget —
// would otherwise take pods ÷ PollQPS seconds to reach the disk. Nor does the next poll
// when the first found nothing: the status says running before the container has
// written, and a new container's first lines would otherwise wait behind every poll
// queued (19.6 s at 5,000 pods created while 4,800 were polled). The client's own rate
// (--kube-api-qps) still bounds both, at two reads per new instance; the poll rate bounds
// the reads the budget adds.
func (t *target) poll(ctx context.Context, p informer.Pod, ct *informer.Container) {
	same := t.readID == ct.ContainerID // the instance was read before: not its first read
	retry := t.retryFirst && same
	first := !same || retry
	if !first {
		// Polled from now on, also while the poll waits for its turn: a demoted stream's
		// first poll can wait a whole poll interval (the 20,000-container bench counted
		// 1,096 targets streaming under a budget of 1,000). A first poll is waiting, as
		// any first read, until its request is answered.
		t.setState(statePolling)
		if err := t.c.pollRate.Load().Wait(ctx); err != nil {
			return
		}
	}
	t.readID, t.retryFirst = ct.ContainerID, false
	now := t.c.cfg.Now()
	if same && !t.lastPoll.IsZero() {
		t.sm.m.pollInterval.Observe(now.Sub(t.lastPoll).Seconds())
	}
	t.lastPoll = now
	before := t.out.Cursor().Lines
	t.readInstance(ctx, p, ct, readPoll, false)
	if ctx.Err() != nil {
		return
	}
	least := pollMinInterval
	if t.c.nodes.out(p.Node) {
		least = nodePollInterval
	}
	cur := t.out.Cursor()
	found := cur.Lines != before
	t.retryFirst = first && !retry && !found
	most := max(time.Duration(t.c.pollMax.Load()), least)
	switch {
	case found && t.pollEvery == 0 && t.c.cfg.Now().Sub(cur.LastTime) > backlogAge:
		// The first poll of the instance found a backlog, not activity: its newest line
		// is old. Expecting the next line soon would bring thousands of containers found
		// at start back at once (see quietFor).
		found = false
		t.pollEvery = quietFor(t.c.cfg.Now().Sub(cur.LastTime), least, most)
	case found || t.pollEvery == 0:
		t.pollEvery = least
	default:
		t.pollEvery = min(2*t.pollEvery, most)
	}
	// A poll that found new lines makes the container a candidate for a stream.
	t.want(p.Node, found && t.c.budget.limited())
	t.setState(statePolling)
	// The wait is parked: run returns, and the target holds no goroutine and no file
	// descriptor until its next poll (see park).
	t.parkFor, t.parkID = t.pollEvery, ct.ContainerID
}

// backlogAge is how old the newest line a first poll finds must be for the poll to count
// as quiet: older than the least interval and some skew between the node's clock and ours.
const backlogAge = 5 * time.Second

// quietFor is the wait before the second poll of an instance whose newest line, found by
// the first, was written idle ago: a quarter of that, within [least, most], spread over
// its upper half. A container quiet for a minute is likely to stay so for a while, and
// the spread keeps the containers found together at start from coming back together; a
// new line still brings the interval back to least.
func quietFor(idle, least, most time.Duration) time.Duration {
	d := min(max(idle/4, least), most)
	return max(d/2+rand.N(d/2+1), least)
}

// pollMinInterval is the least time between two polls of one container the follow budget
// left without a stream.
const pollMinInterval = time.Second

// holdSlot reports whether the target holds a follow slot on node, taking a free one if it
// does not (see budget). A target that gave its slot up waits a stall timeout before it
// takes one again, so that slots do not flap.
func (t *target) holdSlot(node string) bool {
	if t.slot != "" {
		return true
	}
	pool := t.c.budget.pool(node, t.ns, t.pod)
	if t.c.cfg.Now().Before(t.noSlotUntil) || !t.c.budget.acquire(pool) {
		return false
	}
	t.slot = pool
	t.want(node, false)
	if t.pollEvery != 0 && t.c.budget.limited() {
		// Polled for want of a slot (a node that recovered its inotify instances is
		// no promotion).
		t.sm.m.promotions.Inc()
		t.logger.Debug("container promoted from polling to a stream")
	}
	return true
}

// releaseSlot gives the target's follow slot back, if it holds one. Its last stream, if
// it just ended, still counts for followCloseGrace (budget.closing).
func (t *target) releaseSlot() {
	if t.slot != "" {
		t.c.budget.release(t.slot)
		t.slot = ""
	}
}

// demote gives the slot of a stream that stayed idle while a busy polled container waited
// for one (errDemoted): the container is polled from now on, and takes no slot for a stall
// timeout.
func (t *target) demote() {
	t.releaseSlot()
	t.noSlotUntil = t.c.cfg.Now().Add(t.c.cfg.StallTimeout)
	t.sm.m.demotions.Inc()
	t.logger.Debug("idle stream demoted to polling: a busier container waits for its slot")
}

// want records whether the target, polled, would rather stream (see budget.setWanting).
func (t *target) want(node string, on bool) {
	switch {
	case on && t.wantNode == "":
		pool := t.c.budget.pool(node, t.ns, t.pod)
		t.c.budget.setWanting(pool, true)
		t.wantNode = pool
	case !on && t.wantNode != "":
		t.c.budget.setWanting(t.wantNode, false)
		t.wantNode = ""
	}
}

// parking is a target's wait between two polls, parked: no goroutine runs it. A timer,
// the end of the target's context, or a change of the pod that ends the wait (update)
// resumes it, whichever comes first; the others are then stopped.
type parking struct {
	containerID string // the instance polled
	timer       *time.Timer
	stopCtx     func() bool // unregisters the context's AfterFunc
	// run runs the target again in a goroutine of its own; changed says that a change
	// of the pod ended the wait.
	run func(changed bool)
}

// resume stops what else could end the wait and runs the target. Whoever takes the
// parking out of target.parked (under mu) calls it, once.
func (pk *parking) resume(changed bool) {
	pk.timer.Stop()
	pk.stopCtx()
	pk.run(changed)
}

// park makes the target wait parkFor, or less if ctx ends, the pod is deleted or the
// container's instance changes or stops running, and then calls resume in a goroutine of
// its own, which runs the target again. Other changes of the pod do not cut the wait
// short, so that a container is never polled more often than its interval says.
//
// Thousands of containers are polled, and a poll takes a moment every half minute: while
// one waits, it holds no goroutine and no file descriptor (the file is closed, as an idle
// one is, and opened again by the next write), only its state. The caller owns the
// target until park returns, and then no goroutine does until resume is called.
func (t *target) park(ctx context.Context, resume func(changed bool)) {
	d := t.parkFor
	pk := &parking{containerID: t.parkID, run: resume}
	t.parkFor, t.parkID = 0, ""
	if t.file != nil {
		t.file.Rest()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	// A change sent before now is in latest, checked here; the signal is not needed.
	select {
	case <-t.wake:
	default:
	}
	if endsPoll(t.latest, t.container, pk.containerID) {
		go resume(true)
		return
	}
	take := func() {
		t.mu.Lock()
		mine := t.parked == pk
		if mine {
			t.parked = nil
		}
		t.mu.Unlock()
		if mine {
			pk.resume(false)
		}
	}
	t.parked = pk
	pk.timer = time.AfterFunc(d, take)
	pk.stopCtx = context.AfterFunc(ctx, take)
}

// endsPoll reports whether p's state ends the wait for the next poll of the instance
// containerID: the pod is deleted or excluded, or the container is gone, restarted or no
// longer running.
func endsPoll(p informer.Pod, container, containerID string) bool {
	now := p.Container(container)
	return p.Deleted || p.Excluded || now == nil || now.ContainerID != containerID || !now.Running
}
