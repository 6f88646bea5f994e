package fakekubelet

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// hostIP is the node's only address; pods report it as their host IP.
const hostIP = "127.0.0.1"

// buildStatus computes a pod's status from its containers' instances, on top of base (the
// status in the API) so that fields the fake kubelet does not own survive. Every container
// of the spec gets a status, waiting until it first starts, as the kubelet reports them.
// Called with k.mu held.
func (k *Kubelet) buildStatus(ps *podState, base *v1.PodStatus, now time.Time) v1.PodStatus {
	st := *base.DeepCopy()
	st.HostIP = hostIP
	st.HostIPs = []v1.HostIP{{IP: hostIP}}
	if st.StartTime == nil {
		t := metav1.NewTime(now)
		st.StartTime = &t
	}
	spec := &ps.pod.Spec
	initDone := initialized(ps)

	st.InitContainerStatuses = st.InitContainerStatuses[:0]
	for _, c := range spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, ps.containerStatus(c.Name, c.Image, initContainer, "PodInitializing"))
	}
	waitReason := "ContainerCreating"
	if !initDone {
		waitReason = "PodInitializing"
	}
	st.ContainerStatuses = st.ContainerStatuses[:0]
	for _, c := range spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, ps.containerStatus(c.Name, c.Image, regularContainer, waitReason))
	}
	st.EphemeralContainerStatuses = st.EphemeralContainerStatuses[:0]
	for _, c := range spec.EphemeralContainers {
		st.EphemeralContainerStatuses = append(st.EphemeralContainerStatuses, ps.containerStatus(c.Name, c.Image, ephemeralContainer, "ContainerCreating"))
	}
	st.Phase = derivePhase(ps, initDone)

	var unready []string
	for _, cs := range st.ContainerStatuses {
		if !cs.Ready {
			unready = append(unready, cs.Name)
		}
	}
	ready := len(unready) == 0 && st.Phase == v1.PodRunning
	unreadyMsg := fmt.Sprintf("containers with unready status: [%s]", strings.Join(unready, " "))
	setCondition(&st, now, v1.PodScheduled, true, "", "")
	setCondition(&st, now, v1.PodReadyToStartContainers, !ps.terminal, "", "")
	setCondition(&st, now, v1.PodInitialized, initDone, "ContainersNotInitialized", "containers with incomplete status: [init]")
	setCondition(&st, now, v1.ContainersReady, ready, "ContainersNotReady", unreadyMsg)
	setCondition(&st, now, v1.PodReady, ready, "ContainersNotReady", unreadyMsg)
	return st
}

// containerStatus reports one container from its newest instance, with the one before it
// as lastState, as the kubelet does.
func (ps *podState) containerStatus(name, image string, kind containerKind, waitReason string) v1.ContainerStatus {
	cs := v1.ContainerStatus{Name: name, Image: image}
	c := ps.containers[name]
	if c == nil || c.current() == nil {
		started := false
		cs.Started = &started
		cs.State.Waiting = &v1.ContainerStateWaiting{Reason: waitReason}
		if ps.terminal {
			// The kubelet reports containers that never ran in a finished pod this way.
			cs.State = v1.ContainerState{Terminated: &v1.ContainerStateTerminated{
				ExitCode: 137, Reason: "ContainerStatusUnknown",
				Message: "The container could not be located when the pod was terminated",
			}}
		}
		return cs
	}
	cur := c.current()
	cs.ImageID = imageID(image)
	cs.ContainerID = containerIDPrefix + cur.id
	cs.RestartCount = cur.restartCount
	started := cur.running
	cs.Started = &started
	if cur.running {
		cs.State.Running = &v1.ContainerStateRunning{StartedAt: metav1.NewTime(cur.startedAt)}
		cs.Ready = kind != ephemeralContainer
	} else {
		cs.State.Terminated = terminatedState(cur)
	}
	if len(c.instances) > 1 {
		cs.LastTerminationState.Terminated = terminatedState(c.instances[len(c.instances)-2])
	}
	return cs
}

