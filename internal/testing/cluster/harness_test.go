package cluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

// These tests read logs with client-go through the real kube-apiserver, which proxies to
// the fake kubelet: they prove the harness behaves like a node before anything relies on it.

func makePod(t *testing.T, c *Cluster, k *fakekubelet.Kubelet, ns, name string, containers ...string) {
	t.Helper()
	ctx := t.Context()
	if err := c.EnsureNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.PodSpec{NodeName: k.NodeName()}}
	for _, n := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
	}
	if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range containers {
		if err := k.StartContainer(ctx, ns, name, n); err != nil {
			t.Fatal(err)
		}
	}
}

func readAll(t *testing.T, c kubernetes.Interface, ns, pod string, opts *corev1.PodLogOptions) (string, error) {
	t.Helper()
	body, err := c.CoreV1().Pods(ns).GetLogs(pod, opts).Stream(t.Context())
	if err != nil {
		return "", err
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	return string(data), err
}

func texts(n int, prefix string) []fakekubelet.Line {
	out := make([]fakekubelet.Line, n)
	for i := range out {
		out[i] = fakekubelet.Line{Text: fmt.Sprintf("%s %d", prefix, i)}
	}
	return out
}

func TestLogOptionsThroughAPIServer(t *testing.T) {
	c, k := New(t)
	makePod(t, c, k, "logs", "p", "app")
	base := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var lines []fakekubelet.Line
	for i := range 6 {
		lines = append(lines, fakekubelet.Line{Time: base.Add(time.Duration(i) * 10 * time.Second).Add(123456 * time.Nanosecond), Text: fmt.Sprintf("l%d", i)})
	}
	if err := k.Append("logs", "p", "app", lines...); err != nil {
		t.Fatal(err)
	}
	i64 := func(v int64) *int64 { return &v }
	since := metav1.NewTime(base.Add(25 * time.Second))
	tests := []struct {
		name string
		opts corev1.PodLogOptions
		want string
	}{
		{"plain", corev1.PodLogOptions{}, "l0\nl1\nl2\nl3\nl4\nl5\n"},
		{"tailLines", corev1.PodLogOptions{TailLines: i64(2)}, "l4\nl5\n"},
		{"sinceTime", corev1.PodLogOptions{SinceTime: &since}, "l3\nl4\nl5\n"},
		{"limitBytes cuts mid-line", corev1.PodLogOptions{LimitBytes: i64(7)}, "l0\nl1\nl"},
		{"sinceSeconds beyond every line", corev1.PodLogOptions{SinceSeconds: i64(60)}, ""},
		{"timestamps with a 9-digit fraction", corev1.PodLogOptions{Timestamps: true, TailLines: i64(1)},
			base.Add(50*time.Second).Format("2006-01-02T15:04:05") + ".000123456Z l5\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Container = "app"
			got, err := readAll(t, c.Client, "logs", "p", &opts)
			if err != nil || got != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestFollowRestartRotationThroughAPIServer(t *testing.T) {
	c, k := New(t)
	ctx := t.Context()
	makePod(t, c, k, "logs", "f", "app")
	if err := k.Append("logs", "f", "app", texts(3, "before")...); err != nil {
		t.Fatal(err)
	}
	body, err := c.Client.CoreV1().Pods("logs").GetLogs("f", &corev1.PodLogOptions{Container: "app", Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	r := bufio.NewReader(body)
	expect := func(want string) {
		t.Helper()
		line, err := r.ReadString('\n')
		if err != nil || line != want+"\n" {
			t.Fatalf("follow read %q, %v; want %q", line, err, want)
		}
	}
	for i := range 3 {
		expect(fmt.Sprintf("before %d", i))
	}
	if err := k.Append("logs", "f", "app", fakekubelet.Line{Text: "live"}); err != nil {
		t.Fatal(err)
	}
	expect("live")
	// A long line written as P records arrives as one line.
	if err := k.AppendPartial("logs", "f", "app", fakekubelet.Line{Text: strings.Repeat("x", 100)}, 30); err != nil {
		t.Fatal(err)
	}
	expect(strings.Repeat("x", 100))
	// Rotation: the follow continues in the new file; a fresh read no longer sees old lines.
	if _, err := k.RotateLog("logs", "f", "app"); err != nil {
		t.Fatal(err)
	}
	if err := k.Append("logs", "f", "app", fakekubelet.Line{Text: "after rotation"}); err != nil {
		t.Fatal(err)
	}
	expect("after rotation")
	if got, err := readAll(t, c.Client, "logs", "f", &corev1.PodLogOptions{Container: "app"}); err != nil || got != "after rotation\n" {
		t.Fatalf("after rotation a fresh read got %q, %v", got, err)
	}
	// previous=true before any restart: 400 as on a node.
	_, err = readAll(t, c.Client, "logs", "f", &corev1.PodLogOptions{Container: "app", Previous: true})
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "previous terminated container") {
		t.Fatalf("previous without a previous instance: %v, want 400 naming it", err)
	}
	// Restart: the follow of the old instance ends; previous=true reads it.
	if err := k.Restart(ctx, "logs", "f", "app", 137, "OOMKilled"); err != nil {
		t.Fatal(err)
	}
	if rest, err := io.ReadAll(r); err != nil || len(rest) != 0 {
		t.Fatalf("old instance's follow after restart: %q, %v; want a clean end", rest, err)
	}
	if err := k.Append("logs", "f", "app", fakekubelet.Line{Text: "new instance"}); err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, c.Client, "logs", "f", &corev1.PodLogOptions{Container: "app", Previous: true}); err != nil || got != "after rotation\n" {
		t.Fatalf("previous=true got %q, %v", got, err)
	}
	if got, err := readAll(t, c.Client, "logs", "f", &corev1.PodLogOptions{Container: "app"}); err != nil || got != "new instance\n" {
		t.Fatalf("current instance got %q, %v", got, err)
	}
	pod, err := c.Client.CoreV1().Pods("logs").Get(ctx, "f", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := pod.Status.ContainerStatuses[0]
	if st.RestartCount != 1 || st.LastTerminationState.Terminated == nil || st.LastTerminationState.Terminated.Reason != "OOMKilled" || st.State.Running == nil {
		t.Fatalf("status after restart: %+v", st)
	}
}

func TestGracefulDeleteCompletes(t *testing.T) {
	c, k := New(t)
	makePod(t, c, k, "logs", "d", "app")
	if err := c.Client.CoreV1().Pods("logs").Delete(t.Context(), "d", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.Client.CoreV1().Pods("logs").Get(t.Context(), "d", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod still exists 30s after a graceful delete (err=%v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestServiceAccountWithoutPodsLogIsForbidden(t *testing.T) {
	c, k := New(t)
	ctx := t.Context()
	makePod(t, c, k, "logs", "p", "app")
	if err := c.EnsureServiceAccount(ctx, "logs", "reader"); err != nil {
		t.Fatal(err)
	}
	// The reader may get pods but not pods/log.
	if _, err := c.Client.RbacV1().Roles("logs").Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pods-only"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.RbacV1().RoleBindings("logs").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pods-only"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "pods-only"},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "reader", Namespace: "logs"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.ServiceAccountConfig(ctx, "logs", "reader")
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	if _, err := sa.CoreV1().Pods("logs").Get(ctx, "p", metav1.GetOptions{}); err != nil {
		t.Fatalf("get pod as reader: %v", err)
	}
	_, err = readAll(t, sa, "logs", "p", &corev1.PodLogOptions{Container: "app"})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `cannot get resource "pods/log"`) ||
		!strings.Contains(err.Error(), "system:serviceaccount:logs:reader") {
		t.Fatalf("reading logs as reader: %v, want 403 naming pods/log and the user", err)
	}
}

func TestRestartAPIServer(t *testing.T) {
	c, _ := New(t)
	if err := c.RestartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("after restart: %v", err)
	}
}
