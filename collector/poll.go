package collector

import (
	"context"
	"time"

	"github.com/kubelogd/kubelogd/informer"
)

// readRunning reads a running instance: it follows it when its node can follow, and polls
// it when the node cannot (see nodes).
func (s *stream) readRunning(ctx context.Context, p informer.Pod, ct *informer.Container) {
	if s.quiet != nil {
		// A follow's replay went quiet before it was verified: the kubelet may have sent
		// all it has (it rotated the last line written away, and the container is quiet),
		// or it paused. A poll reads to the end of what it has, however slow it is: the
		// same lines again settle the replay, more of them verify it.
		s.readInstance(ctx, p, ct, readPoll, false)
		return
	}
	ok, trial := s.c.nodes.mayFollow(p.Node)
	if !ok {
		s.poll(ctx, p, ct)
		return
	}
	if !trial {
		s.pollEvery = 0
		s.readInstance(ctx, p, ct, readFollow, false)
		return
	}
	// The first follow on a node that was out of inotify instances: if it stays open, the
	// node has recovered and its other containers may follow again.
	t := time.AfterFunc(nodeTrialOK, func() { s.c.nodes.trialEnded(p.Node, true) })
	s.readInstance(ctx, p, ct, readFollow, false)
	if t.Stop() {
		s.c.nodes.trialEnded(p.Node, false)
	}
}

// poll reads what the kubelet has of the running instance from the cursor, then waits
// before the next read: nodePollInterval after lines came, twice as long after each poll
// that found none, up to PollMaxInterval. A change of the container's instance or state
// ends the wait.
func (s *stream) poll(ctx context.Context, p informer.Pod, ct *informer.Container) {
	before := s.file.Cursor().Lines
	s.readInstance(ctx, p, ct, readPoll, false)
	if ctx.Err() != nil {
		return
	}
	switch {
	case s.file.Cursor().Lines != before || s.pollEvery == 0:
		s.pollEvery = nodePollInterval
	default:
		s.pollEvery = min(2*s.pollEvery, max(s.c.cfg.PollMaxInterval, nodePollInterval))
	}
	s.setState(statePolling)
	s.waitPoll(ctx, ct, s.pollEvery)
}

// waitPoll waits d, or less if the pod is deleted or the container's instance changes or
// stops running; other changes of the pod do not cut it short, so that a container is
// never polled more often than its interval says.
func (s *stream) waitPoll(ctx context.Context, ct *informer.Container, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			return
		case <-s.wake:
			p := s.snapshot()
			now := p.Container(s.container)
			if p.Deleted || p.Excluded || now == nil || now.ContainerID != ct.ContainerID || !now.Running {
				s.changed = true // for the loop, which acts on the change
				return
			}
		}
	}
}
