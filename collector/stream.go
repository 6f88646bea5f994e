package collector

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// stream owns everything about one container of one pod (one pod UID): its file, its
// cursor and, one after the other, the log streams of each of its instances. Only its run
// goroutine touches the file and the cursor.
type stream struct {
	c         *Collector
	ns, pod   string
	container string
	logger    *slog.Logger

	mu     sync.Mutex
	latest informer.Pod
	wake   chan struct{} // capacity 1: a newer state is in latest

	file    *sink.File
	backoff time.Duration
	// everRead is set once a request for the cursor's instance was answered with a body;
	// a pod deleted before that had its log never read.
	everRead bool
	// fragment remembers an unterminated last line seen at the end of a non-follow read;
	// it is written only when a second read ends with it too (see readOnce).
	fragment *pendingLine
	// ended is why the last request for the cursor's instance that was answered with a
	// body ended: whether its log was read to the end.
	ended string
	// answered is set when the last request got a body.
	answered bool
	// changed is set when a sleep was cut short by a change of the pod's state, so that
	// the next waitForChange does not wait for another.
	changed bool
	// retry is why the last request for the cursor's instance ended, answered or not; the
	// next request for it is counted as a reconnect with that reason.
	retry string
	// quiet is what the last unverified replay held when the kubelet sent no more: a poll
	// that finds the same settles the replay (see readRunning).
	quiet *replaySig
	// pollEvery is the wait between polls of the running instance, while its node cannot
	// follow; 0 while it is followed.
	pollEvery time.Duration

	// podInfo is the pod UID whose node and labels the file was given (SetPod).
	podInfo types.UID
	// reading is the follow stream open now, so that a newer pod state can tell its
	// watchdog that the instance it reads was replaced.
	reading atomic.Pointer[openRead]
	// ctx is run's context, for the few helpers (markers) called without one.
	ctx context.Context

	sm *streamMetrics
	// waitingSince is when the stream started waiting for a log stream (UnixNano), 0 while
	// streaming or finished. Read by scrapes.
	waitingSince atomic.Int64
}

func newStream(c *Collector, p informer.Pod, container string) *stream {
	s := &stream{
		c: c, ns: p.Namespace, pod: p.Name, container: container,
		logger: c.logger.With("namespace", p.Namespace, "pod", p.Name, "container", container),
		latest: p, wake: make(chan struct{}, 1),
		sm: c.metrics.forStream(p.Namespace),
	}
	s.setState(stateWaiting)
	return s
}

