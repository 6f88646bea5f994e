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

// target owns everything about one container of one pod (one pod UID): its file, its
// cursor and, one after the other, the log streams of each of its instances. Only its run
// goroutine touches the file and the cursor.
type target struct {
	c         *Collector
	ns, pod   string
	container string
	logger    *slog.Logger
	// cancel ends run as a shutdown does (the file flushed and closed, the cursor saved):
	// the collector releases the pod to another replica (Collector.Release).
	cancel context.CancelFunc

	mu     sync.Mutex
	latest informer.Pod
	wake   chan struct{} // capacity 1: a newer state is in latest

	// file is the container's output file while it is open. The read loop and the markers
	// write through out: file, narrowed to what they use (a unit test sets a stand-in).
	file    *sink.File
	out     lineSink
	backoff time.Duration
	// inst is what is known about reading the cursor's instance.
	inst instance
	// changed is set when a sleep was cut short by a change of the pod's state, so that
	// the next waitForChange does not wait for another.
	changed bool
	// writePaused is set while the file refuses data (a full disk): the ERROR that says
	// so is logged once when writing stops, and an INFO when it resumes, however many
	// flushes fail in between (a cancelled stream's buffered lines each try one).
	writePaused bool
	// slot is the budget pool whose follow slot the target holds ("" none), wantNode the
	// pool in which it waits for one, polled ("" none), and noSlotUntil when a demoted target may
	// take one again (see budget). lastPoll is when it last polled.
	slot, wantNode string
	noSlotUntil    time.Time
	lastPoll       time.Time
	// readID is the instance whose first read (a follow's or a poll's) has been made;
	// retryFirst is set when that first read, a poll, found nothing, so that the next
	// poll is a first read too (see poll).
	readID     string
	retryFirst bool
	// firstRead is the read in progress while its first line is to be checked.
	firstRead *firstRead
	// followEnd is when the target's last follow stream ended (see followCloseGrace).
	followEnd time.Time
	// pollEvery is the wait between polls of the running instance, while its node cannot
	// follow; 0 while it is followed.
	pollEvery time.Duration
	// parkFor, set by poll, makes run return so that the target waits for its next poll
	// without a goroutine (see park); parkID is the instance polled. parked is the wait
	// in progress, guarded by mu.
	parkFor time.Duration
	parkID  string
	parked  *parking

	// podInfo is the pod UID whose node and labels the file was given (SetPod).
	podInfo types.UID
	// reading is the follow stream open now, so that a newer pod state can tell its
	// watchdog that the instance it reads was replaced.
	reading atomic.Pointer[openRead]
	// ctx is run's context, for the few helpers (markers) called without one.
	ctx context.Context

	sm *targetMetrics
	// waitingSince is when the target started waiting for a log stream (UnixNano), 0 while
	// streaming or finished. Read by scrapes.
	waitingSince atomic.Int64
}

func newTarget(c *Collector, p informer.Pod, container string) *target {
	tg := &target{
		c: c, ns: p.Namespace, pod: p.Name, container: container,
		logger: c.logger.With("namespace", p.Namespace, "pod", p.Name, "container", container),
		latest: p, wake: make(chan struct{}, 1),
		sm: c.metrics.forTarget(p.Namespace),
	}
	tg.setState(stateWaiting)
	return tg
}

