package fakekubelet

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
)

// markDeleted does what the apiserver does on a graceful delete of a bound pod: it sets
// deletionTimestamp and leaves the pod for the kubelet to finish. (The fake clientset
// deletes at once, so the tests set the timestamp themselves.)
func (e *env) markDeleted(t *testing.T, ns, name string) {
	t.Helper()
	pod := e.getPod(t, ns, name)
	now := metav1.Now()
	grace := int64(30)
	pod.DeletionTimestamp = &now
	pod.DeletionGracePeriodSeconds = &grace
	if _, err := e.client.CoreV1().Pods(ns).Update(t.Context(), pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) gone(t *testing.T, ns, name string) bool {
	_, err := e.client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	return apierrors.IsNotFound(err)
}

func TestGracefulDeletion(t *testing.T) {
	tests := []struct {
		name      string
		killCode  int32
		wantPhase v1.PodPhase
		reason    string
	}{
		{name: "completed", killCode: 0, wantPhase: v1.PodSucceeded, reason: "Completed"},
		{name: "killed", killCode: 137, wantPhase: v1.PodFailed, reason: "Error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(c *Config) { c.KillExitCode = tt.killCode })
			var statuses []v1.PodStatus
			var deletes []metav1.DeleteOptions
			e.client.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if a.GetSubresource() == "status" {
					statuses = append(statuses, a.(k8stesting.UpdateAction).GetObject().(*v1.Pod).Status)
				}
				return false, nil, nil
			})
			e.client.PrependReactor("delete", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				deletes = append(deletes, a.(k8stesting.DeleteAction).GetDeleteOptions())
				return false, nil, nil
			})
			e.running(t, "ns", "p", "c")
			e.appendText(t, "ns", "p", "c", "a")
			f := e.follow(t, "ns", "p", "c", "")
			wantLines(t, f.lines(t, 1), "a")

			e.markDeleted(t, "ns", "p")
			eventually(t, "the pod to be deleted", func() bool { return e.gone(t, "ns", "p") })

			if rest, err := f.rest(); err != nil || rest != "" {
				t.Errorf("follow stream at deletion: %q, %v", rest, err)
			}
			inst := e.k.Instances("ns", "p", "c")
			if len(inst) != 1 || inst[0].Running || inst[0].ExitCode != tt.killCode || inst[0].Reason != tt.reason {
				t.Errorf("instance after deletion: %+v", inst)
			}
			last := statuses[len(statuses)-1]
			if last.Phase != tt.wantPhase || last.ContainerStatuses[0].State.Terminated == nil {
				t.Errorf("final status: phase %s, %+v", last.Phase, last.ContainerStatuses[0].State)
			}
			if len(deletes) != 1 || deletes[0].GracePeriodSeconds == nil || *deletes[0].GracePeriodSeconds != 0 ||
				deletes[0].Preconditions == nil || *deletes[0].Preconditions.UID != types.UID("uid-ns-p") {
				t.Errorf("delete options %+v", deletes)
			}
			// The deleted pod's logs are no longer served, but what it emitted is kept.
			if code, _ := e.get(t, "ns", "p", "c", ""); code != 404 {
				t.Errorf("logs of a deleted pod: %d", code)
			}
			wantLines(t, e.k.Emitted("ns", "p", "c"), "a")
		})
	}
}

func TestHoldDeletion(t *testing.T) {
	tests := []struct {
		name    string
		cfg     func(*Config)
		hold    func(*Kubelet)
		release func(*Kubelet)
	}{
		{
			name:    "hold one pod",
			hold:    func(k *Kubelet) { k.HoldDeletion("ns", "p", true) },
			release: func(k *Kubelet) { k.HoldDeletion("ns", "p", false) },
		},
		{
			name:    "hold everything",
			hold:    func(k *Kubelet) { k.HoldDeletion("", "", true) },
			release: func(k *Kubelet) { k.HoldDeletion("", "", false) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.running(t, "ns", "p", "c")
			e.appendText(t, "ns", "p", "c", "a")
			tt.hold(e.k)
			e.markDeleted(t, "ns", "p")
			time.Sleep(quiet)
			if e.gone(t, "ns", "p") {
				t.Fatal("a held pod was deleted")
			}
			// A Terminating pod keeps running and serving logs.
			e.appendText(t, "ns", "p", "c", "b")
			if code, body := e.get(t, "ns", "p", "c", ""); code != 200 || body != "a\nb\n" {
				t.Errorf("logs while terminating: %d %q", code, body)
			}
			tt.release(e.k)
			eventually(t, "the released pod to be deleted", func() bool { return e.gone(t, "ns", "p") })
		})
	}
}

func TestKeepTerminating(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.KeepTerminating = true })
	e.running(t, "ns", "p", "c")
	e.markDeleted(t, "ns", "p")
	time.Sleep(quiet)
	if e.gone(t, "ns", "p") {
		t.Fatal("a pod was deleted with KeepTerminating")
	}
	if err := e.k.StartContainer(t.Context(), "ns", "p", "c"); err == nil {
		t.Error("started a container of a terminating pod")
	}
}

func TestForcedDeletionAndRecreation(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	e.appendText(t, "ns", "p", "c", "old")
	f := e.follow(t, "ns", "p", "c", "")
	wantLines(t, f.lines(t, 1), "old")
	if err := e.client.CoreV1().Pods("ns").Delete(t.Context(), "p", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// The containers of a pod gone from the API stop, so its follow streams end.
	if rest, err := f.rest(); err != nil || rest != "" {
		t.Errorf("follow after forced deletion: %q, %v", rest, err)
	}
	eventually(t, "logs of the deleted pod to go", func() bool {
		code, _ := e.get(t, "ns", "p", "c", "")
		return code == 404
	})

	// Same name, new UID: a new pod with its own containers and files.
	pod := e.podSpec("ns", "p", "c")
	pod.UID = "uid-second"
	e.create(t, pod)
	if err := e.k.StartContainer(t.Context(), "ns", "p", "c"); err != nil {
		t.Fatal(err)
	}
	e.appendText(t, "ns", "p", "c", "new")
	if code, body := e.get(t, "ns", "p", "c", ""); code != 200 || body != "new\n" {
		t.Errorf("logs of the new pod: %d %q", code, body)
	}
	wantLines(t, e.k.Emitted("ns", "p", "c"), "new")
	wantLines(t, e.k.EmittedByUID("uid-ns-p", "c"), "old")
}
