package fakekubelet

import (
	"context"
	"fmt"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// deletionRetry is how long the deletion worker waits before retrying a failed deletion.
const deletionRetry = 200 * time.Millisecond

// DefaultReclaimDelay is Config.ReclaimDelay's default: the kubelet's pod lifecycle event
// generator relists containers every second and its housekeeping runs every 2 s. A log
// reader's follow of a stopped container ends up to a second after the stop (the CRI log
// reader checks the container's state at least every second), and it then needs one more
// read to confirm the end: 1 s raced that read in make test's load (a pod_deleted marker
// where nothing was lost, TestFaultRecreatedWithNewUID).
const DefaultReclaimDelay = 2 * time.Second

// startInformer watches the pods bound to the node, as the kubelet does, to finish graceful
// deletions and to know pods no verb touched yet. It runs until Close cancels k.ctx.
func (k *Kubelet) startInformer() {
	selector := fields.OneTermEqualSelector("spec.nodeName", k.cfg.NodeName).String()
	k.factory = informers.NewSharedInformerFactoryWithOptions(k.client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = selector }))
	k.pods = k.factory.Core().V1().Pods().Informer()
	_, _ = k.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { k.podChanged(obj) },
		UpdateFunc: func(_, obj any) { k.podChanged(obj) },
		DeleteFunc: k.podDeleted,
	})
	k.factory.Start(k.ctx.Done())
}

