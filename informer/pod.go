package informer

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Annotations a pod can carry to opt out of collection.
const (
	// AnnotationExclude set to "true" excludes the whole pod.
	AnnotationExclude = "kubelogd.io/exclude"
	// AnnotationExcludeContainers lists container names to exclude, comma-separated.
	AnnotationExcludeContainers = "kubelogd.io/exclude-containers"
)

// Kind tells which list of the pod spec a container comes from.
type Kind string

// Container kinds.
const (
	KindInit      Kind = "init"
	KindRegular   Kind = "regular"
	KindEphemeral Kind = "ephemeral"
)

// Pod is the part of a pod that collection depends on.
type Pod struct {
	UID       types.UID
	Namespace string
	Name      string
	Node      string
	Labels    map[string]string
	// OwnerKind and OwnerName name the pod's controller (e.g. ReplicaSet web-7d9f8), if any.
	OwnerKind string
	OwnerName string
	Phase     corev1.PodPhase
	// Deleted is set on the last state of a pod that is gone from the API; its logs can no
	// longer be read.
	Deleted bool
	// Excluded is set when the pod no longer matches the configured filters (for example an
	// exclude annotation was added): it is treated like a deleted pod.
	Excluded bool
	// Containers lists the containers to collect, excluded ones left out.
	Containers []Container
}

// Container is one container's current instance as the pod status reports it.
type Container struct {
	Name string
	Kind Kind
	// ContainerID identifies the current instance; empty until it has been created.
	ContainerID  string
	RestartCount int32
	// Running is set while the current instance runs.
	Running bool
	// Terminated describes the current instance once it has exited.
	Terminated *Termination
	// LastTerminated describes the previous instance, the one previous=true reads.
	LastTerminated *Termination
	// Waiting is the reason the container is waiting, e.g. ContainerCreating.
	Waiting string
}

// Termination is how an instance ended.
type Termination struct {
	ContainerID string
	ExitCode    int32
	Reason      string
	FinishedAt  time.Time
}

// Started reports whether the current instance has been created, so it has a log.
func (c *Container) Started() bool { return c.ContainerID != "" }

// Final reports whether the pod has finished: none of its containers will start again.
func (p *Pod) Final() bool {
	return p.Deleted || p.Excluded || p.Phase == corev1.PodSucceeded || p.Phase == corev1.PodFailed
}

// Container returns the named container, or nil.
func (p *Pod) Container(name string) *Container {
	for i := range p.Containers {
		if p.Containers[i].Name == name {
			return &p.Containers[i]
		}
	}
	return nil
}

// FromPod reduces an API pod to what collection needs, leaving out excluded containers.
// Containers are listed init first, then regular, then ephemeral, each in spec order.
func FromPod(pod *corev1.Pod) Pod {
	p := Pod{
		UID: pod.UID, Namespace: pod.Namespace, Name: pod.Name, Node: pod.Spec.NodeName,
		Labels: pod.Labels, Phase: pod.Status.Phase,
		Excluded: pod.Annotations[AnnotationExclude] == "true",
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		p.OwnerKind, p.OwnerName = ref.Kind, ref.Name
	}
	excluded := map[string]bool{}
	for _, name := range strings.Split(pod.Annotations[AnnotationExcludeContainers], ",") {
		if name = strings.TrimSpace(name); name != "" {
			excluded[name] = true
		}
	}
	add := func(kind Kind, names []string, statuses []corev1.ContainerStatus) {
		byName := make(map[string]*corev1.ContainerStatus, len(statuses))
		for i := range statuses {
			byName[statuses[i].Name] = &statuses[i]
		}
		for _, name := range names {
			if excluded[name] {
				continue
			}
			c := Container{Name: name, Kind: kind}
			if st := byName[name]; st != nil {
				c.ContainerID = st.ContainerID
				c.RestartCount = st.RestartCount
				c.Running = st.State.Running != nil
				if t := st.State.Terminated; t != nil {
					c.Terminated = termination(t)
					if c.ContainerID == "" {
						c.ContainerID = t.ContainerID
					}
				}
				if w := st.State.Waiting; w != nil {
					c.Waiting = w.Reason
				}
				if t := st.LastTerminationState.Terminated; t != nil {
					c.LastTerminated = termination(t)
				}
			}
			p.Containers = append(p.Containers, c)
		}
	}
	names := func(n int, get func(int) string) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = get(i)
		}
		return out
	}
	add(KindInit, names(len(pod.Spec.InitContainers), func(i int) string { return pod.Spec.InitContainers[i].Name }), pod.Status.InitContainerStatuses)
	add(KindRegular, names(len(pod.Spec.Containers), func(i int) string { return pod.Spec.Containers[i].Name }), pod.Status.ContainerStatuses)
	add(KindEphemeral, names(len(pod.Spec.EphemeralContainers), func(i int) string { return pod.Spec.EphemeralContainers[i].Name }), pod.Status.EphemeralContainerStatuses)
	return p
}

func termination(t *corev1.ContainerStateTerminated) *Termination {
	return &Termination{ContainerID: t.ContainerID, ExitCode: t.ExitCode, Reason: t.Reason, FinishedAt: t.FinishedAt.Time}
}
