package informer

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/types"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func pod(ns, name string, mut ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), ResourceVersion: "1"},
		Spec: corev1.PodSpec{
			NodeName:       "n1",
			InitContainers: []corev1.Container{{Name: "init"}},
			Containers:     []corev1.Container{{Name: "app"}, {Name: "side"}},
		},
	}
	for _, m := range mut {
		m(p)
	}
	return p
}

func TestFromPod(t *testing.T) {
	running := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	tests := []struct {
		name string
		pod  *corev1.Pod
		want []Container
		excl bool
	}{
		{
			name: "nothing started",
			pod:  pod("a", "p"),
			want: []Container{{Name: "init", Kind: KindInit}, {Name: "app", Kind: KindRegular}, {Name: "side", Kind: KindRegular}},
		},
		{
			name: "init terminated, app restarted, ephemeral running",
			pod: pod("a", "p", func(p *corev1.Pod) {
				p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug"}}}
				p.Status.InitContainerStatuses = []corev1.ContainerStatus{{Name: "init", ContainerID: "c://i",
					State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", ContainerID: "c://i"}}}}
				p.Status.ContainerStatuses = []corev1.ContainerStatus{
					{Name: "app", ContainerID: "c://a2", RestartCount: 1, State: running,
						LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 137, Reason: "OOMKilled", ContainerID: "c://a1"}}},
					{Name: "side", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}},
				}
				p.Status.EphemeralContainerStatuses = []corev1.ContainerStatus{{Name: "debug", ContainerID: "c://d", State: running}}
			}),
			want: []Container{
				{Name: "init", Kind: KindInit, ContainerID: "c://i", Terminated: &Termination{ContainerID: "c://i", Reason: "Completed"}},
				{Name: "app", Kind: KindRegular, ContainerID: "c://a2", RestartCount: 1, Running: true,
					LastTerminated: &Termination{ContainerID: "c://a1", ExitCode: 137, Reason: "OOMKilled"}},
				{Name: "side", Kind: KindRegular, Waiting: "ContainerCreating"},
				{Name: "debug", Kind: KindEphemeral, ContainerID: "c://d", Running: true},
			},
		},
		{
			name: "excluded containers",
			pod: pod("a", "p", func(p *corev1.Pod) {
				p.Annotations = map[string]string{AnnotationExcludeContainers: "init, side"}
			}),
			want: []Container{{Name: "app", Kind: KindRegular}},
		},
		{
			name: "excluded pod",
			pod: pod("a", "p", func(p *corev1.Pod) {
				p.Annotations = map[string]string{AnnotationExclude: "true"}
			}),
			want: []Container{{Name: "init", Kind: KindInit}, {Name: "app", Kind: KindRegular}, {Name: "side", Kind: KindRegular}},
			excl: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromPod(tt.pod)
			if got.Excluded != tt.excl {
				t.Errorf("Excluded = %v, want %v", got.Excluded, tt.excl)
			}
			if len(got.Containers) != len(tt.want) {
				t.Fatalf("containers = %+v, want %+v", got.Containers, tt.want)
			}
			for i, c := range got.Containers {
				w := tt.want[i]
				if c.Name != w.Name || c.Kind != w.Kind || c.ContainerID != w.ContainerID || c.RestartCount != w.RestartCount ||
					c.Running != w.Running || c.Waiting != w.Waiting || !sameTerm(c.Terminated, w.Terminated) || !sameTerm(c.LastTerminated, w.LastTerminated) {
					t.Errorf("container %d = %+v, want %+v", i, c, w)
				}
				if c.Started() != (w.ContainerID != "") {
					t.Errorf("container %s Started() = %v", c.Name, c.Started())
				}
			}
		})
	}
}

func sameTerm(a, b *Termination) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.ContainerID == b.ContainerID && a.ExitCode == b.ExitCode && a.Reason == b.Reason
}

type recorder struct {
	mu   sync.Mutex
	pods []Pod
}

func (r *recorder) OnPod(p Pod) {
	r.mu.Lock()
	r.pods = append(r.pods, p)
	r.mu.Unlock()
}

func (r *recorder) names() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, p := range r.pods {
		s := p.Namespace + "/" + p.Name
		if p.Deleted {
			s += " deleted"
		}
		out = append(out, s)
	}
	return out
}

func TestDiscoveryDeliversChanges(t *testing.T) {
	client := fake.NewClientset(pod("a", "p1"), pod("skip", "p2"))
	rec := &recorder{}
	d, err := New(client, Config{ExcludeNamespaces: []string{"skip"}}, rec, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	done := make(chan error)
	go func() { done <- d.Run(ctx) }()
	waitFor(t, func() bool { return d.Synced() })
	if _, err := client.CoreV1().Pods("b").Create(ctx, pod("b", "p3"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Pods("a").Delete(ctx, "p1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want := []string{"a/p1", "b/p3", "a/p1 deleted"}
	waitFor(t, func() bool { return slices.Equal(rec.names(), want) })
}

// TestUpdateToAnotherUID: a relist that finds a pod recreated with the same name
// delivers it as an update of the old object (the cache is keyed by name). The old pod is
// reported deleted before the new one, so that its targets stop (soak seed 982157956: the
// old pod's target read the new pod's log by name and wrote it under the old UID).
func TestUpdateToAnotherUID(t *testing.T) {
	rec := &recorder{}
	d := &Discovery{handler: rec, logger: slog.New(slog.DiscardHandler)}
	old, recreated := pod("a", "web-0"), pod("a", "web-0")
	old.UID, old.ResourceVersion = "u1", "10"
	recreated.UID, recreated.ResourceVersion = "u2", "12"
	d.onUpdate(old, recreated)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var got []string
	for _, p := range rec.pods {
		got = append(got, fmt.Sprintf("%s deleted=%v", p.UID, p.Deleted))
	}
	if want := []string{"u1 deleted=true", "u2 deleted=false"}; !slices.Equal(got, want) {
		t.Errorf("handler told %q, want %q", got, want)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"empty", Config{}, true},
		{"good selectors", Config{LabelSelector: "app in (a,b)", FieldSelector: "status.phase=Running"}, true},
		{"bad label selector", Config{LabelSelector: "app in (("}, false},
		{"bad field selector", Config{FieldSelector: "a=b=c,,"}, false},
		{"namespace both", Config{Namespaces: []string{"x"}, ExcludeNamespaces: []string{"x"}}, false},
		{"negative sync warn interval", Config{SyncWarnInterval: -time.Second}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestFieldSelector(t *testing.T) {
	c := Config{FieldSelector: "status.phase=Running", Node: "n1", ExcludeNamespaces: []string{"kube-system"}}
	got := c.fieldSelector()
	for _, part := range []string{"status.phase=Running", "spec.nodeName=n1", "metadata.namespace!=kube-system"} {
		if !contains(got, part) {
			t.Errorf("fieldSelector() = %q, missing %q", got, part)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
