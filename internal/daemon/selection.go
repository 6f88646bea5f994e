package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelogd/kubelogd/informer"
)

// selectionSyncTimeout bounds how long a reload waits for the first list of the new
// selection's informers; past it the reload fails and the old selection stays.
const selectionSyncTimeout = time.Minute

// selection runs the pod informers of the configured selection (namespaces, excluded
// namespaces, label and field selectors) and replaces them when a reload changes it.
//
// A change must look to the collector as pods joining and leaving the selection, never
// as a restart: the streams of the pods that stay selected go on untouched. So the new
// informers list while the old ones still pass their events on (generation gen); the
// new ones' events are only staged. Once they have synced, the switch passes every
// staged state on (a pod the collector streams already just gets its state again, a new
// one starts), drops the old generation's events from then on, and releases the pods
// the new selection no longer has: their streams stop as at a shutdown — lines read are
// written, cursors saved, files closed — without a deletion marker, since the pods still
// exist. If the selection comes back they resume from their cursors.
type selection struct {
	client  kubernetes.Interface
	next    informer.Handler
	release func(ctx context.Context, match func(namespace, pod string) bool) error
	forget  func(uids map[types.UID]bool) // the shard gate's, when there is one
	logger  *slog.Logger

	mu     sync.Mutex
	gen    int                        // the generation whose events are passed on
	pods   map[types.UID]informer.Pod // the pods passed on and not deleted
	staged map[types.UID]informer.Pod // the next generation's pods while it lists; nil otherwise
	active *informer.Discovery        // the informers of gen
	// changes carries reloads' new selections to Run.
	changes chan selectionChange
}

type selectionChange struct {
	cfg  informer.Config
	done chan error
}

// genHandler is the informer.Handler of one generation of informers.
type genHandler struct {
	s   *selection
	gen int
}

func (h genHandler) OnPod(p informer.Pod) { h.s.onPod(h.gen, p) }

func newSelection(client kubernetes.Interface, cfg informer.Config, next informer.Handler, logger *slog.Logger) (*selection, error) {
	s := &selection{client: client, next: next, logger: logger,
		pods: map[types.UID]informer.Pod{}, changes: make(chan selectionChange)}
	d, err := informer.New(client, cfg, genHandler{s, 0}, logger)
	if err != nil {
		return nil, err
	}
	s.active = d
	return s, nil
}

// onPod passes on the events of the generation in force and stages those of the next.
// Calls to next never block, so holding mu across them is cheap, and it orders the
// switch against every event.
func (s *selection) onPod(gen int, p informer.Pod) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case gen == s.gen:
		s.track(p)
		s.next.OnPod(p)
	case gen == s.gen+1 && s.staged != nil:
		s.staged[p.UID] = p
	}
	// Anything else comes from informers being stopped: dropped.
}

func (s *selection) track(p informer.Pod) {
	if p.Deleted {
		delete(s.pods, p.UID)
	} else {
		s.pods[p.UID] = p
	}
}

// Synced and SyncError report on the informers in force, for /readyz and the metrics.
func (s *selection) Synced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active.Synced()
}

func (s *selection) SyncError() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active.SyncError()
}

