package e2e

// The fault-injection suite of "Every line exactly once": every scenario ends by comparing
// kubelogd's files with what the fake kubelet emitted, section by section around kubelogd's
// markers. Lines may be missing only where the test really made them unavailable, and
// exactly there a gap marker must say so; everywhere else the file holds every line once,
// in order, and no marker but the restart and recreate markers the scenario calls for.
//
// Scenarios that the issue numbers are named in each test's comment. Tests that fit in the
// fake kubelet's inotify budget run in parallel, each with its own control plane; the two
// that need many follow streams (apiserver restart, SIGTERM drain) run alone and scale down
// to what fs.inotify.max_user_instances leaves.
//
// Environment: KUBELOGD_E2E_LOGDIR keeps, for each failed test, kubelogd's whole output,
// the fake kubelet's request log and copies of both sides' files; KUBELOGD_E2E_MANY_PODS
// sets the number of pods of the apiserver restart (default 500).

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/kubelogdproc"
	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// parallelEnv is newEnv for a test that runs in parallel with others.
func parallelEnv(t *testing.T) *env {
	t.Parallel()
	return newEnv(t)
}

// startKubelogdEnv is startKubelogd with extra environment variables (failpoints).
func startKubelogdEnv(t *testing.T, environ []string, kubeconfig, dir string, args ...string) *daemon {
	t.Helper()
	p, metrics, err := kubelogdproc.StartDaemon(kubelogdBin, kubelogdproc.Options{
		Kubeconfig: kubeconfig,
		OutputDir:  dir,
		Env:        environ,
		// Only the e2e tests set --flush-interval, ahead of the test's own arguments.
		Args: append([]string{"--flush-interval", "200ms"}, args...),
	})
	if err != nil {
		t.Fatal(err)
	}
	return watched(t, &daemon{Proc: p, t: t, Metrics: metrics, Dir: dir})
}

// kubelogd starts kubelogd for a fault test (see startKubelogd). With KUBELOGD_E2E_LOGDIR
// set, a failed test leaves kubelogd's whole output there, and the log requests the fake
// kubelet received, since the test log keeps only the last lines.
func (e *env) kubelogd(dir string, args ...string) *daemon {
	e.t.Helper()
	d := startKubelogd(e.t, e.c.Kubeconfig, dir, args...)
	e.keepOutput(d)
	return d
}

func (e *env) keepOutput(d *daemon) {
	logDir := os.Getenv("KUBELOGD_E2E_LOGDIR")
	if logDir == "" {
		return
	}
	e.t.Cleanup(func() {
		if !e.t.Failed() {
			return
		}
		name := strings.ReplaceAll(e.t.Name(), "/", "_")
		_ = os.MkdirAll(logDir, 0o755)
		_ = os.WriteFile(filepath.Join(logDir, fmt.Sprintf("%s.kubelogd.%d.log", name, d.Cmd.Process.Pid)), []byte(d.Output()), 0o644)
		var b strings.Builder
		for _, r := range e.k.Requests("", "", "") {
			fmt.Fprintf(&b, "%s %s/%s/%s status=%d %s\n", r.Time.Format("15:04:05.000"), r.Namespace, r.Pod, r.Container, r.Status, r.Query.Encode())
		}
		_ = os.WriteFile(filepath.Join(logDir, name+".requests.log"), []byte(b.String()), 0o644)
		_ = os.CopyFS(filepath.Join(logDir, name+".files", fmt.Sprint(d.Cmd.Process.Pid)), os.DirFS(d.Dir))
		_ = os.CopyFS(filepath.Join(logDir, name+".kubelet"), os.DirFS(e.k.Dir()))
	})
}

// metric reads one kubelogd metric, summed over the samples whose labels include the
// label="value" pairs given.
func (d *daemon) metric(name string, labels ...string) float64 {
	match := map[string]string{}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		match[k] = v
	}
	mfs, _ := d.scrape()
	return value(mfs, name, match)
}

// lineOf is a numbered line of a flow; texts are unique per container and flow.
type lineOf func(i int) fakekubelet.Line

// numbered makes lines "<ns>/<pod>/<container> <tag> <i>" on stdout.
func numbered(ns, pod, container, tag string) lineOf {
	return func(i int) fakekubelet.Line {
		return fakekubelet.Line{Text: fmt.Sprintf("%s/%s/%s %s %d", ns, pod, container, tag, i)}
	}
}