// podChanged queues the graceful deletion of a pod that got a deletionTimestamp. The work is
// done by the deletion worker, never in the informer's goroutine, which must not block on
// API calls.
func (k *Kubelet) podChanged(obj any) {
	pod, ok := obj.(*v1.Pod)
	// Clients that ignore field selectors (the fake clientset) send every pod.
	if !ok || pod.Spec.NodeName != k.cfg.NodeName || pod.DeletionTimestamp == nil {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.held(pod.Namespace, pod.Name) {
		return
	}
	k.deleteSet[pod.Namespace+"/"+pod.Name] = pod.UID
	k.kickDeletions()
}

// podDeleted forgets a pod that left the API: its logs are no longer served and its running
// containers stop in the runtime (as after a forced deletion), which ends follow streams.
func (k *Kubelet) podDeleted(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*v1.Pod)
	if !ok {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	ps := k.state[pod.UID]
	if ps == nil {
		return
	}
	ps.deleted = true
	for _, c := range ps.containers {
		if cur := c.current(); cur != nil && cur.running {
			k.stopInstance(cur, 137, "Error")
		}
	}
}

// held tells whether a pod's deletion is held back. Called with k.mu held.
func (k *Kubelet) held(namespace, name string) bool {
	if k.cfg.KeepTerminating {
		return true
	}
	for _, t := range k.holds {
		if t.matches(namespace, name, "") {
			return true
		}
	}
	return false
}

// HoldDeletion keeps the selected pods Terminating once they get a deletionTimestamp (on),
// or releases them (off), which finishes the deletions that are due. Pod "" selects every
// pod of the namespace and namespace "" every namespace. Turning a hold off removes the
// holds set with exactly these names (("", "", false) removes them all) and, when
// Config.KeepTerminating is set, releases nothing.
func (k *Kubelet) HoldDeletion(namespace, pod string, on bool) {
	t := target{ns: namespace, pod: pod}
	k.mu.Lock()
	defer k.mu.Unlock()
	if on {
		k.holds = append(k.holds, t)
		return
	}
	kept := k.holds[:0]
	for _, h := range k.holds {
		if h != t && t != (target{}) {
			kept = append(kept, h)
		}
	}
	k.holds = kept
	for _, obj := range k.pods.GetStore().List() {
		pod := obj.(*v1.Pod)
		if pod.Spec.NodeName == k.cfg.NodeName && pod.DeletionTimestamp != nil && !k.held(pod.Namespace, pod.Name) {
			k.deleteSet[pod.Namespace+"/"+pod.Name] = pod.UID
		}
	}
	k.kickDeletions()
}

// kickDeletions wakes the deletion worker. Called with k.mu held.
func (k *Kubelet) kickDeletions() {
	select {
	case k.deleteKick <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// runDeletions is the deletion worker: it finishes the deletions queued in deleteSet, one at
// a time, retrying failures, until Close cancels k.ctx.
func (k *Kubelet) runDeletions() {
	defer k.workers.Done()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-k.ctx.Done():
			return
		case <-k.deleteKick:
		case <-retry.C:
		}
		k.mu.Lock()
		due := k.deleteSet
		k.deleteSet = map[string]types.UID{}
		k.mu.Unlock()

		failed := false
		for key, uid := range due {
			if k.ctx.Err() != nil {
				return
			}
			if err := k.finishDeletion(k.ctx, key, uid); err != nil {
				k.log.Error("finishing graceful deletion", "pod", key, "err", err)
				failed = true
				k.mu.Lock()
				if _, queued := k.deleteSet[key]; !queued {
					k.deleteSet[key] = uid
				}
				k.mu.Unlock()
			}
		}
		if failed {
			retry.Reset(deletionRetry)
		}
	}
}

// reclaimDelay is Config.ReclaimDelay with its default.
func (k *Kubelet) reclaimDelay() time.Duration {
	switch d := k.cfg.ReclaimDelay; {
	case d == 0:
		return DefaultReclaimDelay
	case d < 0:
		return 0
	default:
		return d
	}
}

// finishDeletion does what the kubelet does for a pod with a deletionTimestamp: it stops the
// running containers, reports the final status, and deletes the pod with grace period 0 and
// a UID precondition, so that it never deletes a newer pod of the same name.
func (k *Kubelet) finishDeletion(ctx context.Context, key string, uid types.UID) error {
	namespace, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return err
	}
	k.opMu.Lock()
	defer k.opMu.Unlock()
	pods := k.client.CoreV1().Pods(namespace)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case err != nil:
		return fmt.Errorf("getting pod: %w", err)
	case pod.UID != uid || pod.DeletionTimestamp == nil:
		return nil
	}
	k.mu.Lock()
	if k.held(namespace, name) || k.reclaiming[uid] {
		k.mu.Unlock()
		return nil
	}
	ps := k.state[uid]
	if ps != nil {
		ps.terminal = true
		reason := "Completed"
		if k.cfg.KillExitCode != 0 {
			reason = "Error"
		}
		for _, c := range ps.containers {
			if cur := c.current(); cur != nil && cur.running {
				k.stopInstance(cur, k.cfg.KillExitCode, reason)
			}
		}
	}
	k.mu.Unlock()
	if ps != nil {
		if err := k.writeStatus(ctx, ps, nil); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	if d := k.reclaimDelay(); d > 0 {
		// The object goes later, and other pods' deletions go on meanwhile.
		k.mu.Lock()
		k.reclaiming[uid] = true
		k.mu.Unlock()
		k.workers.Add(1)
		go func() {
			defer k.workers.Done()
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
			case <-k.ctx.Done():
				return
			}
			k.mu.Lock()
			held := k.held(namespace, name)
			k.mu.Unlock()
			var err error
			if !held { // a hold set meanwhile keeps the pod Terminating
				k.opMu.Lock()
				err = k.deleteObject(k.ctx, namespace, name, key, uid)
				k.opMu.Unlock()
			}
			k.mu.Lock()
			delete(k.reclaiming, uid)
			k.mu.Unlock()
			if err != nil && k.ctx.Err() == nil {
				k.log.Error("finishing graceful deletion", "pod", key, "err", err)
				k.mu.Lock()
				if _, queued := k.deleteSet[key]; !queued {
					k.deleteSet[key] = uid
				}
				k.kickDeletions()
				k.mu.Unlock()
			}
		}()
		return nil
	}
	return k.deleteObject(ctx, namespace, name, key, uid)
}

// deleteObject deletes the pod object with grace period 0 and a UID precondition. Called
// with opMu held.
func (k *Kubelet) deleteObject(ctx context.Context, namespace, name, key string, uid types.UID) error {
	err := k.client.CoreV1().Pods(namespace).Delete(ctx, name, metav1.DeleteOptions{
		GracePeriodSeconds: new(int64),
		Preconditions:      &metav1.Preconditions{UID: &uid},
	})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("deleting pod: %w", err)
	}
	k.log.Info("pod deleted", "pod", key, "uid", uid)
	return nil
}
