package collector

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// maxLineBytes bounds how much of one line is held in memory while reading. The sink splits
// long lines further; this only keeps a runaway line from exhausting memory.
const maxLineBytes = 64 << 20

var (
	// errNoPrevious: previous=true found no terminated instance.
	errNoPrevious = errors.New("no previous instance")
	// errTornLine: a follow stream ended in the middle of a line.
	errTornLine = errors.New("stream ended in the middle of a line")
	// errShortReplay: a resumed stream ended before the lines already written were replayed.
	errShortReplay = errors.New("resumed stream ended before reaching the last line written")
	// errBodyError: the kubelet wrote an error text into the stream after answering 200.
	errBodyError = errors.New("kubelet error inside the log stream")
	// errInstanceReplaced: a resumed stream served lines of a newer instance than the
	// cursor's (the container restarted while the pod watch was blind or late).
	errInstanceReplaced = errors.New("the log stream served a newer instance of the container")
)

// reasonFor names why a read ended, for kubelogd_reconnects_total.
func reasonFor(err error) string {
	var status apierrors.APIStatus
	switch {
	case err == nil:
		return reasonEOF
	case errors.Is(err, errStalled), errors.Is(err, errClockStep):
		return reasonStall
	case errors.Is(err, errLifetime):
		return reasonLifetime
	case errors.Is(err, errTornLine):
		return reasonTornLine
	case errors.Is(err, errShortReplay), errors.Is(err, errInstanceReplaced):
		return reasonShortReplay
	case errors.Is(err, errBodyError):
		return reasonBodyError
	case apierrors.IsForbidden(err):
		return reasonForbidden
	case errors.As(err, &status):
		return reasonHTTPError
	default:
		return reasonAPIServer
	}
}

// readMode is what a request for an instance's log is for.
type readMode int

const (
	// readFollow follows the running instance.
	readFollow readMode = iota
	// readToEnd reads what is left of an instance that has ended: where the body ends,
	// the instance's log ends.
	readToEnd
	// readPoll reads what the kubelet has of a running instance now, without follow (its
	// node cannot follow, or the container is quiet): the body's end says nothing about the
	// instance, a last line without newline is still being written, and a replay that
	// falls short is not final.
	readPoll
)

