package informer

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// slim is the informers' transform: it keeps of each pod only what FromPod reads, so that
// the cache of a big cluster costs little (managed fields, annotations such as
// kubectl's last-applied-configuration, and most of the spec are often most of a pod's
// size). It runs before objects enter the cache, and on each object once; it leaves
// anything that is not a pod (a tombstone, say) as it is.
func slim(obj any) (any, error) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	pod.ManagedFields = nil
	var ann map[string]string
	for k, v := range pod.Annotations {
		if strings.HasPrefix(k, "kubelogd.io/") {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[k] = v
		}
	}
	pod.Annotations = ann
	spec := corev1.PodSpec{NodeName: pod.Spec.NodeName}
	for _, c := range pod.Spec.InitContainers {
		spec.InitContainers = append(spec.InitContainers, corev1.Container{Name: c.Name, RestartPolicy: c.RestartPolicy})
	}
	for _, c := range pod.Spec.Containers {
		spec.Containers = append(spec.Containers, corev1.Container{Name: c.Name})
	}
	for _, c := range pod.Spec.EphemeralContainers {
		spec.EphemeralContainers = append(spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: c.Name}})
	}
	pod.Spec = spec
	pod.Status = corev1.PodStatus{
		Phase:                      pod.Status.Phase,
		InitContainerStatuses:      slimStatuses(pod.Status.InitContainerStatuses),
		ContainerStatuses:          slimStatuses(pod.Status.ContainerStatuses),
		EphemeralContainerStatuses: slimStatuses(pod.Status.EphemeralContainerStatuses),
	}
	return pod, nil
}

func slimStatuses(in []corev1.ContainerStatus) []corev1.ContainerStatus {
	out := make([]corev1.ContainerStatus, len(in))
	for i, s := range in {
		// Termination and waiting messages can be kilobytes; FromPod reads neither.
		for _, st := range []*corev1.ContainerState{&s.State, &s.LastTerminationState} {
			if t := st.Terminated; t != nil {
				t.Message = ""
			}
			if w := st.Waiting; w != nil {
				w.Message = ""
			}
		}
		out[i] = corev1.ContainerStatus{
			Name: s.Name, ContainerID: s.ContainerID, RestartCount: s.RestartCount,
			State: s.State, LastTerminationState: s.LastTerminationState,
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