// apply replaces the selection with cfg and returns once the new one is in force (nil)
// or failed (the old one stays).
func (s *selection) apply(ctx context.Context, cfg informer.Config) error {
	ch := selectionChange{cfg, make(chan error, 1)}
	select {
	case s.changes <- ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-ch.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// running is one generation of informers at work.
type running struct {
	cancel context.CancelFunc
	done   chan error // receives Run's result
}

func start(ctx context.Context, d *informer.Discovery) running {
	ctx, cancel := context.WithCancel(ctx)
	r := running{cancel, make(chan error, 1)}
	go func() { r.done <- d.Run(ctx) }()
	return r
}

func (r running) stop() { r.cancel(); <-r.done }

// Run runs the informers in force until ctx is cancelled, replacing them on each
// change. It fails as informer.Discovery.Run does (a list refused with 403).
func (s *selection) Run(ctx context.Context) error {
	s.mu.Lock()
	d := s.active
	s.mu.Unlock()
	cur := start(ctx, d)
	for {
		select {
		case <-ctx.Done():
			cur.stop()
			return nil
		case err := <-cur.done:
			cur.cancel()
			return err
		case ch := <-s.changes:
			next, err := s.replace(ctx, ch.cfg, cur)
			if err == nil {
				cur = next
			}
			ch.done <- err
		}
	}
}

// replace starts the informers of cfg, waits for their first list, switches to them and
// stops cur. On failure cur stays in force and the new informers are stopped.
func (s *selection) replace(ctx context.Context, cfg informer.Config, cur running) (running, error) {
	s.mu.Lock()
	gen := s.gen + 1
	s.staged = map[types.UID]informer.Pod{}
	s.mu.Unlock()
	d, err := informer.New(s.client, cfg, genHandler{s, gen}, s.logger)
	if err != nil {
		return cur, err
	}
	next := start(ctx, d)
	if exited, err := waitSynced(ctx, d, next.done); err != nil {
		if next.cancel(); !exited {
			<-next.done
		}
		s.mu.Lock()
		s.staged = nil
		s.mu.Unlock()
		return cur, err
	}

	s.mu.Lock()
	s.gen, s.active = gen, d
	names := map[string]bool{}
	for _, p := range s.staged {
		names[p.Namespace+"/"+p.Name] = true
	}
	// A pod gone from the new view that the old one did not see deleted left the
	// selection; one whose name the new view has under another UID was deleted and
	// created again (its deletion comes through the old informers, or is lost with them).
	dropped := map[types.UID]informer.Pod{}
	droppedUIDs := map[types.UID]bool{}
	for uid, p := range s.pods {
		if _, ok := s.staged[uid]; !ok && !names[p.Namespace+"/"+p.Name] {
			dropped[uid] = p
			droppedUIDs[uid] = true
		}
	}
	s.pods = map[types.UID]informer.Pod{}
	for _, p := range s.staged {
		s.track(p)
		s.next.OnPod(p)
	}
	staged := len(s.staged)
	s.staged = nil
	s.mu.Unlock()

	// The old informers' events are dropped from here on; stopping them waits for their
	// goroutines.
	cur.stop()
	if s.forget != nil && len(droppedUIDs) > 0 {
		s.forget(droppedUIDs)
	}
	// A pod may also be missing from the new view because it was deleted before the new
	// informers listed, while the old ones had not passed its deletion on (they are
	// stopped now, and it is lost with them). Taken for one that left the selection, it
	// would end with no deletion marker; so the API server is asked which still exist.
	left := map[string]bool{}
	for uid, p := range s.deletedOf(ctx, dropped) {
		s.mu.Lock()
		p.Deleted = true
		s.next.OnPod(p)
		s.mu.Unlock()
		delete(dropped, uid)
	}
	for _, p := range dropped {
		left[p.Namespace+"/"+p.Name] = true
	}
	if len(left) > 0 {
		if err := s.release(ctx, func(ns, pod string) bool { return left[ns+"/"+pod] }); err != nil && ctx.Err() == nil {
			s.logger.Error("stopping the streams of pods that left the selection", "err", err)
		}
	}
	s.logger.Info("pod selection changed", "pods", staged, "left", len(left), "deleted", len(droppedUIDs)-len(left))
	return next, nil
}

// deletedOf returns the pods of dropped that the API server no longer has (no pod of that
// UID in its namespace), listing each namespace once. A namespace that cannot be listed
// (its permission removed with it from the selection, say) counts its pods as present:
// they are released as pods that left the selection, the behaviour before this check.
func (s *selection) deletedOf(ctx context.Context, dropped map[types.UID]informer.Pod) map[types.UID]informer.Pod {
	byNS := map[string][]types.UID{}
	for uid, p := range dropped {
		byNS[p.Namespace] = append(byNS[p.Namespace], uid)
	}
	gone := map[types.UID]informer.Pod{}
	for ns, uids := range byNS {
		list, err := s.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			s.logger.Warn("cannot tell whether the pods that left the selection still exist; taking them as present",
				"namespace", ns, "err", err)
			continue
		}
		exists := map[types.UID]bool{}
		for i := range list.Items {
			exists[list.Items[i].UID] = true
		}
		for _, uid := range uids {
			if !exists[uid] {
				gone[uid] = dropped[uid]
			}
		}
	}
	return gone
}

// waitSynced waits for the first list of d's informers, at most selectionSyncTimeout;
// exited tells that d's Run returned (its result taken from done).
func waitSynced(ctx context.Context, d *informer.Discovery, done <-chan error) (exited bool, err error) {
	timeout := time.NewTimer(selectionSyncTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !d.Synced() {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case err := <-done:
			if err == nil {
				err = errors.New("pod informers stopped")
			}
			return true, err
		case <-timeout.C:
			return false, fmt.Errorf("the first list of pods of the new selection did not complete within %s: %w", selectionSyncTimeout, d.SyncError())
		case <-tick.C:
		}
	}
	return false, nil
}