func (t *target) update(p informer.Pod) {
	t.mu.Lock()
	p = fresher(t.latest, p, t.container)
	t.latest = p
	pk := t.parked
	ends := pk != nil && endsPoll(p, t.container, pk.containerID)
	if ends {
		t.parked = nil
	}
	t.mu.Unlock()
	if pk != nil {
		// Parked between two polls: a change that ends the wait resumes the target at
		// once, and other changes do not wake it (see park).
		if ends {
			pk.resume(true)
		}
		return
	}
	if r := t.reading.Load(); r != nil {
		if ct := p.Container(t.container); ct == nil || ct.ContainerID != r.containerID || !ct.Running {
			r.wd.instanceEnded(t.c.cfg.Now())
		}
	}
	select {
	case t.wake <- struct{}{}:
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

func (t *target) snapshot() informer.Pod {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.latest
}

// run drives the container's instances until the pod is gone or excluded and everything
// readable has been written, or until ctx is cancelled. It returns true, having ended
// nothing, when the target is to wait for its next poll parked (see park): the caller
// parks it, and runs it again when the wait is over.
func (t *target) run(ctx context.Context) (park bool) {
	t.ctx = ctx
	defer func() {
		if !park {
			t.end()
		}
	}()
	for ctx.Err() == nil {
		if t.parkFor > 0 {
			return true
		}
		p := t.snapshot()
		ct := p.Container(t.container)
		if ct == nil || p.Excluded {
			t.logger.Info("container no longer collected")
			return
		}
		if err := t.openFile(); err != nil {
			t.logger.Error("cannot open output file", "err", err)
			t.sleep(ctx)
			continue
		}
		if t.podInfo != p.UID {
			// The json format names the pod's node (and labels): set once per pod UID.
			t.file.SetPod(p.Node, p.Labels)
			t.podInfo = p.UID
		}
		cur := t.file.Cursor()
		switch {
		case cur.PodUID != string(p.UID):
			if !ct.Started() {
				t.waitForChange(ctx)
				continue
			}
			t.firstSight(p, ct)

		case ct.Started() && cur.ContainerID != ct.ContainerID:
			if done := t.finishReplacedInstance(ctx, p, ct); !done {
				continue
			}
			t.restartMarkers(ct, cur.RestartCount)
			t.beginInstance(string(p.UID), ct)
			t.inst.checkServed = true

		case cur.Done || !ct.Started():
			t.releaseSlot()
			t.want("", false)
			if p.Deleted {
				return
			}
			if cur.Done {
				t.setState(stateFinished)
			} else {
				t.setState(stateWaiting)
			}
			// Save the cursor now, not at the next timed save: a crash while waiting must not
			// read a finished instance again.
			t.flush(ctx)
			if err := t.file.SaveCursor(); err != nil {
				t.logger.Error("saving cursor", "err", err)
			}
			t.waitForChange(ctx)

		default:
			if p.Deleted {
				// The pod object is gone, so its log cannot be read any more (the apiserver
				// fetches the pod first). A last stream that ended cleanly after the
				// container stopped, where the one before it ended too, saw its end;
				// otherwise say what is missing. One clean end is not enough: a kubelet
				// that restarts ends every stream cleanly, and the lines its container
				// logged until the pod was deleted were never served (seed 412598182).
				switch {
				case !t.inst.everRead:
					t.gap(gapNeverReadable, "pod deleted before its log could be read")
				case t.inst.ended == reasonEOF && ct.Running:
					t.gap(gapDeletedRunning, "pod deleted while its container was running; lines logged after the last stream ended may be missing")
				case !t.inst.confirmed: // confirmed implies the last answered read ended with EOF
					t.gap(gapPodDeleted, "pod deleted before its log was read to the end")
				}
				cur.Done = true
				continue
			}
			if !ct.Running {
				t.releaseSlot()
				t.want("", false)
				t.readInstance(ctx, p, ct, readToEnd, false)
				continue
			}
			t.readRunning(ctx, p, ct)
		}
	}
	return false
}

// end gives back what the target holds: its follow slot, its place among those waiting
// for one, and its file (flushed, the cursor saved).
func (t *target) end() {
	t.releaseSlot()
	t.want("", false)
	t.closeFile()
	t.setState("")
}

// firstSight points the cursor at the first instance to read of a pod UID the file has
// not seen: after a recreate marker if the file was another pod's of that name.
func (t *target) firstSight(p informer.Pod, ct *informer.Container) {
	cur := t.file.Cursor()
	recreated := cur.PodUID != ""
	if recreated {
		if !cur.Done {
			// The previous pod of this name is gone (kubelogd was down, or its stream
			// broke before it was deleted): the rest of its log cannot be read.
			t.gap(gapPodDeleted, fmt.Sprintf("pod UID %s was deleted before its log was read to the end", cur.PodUID))
		}
		t.marker(t.c.cfg.Now(), fmt.Sprintf("pod %s/%s recreated with UID %s (previous UID %s)", t.ns, t.pod, p.UID, cur.PodUID))
	}
	if first := firstReadable(p, ct); first > 0 {
		// The container restarted more than once before kubelogd first saw it — a new
		// pod of a recreated name (seed 76022315, soak-0/p-09), or a new file (seed
		// 391711025, soak-0/p-00: two restarts before kubelogd's first list): the kubelet
		// serves only the last terminated instance, so say which instances the file lacks.
		t.gap(gapInstancesLost, fmt.Sprintf("%d container instance(s) before restartCount %d exited before their logs could be read", first, first))
	}
	if firstReadable(p, ct) < ct.RestartCount {
		// First sight of a container that has restarted already: start with the previous
		// instance, which the kubelet still serves with previous=true — how it crashed is
		// what on-call looks for — then the restart marker, then the current instance (the
		// replaced-instance case of run does the rest).
		t.beginAt(string(p.UID), ct.LastTerminated.ContainerID, ct.RestartCount-1)
		t.inst.checkServed = true
		return
	}
	// A pod seen again under a new UID, or a container that has restarted, is where the
	// watch's view is most likely behind (a recreate and a crash loop go fast): the first
	// read is checked before it writes. A container seen for the first time at
	// restartCount 0 has its first line checked instead (checkFirstLine), which for the
	// backlog at start, logged before kubelogd started, costs no request.
	t.beginInstance(string(p.UID), ct)
	t.inst.checkServed = recreated || ct.RestartCount > 0
}

// firstReadable is the restartCount of the oldest instance of ct the kubelet still
// serves: the previous one (previous=true) while the pod exists, else the current one.
func firstReadable(p informer.Pod, ct *informer.Container) int32 {
	if lt := ct.LastTerminated; lt != nil && lt.ContainerID != "" && ct.RestartCount > 0 && !p.Deleted {
		return ct.RestartCount - 1
	}
	return ct.RestartCount
}

// beginInstance points the cursor at a new container instance.
func (t *target) beginInstance(uid string, ct *informer.Container) {
	t.beginAt(uid, ct.ContainerID, ct.RestartCount)
}

// beginAt points the cursor at the instance containerID, the restartCount'th of the container.
func (t *target) beginAt(uid, containerID string, restartCount int32) {
	cur := t.file.Cursor()
	cur.Reset(uid, containerID, restartCount)
	if err := t.file.SaveCursor(); err != nil {
		t.logger.Error("saving cursor", "err", err)
	}
	t.inst = instance{}
}

// finishReplacedInstance reads what is left of the cursor's instance after the container
// restarted. It reports true once the old instance is finished with, read or given up as
// unreadable (with a gap marker).
func (t *target) finishReplacedInstance(ctx context.Context, p informer.Pod, ct *informer.Container) bool {
	cur := t.file.Cursor()
	if cur.Done {
		return true
	}
	if ct.LastTerminated != nil && ct.LastTerminated.ContainerID == cur.ContainerID && !p.Deleted {
		// The kubelet keeps exactly one previous instance: ours. Read its remainder.
		if !t.readInstance(ctx, p, ct, readToEnd, true) {
			return false
		}
		return cur.Done
	}
	if p.Deleted {
		// Logs are readable only while the pod object exists.
		t.gap(gapPodDeleted, fmt.Sprintf("pod UID %s was deleted before the rest of the log of instance %s (restartCount %d) was read", cur.PodUID, shortID(cur.ContainerID), cur.RestartCount))
	} else {
		t.gap(gapPrevious, fmt.Sprintf("the rest of the log of instance %s (restartCount %d) is no longer available", shortID(cur.ContainerID), cur.RestartCount))
	}
	cur.Done = true
	return true
}

// restartMarkers writes the restart marker, and a gap marker if instances were skipped.
func (t *target) restartMarkers(ct *informer.Container, prevRestarts int32) {
	at := t.c.cfg.Now()
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
	t.marker(at, text)
	t.sm.m.restarts.Inc()
	if skipped := ct.RestartCount - prevRestarts - 1; skipped > 0 {
		t.sm.m.gaps.WithLabelValues(gapInstancesLost).Inc()
		t.marker(at, fmt.Sprintf("gap: %d container instance(s) between restartCount %d and %d exited before their logs could be read", skipped, prevRestarts, ct.RestartCount))
	}
}

// gap writes a marker saying that continuity could not be proven here, and counts it.
func (t *target) gap(reason, why string) {
	t.countGap(reason, why)
	t.marker(t.c.cfg.Now(), "gap: "+why)
}

// countGap logs and counts a gap whose marker is written (gap, or the sink itself).
func (t *target) countGap(reason, why string) {
	t.logger.Warn("gap in collected log", "reason", reason, "detail", why)
	t.sm.m.gaps.WithLabelValues(reason).Inc()
}

// setState records the target's state for the metrics.
func (t *target) setState(state string) {
	t.sm.setState(state)
	if state == stateWaiting {
		if t.waitingSince.Load() == 0 {
			t.waitingSince.Store(t.c.cfg.Now().UnixNano())
		}
	} else {
		t.waitingSince.Store(0)
	}
}

// marker writes a kubelogd event line. Markers are not application lines: the cursor does
// not count them.
func (t *target) marker(at time.Time, text string) {
	rec := sink.Record{Time: at, RawTime: formatTime(at), Line: []byte(text), Marker: true}
	if err := t.accept(t.ctx, rec); err != nil {
		t.logger.Error("cannot write marker", "marker", text, "err", err)
	}
}

func (t *target) openFile() error {
	if t.file != nil {
		return nil
	}
	f, err := t.c.sink.Open(sink.Key{Namespace: t.ns, Pod: t.pod, Container: t.container})
	if err != nil {
		return err
	}
	t.file, t.out = f, f
	if r := f.Recovered(); r.ShortBy > 0 {
		// The file is shorter than its cursor says it was (a power loss after the cursor
		// reached the disk but before the data did): those lines are gone from disk.
		t.gap(gapFileTruncated, fmt.Sprintf("%d bytes recorded as written are missing from %s (power loss?)", r.ShortBy, f.Path()))
	}
	if r := f.Recovered(); r.Outside != "" {
		// The last run created the files again after they were removed outside kubelogd
		// and stopped before it wrote this marker.
		t.gap(gapFilesRemoved, sink.OutsideDetail(r.Outside))
	}
	if r := f.Recovered(); r.RemovedBytes > 0 {
		t.gap(gapFilesRemoved, fmt.Sprintf("%s, which held %d bytes of collected lines, was removed outside kubelogd; those lines are gone unless it was moved", f.Path(), r.RemovedBytes))
	}
	if r := f.Recovered(); r.Unverified != "" {
		// Kept whole rather than cut back to what the cursor counts (a restored directory
		// with a cursor of an earlier kubelogd, a file changed outside kubelogd).
		t.gap(gapFileUnverified, fmt.Sprintf("%s could not be recognised as the file its cursor describes (%s); every line in it was kept, so lines before this marker may appear again after it", f.Path(), r.Unverified))
	}
	return nil
}

func (t *target) closeFile() {
	if t.file == nil {
		return
	}
	if err := t.file.Close(); err != nil {
		t.logger.Error("closing output file", "err", err)
	}
	if what := t.file.TakeOutsideMarked(); what != "" {
		// Close checks the files once more and marks a removal it finds (see flush).
		t.countGap(gapFilesRemoved, sink.OutsideDetail(what))
	}
	t.file, t.out = nil, nil
	t.podInfo = ""
}

// flush writes buffered lines, retrying with backoff while the disk refuses them: the data
// stays buffered and the cursor covers it, so nothing is lost or written twice.
func (t *target) flush(ctx context.Context) {
	if t.out == nil {
		return
	}
	for {
		err := t.out.Flush()
		if what := t.out.TakeOutsideMarked(); what != "" {
			// The File created its files again (or adopted what it found) and wrote the
			// marker there first, before any byte after it (it may have noticed inside a
			// write): counted here like every gap.
			t.countGap(gapFilesRemoved, sink.OutsideDetail(what))
		}
		if what := t.out.TakeOutsideChange(); what != "" {
			// The same, but the File could not write the marker (a full disk): it goes
			// first now, before the lines read from now on.
			t.gap(gapFilesRemoved, sink.OutsideDetail(what))
		}
		if err == nil {
			if t.writePaused {
				t.logger.Info("writing resumed")
				t.writePaused = false
			}
			return
		}
		if !t.writePaused {
			t.logger.Error("cannot write output file; collection paused until it can", "err", err)
			t.writePaused = true
		}
		if !t.sleep(ctx) {
			return
		}
	}
}

// waitForChange blocks until the pod's state changes or ctx is cancelled. A change that
// cut a sleep short since the last wait counts: it returns at once.
func (t *target) waitForChange(ctx context.Context) {
	if t.changed {
		t.changed = false
		return
	}
	select {
	case <-ctx.Done():
	case <-t.wake:
	}
}

// sleep waits out the current backoff (with jitter) and doubles it. It returns false if
// ctx was cancelled meanwhile. A state change cuts the wait short.
func (t *target) sleep(ctx context.Context) bool {
	cfg := &t.c.cfg
	if t.backoff < cfg.MinRetryDelay {
		t.backoff = cfg.MinRetryDelay
	}
	t.setState(stateWaiting)
	d := t.backoff/2 + rand.N(t.backoff/2+1)
	t.backoff = min(2*t.backoff, cfg.MaxRetryDelay)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
	case <-t.wake:
		// Remembered for waitForChange, which a change may end for good. Not put back
		// into wake: the next sleep would return at once, and one pending change would
		// turn every retry after it into a hot loop (a file another target still holds,
		// a kubelet that keeps failing).
		t.changed = true
	}
	return true
}

// progress resets the backoff: the stream delivered lines.
func (t *target) progress() { t.backoff = 0 }

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
