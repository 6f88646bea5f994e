package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/oracle"
	"github.com/kubelogd/kubelogd/sink"
)

// collectThenStop runs kubelogd until a running container's lines are on disk and stops it
// with SIGTERM. It returns the lines on disk, which must be all the container emitted.
func (e *env) collectThenStop(dir, ns, pod, container string) []string {
	e.t.Helper()
	d := e.kubelogd(dir)
	d.waitReady()
	e.waitCollected(dir, ns, pod, container)
	d.stop()
	lines, _, err := oracle.ReadRotated(logPath(dir, ns, pod, container), "timestamped")
	if err != nil {
		e.t.Fatal(err)
	}
	return lines
}

// TestFaultRestartWhileDisconnected (scenario 10): kubelogd is stopped; the container logs
// more, restarts once and logs on. The next kubelogd reads the old instance's tail with
// previous=true, writes the restart marker, then the new instance's lines.
func TestFaultRestartWhileDisconnected(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "r1", nil, "app")
	e.start("f", "r1", "app")
	e.emit("f", "r1", "app", 30)
	dir := t.TempDir()
	e.collectThenStop(dir, "f", "r1", "app")
	e.emit("f", "r1", "app", 20) // the old instance's tail, never seen by a follow
	if err := e.k.Restart(context.Background(), "f", "r1", "app", 1, ""); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "r1", "app", 25)
	d := e.kubelogd(dir)
	d.waitReady()
	e.sections(dir, "f", "r1", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.instanceLines("f", "r1", "app", 0)},
			{Marker: "container restarted (restartCount 1): previous instance exited with code 1 (Error)", Lines: e.instanceLines("f", "r1", "app", 1)},
		}
	})
	previous := 0
	for _, r := range e.k.Requests("f", "r1", "app") {
		if r.Options.Previous {
			previous++
		}
	}
	if previous != 2 {
		t.Errorf("%d previous=true requests, want 2: one that writes the tail, one that ends where it did (a clean end alone proves nothing)", previous)
	}
}

// TestFaultReadWithoutFollowCutCleanly: the API server ends its response cleanly when the
// kubelet's breaks (it ignores the error of its copy), so a read without follow can end
// short with no error. A previous=true read cut inside its replay is read again (nothing
// written twice, no marker); a finished container's first read cut after 50 lines is
// read on (nothing lost). Found by the soak (seed 495333016): 12 lines written twice
// after a "rotated" marker.
func TestFaultReadWithoutFollowCutCleanly(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "cutprev", nil, "app")
	e.start("f", "cutprev", "app")
	e.emit("f", "cutprev", "app", 30)
	e.pod("f", "cutjob", func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever }, "main")
	dir := t.TempDir()
	e.collectThenStop(dir, "f", "cutprev", "app")
	e.emit("f", "cutprev", "app", 20)
	if err := e.k.Restart(context.Background(), "f", "cutprev", "app", 1, ""); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "cutprev", "app", 25)
	e.start("f", "cutjob", "main")
	e.emit("f", "cutjob", "main", 200)
	if err := e.k.Terminate(context.Background(), "f", "cutjob", "main", 0, ""); err != nil {
		t.Fatal(err)
	}
	// The resume replays the 30 lines of the second they were logged in: cut after 3.
	e.k.ScriptNext("f", "cutprev", "app", fakekubelet.Script{WithoutFollow: true, CutAfter: 3})
	e.k.ScriptNext("f", "cutjob", "main", fakekubelet.Script{WithoutFollow: true, CutAfter: 50})
	d := e.kubelogd(dir)
	d.waitReady()
	e.sections(dir, "f", "cutprev", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.instanceLines("f", "cutprev", "app", 0)},
			{Marker: "container restarted (restartCount 1): previous instance exited with code 1 (Error)", Lines: e.instanceLines("f", "cutprev", "app", 1)},
		}
	})
	e.exact(dir, "f", "cutjob", "main")
	for _, c := range []struct{ pod, container string }{{"cutprev", "app"}, {"cutjob", "main"}} {
		if n := e.k.PendingScripts("f", c.pod, c.container); n != 0 {
			t.Errorf("%s/%s: the scripted cut was not used (%d pending): the test proves nothing", c.pod, c.container, n)
		}
	}
}

