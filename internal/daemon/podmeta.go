package daemon

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/internal/layout"
)

// metaWriter keeps <output-dir>/<ns>/<pod>/.pod.json current, so that `kubelogd tail -l`
// can select a pod's logs by label long after the pod is gone. Writes happen on its own
// goroutine, never on the collector's reconcile loop: thousands of pods appearing at
// start must not delay their streams. A pod's file is written once per pod UID (not per
// container), again only when something a reader selects on changes or the pod is
// deleted, and not at all when the file already says the same (after a restart).
type metaWriter struct {
	dir    string
	logger *slog.Logger
	now    func() time.Time
	delay  time.Duration // metaDelay; tests shorten it

	mu      sync.Mutex
	pending map[types.UID]informer.Pod
	wake    chan struct{}
	// written remembers the UIDs whose metadata exists, so an update is written only
	// when something a reader selects on changed.
	written map[types.UID]string
}

func newMetaWriter(dir string, logger *slog.Logger) *metaWriter {
	return &metaWriter{dir: dir, logger: logger, now: time.Now, delay: metaDelay,
		pending: map[types.UID]informer.Pod{}, wake: make(chan struct{}, 1), written: map[types.UID]string{}}
}

// OnPod queues p's metadata; it never blocks.
func (w *metaWriter) OnPod(p informer.Pod) {
	w.mu.Lock()
	w.pending[p.UID] = p
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// metaDelay is how long metadata trails a pod's first sight (or change): the log files
// come first. At start on a busy node thousands of pods appear at once, and each file
// creation costs CPU the streams' first lines are waiting for; a batch a moment later
// costs the same without delaying them. `kubelogd tail` needs the metadata only once a
// pod is gone.
const metaDelay = 2 * time.Second

// Run writes queued metadata, metaDelay after it was queued, until ctx is cancelled; what
// is queued then is written before it returns.
func (w *metaWriter) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			w.writePending()
			return nil
		case <-w.wake:
		}
		if w.delay > 0 {
			t := time.NewTimer(w.delay)
			select {
			case <-ctx.Done():
				t.Stop()
				w.writePending()
				return nil
			case <-t.C:
			}
		}
		w.writePending()
	}
}

func (w *metaWriter) writePending() {
	w.mu.Lock()
	batch := w.pending
	w.pending = map[types.UID]informer.Pod{}
	w.mu.Unlock()
	for _, p := range batch {
		w.write(p)
	}
}

func (w *metaWriter) write(p informer.Pod) {
	key := p.Node + "|" + p.OwnerKind + "|" + p.OwnerName + "|" + labelsKey(p.Labels)
	if prev, ok := w.written[p.UID]; ok && prev == key && !p.Deleted {
		return // nothing a reader uses changed
	}
	now := w.now().UTC()
	m := layout.PodMeta{UID: string(p.UID), Namespace: p.Namespace, Pod: p.Name, Labels: p.Labels,
		OwnerKind: p.OwnerKind, OwnerName: p.OwnerName, Node: p.Node, FirstSeen: now, LastSeen: now}
	old, err := layout.ReadMeta(w.dir, p.Namespace, p.Name)
	switch {
	case err != nil:
		// Missing, or unreadable (a power loss before it reached the disk): write it.
	case !p.Deleted && sameMeta(old, m):
		// Written by an earlier run: a file creation and rename fewer per pod at start.
		w.written[p.UID] = key
		return
	case !old.FirstSeen.IsZero():
		m.FirstSeen = old.FirstSeen // the name's first incarnation
	}
	if err := layout.WriteMeta(w.dir, m); err != nil {
		w.logger.Warn("cannot save pod metadata", "namespace", p.Namespace, "pod", p.Name, "err", err)
		return
	}
	if p.Deleted {
		delete(w.written, p.UID)
	} else {
		w.written[p.UID] = key
	}
}

// sameMeta reports whether a and b say the same about a pod but for when it was seen.
func sameMeta(a, b layout.PodMeta) bool {
	return a.UID == b.UID && a.Namespace == b.Namespace && a.Pod == b.Pod && a.OwnerKind == b.OwnerKind &&
		a.OwnerName == b.OwnerName && a.Node == b.Node && maps.Equal(a.Labels, b.Labels)
}

func labelsKey(l map[string]string) string {
	// Order does not matter for equality of the rendered form as long as it is stable.
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k + "=" + l[k] + ",")
	}
	return b.String()
}