// flow appends lines to a container in the background, batch lines every interval, until
// the returned stop is called; stop waits and returns how many lines were appended. Appends
// that fail (the container is not running at that moment) are retried with the same line.
func (e *env) flow(ns, pod, container string, every time.Duration, batch int, mk lineOf) (stop func() int) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	n := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			lines := make([]fakekubelet.Line, batch)
			for i := range lines {
				lines[i] = mk(n + i)
			}
			if e.k.Append(ns, pod, container, lines...) == nil {
				n += batch
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	var once sync.Once
	return func() int {
		once.Do(func() { close(done); wg.Wait() })
		return n
	}
}

// sections waits until a container's file, markers in place, is exactly want() (evaluated
// afresh each time, since emitted lines may still be arriving), then checks once more after
// a second that nothing was added since: no late duplicate, no late marker.
func (e *env) sections(dir, ns, pod, container string, want func() []oracle.Want) {
	e.t.Helper()
	check := func() (bool, string) {
		got, err := oracle.ReadSections(logPath(dir, ns, pod, container), "timestamped")
		if err != nil {
			return false, err.Error()
		}
		return oracle.CheckSections(got, want())
	}
	eventually(e.t, 60*time.Second, fmt.Sprintf("%s/%s/%s holds exactly the expected sections", ns, pod, container), check)
	time.Sleep(time.Second)
	if ok, detail := check(); !ok {
		e.t.Fatalf("%s/%s/%s changed after it was complete:\n%s", ns, pod, container, detail)
	}
}

// exact waits until a container's file holds every line it emitted exactly once, in order,
// and no marker at all.
func (e *env) exact(dir, ns, pod, container string) {
	e.t.Helper()
	e.sections(dir, ns, pod, container, func() []oracle.Want {
		return []oracle.Want{{Lines: e.k.Emitted(ns, pod, container)}}
	})
}

// instanceLines returns the lines instance i of a container emitted.
func (e *env) instanceLines(ns, pod, container string, i int) []string {
	e.t.Helper()
	ins := e.k.Instances(ns, pod, container)
	if i >= len(ins) {
		e.t.Fatalf("%s/%s/%s has %d instances, want at least %d", ns, pod, container, len(ins), i+1)
	}
	out := make([]string, 0, len(ins[i].Lines))
	for _, l := range ins[i].Lines {
		out = append(out, l.Text)
	}
	return out
}

// shortID is the last 12 characters of a container ID, as kubelogd's markers name it.
func shortID(id string) string {
	if i := len(id) - 12; i > 0 {
		return id[i:]
	}
	return id
}

// waitStreams waits until n log streams of a container are open at the fake kubelet.
func (e *env) waitStreams(ns, pod, container string, n int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.k.WaitForStreams(ctx, ns, pod, container, n); err != nil {
		e.t.Fatal(err)
	}
}

