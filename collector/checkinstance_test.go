package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	fakecorev1 "k8s.io/client-go/kubernetes/typed/core/v1/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// TestCheckInstance: before a replay without the last line written is settled as a
// rotation, the pod fetched from the API decides whether the replay is the cursor's
// instance (settle), a newer one (read the old one first), or unknown (retry).
func TestCheckInstance(t *testing.T) {
	finished := time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC)
	running := func(id string) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "app", ContainerID: id, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	}
	exited := corev1.ContainerStatus{Name: "app", ContainerID: "c1", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ContainerID: "c1", ExitCode: 1, FinishedAt: metav1.NewTime(finished)}}}
	restarted := running("c2")
	restarted.RestartCount = 1
	restarted.LastTerminationState = exited.State
	heldAt := func(ts time.Time) []heldLine { return []heldLine{{ts: ts}} }
	for _, tc := range []struct {
		name   string
		pod    *corev1.Pod // nil: no such pod
		held   []heldLine
		want   error
		wantID string // the container instance the target's state names afterwards
	}{
		{name: "same instance running", pod: apiPod("u1", running("c1")), held: heldAt(finished), want: nil, wantID: "c1"},
		{name: "restarted", pod: apiPod("u1", restarted), held: heldAt(finished.Add(time.Minute)), want: errInstanceReplaced, wantID: "c2"},
		{name: "exited before the held lines", pod: apiPod("u1", exited), held: heldAt(finished.Add(5 * time.Second)), want: errShortReplay, wantID: "c1"},
		{name: "exited after the held lines", pod: apiPod("u1", exited), held: heldAt(finished.Add(-time.Second)), want: nil, wantID: "c1"},
		{name: "recreated with another UID", pod: apiPod("u2", running("x1")), held: heldAt(finished), want: errShortReplay, wantID: "c1"},
		{name: "gone", pod: nil, held: heldAt(finished), want: errShortReplay, wantID: "c1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := fake.NewClientset()
			if tc.pod != nil {
				client = fake.NewClientset(tc.pod)
			}
			m, err := sink.NewManager(sink.Config{Dir: t.TempDir(), MaxBackups: 1})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = m.Close() })
			c := New(Config{}, client.CoreV1(), m, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
			s := newTarget(c, informer.Pod{UID: "u1", Namespace: "default", Name: "web-0",
				Containers: []informer.Container{{Name: "app", ContainerID: "c1", Running: true}}}, "app")
			s.ctx = context.Background()
			if err := s.openFile(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.closeFile)
			s.file.Cursor().Reset("u1", "c1", 0)
			if err := s.checkInstance(tc.held); !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Errorf("checkInstance = %v, want %v", err, tc.want)
			}
			p := s.snapshot()
			if ct := p.Container("app"); ct == nil || ct.ContainerID != tc.wantID {
				t.Errorf("stream state names %+v, want instance %s", ct, tc.wantID)
			}
		})
	}
}

func apiPod(uid string, st corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default", UID: types.UID(uid)},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{st}},
	}
}

// TestFirstReadAfterRestartChecksThePod: a read by pod name serves whatever pod of that
// name exists. The first read of an instance begun after a restart has no replay to check
// what it serves, so the pod is fetched first: another UID (the pod was recreated while
// the watch was blind) or another instance writes nothing (soak seed 982157956: a
// recreated pod's lines written under the old UID). The fake client answers every log
// request with "fake logs", which consume takes for a kubelet error text: reaching it
// shows the check let the read through.
func TestFirstReadAfterRestartChecksThePod(t *testing.T) {
	running := func(id string, restarts int32) corev1.ContainerStatus {
		return corev1.ContainerStatus{Name: "app", ContainerID: id, RestartCount: restarts, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	}
	for _, tc := range []struct {
		name  string
		pod   *corev1.Pod
		check bool  // the instance began after a restart
		want  error // of readOnce
	}{
		{name: "the cursor's pod and instance", pod: apiPod("u1", running("c1", 1)), check: true, want: errBodyError},
		{name: "recreated with another UID", pod: apiPod("u2", running("x1", 0)), check: true, want: errOtherPod},
		{name: "restarted again", pod: apiPod("u1", running("c2", 2)), check: true, want: errInstanceReplaced},
		{name: "first sight: not checked", pod: apiPod("u2", running("x1", 0)), check: false, want: errBodyError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, out := testTarget(t, tc.pod)
			tg.inst.checkServed = tc.check
			_, err := tg.readOnce(t.Context(), readFollow, false)
			if !errors.Is(err, tc.want) {
				t.Errorf("readOnce = %v, want %v", err, tc.want)
			}
			if len(out.written) != 0 {
				t.Errorf("wrote %q", out.written)
			}
			if tg.inst.checkServed != (tc.check && tc.want != errBodyError) {
				t.Errorf("checkServed = %v after the read", tg.inst.checkServed)
			}
		})
	}
}