// readInstance makes one request for the cursor's instance and writes what it returns,
// then backs off as the outcome warrants. It reports whether the request was answered, so
// the caller can judge the instance's state afresh.
func (s *stream) readInstance(ctx context.Context, p informer.Pod, ct *informer.Container, mode readMode, previous bool) bool {
	progress, err := s.readOnce(ctx, mode, previous)
	if progress {
		s.progress()
	}
	if ctx.Err() == nil {
		s.retry = reasonFor(err)
		if s.answered && mode != readPoll {
			// Only a request answered with a body says how the instance's log ended; a
			// refused one (a 404 for a pod deleted meanwhile) says nothing about it, nor
			// does a poll.
			s.ended = s.retry
		}
	}
	cur := s.file.Cursor()
	switch {
	case ctx.Err() != nil:
		return false
	case err == nil && mode == readToEnd:
		// A read without follow returns everything up to the end of the instance's log.
		cur.Done = true
		s.flush(ctx)
		return true
	case err == nil && mode == readPoll:
		// Not a reconnect: the next request, poll or follow, is no retry of this one.
		s.retry = ""
		s.quiet = nil
		s.flush(ctx)
		return true
	case errors.Is(err, errBodyError) && isInotifyExhausted(err.Error()):
		// Lines up to the error were written. The node cannot follow: its containers are
		// polled until it can (see nodes), rather than reconnected in a loop.
		s.sm.m.kubeletErrors.WithLabelValues(kubeletErrInotify).Inc()
		s.c.nodes.exhausted(p.Node)
		s.flush(ctx)
		return true
	case err == nil:
		// The kubelet ended a follow stream: the container stopped, the stream was cut (a
		// dying kubelet looks the same), or the log rotated. The pod status decides, so
		// loop; back off only if nothing came, so a stream that keeps ending is no hot loop.
		if !progress {
			s.sleep(ctx)
		}
		return true
	case errors.Is(err, errNoPrevious):
		s.gap(gapPrevious, fmt.Sprintf("the rest of the log of instance %s (restartCount %d) is no longer available", shortID(cur.ContainerID), cur.RestartCount))
		cur.Done = true
		return true
	case errors.Is(err, errLifetime):
		s.logger.Debug("reopening stream at its maximum lifetime")
		return true
	case errors.Is(err, errInstanceReplaced):
		// refreshPod has put the new instance into the stream's state: the loop reads the
		// old one's remainder with previous=true, then the new one from its start.
		s.logger.Info("container restarted before the pod watch said so; reading the previous instance first")
		return true
	case errors.Is(err, errShortReplay):
		// Not verified yet: read again after the backoff. Where the instance was in
		// doubt, readOnce has fetched the pod already.
		s.logger.Debug("replay not verified; reading again", "err", err)
	case errors.Is(err, errStalled):
		s.logger.Warn("log stream stalled: the kubelet has lines it did not deliver; reconnecting")
	case errors.Is(err, errClockStep):
		// Resume by content from now on (sink.Cursor.ByContent), at once.
		s.logger.Warn("the kubelet holds lines stamped before the resume point, hidden from the stream (the node's clock stepped back?); resuming by content")
		cur.Unordered = true
		return true
	case errors.Is(err, errBodyError):
		s.sm.m.kubeletErrors.WithLabelValues(kubeletErrOther).Inc()
		s.logger.Info("log stream failed, will retry", "err", err)
	case apierrors.IsBadRequest(err) && strings.Contains(err.Error(), "waiting to start"):
		s.logger.Debug("container waiting to start", "err", err)
	case apierrors.IsForbidden(err):
		s.logger.Error("permission denied reading container log (needs get on pods/log)", "err", err)
		s.c.forbidden.Store(&forbiddenAt{msg: err.Error(), at: s.c.cfg.Now()})
	default:
		s.logger.Info("log stream failed, will retry", "err", err)
	}
	s.sleep(ctx)
	return false
}