// TestFaultRestartTwiceWhileDisconnected (scenario 11): while kubelogd is stopped the
// container logs more and restarts twice in a row. The first instance's tail is gone
// (previous=true serves only the last terminated instance) and the instance in between is
// skipped: gap markers say exactly that, around the restart marker.
func TestFaultRestartTwiceWhileDisconnected(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "r2", nil, "app")
	e.start("f", "r2", "app")
	e.emit("f", "r2", "app", 30)
	dir := t.TempDir()
	onDisk := e.collectThenStop(dir, "f", "r2", "app")
	e.emit("f", "r2", "app", 20) // really lost: only instance 0's file has them
	if err := e.k.RestartN(context.Background(), "f", "r2", "app", 2, 1, ""); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "r2", "app", 25)
	first := e.k.Instances("f", "r2", "app")[0].ContainerID
	d := e.kubelogd(dir)
	d.waitReady()
	e.sections(dir, "f", "r2", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: onDisk},
			{Marker: fmt.Sprintf("gap: the rest of the log of instance %s (restartCount 0) is no longer available", shortID(first))},
			{Marker: "container restarted (restartCount 2): previous instance exited with code 1 (Error)"},
			{Marker: "gap: 1 container instance(s) between restartCount 0 and 2 exited before their logs could be read", Lines: e.instanceLines("f", "r2", "app", 2)},
		}
	})
}

// TestFaultPreviousNotFound (scenario 12): kubelogd resumes a container that restarted while
// it was stopped, but the kubelet answers previous=true with 400 "previous terminated
// container ... not found" (it lost the instance). The old instance's tail really is
// unavailable: one gap marker, the restart marker, the new instance, and one such request.
func TestFaultPreviousNotFound(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "noprev", nil, "app")
	e.start("f", "noprev", "app")
	e.emit("f", "noprev", "app", 30)
	dir := t.TempDir()
	onDisk := e.collectThenStop(dir, "f", "noprev", "app")
	e.emit("f", "noprev", "app", 20)
	if err := e.k.Restart(context.Background(), "f", "noprev", "app", 1, ""); err != nil {
		t.Fatal(err)
	}
	e.k.ForgetPrevious("f", "noprev", "app")
	e.emit("f", "noprev", "app", 25)
	first := e.k.Instances("f", "noprev", "app")[0].ContainerID
	d := e.kubelogd(dir)
	d.waitReady()
	e.sections(dir, "f", "noprev", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: onDisk},
			{Marker: fmt.Sprintf("gap: the rest of the log of instance %s (restartCount 0) is no longer available", shortID(first))},
			{Marker: "container restarted (restartCount 1)", Lines: e.instanceLines("f", "noprev", "app", 1)},
		}
	})
	previous := 0
	for _, r := range e.k.Requests("f", "noprev", "app") {
		if r.Options.Previous {
			previous++
		}
	}
	if previous != 1 {
		t.Errorf("%d previous=true requests, want exactly 1 (no retry loop on 400)", previous)
	}
}

// TestFaultFirstSeenAfterRestart (scenario 12, the other side): kubelogd first sees a
// container that has already restarted. The previous instance's log is still served with
// previous=true, and without --since kubelogd reads everything the kubelet still has: the
// previous instance's lines, the restart marker, the current instance's lines.
func TestFaultFirstSeenAfterRestart(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "late", nil, "app")
	e.start("f", "late", "app")
	e.emit("f", "late", "app", 15)
	if err := e.k.Restart(context.Background(), "f", "late", "app", 2, ""); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "late", "app", 10)
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.sections(dir, "f", "late", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.instanceLines("f", "late", "app", 0)},
			{Marker: "container restarted (restartCount 1): previous instance exited with code 2 (Error)", Lines: e.instanceLines("f", "late", "app", 1)},
		}
	})
}

// TestFaultJobAlreadySucceeded (scenario 13): a Job pod (restartPolicy Never) finished
// before kubelogd started. Its log is read in full, without follow, and not read again.
func TestFaultJobAlreadySucceeded(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "job", func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever }, "main")
	e.start("f", "job", "main")
	e.emit("f", "job", "main", 200)
	if err := e.k.Terminate(context.Background(), "f", "job", "main", 0, ""); err != nil {
		t.Fatal(err)
	}
	pod, err := e.c.Client.CoreV1().Pods("f").Get(context.Background(), "job", metav1.GetOptions{})
	if err != nil || pod.Status.Phase != corev1.PodSucceeded {
		t.Fatalf("pod phase %v (%v), want Succeeded before kubelogd starts", pod.Status.Phase, err)
	}
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.exact(dir, "f", "job", "main")
	time.Sleep(2 * time.Second)
	reqs := e.k.Requests("f", "job", "main")
	for _, r := range reqs {
		if r.Options.Follow {
			t.Errorf("a follow request for a finished container: %v", r.Query)
		}
	}
	if len(reqs) > 2 {
		t.Errorf("%d log requests for a finished container, want 2: one that reads it, one that ends where it did", len(reqs))
	}
	if cur := readCursor(t, dir, "f", "job", "main"); !cur.Done {
		t.Errorf("cursor not done: %+v", cur)
	}
}

