package fakekubelet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRegister(t *testing.T) {
	e := newEnv(t)
	node, err := e.client.CoreV1().Nodes().Get(t.Context(), DefaultNodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := node.Status.DaemonEndpoints.KubeletEndpoint.Port; int(got) != e.k.Port() {
		t.Errorf("kubelet port %d, want %d", got, e.k.Port())
	}
	if len(node.Status.Addresses) != 1 || node.Status.Addresses[0] != (v1.NodeAddress{Type: v1.NodeInternalIP, Address: "127.0.0.1"}) {
		t.Errorf("addresses %v", node.Status.Addresses)
	}
	if len(node.Status.Conditions) != 1 || node.Status.Conditions[0].Type != v1.NodeReady || node.Status.Conditions[0].Status != v1.ConditionTrue {
		t.Errorf("conditions %v", node.Status.Conditions)
	}

	// Registering again updates the node and drops taints.
	node.Spec.Taints = []v1.Taint{{Key: "node.kubernetes.io/not-ready", Effect: v1.TaintEffectNoSchedule}}
	if _, err := e.client.CoreV1().Nodes().Update(t.Context(), node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.k.Register(t.Context()); err != nil {
		t.Fatal(err)
	}
	node, _ = e.client.CoreV1().Nodes().Get(t.Context(), DefaultNodeName, metav1.GetOptions{})
	if len(node.Spec.Taints) != 0 {
		t.Errorf("taints left after Register: %v", node.Spec.Taints)
	}
}

func TestStartAndTerminatePhases(t *testing.T) {
	tests := []struct {
		name      string
		policy    v1.RestartPolicy
		exitCodes []int32
		wantPhase v1.PodPhase
		reason    string
	}{
		{name: "never all succeed", policy: v1.RestartPolicyNever, exitCodes: []int32{0, 0}, wantPhase: v1.PodSucceeded, reason: "Completed"},
		{name: "never one fails", policy: v1.RestartPolicyNever, exitCodes: []int32{0, 1}, wantPhase: v1.PodFailed, reason: "Error"},
		{name: "on failure succeeds", policy: v1.RestartPolicyOnFailure, exitCodes: []int32{0, 0}, wantPhase: v1.PodSucceeded, reason: "Completed"},
		{name: "on failure would restart", policy: v1.RestartPolicyOnFailure, exitCodes: []int32{0, 2}, wantPhase: v1.PodRunning, reason: "Error"},
		{name: "always would restart", policy: v1.RestartPolicyAlways, exitCodes: []int32{0, 0}, wantPhase: v1.PodRunning, reason: "Completed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			pod := e.podSpec("ns", "p", "a", "b")
			pod.Spec.RestartPolicy = tt.policy
			e.create(t, pod)
			if err := e.k.StartContainer(t.Context(), "ns", "p", "a"); err != nil {
				t.Fatal(err)
			}
			got := e.getPod(t, "ns", "p")
			if got.Status.Phase != v1.PodRunning {
				t.Errorf("phase with one container running: %s", got.Status.Phase)
			}
			if len(got.Status.ContainerStatuses) != 2 {
				t.Fatalf("container statuses %v", got.Status.ContainerStatuses)
			}
			a, b := got.Status.ContainerStatuses[0], got.Status.ContainerStatuses[1]
			if a.State.Running == nil || !a.Ready || !strings.HasPrefix(a.ContainerID, "containerd://") || len(a.ContainerID) != len("containerd://")+64 {
				t.Errorf("status of started container: %+v", a)
			}
			if b.State.Waiting == nil || b.State.Waiting.Reason != "ContainerCreating" || b.ContainerID != "" {
				t.Errorf("status of waiting container: %+v", b)
			}
			if cond := findCondition(got.Status.Conditions, v1.PodReady); cond == nil || cond.Status != v1.ConditionFalse {
				t.Errorf("Ready condition with a waiting container: %+v", cond)
			}
			if err := e.k.StartContainer(t.Context(), "ns", "p", "b"); err != nil {
				t.Fatal(err)
			}
			if cond := findCondition(e.getPod(t, "ns", "p").Status.Conditions, v1.PodReady); cond == nil || cond.Status != v1.ConditionTrue {
				t.Errorf("Ready condition with all running: %+v", cond)
			}
			for i, c := range []string{"a", "b"} {
				if err := e.k.Terminate(t.Context(), "ns", "p", c, tt.exitCodes[i], ""); err != nil {
					t.Fatal(err)
				}
			}
			got = e.getPod(t, "ns", "p")
			if got.Status.Phase != tt.wantPhase {
				t.Errorf("phase %s, want %s", got.Status.Phase, tt.wantPhase)
			}
			term := got.Status.ContainerStatuses[1].State.Terminated
			if term == nil || term.ExitCode != tt.exitCodes[1] || term.Reason != tt.reason || term.ContainerID != got.Status.ContainerStatuses[1].ContainerID || term.FinishedAt.IsZero() {
				t.Errorf("terminated state %+v", term)
			}
			if err := e.k.Terminate(t.Context(), "ns", "p", "a", 0, ""); err == nil {
				t.Error("terminating a terminated container succeeded")
			}
		})
	}
}

func TestInitContainersKeepPodPending(t *testing.T) {
	e := newEnv(t)
	pod := e.podSpec("ns", "p", "main")
	pod.Spec.InitContainers = []v1.Container{{Name: "init", Image: "busybox"}}
	e.create(t, pod)
	if err := e.k.StartContainer(t.Context(), "ns", "p", "init"); err != nil {
		t.Fatal(err)
	}
	got := e.getPod(t, "ns", "p")
	if got.Status.Phase != v1.PodPending {
		t.Errorf("phase while the init container runs: %s", got.Status.Phase)
	}
	if w := got.Status.ContainerStatuses[0].State.Waiting; w == nil || w.Reason != "PodInitializing" {
		t.Errorf("main container while initializing: %+v", got.Status.ContainerStatuses[0].State)
	}
	if got.Status.InitContainerStatuses[0].State.Running == nil {
		t.Errorf("init container status %+v", got.Status.InitContainerStatuses[0])
	}
	e.appendText(t, "ns", "p", "init", "init says hi")
	if err := e.k.Terminate(t.Context(), "ns", "p", "init", 0, ""); err != nil {
		t.Fatal(err)
	}
	if cond := findCondition(e.getPod(t, "ns", "p").Status.Conditions, v1.PodInitialized); cond == nil || cond.Status != v1.ConditionTrue {
		t.Errorf("Initialized condition: %+v", cond)
	}
	if err := e.k.StartContainer(t.Context(), "ns", "p", "main"); err != nil {
		t.Fatal(err)
	}
	if got := e.getPod(t, "ns", "p").Status.Phase; got != v1.PodRunning {
		t.Errorf("phase once main runs: %s", got)
	}
	// Logs of a completed init container stay readable.
	if code, body := e.get(t, "ns", "p", "init", ""); code != 200 || body != "init says hi\n" {
		t.Errorf("init logs: %d %q", code, body)
	}
}

func TestRestart(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	first := e.getPod(t, "ns", "p").Status.ContainerStatuses[0]
	e.appendText(t, "ns", "p", "c", "one")
	if err := e.k.Restart(t.Context(), "ns", "p", "c", 137, "OOMKilled"); err != nil {
		t.Fatal(err)
	}
	cs := e.getPod(t, "ns", "p").Status.ContainerStatuses[0]
	last := cs.LastTerminationState.Terminated
	switch {
	case cs.RestartCount != 1, cs.State.Running == nil, cs.ContainerID == first.ContainerID:
		t.Errorf("after restart: %+v", cs)
	case last == nil || last.ExitCode != 137 || last.Reason != "OOMKilled" || last.ContainerID != first.ContainerID:
		t.Errorf("lastState after restart: %+v", last)
	}
	e.appendText(t, "ns", "p", "c", "two")

	// Two quick restarts: restartCount jumps, previous reaches only the last instance.
	if err := e.k.RestartN(t.Context(), "ns", "p", "c", 2, 1, ""); err != nil {
		t.Fatal(err)
	}
	cs = e.getPod(t, "ns", "p").Status.ContainerStatuses[0]
	if cs.RestartCount != 3 || cs.LastTerminationState.Terminated.Reason != "Error" {
		t.Errorf("after two restarts: %+v", cs)
	}
	inst := e.k.Instances("ns", "p", "c")
	if len(inst) != 4 {
		t.Fatalf("instances: %+v", inst)
	}
	for i, in := range inst {
		if want := filepath.Join(e.k.Dir(), "ns_p_uid-ns-p", "c", []string{"0", "1", "2", "3"}[i]+".log"); in.LogPath != want {
			t.Errorf("instance %d log path %s, want %s", i, in.LogPath, want)
		}
		if _, err := os.Stat(in.LogPath); err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
	if cs.LastTerminationState.Terminated.ContainerID != inst[2].ContainerID {
		t.Errorf("lastState names %s, want the instance just before the running one", cs.LastTerminationState.Terminated.ContainerID)
	}
	e.appendText(t, "ns", "p", "c", "four")
	wantLines(t, e.k.Emitted("ns", "p", "c"), "one", "two", "four")
}

func TestRestartRefusedByPolicy(t *testing.T) {
	tests := []struct {
		name     string
		policy   v1.RestartPolicy
		exitCode int32
		wantErr  bool
	}{
		{name: "never", policy: v1.RestartPolicyNever, exitCode: 1, wantErr: true},
		{name: "on failure after success", policy: v1.RestartPolicyOnFailure, exitCode: 0, wantErr: true},
		{name: "on failure after failure", policy: v1.RestartPolicyOnFailure, exitCode: 1},
		{name: "always", policy: v1.RestartPolicyAlways, exitCode: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			pod := e.podSpec("ns", "p", "c")
			pod.Spec.RestartPolicy = tt.policy
			e.create(t, pod)
			if err := e.k.StartContainer(t.Context(), "ns", "p", "c"); err != nil {
				t.Fatal(err)
			}
			if err := e.k.Terminate(t.Context(), "ns", "p", "c", tt.exitCode, ""); err != nil {
				t.Fatal(err)
			}
			err := e.k.StartContainer(t.Context(), "ns", "p", "c")
			if (err != nil) != tt.wantErr {
				t.Fatalf("restart error %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && e.getPod(t, "ns", "p").Status.ContainerStatuses[0].RestartCount != 1 {
				t.Error("restartCount not 1 after start of a terminated container")
			}
		})
	}
}

func TestEphemeralContainer(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "main")
	pod := e.getPod(t, "ns", "p")
	pod.Spec.EphemeralContainers = []v1.EphemeralContainer{{EphemeralContainerCommon: v1.EphemeralContainerCommon{Name: "debugger", Image: "busybox"}}}
	if _, err := e.client.CoreV1().Pods("ns").UpdateEphemeralContainers(t.Context(), "p", pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.k.StartContainer(t.Context(), "ns", "p", "debugger"); err != nil {
		t.Fatal(err)
	}
	statuses := e.getPod(t, "ns", "p").Status.EphemeralContainerStatuses
	if len(statuses) != 1 || statuses[0].State.Running == nil {
		t.Fatalf("ephemeral statuses %+v", statuses)
	}
	e.appendText(t, "ns", "p", "debugger", "debugging")
	if code, body := e.get(t, "ns", "p", "debugger", ""); code != 200 || body != "debugging\n" {
		t.Errorf("ephemeral logs: %d %q", code, body)
	}
	if err := e.k.Restart(t.Context(), "ns", "p", "debugger", 0, ""); err == nil {
		t.Error("an ephemeral container restarted")
	}
}

func TestUpdatePodStatusAndSetPhase(t *testing.T) {
	e := newEnv(t)
	e.running(t, "ns", "p", "c")
	if err := e.k.UpdatePodStatus(t.Context(), "ns", "p", func(st *v1.PodStatus) {
		st.PodIP = "10.0.0.7"
		st.PodIPs = []v1.PodIP{{IP: "10.0.0.7"}}
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.k.SetPhase(t.Context(), "ns", "p", v1.PodFailed); err != nil {
		t.Fatal(err)
	}
	got := e.getPod(t, "ns", "p")
	if got.Status.Phase != v1.PodFailed || got.Status.PodIP != "10.0.0.7" {
		t.Errorf("phase %s, podIP %q", got.Status.Phase, got.Status.PodIP)
	}
	if err := e.k.SetPhase(t.Context(), "ns", "p", ""); err != nil {
		t.Fatal(err)
	}
	if got := e.getPod(t, "ns", "p").Status.Phase; got != v1.PodRunning {
		t.Errorf("derived phase after clearing the override: %s", got)
	}
}

func TestVerbErrors(t *testing.T) {
	e := newEnv(t)
	other := e.podSpec("ns", "elsewhere", "c")
	other.Spec.NodeName = "other-node"
	e.create(t, other)
	e.running(t, "ns", "p", "c")
	tests := []struct {
		name string
		err  error
	}{
		{name: "pod on another node", err: e.k.StartContainer(t.Context(), "ns", "elsewhere", "c")},
		{name: "missing pod", err: e.k.StartContainer(t.Context(), "ns", "missing", "c")},
		{name: "unknown container", err: e.k.StartContainer(t.Context(), "ns", "p", "nope")},
		{name: "already running", err: e.k.StartContainer(t.Context(), "ns", "p", "c")},
		{name: "append to unknown pod", err: e.k.Append("ns", "missing", "c", Line{Text: "x"})},
		{name: "append with newline", err: e.k.Append("ns", "p", "c", Line{Text: "a\nb"})},
		{name: "append to bad stream", err: e.k.Append("ns", "p", "c", Line{Stream: "stdin", Text: "x"})},
		{name: "partial with zero part size", err: e.k.AppendPartial("ns", "p", "c", Line{Text: "x"}, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.err == nil {
				t.Error("no error")
			}
		})
	}
}

func findCondition(conds []v1.PodCondition, typ v1.PodConditionType) *v1.PodCondition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// TestStartContainers: several containers start with one status write, each with its own
// file, as StartContainer would start them one by one.
func TestStartContainers(t *testing.T) {
	e := newEnv(t)
	e.create(t, e.podSpec("ns", "p", "a", "b", "c"))
	before := len(e.client.Actions())
	if err := e.k.StartContainers(t.Context(), "ns", "p", "a", "b"); err != nil {
		t.Fatal(err)
	}
	writes := 0
	for _, a := range e.client.Actions()[before:] {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			writes++
		}
	}
	if writes != 1 {
		t.Errorf("%d status writes, want 1", writes)
	}
	got := e.getPod(t, "ns", "p")
	for i, want := range []bool{true, true, false} {
		if cs := got.Status.ContainerStatuses[i]; (cs.State.Running != nil) != want {
			t.Errorf("container %s: running %v, want %v", cs.Name, cs.State.Running != nil, want)
		}
	}
	e.appendText(t, "ns", "p", "a", "to a")
	e.appendText(t, "ns", "p", "b", "to b")
	wantLines(t, e.k.Emitted("ns", "p", "a"), "to a")
	wantLines(t, e.k.Emitted("ns", "p", "b"), "to b")
	if err := e.k.StartContainers(t.Context(), "ns", "p", "c", "a"); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("starting a running container again: %v", err)
	}
}
