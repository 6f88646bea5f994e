package main

import (
	"bytes"
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"
)

// BenchmarkDecodePodPage measures what the daemon's choice of protobuf (internal/daemon,
// RestConfig) saves it: decoding one page of a LIST of 500 running pods, as the informer's
// lists and the first-line checks' shared LISTs read them, from JSON and from protobuf.
//
//	go test -run '^$' -bench DecodePodPage -benchmem ./hack/bench
func BenchmarkDecodePodPage(b *testing.B) {
	b.Run("json", func(b *testing.B) { benchDecode(b, runtime.ContentTypeJSON) })
	b.Run("protobuf", func(b *testing.B) { benchDecode(b, runtime.ContentTypeProtobuf) })
}

func benchDecode(b *testing.B, mediaType string) {
	codecs := serializer.NewCodecFactory(scheme.Scheme)
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), mediaType)
	if !ok {
		b.Fatalf("no serializer for %s", mediaType)
	}
	data, err := runtime.Encode(codecs.EncoderForVersion(info.Serializer, corev1.SchemeGroupVersion), runningPods(listPageSize))
	if err != nil {
		b.Fatal(err)
	}
	if want := mediaType == runtime.ContentTypeProtobuf; bytes.HasPrefix(data, []byte("k8s\x00")) != want {
		b.Fatalf("encoded as %s, the data begins %q", mediaType, data[:min(8, len(data))])
	}
	dec := codecs.UniversalDeserializer()
	b.SetBytes(int64(len(data))) // MB/s is of each format's own size: compare ns/op
	for b.Loop() {
		obj, _, err := dec.Decode(data, nil, &corev1.PodList{})
		if err != nil {
			b.Fatal(err)
		}
		if n := len(obj.(*corev1.PodList).Items); n != listPageSize {
			b.Fatalf("decoded %d pods, want %d", n, listPageSize)
		}
	}
}

// listPageSize is the collector's page of a shared LIST (collector/fetch.go's
// listPageSize; keep them alike).
const listPageSize = 500

// runningPods is n pods of one running container each, with the fields a kubelet fills in.
func runningPods(n int) *corev1.PodList {
	l := &corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "PodList", APIVersion: "v1"}}
	now := metav1.Now()
	for i := range n {
		l.Items = append(l.Items, corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p-%05d", i), Namespace: "latency",
				UID: "0b1c2d3e-aaaa-bbbb-cccc-0123456789ab", ResourceVersion: "123456", CreationTimestamp: now,
				Labels: map[string]string{"app": "bench", "pod-template-hash": "abcdef"}},
			Spec: corev1.PodSpec{NodeName: "bench-node-1", Containers: []corev1.Container{{Name: "c", Image: "registry.example/bench:1"}}},
			Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", StartTime: &now,
				Conditions: []corev1.PodCondition{
					{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: corev1.ContainersReady, Status: corev1.ConditionTrue, LastTransitionTime: now},
					{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
				},
				ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Ready: true, Image: "registry.example/bench:1",
					ImageID:     "registry.example/bench@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
					ContainerID: "containerd://0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
					State:       corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}}}},
		})
	}
	return l
}