func readCursor(t *testing.T, dir, ns, pod, container string) sink.Cursor {
	t.Helper()
	c, err := sink.ReadCursorFile(filepath.Join(dir, ns, pod, "."+container+".cursor"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFaultPendingThenRunning (scenario 16): a pod waits in Pending / ContainerCreating;
// kubelogd asks nothing and writes nothing for it. It then starts, while the kubelet still
// answers 400 "waiting to start" for a few seconds (its status lags the API's); kubelogd
// retries with backoff and collects every line once.
func TestFaultPendingThenRunning(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "slow", nil, "app")
	if err := e.k.UpdatePodStatus(context.Background(), "f", "slow", nil); err != nil {
		t.Fatal(err)
	}
	pod, err := e.c.Client.CoreV1().Pods("f").Get(context.Background(), "slow", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w := pod.Status.ContainerStatuses[0].State.Waiting; pod.Status.Phase != corev1.PodPending || w == nil || w.Reason != "ContainerCreating" {
		t.Fatalf("pod status %+v, want Pending with app waiting in ContainerCreating", pod.Status)
	}
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	time.Sleep(3 * time.Second)
	if n := len(e.k.Requests("f", "slow", "app")); n != 0 {
		t.Errorf("%d log requests for a container that has not been created", n)
	}
	if _, err := os.Stat(filepath.Join(dir, "f", "slow")); !os.IsNotExist(err) {
		t.Errorf("a directory exists for a pod with no container created (stat: %v)", err)
	}
	from := time.Now()
	const window = 4 * time.Second
	e.k.FailFor("f", "slow", "app", window, 400, `container "app" in pod "slow" is waiting to start: ContainerCreating`)
	e.start("f", "slow", "app")
	e.emit("f", "slow", "app", 20)
	time.Sleep(window)
	e.emit("f", "slow", "app", 20)
	e.exact(dir, "f", "slow", "app")
	if n := len(e.requestsBetween("f", "slow", "app", from, from.Add(window))); n > 8 {
		t.Errorf("%d log requests in the %s of 400s, want at most 8 (backoff)", n, window)
	}
}

// TestFaultInitSidecarEphemeral (scenario 17): an init container, a sidecar (an init
// container with restartPolicy Always) that restarts, the main container, and an ephemeral
// container added later through the ephemeralcontainers subresource: one file each, every
// line once, a restart marker only in the sidecar's file.
func TestFaultInitSidecarEphemeral(t *testing.T) {
	e := parallelEnv(t)
	always := corev1.ContainerRestartPolicyAlways
	e.pod("f", "kinds", func(p *corev1.Pod) {
		p.Spec.InitContainers = []corev1.Container{
			{Name: "init", Image: "busybox"},
			{Name: "sidecar", Image: "envoy", RestartPolicy: &always},
		}
	}, "app")
	if err := e.k.UpdatePodStatus(context.Background(), "f", "kinds", nil); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	ctx := context.Background()
	e.start("f", "kinds", "init")
	e.emit("f", "kinds", "init", 10)
	if err := e.k.Terminate(ctx, "f", "kinds", "init", 0, ""); err != nil {
		t.Fatal(err)
	}
	e.start("f", "kinds", "sidecar")
	e.emit("f", "kinds", "sidecar", 10)
	e.start("f", "kinds", "app")
	e.emit("f", "kinds", "app", 10)
	e.waitCollected(dir, "f", "kinds", "sidecar")
	e.emit("f", "kinds", "sidecar", 5)
	if err := e.k.Restart(ctx, "f", "kinds", "sidecar", 1, ""); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "kinds", "sidecar", 5)

	pod, err := e.c.Client.CoreV1().Pods("f").Get(ctx, "kinds", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, corev1.EphemeralContainer{
		EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"},
		TargetContainerName:      "app",
	})
	if _, err := e.c.Client.CoreV1().Pods("f").UpdateEphemeralContainers(ctx, "kinds", pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.start("f", "kinds", "debug")
	e.emit("f", "kinds", "debug", 10)
	if err := e.k.Terminate(ctx, "f", "kinds", "debug", 0, ""); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "kinds", "app", 10)

	for _, c := range []string{"init", "app", "debug"} {
		e.exact(dir, "f", "kinds", c)
	}
	e.sections(dir, "f", "kinds", "sidecar", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.instanceLines("f", "kinds", "sidecar", 0)},
			{Marker: "container restarted (restartCount 1): previous instance exited with code 1 (Error)", Lines: e.instanceLines("f", "kinds", "sidecar", 1)},
		}
	})
}

