package informer

import (
	"reflect"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func richPod() *corev1.Pod {
	yes := true
	always := corev1.ContainerRestartPolicyAlways
	at := metav1.NewTime(time.Date(2026, 11, 27, 7, 0, 0, 0, time.UTC))
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: "web-1", Namespace: "shop", UID: "u1", ResourceVersion: "42",
			Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{
				AnnotationExcludeContainers:                        "noisy",
				"kubectl.kubernetes.io/last-applied-configuration": strings.Repeat("x", 4000),
			},
			OwnerReferences: []metav1.OwnerReference{{Kind: "StatefulSet", Name: "web", Controller: &yes}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl", FieldsV1: metav1.NewFieldsV1(strings.Repeat("{}", 500))}},
		},
		Spec: corev1.PodSpec{
			NodeName:            "node-a",
			InitContainers:      []corev1.Container{{Name: "init", Image: "busybox"}, {Name: "sidecar", RestartPolicy: &always}},
			Containers:          []corev1.Container{{Name: "app", Image: "web", Env: []corev1.EnvVar{{Name: "A", Value: "b"}}}, {Name: "noisy"}},
			EphemeralContainers: []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug"}}},
			Volumes:             []corev1.Volume{{Name: "data"}},
		},
		Status: corev1.PodStatus{
			Phase:      corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady}},
			PodIP:      "10.0.0.1",
			InitContainerStatuses: []corev1.ContainerStatus{
				{Name: "init", ContainerID: "containerd://i1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://i1", Reason: "Completed", FinishedAt: at, Message: "done"}}},
				{Name: "sidecar", ContainerID: "containerd://s1", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}}},
			},
			ContainerStatuses: []corev1.ContainerStatus{{
				Name: "app", ContainerID: "containerd://a2", RestartCount: 2, Image: "web", ImageID: "sha256:1",
				State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: at}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: "containerd://a1", ExitCode: 137, Reason: "OOMKilled", FinishedAt: at, Message: strings.Repeat("m", 4000)}},
			}},
			EphemeralContainerStatuses: []corev1.ContainerStatus{{Name: "debug", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating", Message: "pulling"}}}},
		},
	}
}

// TestSlimKeepsWhatCollectionReads: the cache's slimmed pods give the same collection state
// as the full ones, and are much smaller.
func TestSlimKeepsWhatCollectionReads(t *testing.T) {
	want := FromPod(richPod())
	obj, err := slim(richPod())
	if err != nil {
		t.Fatal(err)
	}
	pod := obj.(*corev1.Pod)
	if got := FromPod(pod); !reflect.DeepEqual(got, want) {
		t.Errorf("FromPod after slim:\n got %+v\nwant %+v", got, want)
	}
	if pod.ManagedFields != nil || len(pod.Annotations) != 1 || pod.Spec.Volumes != nil || pod.Status.Conditions != nil ||
		pod.Spec.Containers[0].Env != nil || pod.Status.ContainerStatuses[0].LastTerminationState.Terminated.Message != "" {
		t.Errorf("slim kept what collection does not read: %+v", pod)
	}
	// Idempotent, as a transform may meet an object twice.
	again, _ := slim(pod.DeepCopy())
	if !reflect.DeepEqual(again, pod) {
		t.Error("slim is not idempotent")
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "shop/web-1", Obj: richPod()}
	if got, _ := slim(tomb); !reflect.DeepEqual(got, tomb) {
		t.Error("slim changed a tombstone")
	}
}