// requestsBetween counts the log requests for a container that arrived in [from, to).
func (e *env) requestsBetween(ns, pod, container string, from, to time.Time) []fakekubelet.Request {
	var out []fakekubelet.Request
	for _, r := range e.k.Requests(ns, pod, container) {
		if !r.Time.Before(from) && r.Time.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// followBudget is how many more follow streams the fake kubelet can hold open on this
// machine. The kubelet's log reader (cri-client ReadLogs) creates one inotify instance per
// follow stream, and the kernel allows fs.inotify.max_user_instances per user (128 by
// default on many distributions) over all of the user's processes, as on a real node.
func followBudget(t *testing.T) int {
	t.Helper()
	raw, err := os.ReadFile("/proc/sys/fs/inotify/max_user_instances")
	if err != nil {
		t.Fatal(err)
	}
	limit, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	used := 0
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if _, err := strconv.Atoi(p.Name()); err != nil {
			continue
		}
		if st, err := os.Stat("/proc/" + p.Name()); err != nil || st.Sys().(*syscall.Stat_t).Uid != uint32(os.Getuid()) {
			continue
		}
		fds, _ := os.ReadDir("/proc/" + p.Name() + "/fd")
		for _, fd := range fds {
			if target, _ := os.Readlink("/proc/" + p.Name() + "/fd/" + fd.Name()); target == "anon_inode:inotify" {
				used++
			}
		}
	}
	return limit - used
}

// TestFaultContainerExitsNormally (scenario 1): a container logs, its last lines right
// before it exits 0; the file holds every line once and no marker, the stream ends, and the
// finished container is not polled.
func TestFaultContainerExitsNormally(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "job", func(p *corev1.Pod) { p.Spec.RestartPolicy = corev1.RestartPolicyNever }, "app")
	e.start("f", "job", "app")
	e.emit("f", "job", "app", 50)
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.waitCollected(dir, "f", "job", "app")
	e.emit("f", "job", "app", 50)
	e.emit("f", "job", "app", 20)
	if err := e.k.Terminate(context.Background(), "f", "job", "app", 0, ""); err != nil {
		t.Fatal(err)
	}
	e.exact(dir, "f", "job", "app")
	// Finished once the last read without follow confirmed the end of the log (until then
	// a stream may open: OpenStreams alone can be 0 between two requests).
	eventually(t, 30*time.Second, "the container finished and no stream open after the exit", func() (bool, string) {
		n := e.k.OpenStreams("f", "job", "app")
		v := d.metric("kubelogd_targets", "state=finished")
		return n == 0 && v == 1, fmt.Sprintf("%d open, kubelogd_targets{state=finished} = %v", n, v)
	})
	before := len(e.k.Requests("f", "job", "app"))
	time.Sleep(3 * time.Second)
	if reqs := e.k.Requests("f", "job", "app"); len(reqs) != before {
		t.Errorf("%d log requests for a finished container in 3s: %+v", len(reqs)-before, reqs[before:])
	}
}

// TestFaultCutMixedStreams (scenario 2, extended): stdout and stderr lines flow while the
// kubelet connection is cut eight times, between lines and in the middle of one.
func TestFaultCutMixedStreams(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "mix", nil, "app")
	e.start("f", "mix", "app")
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	stop := e.flow("f", "mix", "app", 2*time.Millisecond, 2, func(i int) fakekubelet.Line {
		l := fakekubelet.Line{Text: fmt.Sprintf("mixed line %d", i)}
		if i%3 == 1 {
			l.Stream = "stderr"
		}
		return l
	})
	defer stop()
	for i := range 8 {
		e.waitStreams("f", "mix", "app", 1)
		time.Sleep(200 * time.Millisecond)
		before := len(e.k.Requests("f", "mix", "app"))
		if n := e.k.CutStreams("f", "mix", "app", i%2 == 0); n != 1 {
			t.Fatalf("cut %d streams, want 1", n)
		}
		eventually(t, 30*time.Second, "kubelogd reconnects after the cut", func() (bool, string) {
			return len(e.k.Requests("f", "mix", "app")) > before, "no new request"
		})
	}
	time.Sleep(300 * time.Millisecond)
	t.Logf("%d lines emitted", stop())
	e.exact(dir, "f", "mix", "app")
	// Through the apiserver a cut looks like a clean end, and a line cut in its middle
	// arrives torn (when the cut falls in the timestamp, kubelogd counts it as a body
	// error): count the reconnects, whatever their reason.
	if v := d.metric("kubelogd_reconnects_total"); v < 8 {
		t.Errorf("kubelogd_reconnects_total = %v, want ≥ 8 after 8 cuts", v)
	}
	mfs, _ := d.scrape()
	var reasons []string
	for _, m := range mfs["kubelogd_reconnects_total"].GetMetric() {
		if v := m.GetCounter().GetValue(); v > 0 {
			reasons = append(reasons, fmt.Sprintf("%s=%v", m.GetLabel()[0].GetValue(), v))
		}
	}
	t.Logf("reconnects by reason: %v", reasons)
}