// TestFaultRecreatedWithNewUID (scenario 20): lines flow while the pod is deleted and
// recreated with the same name (a StatefulSet pod); the new pod's lines continue the same
// file after a marker naming both UIDs, and the new pod is read from its start: no cursor
// carries over from the old UID.
func TestFaultRecreatedWithNewUID(t *testing.T) {
	e := parallelEnv(t)
	ctx := context.Background()
	first := e.pod("f", "web-0", nil, "app")
	e.start("f", "web-0", "app")
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	// One writer across both pods: Append goes to the newest pod of that name and fails
	// while none runs, so the lines just keep coming.
	stop := e.flow("f", "web-0", "app", 3*time.Millisecond, 1, func(i int) fakekubelet.Line {
		return fakekubelet.Line{Text: fmt.Sprintf("web-0 line %d", i)}
	})
	defer stop()
	time.Sleep(time.Second)
	if err := e.c.Client.CoreV1().Pods("f").Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "old pod gone", func() (bool, string) {
		_, err := e.c.Client.CoreV1().Pods("f").Get(ctx, "web-0", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	recreated := time.Now()
	second := e.pod("f", "web-0", nil, "app")
	if second.UID == first.UID {
		t.Fatal("recreated pod has the old UID")
	}
	e.start("f", "web-0", "app")
	time.Sleep(time.Second)
	stop()
	e.sections(dir, "f", "web-0", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.k.EmittedByUID(first.UID, "app")},
			{Marker: fmt.Sprintf("pod f/web-0 recreated with UID %s (previous UID %s)", second.UID, first.UID), Lines: e.k.EmittedByUID(second.UID, "app")},
		}
	})
	if n := len(e.k.EmittedByUID(second.UID, "app")); n == 0 {
		t.Fatal("the new pod emitted nothing")
	}
	// The first request after the recreation starts from the beginning of the new pod's
	// log: a cursor of the old UID would have sent a sinceTime.
	for _, r := range e.k.Requests("f", "web-0", "app") {
		if r.Time.After(recreated) {
			if r.Options.SinceTime != nil {
				t.Errorf("first request for the new pod has sinceTime %v: a cursor carried over from UID %s", r.Options.SinceTime, first.UID)
			}
			break
		}
	}
	if cur := readCursor(t, dir, "f", "web-0", "app"); cur.PodUID != string(second.UID) {
		t.Errorf("cursor belongs to UID %s, want %s", cur.PodUID, second.UID)
	}
}

// TestFaultRecreatedAfterRestarts (seed 76022315, soak-0/p-09/app): while kubelogd is
// down its pod is recreated, and the new pod's container logs, restarts into an instance
// that logs nothing and restarts again. The kubelet serves only the last two instances,
// so the new pod's first instance is lost: after the recreate marker the file says so,
// then holds the instances it could read.
func TestFaultRecreatedAfterRestarts(t *testing.T) {
	e := parallelEnv(t)
	ctx := context.Background()
	first := e.pod("f", "web-1", nil, "app")
	e.start("f", "web-1", "app")
	e.emit("f", "web-1", "app", 5)
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.waitCollected(dir, "f", "web-1", "app")
	d.stop()
	if err := e.c.Client.CoreV1().Pods("f").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "old pod gone", func() (bool, string) {
		_, err := e.c.Client.CoreV1().Pods("f").Get(ctx, "web-1", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	second := e.pod("f", "web-1", nil, "app")
	e.start("f", "web-1", "app")
	e.emit("f", "web-1", "app", 5) // instance 0: lost
	for range 2 {
		if err := e.k.Restart(ctx, "f", "web-1", "app", 1, "Error"); err != nil {
			t.Fatal(err)
		}
	}
	e.emit("f", "web-1", "app", 5)
	d = e.kubelogd(dir)
	d.waitReady()
	e.sections(dir, "f", "web-1", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.k.EmittedByUID(first.UID, "app")},
			{Marker: fmt.Sprintf("gap: pod UID %s was deleted before its log was read to the end", first.UID)},
			{Marker: fmt.Sprintf("pod f/web-1 recreated with UID %s (previous UID %s)", second.UID, first.UID)},
			{Marker: "gap: 1 container instance(s) before restartCount 1 exited before their logs could be read"},
			{Marker: "container restarted (restartCount 2): previous instance exited with code 1 (Error)", Lines: e.instanceLines("f", "web-1", "app", 2)},
		}
	})
}

