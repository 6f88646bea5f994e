package plugin

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParseArgs(t *testing.T) {
	for _, tc := range []struct {
		name      string
		args      []string
		tail      []string
		ns, kc    string
		ctx, prot string
		err       string
	}{
		{name: "defaults", args: []string{"-n", "shop", "web"}, tail: []string{"-n", "shop", "web"}, ns: "kubelogd", prot: "auto"},
		{name: "own flags anywhere", args: []string{"-f", "--kubelogd-namespace", "logging", "-n", "shop", "--context=prod", "--kubeconfig", "/k", "web"},
			tail: []string{"-f", "-n", "shop", "web"}, ns: "logging", kc: "/k", ctx: "prod", prot: "auto"},
		{name: "values stay with their flag", args: []string{"--grep", "--context", "-c", "--kubeconfig", "--since=1h"},
			tail: []string{"--grep", "--context", "-c", "--kubeconfig", "--since=1h"}, ns: "kubelogd", prot: "auto"},
		{name: "combined shorthands", args: []string{"-fn", "shop", "-Ac", "app", "-nother", "--exec-protocol", "spdy"},
			tail: []string{"-fn", "shop", "-Ac", "app", "-nother"}, ns: "kubelogd", prot: "spdy"},
		{name: "after --", args: []string{"--", "--context"}, tail: []string{"--", "--context"}, ns: "kubelogd", prot: "auto"},
		{name: "unknown", args: []string{"--nope"}, err: "unknown flag: --nope"},
		{name: "unknown shorthand", args: []string{"-z"}, err: "unknown shorthand flag"},
		{name: "bad protocol", args: []string{"--exec-protocol", "http"}, err: "invalid --exec-protocol"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := ParseArgs(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.TailArgs, tc.tail) || o.Namespace != tc.ns || o.Kubeconfig != tc.kc || o.Context != tc.ctx || o.Protocol != tc.prot {
				t.Fatalf("got %+v", o)
			}
		})
	}
}

func TestRemoteCommand(t *testing.T) {
	c := corev1.Container{Args: []string{"--output-dir=/data", "--format", "json", "--metrics-addr=:8080"}}
	got := RemoteCommand(c, []string{"-n", "shop"})
	want := []string{"/kubelogd", "tail", "--output-dir=/data", "--format=json", "-n", "shop"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	// The user's own --output-dir wins; a container command replaces the entrypoint.
	c.Command = []string{"/bin/kubelogd"}
	got = RemoteCommand(c, []string{"--output-dir", "/x"})
	want = []string{"/bin/kubelogd", "tail", "--format=json", "--output-dir", "/x"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func kubelogdPod(name string, phase corev1.PodPhase, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "kubelogd", Name: name, Labels: map[string]string{"app.kubernetes.io/name": "kubelogd"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "sidecar"}, {Name: "kubelogd"}}},
		Status:     corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

func TestFindPod(t *testing.T) {
	client := fake.NewClientset(
		kubelogdPod("kubelogd-a", corev1.PodPending, false),
		kubelogdPod("kubelogd-c", corev1.PodRunning, true),
		kubelogdPod("kubelogd-b", corev1.PodRunning, false),
		kubelogdPod("kubelogd-d", corev1.PodRunning, true),
	)
	got, err := FindPod(t.Context(), client.CoreV1(), "kubelogd", DefaultSelector)
	if err != nil {
		t.Fatal(err)
	}
	if got.Pod.Name != "kubelogd-c" || got.Container.Name != "kubelogd" {
		t.Fatalf("picked %s/%s, want the first ready pod kubelogd-c, container kubelogd", got.Pod.Name, got.Container.Name)
	}

	_, err = FindPod(t.Context(), client.CoreV1(), "logging", DefaultSelector)
	if !errors.Is(err, ErrNoPod) || !strings.Contains(err.Error(), `namespace "logging"`) || !strings.Contains(err.Error(), "--kubelogd-namespace") {
		t.Fatalf("error %v", err)
	}
	notReady := fake.NewClientset(kubelogdPod("kubelogd-a", corev1.PodPending, false), kubelogdPod("kubelogd-b", corev1.PodRunning, false))
	_, err = FindPod(t.Context(), notReady.CoreV1(), "kubelogd", DefaultSelector)
	if !errors.Is(err, ErrNoPod) || !strings.Contains(err.Error(), "kubelogd-a (Pending), kubelogd-b (not ready)") {
		t.Fatalf("error %v", err)
	}
}