// TestFault404AfterKubeletRestart (scenario 3): the kubelet restarts (its streams die) and
// for 30 s answers 404 `pod "p" does not exist` for a pod that exists, while the containers
// keep logging. Nothing is lost, and the retries are bounded by the backoff.
func TestFault404AfterKubeletRestart(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "p", nil, "a", "b")
	e.start("f", "p", "a", "b")
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.emit("f", "p", "a", 20)
	e.emit("f", "p", "b", 20)
	e.waitCollected(dir, "f", "p", "a")
	e.waitCollected(dir, "f", "p", "b")

	const window = 30 * time.Second
	from := time.Now()
	e.k.FailFor("f", "p", "", window, 404, `pod "p" does not exist`)
	e.k.CutStreams("f", "p", "", false)
	stopA := e.flow("f", "p", "a", 100*time.Millisecond, 1, numbered("f", "p", "a", "during"))
	stopB := e.flow("f", "p", "b", 100*time.Millisecond, 1, numbered("f", "p", "b", "during"))
	time.Sleep(window)
	to := from.Add(window)
	stopA()
	stopB()
	e.exact(dir, "f", "p", "a")
	e.exact(dir, "f", "p", "b")
	for _, c := range []string{"a", "b"} {
		reqs := e.requestsBetween("f", "p", c, from, to)
		// Backoff from 0.5 s doubling to 30 s, jittered to between half and all of it,
		// allows at most about 9 requests in 30 s; a hot loop makes hundreds.
		if len(reqs) < 2 || len(reqs) > 15 {
			t.Errorf("container %s: %d log requests in the %s of 404s, want between 2 and 15", c, len(reqs), window)
		}
		t.Logf("container %s: %d requests during the 404 window", c, len(reqs))
	}
}

// TestFaultSilentKubeletOpenStream (scenario 4): the kubelet stops sending on the streams
// open now while it answers new requests normally (a stuck connection between apiserver and
// kubelet). The watchdog (--stall-timeout 2s) probes, finds lines the stream did not
// deliver, and reopens; every line lands once.
func TestFaultSilentKubeletOpenStream(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "silent", nil, "app")
	e.start("f", "silent", "app")
	e.emit("f", "silent", "app", 10)
	dir := t.TempDir()
	d := e.kubelogd(dir, "--stall-timeout", "2s")
	d.waitReady()
	e.waitCollected(dir, "f", "silent", "app")
	for round := range 2 {
		// The stream stalled in the previous round ends once kubelogd gives it up.
		eventually(t, 30*time.Second, "exactly one stream open", func() (bool, string) {
			n := e.k.OpenStreams("f", "silent", "app")
			return n == 1, fmt.Sprintf("%d open", n)
		})
		if n := e.k.StallOpen("f", "silent", "app"); n != 1 {
			t.Fatalf("round %d: stalled %d streams, want 1", round, n)
		}
		stop := e.flow("f", "silent", "app", 100*time.Millisecond, 3, numbered("f", "silent", "app", fmt.Sprintf("round%d", round)))
		time.Sleep(time.Second)
		stop()
		e.exact(dir, "f", "silent", "app")
	}
	if v := d.metric("kubelogd_reconnects_total", "reason=stall"); v < 2 {
		t.Errorf("kubelogd_reconnects_total{reason=stall} = %v, want ≥ 2", v)
	}
	// kubelogd gave the stalled streams up: only its current stream is left.
	eventually(t, 10*time.Second, "stalled streams released", func() (bool, string) {
		n := e.k.OpenStreams("f", "silent", "app")
		return n == 1, fmt.Sprintf("%d open", n)
	})
}

// TestFaultQuietStreamProbesBackOff (scenario 4, cost side): a quiet stream is not a stalled
// one. The watchdog probes it after --stall-timeout, finds nothing undelivered, and waits
// twice as long before the next probe, so that thousands of idle containers cost few
// requests: with a 1 s stall timeout, 20 s of silence allow probes at about 1, 3, 7 and 15 s.
func TestFaultQuietStreamProbesBackOff(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "quiet", nil, "app")
	e.start("f", "quiet", "app")
	e.emit("f", "quiet", "app", 5)
	dir := t.TempDir()
	d := e.kubelogd(dir, "--stall-timeout", "1s")
	d.waitReady()
	e.waitCollected(dir, "f", "quiet", "app")
	from := time.Now()
	time.Sleep(20 * time.Second)
	var probes []time.Duration
	tails := 0
	for _, r := range e.requestsBetween("f", "quiet", "app", from, time.Now()) {
		switch {
		case r.Options.Follow:
			t.Errorf("a quiet stream was reopened at +%s", r.Time.Sub(from).Round(time.Millisecond))
		case r.Options.TailLines != nil:
			// Each probe also looks at the newest line without sinceTime (lines a node
			// clock that stepped back would hide from the probe).
			tails++
		default:
			probes = append(probes, r.Time.Sub(from).Round(100*time.Millisecond))
		}
	}
	t.Logf("probes at %v, %d looks at the newest line", probes, tails)
	if len(probes) < 2 || len(probes) > 6 {
		t.Errorf("%d probes of a quiet stream in 20s with --stall-timeout 1s, want 2 to 6 (intervals doubling)", len(probes))
	}
	if d := tails - len(probes); d < -1 || d > 1 {
		t.Errorf("%d looks at the newest line for %d probes, want one each", tails, len(probes))
	}
	e.exact(dir, "f", "quiet", "app")
}

