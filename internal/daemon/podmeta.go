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
	"github.com/kubelogd/kubelogd/internal/tail"
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

	mu      sync.Mutex
	pending map[types.UID]informer.Pod
	wake    chan struct{}
	// written remembers the UIDs whose metadata exists, so an update is written only
	// when something a reader selects on changed.
	written map[types.UID]string
}

func newMetaWriter(dir string, logger *slog.Logger) *metaWriter {
	return &metaWriter{dir: dir, logger: logger, now: time.Now,
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

// Run writes queued metadata until ctx is cancelled.
func (w *metaWriter) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.wake:
		}
		w.mu.Lock()
		batch := w.pending
		w.pending = map[types.UID]informer.Pod{}
		w.mu.Unlock()
		for _, p := range batch {
			w.write(p)
		}
	}
}

func (w *metaWriter) write(p informer.Pod) {
	key := p.Node + "|" + p.OwnerKind + "|" + p.OwnerName + "|" + labelsKey(p.Labels)
	if prev, ok := w.written[p.UID]; ok && prev == key && !p.Deleted {
		return // nothing a reader uses changed
	}
	now := w.now().UTC()
	m := tail.PodMeta{UID: string(p.UID), Namespace: p.Namespace, Pod: p.Name, Labels: p.Labels,
		OwnerKind: p.OwnerKind, OwnerName: p.OwnerName, Node: p.Node, FirstSeen: now, LastSeen: now}
	old, err := tail.ReadMeta(w.dir, p.Namespace, p.Name)
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
	if err := tail.WriteMeta(w.dir, m); err != nil {
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
func sameMeta(a, b tail.PodMeta) bool {
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