// TestPodGone: only the API server's own "pod not found" says the pod object is gone; a
// 404 the kubelet gave (it restarts, and does not know the pod yet) is proxied as one of
// pods/log, and says the log could not be read.
func TestPodGone(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"pod object gone", apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "p"), true},
		{"kubelet 404", apierrors.NewGenericServerResponse(http.StatusNotFound, "", schema.GroupResource{Resource: "pods/log"}, "p", `pod "p" does not exist`, 0, false), false},
		{"wrapped", fmt.Errorf("opening log stream: %w", apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "p")), true},
		{"other status", apierrors.NewServiceUnavailable("down"), false},
		{"no status", errors.New("connection refused"), false},
	} {
		if got := podGone(tc.err); got != tc.want {
			t.Errorf("%s: podGone(%v) = %v, want %v", tc.name, tc.err, got, tc.want)
		}
	}
}

// TestFirstLineChecksTheInstance: the first line of an instance seen first at restartCount
// 0 has the pod fetched unless it was logged before kubelogd started (less the allowance):
// the container may have restarted between the status that named the instance and the
// read, which then serves the next one (soak seed 690359248).
func TestFirstLineChecksTheInstance(t *testing.T) {
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		age      time.Duration // how long before kubelogd's start the line was stamped
		previous bool
		want     error
	}{
		{name: "logged long before the start: no request", pod: runningPod("c2", 1, "c1"), age: servedAllowance + time.Second},
		// previous=true serves the last instance that ended, however old its lines.
		{name: "previous, logged long before: checked", pod: runningPod("c3", 2, "c2"), age: time.Hour, previous: true, want: errInstanceReplaced},
		{name: "previous, the cursor's instance", pod: runningPod("c2", 1, "c1"), age: time.Hour, previous: true},
		{name: "fresh, the cursor's instance", pod: runningPod("c1", 0, "")},
		{name: "fresh, the container restarted meanwhile", pod: runningPod("c2", 1, "c1"), want: errInstanceReplaced},
		{name: "within the allowance, restarted meanwhile", pod: runningPod("c2", 1, "c1"), age: servedAllowance - time.Second, want: errInstanceReplaced},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, _ := testTarget(t, tc.pod)
			err := tg.checkFirstLine(tg.c.start.Add(-tc.age), &firstRead{previous: tc.previous})
			if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
				t.Errorf("checkFirstLine = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestEarlyFirstLineCheck: a follow read that stays quiet after it was answered has its
// first-line check's fetch made before its first line comes (earlyCheck), and the line is
// judged by that fetch: the pod as the API server had it after the request was answered,
// not as it has it when the line comes. The state fetched is the target's at once, never
// later over a newer one. A line that comes first takes the check, and no fetch is made
// for it unless the line needs one; a failed early fetch leaves the line a fetch of its
// own.
func TestEarlyFirstLineCheck(t *testing.T) {
	gets := func(tg *target) int {
		n := 0
		for _, a := range tg.c.pods.(*fakecorev1.FakeCoreV1).Actions() {
			if a.GetVerb() == "get" && a.GetResource().Resource == "pods" {
				n++
			}
		}
		return n
	}
	fresh := func(tg *target) time.Time { return tg.c.start.Add(time.Second) }
	// early starts an early check whose quiet ends when the returned func is called.
	early := func(tg *target) (*firstRead, func()) {
		quiet := make(chan time.Time)
		tg.c.earlyAfter = func() <-chan time.Time { return quiet }
		f := &firstRead{early: tg.startEarlyCheck(t.Context())}
		t.Cleanup(f.early.stop)
		return f, func() { close(quiet) }
	}
	// ended waits for f's early check's goroutine to end, its quiet not over.
	ended := func(t *testing.T, f *firstRead) {
		waitFor(t, "the early check's goroutine to end", func() bool {
			select {
			case <-f.early.exited:
				return true
			default:
				return false
			}
		})
	}
	t.Run("fetched while quiet, the cursor's instance; restarted later", func(t *testing.T) {
		tg, _ := testTarget(t, runningPod("c1", 0, ""))
		f, quietEnds := early(tg)
		quietEnds()
		<-f.early.done
		// The container restarts after the fetch: the read was answered before, from c1.
		if _, err := tg.c.pods.Pods("default").UpdateStatus(t.Context(), runningPod("c2", 1, "c1"), metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := tg.checkFirstLine(fresh(tg), f); err != nil {
			t.Errorf("checkFirstLine = %v, want nil: the early fetch named the cursor's instance", err)
		}
		if n := gets(tg); n != 1 {
			t.Errorf("%d GETs of the pod, want 1 (the early fetch's)", n)
		}
	})
	t.Run("fetched while quiet, restarted before", func(t *testing.T) {
		tg, _ := testTarget(t, runningPod("c2", 1, "c1"))
		f, quietEnds := early(tg)
		quietEnds()
		<-f.early.done
		if p := tg.snapshot(); p.Containers[0].ContainerID != "c2" {
			t.Errorf("the target's state names %+v, want c2 as soon as it was fetched", p.Containers[0])
		}
		if err := tg.checkFirstLine(fresh(tg), f); !errors.Is(err, errInstanceReplaced) {
			t.Errorf("checkFirstLine = %v, want errInstanceReplaced", err)
		}
	})
	t.Run("the informer's newer state is not undone by the line's check", func(t *testing.T) {
		tg, _ := testTarget(t, runningPod("c1", 0, ""))
		f, quietEnds := early(tg)
		quietEnds()
		<-f.early.done
		// The informer says c1 has exited.
		ended := tg.snapshot()
		ended.Phase = corev1.PodSucceeded
		ended.Containers = []informer.Container{{Name: "app", ContainerID: "c1", Terminated: &informer.Termination{ExitCode: 0}}}
		tg.update(ended)
		if err := tg.checkFirstLine(fresh(tg), f); err != nil {
			t.Errorf("checkFirstLine = %v, want nil", err)
		}
		if p := tg.snapshot(); p.Phase != corev1.PodSucceeded || p.Containers[0].Running {
			t.Errorf("the target's state is %s, running %v; want the informer's: Succeeded, exited", p.Phase, p.Containers[0].Running)
		}
	})
	t.Run("the early fetch failed: the line fetches again", func(t *testing.T) {
		tg, _ := testTarget(t, runningPod("c2", 1, "c1"))
		fails := true
		tg.c.pods.(*fakecorev1.FakeCoreV1).PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			if fails {
				fails = false
				return true, nil, apierrors.NewServiceUnavailable("etcd leader election")
			}
			return false, nil, nil
		})
		f, quietEnds := early(tg)
		quietEnds()
		<-f.early.done
		if err := tg.checkFirstLine(fresh(tg), f); !errors.Is(err, errInstanceReplaced) {
			t.Errorf("checkFirstLine = %v, want errInstanceReplaced from a fetch of its own", err)
		}
		if n := gets(tg); n != 2 {
			t.Errorf("%d GETs of the pod, want 2", n)
		}
	})
	t.Run("a line while the early fetch is under way: its verdict, no fetch of its own", func(t *testing.T) {
		tg, _ := testTarget(t, runningPod("c2", 1, "c1"))
		var mu sync.Mutex
		held := 0
		release := make(chan struct{})
		fakePods := tg.c.pods.(*fakecorev1.FakeCoreV1)
		tg.c.pods = heldPods{PodsGetter: fakePods, get: countHeld(&mu, &held, release)}
		f, quietEnds := early(tg)
		quietEnds()
		waitFor(t, "the early fetch under way", func() bool { mu.Lock(); defer mu.Unlock(); return held == 1 })
		verdict := make(chan error, 1)
		go func() { verdict <- tg.checkFirstLine(fresh(tg), f) }()
		waitFor(t, "the line to come", func() bool { f.early.mu.Lock(); defer f.early.mu.Unlock(); return f.early.taken })
		close(release)
		if err := <-verdict; !errors.Is(err, errInstanceReplaced) {
			t.Errorf("checkFirstLine = %v, want errInstanceReplaced", err)
		}
		mu.Lock()
		defer mu.Unlock()
		if held != 1 || f.early.err != nil {
			t.Errorf("%d GETs of the pod, the early fetch's error %v; want 1, the early fetch's, which succeeded", held, f.early.err)
		}
	})
	t.Run("an old line first: no fetch, none after, no wait for quiet", func(t *testing.T) {
		tg, _ := testTarget(t, runningPod("c2", 1, "c1"))
		f, quietEnds := early(tg)
		if err := tg.checkFirstLine(tg.c.start.Add(-time.Hour), f); err != nil {
			t.Errorf("checkFirstLine = %v, want nil", err)
		}
		ended(t, f) // the line came: the goroutine that waited for quiet ends without it
		quietEnds()
		if n := gets(tg); n != 0 {
			t.Errorf("%d GETs of the pod, want none", n)
		}
	})
	t.Run("a fresh line first: fetched for it, none after, no wait for quiet", func(t *testing.T) {
		tg, _ := testTarget(t, runningPod("c2", 1, "c1"))
		f, quietEnds := early(tg)
		if err := tg.checkFirstLine(fresh(tg), f); !errors.Is(err, errInstanceReplaced) {
			t.Errorf("checkFirstLine = %v, want errInstanceReplaced", err)
		}
		ended(t, f) // the line came: the goroutine that waited for quiet ends without it
		quietEnds()
		if n := gets(tg); n != 1 {
			t.Errorf("%d GETs of the pod, want 1", n)
		}
	})
}

// TestSettledReadChecksItsFirstLine: a replay the kubelet had no line of is settled with a
// gap marker, and the next read from the same place replays nothing (instance.settled).
// Nothing then tells which instance that read serves: if the container restarted
// meanwhile, the kubelet serves the next instance, whose lines must not be written as
// the cursor's. The read's first line is checked.
func TestSettledReadChecksItsFirstLine(t *testing.T) {
	tg, out := testTarget(t, runningPod("c1", 0, ""))
	old := tg.c.start.Add(-time.Hour)
	for _, text := range []string{"a", "b", "c"} {
		out.cur.Observe(old, []byte(text))
	}
	// Two empty replays: the first is read again, the second settled with a gap marker.
	for i, want := range []error{errShortReplay, nil} {
		req := tg.newRequest(readToEnd, false)
		if first, err := tg.checkAnswered(req, false); err != nil || first {
			t.Fatalf("replay %d: checkAnswered = %v, %v; want its replay to check", i, first, err)
		}
		if _, err := tg.consume(t.Context(), strings.NewReader(""), req, nil); !errors.Is(err, want) || (err == nil) != (want == nil) {
			t.Fatalf("replay %d: consume = %v, want %v", i, err, want)
		}
	}
	// The container restarts; the informer has not said so.
	if _, err := tg.c.pods.Pods("default").UpdateStatus(t.Context(), runningPod("c2", 1, "c1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	req := tg.newRequest(readFollow, false)
	if !req.settled {
		t.Fatal("the read after the settled replay is not a settled one")
	}
	first, err := tg.checkAnswered(req, false)
	if err != nil || !first {
		t.Fatalf("checkAnswered = %v, %v; want the first line checked", first, err)
	}
	tg.firstRead = &firstRead{}
	fresh := tg.c.start.Add(time.Second).Format(timeLayout) + " next instance's line\n"
	if _, err := tg.consume(t.Context(), strings.NewReader(fresh), req, nil); !errors.Is(err, errInstanceReplaced) {
		t.Errorf("consume = %v, want errInstanceReplaced", err)
	}
	if !matches(out.written, []string{"gap: "}) {
		t.Errorf("written %s, want only the gap marker", short(out.written))
	}
}

// TestReadOnceStartsEarlyChecks: readOnce begins an early first-line check (earlyCheck)
// for a follow read, without previous=true, whose first line is to be checked — and for
// no other read; none outlives the read.
func TestReadOnceStartsEarlyChecks(t *testing.T) {
	for _, tc := range []struct {
		name     string
		mode     readMode
		previous bool
		written  bool // lines of the instance are written: the read replays them
		check    bool // the instance began after a restart: checked before the read
		want     bool
	}{
		{name: "follow, nothing written", mode: readFollow, want: true},
		{name: "poll, nothing written", mode: readPoll},
		{name: "previous=true", mode: readToEnd, previous: true},
		{name: "follow, replaying", mode: readFollow, written: true},
		{name: "follow after a restart, checked at once", mode: readFollow, check: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := runningPod("c1", 0, "")
			if tc.previous {
				pod = runningPod("c2", 1, "c1")
			}
			tg, out := testTarget(t, pod)
			if tc.written {
				out.cur.Observe(tg.c.start.Add(-time.Hour), []byte("a"))
			}
			tg.inst.checkServed = tc.check
			started := 0
			tg.c.earlyAfter = func() <-chan time.Time { started++; return nil }
			_, _ = tg.readOnce(t.Context(), tc.mode, tc.previous)
			if got := started == 1; got != tc.want || started > 1 {
				t.Errorf("%d early checks begun, want one: %v", started, tc.want)
			}
			if tg.firstRead != nil {
				t.Error("the read's first-line check outlived it")
			}
		})
	}
}

// TestNoteEnd: which reads' ends confirm the end of an instance's log, so that a deletion
// after them leaves no gap marker (fc1cf9f), and which take a confirmation back. A clean
// end proves nothing alone (a restarting kubelet ends its streams cleanly, and the API
// server ends a response cleanly when the kubelet's breaks); two clean reads that end at
// the same place do, unless the first was a poll (3ccb0cb: a poll at X and a follow cut at
// X by a restarting kubelet lost what the container logged after X).
func TestNoteEnd(t *testing.T) {
	type read struct {
		mode    readMode
		lines   int   // lines the read wrote before it ended
		refused error // the request was refused with this, never answered
		// answeredErr: the request was answered, and the read failed with this after
		answeredErr error
		broken      bool // the body ended with an error
		again       bool // noteEnd's answer: ended where the read before did
		confirmed   bool // the instance's end is confirmed after it
	}
	podGoneErr := fmt.Errorf("opening log stream: %w", apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, "web-0"))
	kubelet404 := fmt.Errorf("opening log stream: %w", apierrors.NewGenericServerResponse(http.StatusNotFound, "",
		schema.GroupResource{Resource: "pods/log"}, "web-0", `pod "web-0" does not exist`, 0, false))
	// confirmedThen is two follows that end at one place, which confirms the end, then reads.
	confirmedThen := func(then ...read) []read {
		return append([]read{{mode: readFollow, lines: 3}, {mode: readFollow, again: true, confirmed: true}}, then...)
	}
	for _, tc := range []struct {
		name  string
		reads []read
	}{
		{"two follows end at one place", confirmedThen()},
		{"a follow ends where a poll did", []read{
			{mode: readPoll, lines: 3},
			{mode: readFollow},
			{mode: readFollow, again: true, confirmed: true},
		}},
		{"a read to the end ends where a poll did", []read{
			{mode: readPoll, lines: 3},
			{mode: readToEnd},
			{mode: readToEnd, again: true, confirmed: true},
		}},
		{"a follow, then a read to the end at its place", []read{
			{mode: readFollow, lines: 3},
			{mode: readToEnd, again: true, confirmed: true},
		}},
		{"polls confirm nothing", []read{
			{mode: readFollow, lines: 3},
			{mode: readPoll},
			{mode: readPoll},
		}},
		{"lines in between", []read{
			{mode: readFollow, lines: 3},
			{mode: readFollow, lines: 1},
		}},
		{"a broken body", []read{
			{mode: readFollow, lines: 3},
			{mode: readFollow, broken: true},
			{mode: readFollow},
		}},
		{"the pod object gone: the confirmation stands; a clean end after it is a first one",
			confirmedThen(read{mode: readFollow, refused: podGoneErr, confirmed: true}, read{mode: readFollow})},
		{"the kubelet's 404: the confirmation is taken back", confirmedThen(read{mode: readFollow, refused: kubelet404})},
		{"the pod object's 404 after an answer (the first line's check): taken back",
			confirmedThen(read{mode: readFollow, answeredErr: podGoneErr})},
		{"lines after a confirmed end", confirmedThen(read{mode: readFollow, lines: 2})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg, out := testTarget(t, runningPod("c1", 0, ""))
			at := time.Now()
			for i, r := range tc.reads {
				for range r.lines {
					at = at.Add(time.Millisecond)
					out.cur.Observe(at, []byte(fmt.Sprintf("line at %s", at)))
				}
				tg.inst.answered = r.refused == nil
				var err error
				switch {
				case r.refused != nil:
					err = r.refused
				case r.answeredErr != nil:
					err = r.answeredErr
				case r.broken:
					err = errors.New("unexpected EOF")
				}
				again := tg.noteEnd(r.mode, err, err == nil)
				if again != r.again || tg.inst.confirmed != r.confirmed {
					t.Errorf("read %d (mode %d): ends again %v, confirmed %v; want %v, %v", i, r.mode, again, tg.inst.confirmed, r.again, r.confirmed)
				}
			}
		})
	}
}