// readOnce opens one log request and writes its lines until it ends. When the cursor has
// written lines of this instance already, the request resumes a margin before them and the
// lines it replays are skipped by position and checked against the last line written.
func (s *stream) readOnce(ctx context.Context, mode readMode, previous bool) (progress bool, err error) {
	cur := s.file.Cursor()
	follow := mode == readFollow
	opts := &corev1.PodLogOptions{Container: s.container, Follow: follow, Previous: previous, Timestamps: true}
	since, skip, resuming := cur.Resume()
	byContent := resuming && cur.ByContent()
	switch {
	case byContent && !cur.NotBefore.IsZero():
		t := metav1.NewTime(cur.NotBefore)
		opts.SinceTime = &t
	case byContent:
		// The whole current file: no second is safe to resume from (see Cursor.ByContent).
	case resuming:
		t := metav1.NewTime(since)
		opts.SinceTime = &t
	case !cur.NotBefore.IsZero():
		t := metav1.NewTime(cur.NotBefore)
		opts.SinceTime = &t
	case s.c.cfg.Since > 0:
		// Nothing of this instance was written yet: --since bounds how far back to go.
		// sinceTime is whole seconds on the wire, so the bound is whole seconds here too,
		// and the cursor keeps it so that a resume never reaches further back.
		cur.NotBefore = s.c.cfg.Now().Add(-s.c.cfg.Since).Truncate(time.Second)
		t := metav1.NewTime(cur.NotBefore)
		opts.SinceTime = &t
	}
	if mode == readPoll {
		s.sm.m.polls.Inc()
	} else if s.retry != "" && (follow || s.retry != reasonEOF) {
		// The same instance again: a reconnect, unless a follow that ended with its
		// container is now only being checked to its end.
		s.sm.m.reconnects.WithLabelValues(s.retry).Inc()
	}
	s.retry = ""
	s.answered = false
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	body, err := s.c.pods.Pods(s.ns).GetLogs(s.pod, opts).Stream(ctx)
	if err != nil {
		if previous && apierrors.IsBadRequest(err) && strings.Contains(err.Error(), "previous terminated container") {
			return false, errNoPrevious
		}
		return false, fmt.Errorf("opening log stream: %w", err)
	}
	defer body.Close()
	s.everRead = true
	s.answered = true
	if mode == readPoll {
		s.setState(statePolling)
	} else {
		s.setState(stateStreaming)
		s.sm.m.opened.Inc()
	}
	s.sm.m.streamsOpen.Inc()
	defer s.sm.m.streamsOpen.Dec()
	wd := s.startWatchdog(ctx, cancel, follow, previous)
	defer wd.stop()
	if follow && !previous {
		s.reading.Store(&openRead{containerID: cur.ContainerID, wd: wd})
		defer s.reading.Store(nil)
		// The state may have changed between the decision to follow and now.
		p := s.snapshot()
		if ct := p.Container(s.container); ct == nil || ct.ContainerID != cur.ContainerID || !ct.Running {
			wd.instanceEnded(s.c.cfg.Now())
		}
	}
	defer func() {
		// A stream the watchdog cancelled ends in a read error; report why instead.
		if cause := context.Cause(ctx); err != nil && (errors.Is(cause, errStalled) || errors.Is(cause, errLifetime) || errors.Is(cause, errShortReplay) || errors.Is(cause, errClockStep)) {
			err = cause
		}
	}()

	var sk *skipper
	switch {
	case byContent:
		sk = newContentSkipper(cur)
		wd.startReplay()
	case resuming && skip > 0:
		sk = newSkipper(cur, skip)
		wd.startReplay()
	}
	// A small buffer, and none while idle: thousands of streams are idle for hours (a
	// 64 KiB buffer was 73% of the heap at 2,000 idle streams, a 4 KiB one still 30%).
	// Longer lines are gathered in long.
	r := newLineReader(&countingReader{r: body, w: wd, now: s.c.cfg.Now})
	defer r.release()
	var long longLine // a line longer than the reader's buffer (see longLine)
	// A stream read from a sinceTime may begin with the rest of a line whose first CRI
	// record is stamped before it: ReadLogs skips that record but writes the next ones of
	// the line without a timestamp (see tailOfSkippedLine). Not only at its start:
	// timestamps are not monotonic (stdout and stderr, a partial line's records stamped
	// as read), so such a rest may follow lines stamped at or after sinceTime; the kubelet
	// then writes it in the middle of the body, and failing the stream on it would fail
	// every resume from the same second, for good.
	sinced := opts.SinceTime != nil
	for {
		line, rerr := r.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			wrote, err := s.chunk(ctx, &long, line, sinced, sk != nil)
			progress = progress || wrote
			if err != nil {
				return progress, err
			}
			continue
		}
		var cut int64 // bytes of a held long line dropped beyond maxLineBytes
		var hash uint64
		if long.active {
			complete := len(line) > 0 && line[len(line)-1] == '\n'
			if complete {
				line = line[:len(line)-1]
			}
			cut, hash = long.cut, long.hash
			held, wrote, err := s.endLong(ctx, &long, line, complete, mode)
			progress = progress || wrote
			if err != nil {
				return progress, err
			}
			line = held
			if line != nil && complete {
				line = append(line, '\n')
			}
			if wrote {
				s.flush(ctx)
				s.publish(wd)
			}
		}
		if len(line) > 0 && sinced {
			if tailOfSkippedLine(line) {
				// The line's first part is stamped before sinceTime, and a resume starts
				// MarginSec before the newest line written, so the line was written already
				// (and is not among the lines counted for the replay); read from --since, it
				// is older than what is collected. Either way it is not written now.
				s.logger.Debug("skipping the rest of a line begun before the stream's sinceTime", "bytes", len(line))
				line = nil
			}
		}
		if len(line) > 0 && mode == readPoll && line[len(line)-1] != '\n' {
			// The last line of a poll's body without newline is still being written (or
			// the body was cut in it): the next poll reads it whole.
			line = nil
		}
		if len(line) > 0 {
			complete := line[len(line)-1] == '\n'
			if complete {
				line = line[:len(line)-1]
			}
			ts, raw, text, ok := parseLine(line)
			if !ok {
				return progress, unparsed(line, complete)
			}
			if !complete {
				// The stream ended mid-line. Following, the line is read again on resume. At
				// the end of a finished instance it may be a last line without newline:
				// write it once a second read ends with the same line.
				if follow || !s.confirmFragment(ts, text) {
					return progress, errTornLine
				}
			}
			if sk != nil {
				h := heldLine{ts: ts, raw: bytes.Clone(raw), text: bytes.Clone(text), hash: hash, cut: cut}
				if cut == 0 {
					h.hash = sink.HashLine(text)
				}
				held, marker := sk.offerHeld(h)
				if marker != "" {
					// The watchdog must not cut the stream while the pod is fetched.
					wd.replaying.Store(false)
					if err := s.checkReplayed(held, previous); err != nil {
						return progress, err
					}
				}
				if err := s.release(ctx, held, marker, &progress); err != nil {
					return progress, err
				}
				if sk.done {
					s.quiet = nil
					s.sm.m.skipped.Add(float64(sk.skipped))
					wd.replaying.Store(false)
					sk = nil
				}
			} else {
				if err := s.write(ctx, ts, raw, text); err != nil {
					return progress, err
				}
				progress = true
			}
			if r.Buffered() == 0 || s.file.FlushDue(s.c.cfg.Now()) {
				// Nothing more is waiting: make what was read visible before blocking.
				s.flush(ctx)
				s.publish(wd)
			}
		}
		if rerr == nil {
			continue
		}
		// The watchdog ends a follow whose replay went quiet before it was verified.
		replayCut := rerr != io.EOF && sk != nil && errors.Is(context.Cause(ctx), errShortReplay)
		if rerr != io.EOF && !replayCut {
			return progress, rerr
		}
		if sk != nil {
			// A follow's replay that ends short of the last line written proves nothing:
			// the stream may have been cut, or the kubelet paused (busy, or slow to find
			// sinceTime). It is read again; only what the lines themselves prove settles
			// it (see skipper). A read to the end of an ended instance has seen all the
			// kubelet has; so has a poll that found what the replay before it found.
			final := mode == readToEnd || mode == readPoll && s.quiet.same(sk, cur)
			held, marker, ok := sk.end(!final)
			if !ok {
				s.quiet = nil
				if replayCut || mode == readPoll {
					// The kubelet served these and then nothing: all it has, unless it was
					// merely slow. A poll, which waits for the kubelet however slow it is,
					// settles it if it finds the same (see readRunning).
					s.quiet = sigOf(sk, cur)
				}
				// The kubelet serves the container's current instance: if it restarted
				// and the informer has not said so yet (a slow or broken watch), fresh
				// status tells the loop to read the previous instance. Not the request's
				// context: the watchdog may have cancelled it.
				_ = s.refreshPod(s.ctx)
				return progress, errShortReplay
			}
			s.quiet = nil
			if marker != "" {
				if err := s.checkReplayed(held, previous); err != nil {
					return progress, err
				}
			}
			s.sm.m.skipped.Add(float64(sk.skipped))
			if (replayCut || mode == readPoll) && sk.found != nil {
				// The stream was quiet for replayIdle after the kubelet replayed fewer lines
				// than were written from the window, the last line written among them: it no
				// longer has the others (it rotated its file). Count the window as it has it,
				// so that the next resume's replay is verified by its count rather than cut
				// again after replayIdle, over and over while the container stays quiet.
				cur.Rebase(since, sk.found)
			}
			if err := s.release(ctx, held, marker, &progress); err != nil {
				return progress, err
			}
		}
		s.flush(ctx)
		if replayCut {
			return progress, errShortReplay
		}
		return progress, nil
	}
}