// TestFirstSightAfterRestarts (seed 391711025, soak-0/p-00/app): a container logs,
// restarts into an instance that logs nothing and restarts again, all before kubelogd
// first sees it. The kubelet serves only the last terminated instance, so the first one
// is lost before kubelogd could read it: the new file starts by saying so, then holds the
// instances it could read.
func TestFirstSightAfterRestarts(t *testing.T) {
	e := parallelEnv(t)
	ctx := context.Background()
	e.pod("f", "early", nil, "app")
	e.start("f", "early", "app")
	e.emit("f", "early", "app", 5) // instance 0: lost
	for range 2 {
		if err := e.k.Restart(ctx, "f", "early", "app", 1, "Error"); err != nil {
			t.Fatal(err)
		}
	}
	e.emit("f", "early", "app", 5)
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.sections(dir, "f", "early", "app", func() []oracle.Want {
		return []oracle.Want{
			{}, // nothing before the first marker
			{Marker: "gap: 1 container instance(s) before restartCount 1 exited before their logs could be read"},
			{Marker: "container restarted (restartCount 2): previous instance exited with code 1 (Error)", Lines: e.instanceLines("f", "early", "app", 2)},
		}
	})
	if v := d.metric("kubelogd_gaps_total", "reason=instances_lost"); v != 1 {
		t.Errorf("kubelogd_gaps_total{reason=instances_lost} = %v, want 1", v)
	}
}

// TestFaultRecreatedWhileKubeletRestarts (seed 412598182, soak-0/p-03: the old pod's last
// 5 and 8 lines lost without a marker): the pod's kubelet restarts (it ends every stream
// cleanly, then answers 404 for the pod's logs for 2.3 s) and the pod is deleted and
// created again under the same name meanwhile. The old pod's lines logged after the cut
// cannot be read any more; the file must say so, not take the cut for the end of its log.
// The new pod's lines follow the recreate marker from its first, its container streamed
// or polled.
func TestFaultRecreatedWhileKubeletRestarts(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"streamed", nil},
		{"polled", []string{"--max-streams-per-node", "1", "--poll-max-interval", "1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := parallelEnv(t)
			ctx := context.Background()
			e.pod("f", "hold", nil, "app")
			e.start("f", "hold", "app")
			e.emit("f", "hold", "app", 5)
			first := e.pod("f", "web-0", nil, "app")
			e.start("f", "web-0", "app")
			dir := t.TempDir()
			d := e.kubelogd(dir, tc.args...)
			d.waitReady()
			stop := e.flow("f", "web-0", "app", 20*time.Millisecond, 1, func(i int) fakekubelet.Line {
				return fakekubelet.Line{Text: fmt.Sprintf("web-0 line %d", i)}
			})
			defer stop()
			time.Sleep(time.Second)
			e.k.FailFor("f", "web-0", "", 2300*time.Millisecond, http.StatusNotFound, `pod "web-0" does not exist`)
			e.k.CutStreams("f", "web-0", "", false)
			time.Sleep(160 * time.Millisecond)
			if err := e.c.Client.CoreV1().Pods("f").Delete(ctx, "web-0", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 30*time.Second, "old pod gone", func() (bool, string) {
				_, err := e.c.Client.CoreV1().Pods("f").Get(ctx, "web-0", metav1.GetOptions{})
				return apierrors.IsNotFound(err), fmt.Sprint(err)
			})
			second := e.pod("f", "web-0", nil, "app")
			e.start("f", "web-0", "app")
			time.Sleep(4 * time.Second)
			stop()
			// The old pod's lines logged while its kubelet was down were never served: the
			// file holds the ones before, then a gap marker for the rest if any is missing.
			e.sections(dir, "f", "web-0", "app", func() []oracle.Want {
				old := e.k.EmittedByUID(first.UID, "app")
				want := []oracle.Want{{Lines: old}}
				got, err := oracle.ReadSections(logPath(dir, "f", "web-0", "app"), "timestamped")
				if err == nil && len(got) > 0 && len(got[0].Lines) < len(old) {
					want = []oracle.Want{{Lines: old[:len(got[0].Lines)]}, {Marker: "pod deleted before its log was read to the end"}}
				}
				return append(want, oracle.Want{
					Marker: fmt.Sprintf("pod f/web-0 recreated with UID %s (previous UID %s)", second.UID, first.UID),
					Lines:  e.k.EmittedByUID(second.UID, "app"),
				})
			})
		})
	}
}
