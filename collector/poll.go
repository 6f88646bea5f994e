package collector

import (
	"context"
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
		t.poll(ctx, p, ct)
		return
	}
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

// poll reads what the kubelet has of the running instance from the cursor, then waits
// before the next read: nodePollInterval after lines came, twice as long after each poll
// that found none, up to PollMaxInterval. A change of the container's instance or state
// ends the wait.
func (t *target) poll(ctx context.Context, p informer.Pod, ct *informer.Container) {
	before := t.file.Cursor().Lines
	t.readInstance(ctx, p, ct, readPoll, false)
	if ctx.Err() != nil {
		return
	}
	switch {
	case t.file.Cursor().Lines != before || t.pollEvery == 0:
		t.pollEvery = nodePollInterval
	default:
		t.pollEvery = min(2*t.pollEvery, max(t.c.cfg.PollMaxInterval, nodePollInterval))
	}
	t.setState(statePolling)
	t.waitPoll(ctx, ct, t.pollEvery)
}

// waitPoll waits d, or less if the pod is deleted or the container's instance changes or
// stops running; other changes of the pod do not cut it short, so that a container is
// never polled more often than its interval says.
func (t *target) waitPoll(ctx context.Context, ct *informer.Container, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
			return
		case <-t.wake:
			p := t.snapshot()
			now := p.Container(t.container)
			if p.Deleted || p.Excluded || now == nil || now.ContainerID != ct.ContainerID || !now.Running {
				t.changed = true // for the loop, which acts on the change
				return
			}
		}
	}
}