// errOtherPod: the pod of the stream's name is not the stream's pod UID any more.
var errOtherPod = errors.New("the pod of that name has another UID")

// refreshPod replaces the stream's pod state with the pod as the API server has it now.
// It fails if the pod cannot be fetched or is another pod of the same name (the informer
// will tell about that one).
func (s *stream) refreshPod(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.c.cfg.ProbeTimeout)
	defer cancel()
	pod, err := s.c.pods.Pods(s.ns).Get(ctx, s.pod, metav1.GetOptions{})
	if err != nil {
		s.logger.Debug("cannot refresh pod status", "err", err)
		return err
	}
	if pod.UID != s.snapshot().UID {
		return fmt.Errorf("%w (%s)", errOtherPod, pod.UID)
	}
	s.update(informer.FromPod(pod))
	return nil
}

// checkInstance is asked before a replay that does not contain the last line written is
// settled with a gap marker. A request without previous=true is served from the
// container's current instance of the pod of that name: if the container restarted, or
// the pod was recreated, and the informer has not said so yet (a blind or lagging watch),
// the replay is another instance's log, not a rotated one. The pod as the API server has
// it now decides; held are the lines the replay would release. It returns nil when the
// replay is the cursor's instance, errInstanceReplaced when the fetched status names a
// newer instance, and errShortReplay when it cannot tell (the fetch failed, the pod of
// that name is another one or gone, or the status still names the cursor's instance
// although it has exited before the held lines were logged): the lines are not settled
// and the stream is read again after a backoff.
func (s *stream) checkInstance(held []heldLine) error {
	// Not the request's context: the watchdog may be cancelling the request right now.
	if err := s.refreshPod(s.ctx); err != nil {
		s.logger.Info("cannot check the pod before settling a replay; retrying", "err", err)
		return errShortReplay
	}
	latest := s.snapshot()
	ct := latest.Container(s.container)
	cur := s.file.Cursor()
	switch {
	case ct == nil || !ct.Started():
		return errShortReplay
	case ct.ContainerID != cur.ContainerID:
		return errInstanceReplaced
	case ct.Terminated != nil && len(held) > 0 && !ct.Terminated.FinishedAt.IsZero() &&
		held[0].ts.After(ct.Terminated.FinishedAt.Add(time.Second)):
		// The kubelet already serves a newer instance that its status report to the API
		// server does not show yet.
		return errShortReplay
	}
	return nil
}

