package collector

import (
	"testing"

	"k8s.io/apimachinery/pkg/types"

	"github.com/kubelogd/kubelogd/informer"
)

func TestFresherKeepsRestartFromRefresh(t *testing.T) {
	pod := func(uid string, restarts int32, id string, deleted bool) informer.Pod {
		return informer.Pod{UID: types.UID("u" + uid), Deleted: deleted, Containers: []informer.Container{
			{Name: "app", ContainerID: id, RestartCount: restarts, Running: !deleted},
			{Name: "side", ContainerID: "s1", Running: true},
		}}
	}
	refreshed := pod("1", 1, "c2", false)
	// A late informer event still shows the instance before the restart.
	got := fresher(refreshed, pod("1", 0, "c1", false), "app")
	if ct := got.Container("app"); ct.ContainerID != "c2" || ct.RestartCount != 1 {
		t.Errorf("stale event took the restart back: %+v", *ct)
	}
	// ... and the pod's other fields still come from the event.
	got = fresher(refreshed, pod("1", 0, "c1", true), "app")
	if !got.Deleted || got.Container("app").ContainerID != "c2" {
		t.Errorf("deleted = %v, container %+v; want deleted with c2", got.Deleted, *got.Container("app"))
	}
	if refreshed.Container("app").ContainerID != "c2" || refreshed.Deleted {
		t.Error("fresher changed its input")
	}
	// A newer event, or another pod UID, replaces the state as it is.
	if got := fresher(refreshed, pod("1", 2, "c3", false), "app"); got.Container("app").ContainerID != "c3" {
		t.Errorf("newer event ignored: %+v", *got.Container("app"))
	}
	if got := fresher(refreshed, pod("2", 0, "x1", false), "app"); got.Container("app").ContainerID != "x1" {
		t.Errorf("new pod UID ignored: %+v", *got.Container("app"))
	}
}