// TestFaultStalledStreamAcrossRestart (scenario 4, variant): the stream of a container is
// stuck (StallOpen) when the container restarts, and the new instance logs only a few
// lines. The old instance's last lines are still served with previous=true and the new
// instance's with a new stream: kubelogd must get both.
func TestFaultStalledStreamAcrossRestart(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "stuck", nil, "app")
	e.start("f", "stuck", "app")
	dir := t.TempDir()
	d := e.kubelogd(dir, "--stall-timeout", "2s")
	d.waitReady()
	e.emit("f", "stuck", "app", 40)
	e.waitCollected(dir, "f", "stuck", "app")
	e.waitStreams("f", "stuck", "app", 1)
	e.k.StallOpen("f", "stuck", "app")
	e.emit("f", "stuck", "app", 20)
	if err := e.k.Restart(context.Background(), "f", "stuck", "app", 1, ""); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "stuck", "app", 3)
	e.sections(dir, "f", "stuck", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.instanceLines("f", "stuck", "app", 0)},
			{Marker: "container restarted (restartCount 1): previous instance exited with code 1 (Error)", Lines: e.instanceLines("f", "stuck", "app", 1)},
		}
	})
}

// TestFaultStalledKubeletHangsProbe (scenario 4, second part): the kubelet stops answering
// altogether: open streams stall and new requests do not even get their headers, so the
// watchdog's probe hangs too. Once the kubelet answers again, kubelogd recovers everything.
func TestFaultStalledKubeletHangsProbe(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "hung", nil, "app")
	e.start("f", "hung", "app")
	e.emit("f", "hung", "app", 10)
	dir := t.TempDir()
	d := e.kubelogd(dir, "--stall-timeout", "2s")
	d.waitReady()
	e.waitCollected(dir, "f", "hung", "app")
	e.waitStreams("f", "hung", "app", 1)
	from := time.Now()
	e.k.Stall("f", "hung", "app", true)
	e.emit("f", "hung", "app", 20)
	time.Sleep(8 * time.Second)
	probes := 0
	for _, r := range e.requestsBetween("f", "hung", "app", from, time.Now()) {
		if !r.Options.Follow {
			probes++
		}
	}
	if probes == 0 {
		t.Errorf("no probe reached the stalled kubelet within 8s with --stall-timeout 2s")
	}
	e.k.Stall("f", "hung", "app", false)
	e.emit("f", "hung", "app", 10)
	e.exact(dir, "f", "hung", "app")
}

// TestFaultEndFollow (scenario 5): the kubelet ends follow streams cleanly while the
// container runs (as its write timeout does after hours), six times while lines flow, and
// rotates the log once (a follow reopens the new file).
func TestFaultEndFollow(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "ended", nil, "app")
	e.start("f", "ended", "app")
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	stop := e.flow("f", "ended", "app", 5*time.Millisecond, 1, numbered("f", "ended", "app", "flow"))
	defer stop()
	for range 6 {
		e.waitStreams("f", "ended", "app", 1)
		time.Sleep(300 * time.Millisecond)
		if n := e.k.EndFollow("f", "ended", "app"); n != 1 {
			t.Logf("EndFollow ended %d streams", n)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.k.WaitForFollowers(ctx, "f", "ended", "app", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := e.k.RotateLog("f", "ended", "app"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	stop()
	e.exact(dir, "f", "ended", "app")
	// Each end is a reconnect: eof_while_running, or short_replay when it came while the
	// resumed stream was still replaying what kubelogd had written (300 ms may not be
	// enough for that on a loaded machine).
	eof, short := d.metric("kubelogd_reconnects_total", "reason=eof_while_running"), d.metric("kubelogd_reconnects_total", "reason=short_replay")
	if eof+short < 6 {
		t.Errorf("kubelogd_reconnects_total: eof_while_running %v + short_replay %v, want ≥ 6 for 6 ended streams", eof, short)
	}
}