// checkReplayed asks the API server, before a replay without the last line written is
// settled with a gap marker, whether the instance the kubelet served is the cursor's.
func (s *stream) checkReplayed(held []heldLine, previous bool) error {
	if previous {
		return s.checkPrevious()
	}
	return s.checkInstance(held)
}

// checkPrevious is checkInstance for a previous=true read, which the kubelet serves from
// the last instance that terminated: if the container restarted again and the informer
// has not said so yet, that is a newer instance than the cursor's, and the cursor's is no
// longer served at all (the loop writes a previous_gone gap for it, not a rotated one). It
// returns nil when the status names the cursor's instance as the last terminated,
// errInstanceReplaced when it names another, and errShortReplay when the pod cannot be
// fetched.
func (s *stream) checkPrevious() error {
	if err := s.refreshPod(s.ctx); err != nil {
		s.logger.Info("cannot check the pod before settling a replay; retrying", "err", err)
		return errShortReplay
	}
	latest := s.snapshot()
	ct := latest.Container(s.container)
	if ct == nil || ct.LastTerminated == nil || ct.LastTerminated.ContainerID != s.file.Cursor().ContainerID {
		return errInstanceReplaced
	}
	return nil
}

// release writes the lines a skipper let go of, after its gap marker if it has one.
func (s *stream) release(ctx context.Context, held []heldLine, marker string, progress *bool) error {
	if marker != "" {
		s.logger.Warn("gap in collected log", "reason", gapRotated, "detail", strings.TrimPrefix(marker, "gap: "))
		s.sm.m.gaps.WithLabelValues(gapRotated).Inc()
		s.marker(s.c.cfg.Now(), marker)
	}
	for _, h := range held {
		if err := s.write(ctx, h.ts, h.raw, h.text); err != nil {
			return err
		}
		*progress = true
		if h.cut > 0 {
			s.gap(gapLineTooLong, fmt.Sprintf("the line above, stamped %s, is %d bytes long: its last %d bytes are not written (a replay holds at most %d bytes of a line while it is verified)",
				h.ts.UTC().Format(timeLayout), int64(len(h.text))+h.cut, h.cut, maxLineBytes))
		}
	}
	return nil
}

