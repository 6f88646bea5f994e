package fakekubelet

import (
	"context"
	"io"
	"net/http"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

// stream is one open log response. ReadLogs writes to it from the handler goroutine, its
// only writer; fault hooks reach it through Kubelet.streams and act on it by cancelling its
// context with a cause (read by the handler once ReadLogs returns) or by arming midCut.
type stream struct {
	k       *Kubelet
	w       http.ResponseWriter
	flusher http.Flusher
	ctx     context.Context
	cancel  context.CancelCauseFunc
	follow  bool

	ns, pod, container string

	// midCut makes the next non-empty write send half its bytes and then cut the
	// connection. Guarded by Kubelet.mu.
	midCut bool
	// watching is set once ReadLogs reached the end of the file with its fsnotify watcher
	// in place: from then on it sees rotations. Guarded by Kubelet.mu.
	watching bool
	// stalled holds this stream alone back (StallOpen), whatever the stalls of
	// faults say. Guarded by Kubelet.mu.
	stalled bool
	// script is the stream's ScriptNext, if one was waiting when it opened.
	script *scriptState
}

// streamRuntime is the runtime as one stream's ReadLogs sees it. ReadLogs asks for the
// container's status only at the end of the file and after it set up its fsnotify watcher,
// so that call tells that the stream is watching.
type streamRuntime struct {
	*critest.FakeRuntimeService
	s *stream
}

// ContainerStatus marks the stream as watching and asks the fake runtime.
func (r streamRuntime) ContainerStatus(ctx context.Context, id string, verbose bool) (*runtimeapi.ContainerStatusResponse, error) {
	r.s.k.mu.Lock()
	r.s.watching = true
	r.s.k.mu.Unlock()
	return r.FakeRuntimeService.ContainerStatus(ctx, id, verbose)
}

var _ io.Writer = (*stream)(nil)

// streamEnd is why a stream was ended by the kubelet rather than by ReadLogs.
type streamEnd int

const (
	// endCut aborts the connection, as a kubelet that dies mid-stream.
	endCut streamEnd = iota + 1
	// endFollow ends the body cleanly while the container keeps running.
	endFollow
	// endClosed ends the stream because the kubelet is closing.
	endClosed
)

func (e streamEnd) Error() string {
	switch e {
	case endCut:
		return "fakekubelet: stream cut"
	case endFollow:
		return "fakekubelet: follow ended"
	default:
		return "fakekubelet: kubelet closed"
	}
}

// injectedError ends a stream after writing its text into the body.
type injectedError struct{ text string }

func (e *injectedError) Error() string { return e.text }

// end cancels the stream's ReadLogs with a cause; the first cause wins.
func (s *stream) end(cause error) { s.cancel(cause) }

// matches tells whether t selects this stream.
func (s *stream) matches(t target) bool { return t.matches(s.ns, s.pod, s.container) }

// Write sends one chunk of ReadLogs' output (one whole line, or one part of a split line)
// and flushes it, as the kubelet's flushwriter does, so each line reaches the client at once.
// A stall blocks it; an ended stream fails it, which makes ReadLogs return even while it is
// still working through a backlog.
func (s *stream) Write(p []byte) (int, error) {
	if err := s.k.waitUnstalled(s); err != nil {
		return 0, err
	}
	if s.ctx.Err() != nil {
		return 0, context.Cause(s.ctx)
	}
	s.k.mu.Lock()
	cut, mid := s.midCut && len(p) > 0, true
	s.k.mu.Unlock()
	if !cut && len(p) > 0 {
		var err error
		if cut, mid, err = s.scriptBefore(); err != nil {
			return 0, err
		}
	}
	if n := s.bytesLeft(p); !cut && n < len(p) {
		n, _ = s.w.Write(p[:n])
		s.flush()
		s.end(endCut)
		return n, endCut
	}
	if cut {
		n := 0
		if mid {
			n, _ = s.w.Write(p[:len(p)/2])
			s.flush()
		}
		s.end(endCut)
		return n, endCut
	}
	n, err := s.w.Write(p)
	if err != nil {
		return n, err
	}
	s.scriptAfter(p)
	s.flush()
	return n, nil
}

func (s *stream) flush() {
	if s.flusher != nil {
		s.flusher.Flush()
	}
}

// waitUnstalled blocks while a stall applies to the stream, until it is lifted or the
// stream ends.
func (k *Kubelet) waitUnstalled(s *stream) error {
	for {
		k.mu.Lock()
		stalled := s.stalled || k.faults.stalled(s.ns, s.pod, s.container)
		changed := k.faults.changed
		k.mu.Unlock()
		if !stalled {
			return nil
		}
		select {
		case <-changed:
		case <-s.ctx.Done():
			return context.Cause(s.ctx)
		}
	}
}