func (s *stream) update(p informer.Pod) {
	s.mu.Lock()
	p = fresher(s.latest, p, s.container)
	s.latest = p
	s.mu.Unlock()
	if r := s.reading.Load(); r != nil {
		if ct := p.Container(s.container); ct == nil || ct.ContainerID != r.containerID || !ct.Running {
			r.wd.instanceEnded(s.c.cfg.Now())
		}
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// fresher returns p, keeping the container's status from old where p's is older: the
// stream may have fetched the pod itself (refreshPod) while the informer's events lag, and
// a late event must not take a restart back. restartCount only grows within a pod UID.
func fresher(old, p informer.Pod, container string) informer.Pod {
	if old.UID != p.UID {
		return p
	}
	oc, nc := old.Container(container), p.Container(container)
	if oc == nil || nc == nil || nc.RestartCount >= oc.RestartCount {
		return p
	}
	cs := make([]informer.Container, len(p.Containers))
	copy(cs, p.Containers)
	for i := range cs {
		if cs[i].Name == container {
			cs[i] = *oc
		}
	}
	p.Containers = cs
	return p
}

func (s *stream) snapshot() informer.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest
}

// run drives the container's instances until the pod is gone or excluded and everything
// readable has been written, or until ctx is cancelled.
func (s *stream) run(ctx context.Context) {
	s.ctx = ctx
	defer s.setState("")
	defer s.closeFile()
	for ctx.Err() == nil {
		p := s.snapshot()
		ct := p.Container(s.container)
		if ct == nil || p.Excluded {
			s.logger.Info("container no longer collected")
			return
		}
		if err := s.openFile(); err != nil {
			s.logger.Error("cannot open output file", "err", err)
			s.sleep(ctx)
			continue
		}
		if s.podInfo != p.UID {
			// The json format names the pod's node (and labels): set once per pod UID.
			s.file.SetPod(p.Node, p.Labels)
			s.podInfo = p.UID
		}
		cur := s.file.Cursor()
		switch {
		case cur.PodUID != string(p.UID):
			if !ct.Started() {
				s.waitForChange(ctx)
				continue
			}
			if cur.PodUID != "" {
				if !cur.Done {
					// The previous pod of this name is gone (kubelogd was down, or its stream
					// broke before it was deleted): the rest of its log cannot be read.
					s.gap(gapPodDeleted, fmt.Sprintf("pod UID %s was deleted before its log was read to the end", cur.PodUID))
				}
				s.marker(s.c.cfg.Now(), fmt.Sprintf("pod %s/%s recreated with UID %s (previous UID %s)", s.ns, s.pod, p.UID, cur.PodUID))
			}
			if lt := ct.LastTerminated; lt != nil && lt.ContainerID != "" && ct.RestartCount > 0 && !p.Deleted {
				// First sight of a container that has restarted already: start with the
				// previous instance, which the kubelet still serves with previous=true —
				// how it crashed is what on-call looks for — then the restart marker, then
				// the current instance (the replaced-instance case below does the rest).
				s.beginAt(string(p.UID), lt.ContainerID, ct.RestartCount-1)
				continue
			}
			s.beginInstance(string(p.UID), ct)

		case ct.Started() && cur.ContainerID != ct.ContainerID:
			if done := s.finishReplacedInstance(ctx, p, ct); !done {
				continue
			}
			s.restartMarkers(ct, cur.RestartCount)
			s.beginInstance(string(p.UID), ct)

		case cur.Done || !ct.Started():
			if p.Deleted {
				return
			}
			if cur.Done {
				s.setState(stateFinished)
			} else {
				s.setState(stateWaiting)
			}
			// Save the cursor now, not at the next timed save: a crash while waiting must not
			// read a finished instance again.
			s.flush(ctx)
			if err := s.file.SaveCursor(); err != nil {
				s.logger.Error("saving cursor", "err", err)
			}
			s.waitForChange(ctx)

		default:
			if p.Deleted {
				// The pod object is gone, so its log cannot be read any more (the apiserver
				// fetches the pod first). A last stream that ended cleanly after the
				// container stopped saw its end; otherwise say what is missing.
				switch {
				case !s.everRead:
					s.gap(gapNeverReadable, "pod deleted before its log could be read")
				case s.ended != reasonEOF:
					s.gap(gapPodDeleted, "pod deleted before its log was read to the end")
				case ct.Running:
					s.gap(gapDeletedRunning, "pod deleted while its container was running; lines logged after the last stream ended may be missing")
				}
				cur.Done = true
				continue
			}
			if !ct.Running {
				s.readInstance(ctx, p, ct, readToEnd, false)
				continue
			}
			s.readRunning(ctx, p, ct)
		}
	}
}

// beginInstance points the cursor at a new container instance.
func (s *stream) beginInstance(uid string, ct *informer.Container) {
	s.beginAt(uid, ct.ContainerID, ct.RestartCount)
}

// beginAt points the cursor at the instance containerID, the restartCount'th of the container.
func (s *stream) beginAt(uid, containerID string, restartCount int32) {
	cur := s.file.Cursor()
	cur.Reset(uid, containerID, restartCount)
	if err := s.file.SaveCursor(); err != nil {
		s.logger.Error("saving cursor", "err", err)
	}
	s.everRead = false
	s.fragment = nil
	s.ended = ""
	s.retry = ""
	s.quiet = nil
}

// finishReplacedInstance reads what is left of the cursor's instance after the container
// restarted. It reports true once the old instance is finished with, read or given up as
// unreadable (with a gap marker).
func (s *stream) finishReplacedInstance(ctx context.Context, p informer.Pod, ct *informer.Container) bool {
	cur := s.file.Cursor()
	if cur.Done {
		return true
	}
	if ct.LastTerminated != nil && ct.LastTerminated.ContainerID == cur.ContainerID && !p.Deleted {
		// The kubelet keeps exactly one previous instance: ours. Read its remainder.
		if !s.readInstance(ctx, p, ct, readToEnd, true) {
			return false
		}
		return cur.Done
	}
	s.gap(gapPrevious, fmt.Sprintf("the rest of the log of instance %s (restartCount %d) is no longer available", shortID(cur.ContainerID), cur.RestartCount))
	cur.Done = true
	return true
}

// restartMarkers writes the restart marker, and a gap marker if instances were skipped.
func (s *stream) restartMarkers(ct *informer.Container, prevRestarts int32) {
	at := s.c.cfg.Now()
	text := fmt.Sprintf("container restarted (restartCount %d)", ct.RestartCount)
	if lt := ct.LastTerminated; lt != nil {
		if !lt.FinishedAt.IsZero() {
			at = lt.FinishedAt
		}
		text += fmt.Sprintf(": previous instance exited with code %d", lt.ExitCode)
		if lt.Reason != "" {
			text += " (" + lt.Reason + ")"
		}
	}
	s.marker(at, text)
	s.sm.m.restarts.Inc()
	if skipped := ct.RestartCount - prevRestarts - 1; skipped > 0 {
		s.sm.m.gaps.WithLabelValues(gapInstancesLost).Inc()
		s.marker(at, fmt.Sprintf("gap: %d container instance(s) between restartCount %d and %d exited before their logs could be read", skipped, prevRestarts, ct.RestartCount))
	}
}

// gap writes a marker saying that continuity could not be proven here, and counts it.
func (s *stream) gap(reason, why string) {
	s.logger.Warn("gap in collected log", "reason", reason, "detail", why)
	s.sm.m.gaps.WithLabelValues(reason).Inc()
	s.marker(s.c.cfg.Now(), "gap: "+why)
}

// setState records the stream's target state for the metrics.
func (s *stream) setState(state string) {
	s.sm.setState(state)
	if state == stateWaiting {
		if s.waitingSince.Load() == 0 {
			s.waitingSince.Store(s.c.cfg.Now().UnixNano())
		}
	} else {
		s.waitingSince.Store(0)
	}
}

// marker writes a kubelogd event line. Markers are not application lines: the cursor does
// not count them.
func (s *stream) marker(at time.Time, text string) {
	rec := sink.Record{Time: at, RawTime: formatTime(at), Line: []byte(text), Marker: true}
	if err := s.accept(s.ctx, rec); err != nil {
		s.logger.Error("cannot write marker", "marker", text, "err", err)
	}
}

func (s *stream) openFile() error {
	if s.file != nil {
		return nil
	}
	f, err := s.c.sink.Open(sink.Key{Namespace: s.ns, Pod: s.pod, Container: s.container})
	if err != nil {
		return err
	}
	s.file = f
	if r := f.Recovered(); r.ShortBy > 0 {
		// The file is shorter than its cursor says it was (a power loss after the cursor
		// reached the disk but before the data did): those lines are gone from disk.
		s.gap(gapFileTruncated, fmt.Sprintf("%d bytes recorded as written are missing from %s (power loss?)", r.ShortBy, f.Path()))
	}
	if r := f.Recovered(); r.Outside != "" {
		// The last run created the files again after they were removed outside kubelogd
		// and stopped before it wrote this marker.
		s.gap(gapFilesRemoved, r.Outside+"; lines written to the earlier file before this marker are not in this one")
	}
	if r := f.Recovered(); r.RemovedBytes > 0 {
		s.gap(gapFilesRemoved, fmt.Sprintf("%s, which held %d bytes of collected lines, was removed outside kubelogd; those lines are gone unless it was moved", f.Path(), r.RemovedBytes))
	}
	if r := f.Recovered(); r.Unverified != "" {
		// Kept whole rather than cut back to what the cursor counts (a restored directory
		// with a cursor of an earlier kubelogd, a file changed outside kubelogd).
		s.gap(gapFileUnverified, fmt.Sprintf("%s could not be recognised as the file its cursor describes (%s); every line in it was kept, so lines before this marker may appear again after it", f.Path(), r.Unverified))
	}
	return nil
}

func (s *stream) closeFile() {
	if s.file == nil {
		return
	}
	if err := s.file.Close(); err != nil {
		s.logger.Error("closing output file", "err", err)
	}
	s.file = nil
	s.podInfo = ""
}

// flush writes buffered lines, retrying with backoff while the disk refuses them: the data
// stays buffered and the cursor covers it, so nothing is lost or written twice.
func (s *stream) flush(ctx context.Context) {
	if s.file == nil {
		return
	}
	logged := false
	for {
		err := s.file.Flush()
		if what := s.file.TakeOutsideChange(); what != "" {
			// The File created its files again (or adopted what it found) and writes on
			// there: the marker goes first, before the lines read from now on.
			s.gap(gapFilesRemoved, what+"; lines written to the earlier file before this marker are not in this one")
		}
		if err == nil {
			if logged {
				s.logger.Info("writing resumed")
			}
			return
		}
		if !logged {
			s.logger.Error("cannot write output file; collection paused until it can", "err", err)
			logged = true
		}
		if !s.sleep(ctx) {
			return
		}
	}
}

// waitForChange blocks until the pod's state changes or ctx is cancelled. A change that
// cut a sleep short since the last wait counts: it returns at once.
func (s *stream) waitForChange(ctx context.Context) {
	if s.changed {
		s.changed = false
		return
	}
	select {
	case <-ctx.Done():
	case <-s.wake:
	}
}

// sleep waits out the current backoff (with jitter) and doubles it. It returns false if
// ctx was cancelled meanwhile. A state change cuts the wait short.
func (s *stream) sleep(ctx context.Context) bool {
	cfg := &s.c.cfg
	if s.backoff < cfg.MinRetryDelay {
		s.backoff = cfg.MinRetryDelay
	}
	s.setState(stateWaiting)
	d := s.backoff/2 + rand.N(s.backoff/2+1)
	s.backoff = min(2*s.backoff, cfg.MaxRetryDelay)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-s.wake:
		// Remembered for waitForChange, which a change may end for good. Not put back
		// into wake: the next sleep would return at once, and one pending change would
		// turn every retry after it into a hot loop (a file another stream still holds,
		// a kubelet that keeps failing).
		s.changed = true
	}
	return true
}

// progress resets the backoff: the stream delivered lines.
func (s *stream) progress() { s.backoff = 0 }

func shortID(id string) string {
	if i := len(id) - 12; i > 0 {
		return id[i:]
	}
	return id
}

const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) []byte { return []byte(t.UTC().Format(timeLayout)) }

// openRead is a follow stream being read: its instance and its watchdog.
type openRead struct {
	containerID string
	wd          *watchdog
}