// confirmFragment reports whether an unterminated last line was seen at the end of the
// previous read too, so it is the instance's real last line rather than a torn one.
func (s *stream) confirmFragment(ts time.Time, text []byte) bool {
	return s.confirmHash(ts, sink.HashLine(text))
}

// confirmHash is confirmFragment for a line known by its hash.
func (s *stream) confirmHash(ts time.Time, h uint64) bool {
	if f := s.fragment; f != nil && f.ts.Equal(ts) && f.hash == h {
		s.fragment = nil
		return true
	}
	s.fragment = &pendingLine{ts: ts, hash: h}
	return false
}

// write hands one application line to the sink, which also advances the cursor. While the
// cursor holds a partial line (the stream broke inside a long line written in parts), the
// first line written is that line again: only its rest is written, once its first bytes
// prove to be the ones written; any other line means the rest is gone (a gap).
func (s *stream) write(ctx context.Context, ts time.Time, raw, text []byte) error {
	if p := s.file.Cursor().Partial; p != nil {
		if ts.Equal(p.Time) && int64(len(text)) >= p.Bytes && sink.HashLine(text[:p.Bytes]) == p.Hash {
			if err := s.accept(ctx, sink.Record{Time: ts, RawTime: raw, Line: text[p.Bytes:]}); err != nil {
				return err
			}
			s.sm.line(len(text), ts, s.c.cfg.Now())
			return nil
		}
		s.partialGone(p, "")
	}
	if err := s.accept(ctx, sink.Record{Time: ts, RawTime: raw, Line: text}); err != nil {
		return err
	}
	s.sm.line(len(text), ts, s.c.cfg.Now())
	return nil
}

// accept writes rec, waiting while the disk refuses data. A Write that fails did not take
// the record (and the cursor did not count it), so it is offered again once what is
// buffered could be flushed: nothing is lost, nothing is written twice.
func (s *stream) accept(ctx context.Context, rec sink.Record) error {
	for {
		err := s.file.Write(rec)
		if err == nil {
			return nil
		}
		s.flush(ctx) // returns once the buffer is on disk, or ctx is done
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !s.sleep(ctx) {
			return ctx.Err()
		}
	}
}

// parseLine splits a line of a timestamps=true stream into its timestamp and text.
func parseLine(line []byte) (ts time.Time, raw, text []byte, ok bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 20 || sp > 40 {
		return time.Time{}, nil, nil, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:sp]))
	if err != nil {
		return time.Time{}, nil, nil, false
	}
	return ts, line[:sp], line[sp+1:], true
}

// tailOfSkippedLine reports whether line, of a stream read from a sinceTime (its first
// line, or one after lines stamped later), is the untimestamped rest of a line split into
// CRI partial records whose first record is stamped before sinceTime: ReadLogs skips
// records older than sinceTime but tracks "at the start of a line" across them, so the
// line's next record comes out without a timestamp (cri-client pkg/logs ReadLogs, writer.write(msg, isNewLine)). Such a rest
// ends with a newline, which a kubelet error text written into the body never has.
func tailOfSkippedLine(line []byte) bool {
	if line[len(line)-1] != '\n' {
		return false
	}
	_, _, _, ok := parseLine(line[:len(line)-1])
	return !ok
}