func terminatedState(in *instance) *v1.ContainerStateTerminated {
	return &v1.ContainerStateTerminated{
		ExitCode:    in.exitCode,
		Reason:      in.reason,
		StartedAt:   metav1.NewTime(in.startedAt),
		FinishedAt:  metav1.NewTime(in.finishedAt),
		ContainerID: containerIDPrefix + in.id,
	}
}

// imageID makes up a stable image digest for an image reference.
func imageID(image string) string {
	sum := sha256.Sum256([]byte(image))
	repo := image
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	return repo + "@sha256:" + hex.EncodeToString(sum[:])
}

// initialized tells whether every regular init container completed and every sidecar
// (restartPolicy Always init container) started.
func initialized(ps *podState) bool {
	for _, s := range ps.pod.Spec.InitContainers {
		c := ps.containers[s.Name]
		if c == nil || c.current() == nil {
			return false
		}
		cur := c.current()
		sidecar := s.RestartPolicy != nil && *s.RestartPolicy == v1.ContainerRestartPolicyAlways
		if !sidecar && (cur.running || cur.exitCode != 0) {
			return false
		}
	}
	return true
}

// derivePhase is a simplified kubelet getPhase: Pending until a regular container started
// after initialization, Running while any could still run, and Succeeded or Failed once all
// regular containers terminated and the restart policy (or a deletion) ends the pod.
func derivePhase(ps *podState, initDone bool) v1.PodPhase {
	if ps.phase != "" {
		return ps.phase
	}
	spec := &ps.pod.Spec
	if !initDone {
		// A regular init container that failed and will not restart fails the pod.
		for _, s := range spec.InitContainers {
			c := ps.containers[s.Name]
			if c == nil || c.current() == nil || c.current().running || c.current().exitCode == 0 {
				continue
			}
			if spec.RestartPolicy == v1.RestartPolicyNever || ps.terminal {
				return v1.PodFailed
			}
		}
		if ps.terminal {
			return v1.PodFailed
		}
		return v1.PodPending
	}
	var running, waiting, failed int
	for _, s := range spec.Containers {
		c := ps.containers[s.Name]
		switch {
		case c == nil || c.current() == nil:
			waiting++
		case c.current().running:
			running++
		case c.current().exitCode != 0:
			failed++
		}
	}
	switch {
	case running > 0:
		return v1.PodRunning
	case ps.terminal:
		if failed > 0 || waiting > 0 {
			return v1.PodFailed
		}
		return v1.PodSucceeded
	case waiting == len(spec.Containers):
		return v1.PodPending
	case waiting > 0:
		return v1.PodRunning
	}
	switch spec.RestartPolicy {
	case v1.RestartPolicyNever:
		if failed > 0 {
			return v1.PodFailed
		}
		return v1.PodSucceeded
	case v1.RestartPolicyOnFailure:
		if failed > 0 {
			return v1.PodRunning
		}
		return v1.PodSucceeded
	default:
		return v1.PodRunning // the kubelet would restart them
	}
}

// setCondition sets a pod condition, keeping its lastTransitionTime when its status does
// not change.
func setCondition(st *v1.PodStatus, now time.Time, typ v1.PodConditionType, ok bool, reason, message string) {
	cond := v1.PodCondition{Type: typ, Status: v1.ConditionTrue, LastTransitionTime: metav1.NewTime(now)}
	if !ok {
		cond.Status = v1.ConditionFalse
		cond.Reason = reason
		cond.Message = message
	}
	for i := range st.Conditions {
		if st.Conditions[i].Type != typ {
			continue
		}
		if st.Conditions[i].Status == cond.Status {
			cond.LastTransitionTime = st.Conditions[i].LastTransitionTime
		}
		st.Conditions[i] = cond
		return
	}
	st.Conditions = append(st.Conditions, cond)
}