// unparsed says why a line without a timestamp ends the stream. A stream cut inside the
// timestamp of its last line is a torn line, read again on resume. Anything else is not a
// line of the container: after the 200 the kubelet reports failures inside the body,
// without timestamp or newline.
func unparsed(line []byte, complete bool) error {
	if !complete && timestampPrefix(line) {
		return errTornLine
	}
	return fmt.Errorf("%w: %q", errBodyError, truncate(line, 200))
}

// timestampPrefix reports whether b can be the start of an RFC 3339 timestamp.
func timestampPrefix(b []byte) bool {
	if len(b) == 0 || len(b) > len(timeLayout) {
		return false
	}
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c == '-' || c == ':' || c == 'T' || c == '.' || c == 'Z' || c == '+') {
			return false
		}
	}
	return true
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}

// replaySig identifies what an unverified replay held when it ended: so many lines, the
// last of them this one, replayed for the cursor at this many lines written.
type replaySig struct {
	n, written int64
	last       pendingLine
}

func sigOf(k *skipper, cur *sink.Cursor) *replaySig {
	sig := &replaySig{n: int64(len(k.held)), written: cur.Lines}
	if len(k.held) > 0 {
		h := k.held[len(k.held)-1]
		sig.last = pendingLine{ts: h.ts, hash: h.hash}
	}
	return sig
}

// same reports whether k holds what the replay of sig held, for the same cursor.
func (sig *replaySig) same(k *skipper, cur *sink.Cursor) bool {
	if sig == nil {
		return false
	}
	now := sigOf(k, cur)
	return *now == *sig
}

// pendingLine identifies a line by timestamp and hash.
type pendingLine struct {
	ts   time.Time
	hash uint64
}

// heldLine is a replayed line kept until the replay is verified.
type heldLine struct {
	ts        time.Time
	raw, text []byte
	hash      uint64 // of the whole line
	// cut is how many bytes of a line longer than maxLineBytes are not in text: a replay
	// holds no more of a line (see longLine).
	cut int64
}

// skipper consumes the lines a resumed stream replays. It holds them until it has seen as
// many as were written from the replay window, then checks that the last one is the line
// written last. If the count is off but the last line written is among them, what follows
// it is new; if it is not there at all (the kubelet rotated it away), every held line is
// new and a marker says that lines may be missing before them. Nothing is dropped without
// proof that it was written already.
type skipper struct {
	remaining int64
	lastTime  time.Time
	lastHash  uint64
	// byContent: the replay is the whole current file (see newContentSkipper).
	byContent bool
	// beyond is a time no written line's timestamp came near: a replayed line stamped at or
	// after it follows every written line in the kubelet's file (out-of-order timestamps
	// differ by less than the cursor's margin). Seen before the last line written, it
	// proves that line is gone. Zero: no such proof is taken.
	beyond  time.Time
	held    []heldLine
	done    bool
	skipped int64 // replayed lines found to be written already
	// found are the timestamps of the replayed lines up to the last line written, when end
	// found it before as many lines as were written from the window had come.
	found []time.Time
}

// newSkipper holds the first skip lines of a stream resumed from cur.
func newSkipper(cur *sink.Cursor, skip int64) *skipper {
	return &skipper{
		remaining: skip, lastTime: cur.LastTime, lastHash: cur.LastHash,
		beyond: time.Unix(cur.MaxSec+1+max(cur.MarginSec, 1), 0),
	}
}

// newContentSkipper holds the lines of a stream resumed by content (Cursor.ByContent) until
// the last line written comes: those up to it are skipped, the rest are new. No count of
// lines or timestamp proves anything here, since timestamps went back: only the last line
// written itself, or the end of a read that has all the kubelet has.
func newContentSkipper(cur *sink.Cursor) *skipper {
	return &skipper{remaining: math.MaxInt64, lastTime: cur.LastTime, lastHash: cur.LastHash, byContent: true}
}

// offer takes the next replayed line. The replay is settled, and held lines released,
// only on proof from the lines themselves: as many lines as were written from the window
// have come, or one stamped beyond every written line has. Timing proves nothing (a stream
// cut, a kubelet that pauses), so the end of a follow never settles it (see end).
func (k *skipper) offer(ts time.Time, raw, text []byte) (release []heldLine, marker string) {
	return k.offerHeld(heldLine{ts: ts, raw: bytes.Clone(raw), text: bytes.Clone(text), hash: sink.HashLine(text)})
}

// offerHeld is offer for a line the caller made a heldLine of.
func (k *skipper) offerHeld(h heldLine) (release []heldLine, marker string) {
	ts := h.ts
	if k.byContent {
		if h.ts.Equal(k.lastTime) && h.hash == k.lastHash {
			k.done, k.skipped = true, int64(len(k.held)+1)
			k.held = nil
			return nil, ""
		}
		k.held = append(k.held, h)
		return nil, ""
	}
	k.held = append(k.held, h)
	k.remaining--
	if k.remaining > 0 {
		if k.beyond.IsZero() || ts.Before(k.beyond) {
			return nil, ""
		}
		// The kubelet's file has moved past where the last line written would be.
		return k.resync(true)
	}
	k.done = true
	if last := k.held[len(k.held)-1]; last.ts.Equal(k.lastTime) && last.hash == k.lastHash {
		k.skipped = int64(len(k.held))
		k.held = nil
		return nil, ""
	}
	return k.resync(true)
}

// end is called when the stream ends before the replay was verified. Following, a short
// replay may just be a cut: ok is false and the caller retries. Without follow it is final.
func (k *skipper) end(follow bool) (release []heldLine, marker string, ok bool) {
	if i := k.find(); i >= 0 {
		rel := k.held[i+1:]
		k.found = make([]time.Time, i+1)
		for j, h := range k.held[:i+1] {
			k.found[j] = h.ts
		}
		k.held, k.done, k.skipped = nil, true, int64(i+1)
		return rel, "", true
	}
	if follow {
		return nil, "", false
	}
	rel, m := k.resync(false)
	return rel, m, true
}

// find returns the index of the last held line that is the line written last, or -1.
func (k *skipper) find() int { return k.findIn(k.held) }

func (k *skipper) resync(counted bool) ([]heldLine, string) {
	k.done = true
	held := k.held
	k.held = nil
	if i := k.findIn(held); i >= 0 {
		k.skipped = int64(i + 1)
		return held[i+1:], ""
	}
	why := "the kubelet no longer has the last line written"
	if counted {
		why = "the replayed log does not contain the last line written"
	}
	// The kubelet serves only the current file of a rotated log, so how many lines went
	// with the rotated one cannot be known through the API; their time span can.
	return held, "gap: " + why + " (its log was probably rotated); " + k.missingSpan(held) + " may be missing"
}

// missingSpan names the time span of the lines that may be missing before held: after the
// last line written, and before the first held line stamped later than it. Held lines
// stamped earlier (stdout and stderr interleave) do not bound it: the span never ends
// before it starts.
func (k *skipper) missingSpan(held []heldLine) string {
	span := "lines logged after " + k.lastTime.UTC().Format(timeLayout)
	for _, h := range held {
		if h.ts.After(k.lastTime) {
			return span + " and before " + h.ts.UTC().Format(timeLayout)
		}
	}
	return span
}

func (k *skipper) findIn(held []heldLine) int {
	for i := len(held) - 1; i >= 0; i-- {
		if h := held[i]; h.ts.Equal(k.lastTime) && h.hash == k.lastHash {
			return i
		}
	}
	return -1
}
