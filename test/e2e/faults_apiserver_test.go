package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/faultproxy"
	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// proxyKubeconfig writes an admin kubeconfig whose server is host (a proxy in front of the
// apiserver). The apiserver's CA also signs the proxies' certificates.
func (e *env) proxyKubeconfig(host string) string {
	e.t.Helper()
	cfg := rest.CopyConfig(e.c.Config)
	cfg.Host = host
	path := filepath.Join(e.t.TempDir(), "proxy.kubeconfig")
	if err := cluster.WriteKubeconfig(cfg, path); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// tcpProxy puts a TCP fault proxy between kubelogd and the apiserver; the TLS session is
// end to end, the apiserver's certificate is valid for 127.0.0.1.
func (e *env) tcpProxy() (*faultproxy.Proxy, string) {
	e.t.Helper()
	u, err := url.Parse(e.c.Host)
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := faultproxy.New(u.Host)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = p.Close() })
	return p, e.proxyKubeconfig("https://" + p.Addr())
}

// httpProxy puts an HTTP fault proxy between kubelogd and the apiserver. It terminates TLS
// with a certificate of the cluster CA and forwards with the admin credentials.
func (e *env) httpProxy() (*faultproxy.HTTPProxy, string) {
	e.t.Helper()
	certPEM, keyPEM, err := e.c.KubeletServingCert()
	if err != nil {
		e.t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		e.t.Fatal(err)
	}
	tr, err := rest.TransportFor(e.c.Config)
	if err != nil {
		e.t.Fatal(err)
	}
	target, err := url.Parse(e.c.Host)
	if err != nil {
		e.t.Fatal(err)
	}
	p, err := faultproxy.NewHTTP(faultproxy.HTTPConfig{Target: target, Transport: tr, Cert: pair})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = p.Close() })
	return p, e.proxyKubeconfig(p.URL())
}

// kubelogdWith starts kubelogd against another kubeconfig (a proxy's).
func (e *env) kubelogdWith(kubeconfig, dir string, args ...string) *daemon {
	e.t.Helper()
	d := startKubelogd(e.t, kubeconfig, dir, args...)
	e.keepOutput(d)
	return d
}

// status is a Kubernetes Status body, as the apiserver answers errors.
func status(code int, reason, message string) string {
	return fmt.Sprintf(`{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":%q,"code":%d}`, message, reason, code)
}

// allExact waits until every container's file holds exactly what it emitted, with no marker,
// and checks again a second later.
func (e *env) allExact(dir string, refs []ref, timeout time.Duration) {
	e.t.Helper()
	check := func() (bool, string) {
		bad, detail := 0, ""
		for _, r := range refs {
			got, err := oracle.ReadSections(logPath(dir, r.ns, r.pod, r.container), "timestamped")
			if err != nil {
				bad++
				detail = err.Error()
				continue
			}
			if ok, d := oracle.CheckSections(got, []oracle.Want{{Lines: e.k.Emitted(r.ns, r.pod, r.container)}}); !ok {
				bad++
				detail = fmt.Sprintf("%v: %s", r, d)
			}
		}
		return bad == 0, fmt.Sprintf("%d of %d containers not exact; last: %s", bad, len(refs), detail)
	}
	eventually(e.t, timeout, "every container collected exactly once", check)
	time.Sleep(time.Second)
	if ok, detail := check(); !ok {
		e.t.Fatalf("files changed after they were complete: %s", detail)
	}
}

// emitAll appends n numbered lines to every container, from a few goroutines.
func (e *env) emitAll(refs []ref, n int) {
	e.t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(refs))
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := i; j < len(refs); j += 4 {
				r := refs[j]
				if err := e.appendN(r, n); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		e.t.Fatal(err)
	}
}

// appendN appends n lines to one container, numbered on from what it emitted so far.
func (e *env) appendN(r ref, n int) error {
	base := len(e.k.Emitted(r.ns, r.pod, r.container))
	lines := make([]string, n)
	for i := range lines {
		lines[i] = fmt.Sprintf("%s/%s/%s line %d", r.ns, r.pod, r.container, base+i)
	}
	return e.appendTexts(r, lines...)
}

// appendTexts appends lines with these texts to one container.
func (e *env) appendTexts(r ref, texts ...string) error {
	lines := make([]fakekubelet.Line, len(texts))
	for i, s := range texts {
		lines[i] = fakekubelet.Line{Text: s}
	}
	return e.k.Append(r.ns, r.pod, r.container, lines...)
}

// runningPods creates and starts n single-container pods over a few namespaces.
func (e *env) runningPods(prefix string, n int, containers ...string) []ref {
	e.t.Helper()
	var refs []ref
	for i := range n {
		ns := fmt.Sprintf("%s-%d", prefix, i%4)
		name := fmt.Sprintf("p-%03d", i)
		e.pod(ns, name, nil, containers...)
		e.start(ns, name, containers...)
		for _, c := range containers {
			refs = append(refs, ref{ns, name, c})
		}
	}
	return refs
}

// TestFaultAPIServerRestartManyStreams (scenario 6): the apiserver is killed while kubelogd
// follows many containers, stays down while they log, and comes back: every stream resumes
// and every line lands once, with no marker. (Not parallel: it needs most of the machine's
// inotify instances for the fake kubelet's follow streams.)
//
// 500 pods, as the issue asks (about 35 s on 2 cores), or as many as the inotify limit
// allows; KUBELOGD_E2E_MANY_PODS sets another number.
func TestFaultAPIServerRestartManyStreams(t *testing.T) {
	pods := 500
	if n, err := strconv.Atoi(os.Getenv("KUBELOGD_E2E_MANY_PODS")); err == nil && n > 0 {
		pods = n
	}
	if budget := followBudget(t) - 16; budget < pods {
		t.Logf("fs.inotify.max_user_instances leaves room for %d follow streams: %d pods instead of %d", budget, budget, pods)
		pods = budget
	}
	if pods < 10 {
		t.Skip("too few inotify instances left for the fake kubelet")
	}
	e := newEnv(t)
	start := time.Now()
	refs := e.runningPods("many", pods, "app")
	e.emitAll(refs, 20)
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.allExact(dir, refs, 120*time.Second)
	t.Logf("%d pods collected in %s", pods, time.Since(start).Round(time.Millisecond))

	down := time.Now()
	e.c.StopAPIServer()
	e.emitAll(refs, 20)
	time.Sleep(2 * time.Second)
	if err := e.c.StartAPIServer(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Logf("apiserver down for %s", time.Since(down).Round(time.Millisecond))
	e.emitAll(refs, 20)
	e.allExact(dir, refs, 120*time.Second)
	t.Logf("all %d resumed exactly %s after the apiserver went down", pods, time.Since(down).Round(time.Millisecond))
	if v := d.metric("kubelogd_gaps_total"); v != 0 {
		t.Errorf("kubelogd_gaps_total = %v, want 0", v)
	}
}

// TestFaultAPIConnectionBroken (scenario 15, TCP side): kubelogd's connection to the
// apiserver, which carries the pod watch and every log stream, is reset five times, slowed
// down and black-holed for a while, as lines flow.
func TestFaultAPIConnectionBroken(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.tcpProxy()
	refs := e.runningPods("tcp", 3, "app")
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir)
	d.waitReady()
	var stops []func() int
	for _, r := range refs {
		stops = append(stops, e.flow(r.ns, r.pod, r.container, 5*time.Millisecond, 1, numbered(r.ns, r.pod, r.container, "flow")))
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	// Each cut waits for kubelogd's next connection: after a few cuts its reconnect
	// backoff (jittered, doubling) can exceed any fixed pause, and a cut with nothing
	// open tests nothing (it made this test fail at random on a loaded machine).
	for i := range 5 {
		time.Sleep(700 * time.Millisecond)
		eventually(t, 60*time.Second, fmt.Sprintf("a connection to cut (cut %d)", i+1), func() (bool, string) {
			return p.Open() > 0, fmt.Sprintf("%d open", p.Open())
		})
		t.Logf("cut %d connections", p.Cut())
	}
	p.Slow(20 * time.Millisecond)
	time.Sleep(2 * time.Second)
	p.Stall()
	time.Sleep(3 * time.Second)
	p.Resume()
	time.Sleep(time.Second)
	for _, s := range stops {
		s()
	}
	e.allExact(dir, refs, 90*time.Second)
	if p.Accepted() < 6 {
		t.Errorf("%d connections through the proxy, want a new one after each of 5 cuts", p.Accepted())
	}
}

// TestFaultPodCreatedAndDeletedDuringOutage (scenario 14): while kubelogd cannot reach the
// apiserver (every request it makes fails with 503, what was in flight is cut), a pod is
// created, logs and is deleted. Afterwards kubelogd relists (its first resuming watch gets
// 410 Gone): it never sees that pod, so no file and no request for it, and the outage
// costs a bounded number of requests.
func TestFaultPodCreatedAndDeletedDuringOutage(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	e.pod("f", "stays", nil, "app")
	e.start("f", "stays", "app")
	e.emit("f", "stays", "app", 10)
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir)
	d.waitReady()
	e.waitCollected(dir, "f", "stays", "app")

	from := time.Now()
	p.Fail(faultproxy.AnyRequest, -1, http.StatusServiceUnavailable, status(503, "ServiceUnavailable", "the server is currently unable to handle the request"))
	p.Abort(faultproxy.AnyRequest)
	ctx := context.Background()
	e.pod("f", "ghost", nil, "app")
	e.start("f", "ghost", "app")
	e.emit("f", "ghost", "app", 10)
	if err := e.c.Client.CoreV1().Pods("f").Delete(ctx, "ghost", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "ghost pod gone", func() (bool, string) {
		_, err := e.c.Client.CoreV1().Pods("f").Get(ctx, "ghost", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	e.emit("f", "stays", "app", 10)
	time.Sleep(5 * time.Second)
	during := len(p.Requests(faultproxy.AnyRequest))
	p.ClearFailures()
	p.Fail(faultproxy.ResumingWatch, 1, http.StatusGone, status(410, "Expired", "too old resource version"))
	outage := time.Since(from)
	e.emit("f", "stays", "app", 10)
	e.exact(dir, "f", "stays", "app")
	time.Sleep(2 * time.Second)

	if _, err := os.Stat(filepath.Join(dir, "f", "ghost")); !os.IsNotExist(err) {
		t.Errorf("kubelogd wrote for a pod it cannot have seen (stat: %v)", err)
	}
	for _, r := range p.Requests(faultproxy.PodLog) {
		if strings.Contains(r.URL.Path, "/pods/ghost/") {
			t.Errorf("kubelogd asked for the log of a pod it cannot have seen: %s", r.URL)
		}
	}
	t.Logf("%d requests through the proxy up to the end of the %s outage", during, outage.Round(time.Millisecond))
	// The pod watch retries with client-go's backoff and the one log stream with
	// kubelogd's: a dozen or two requests in ~8 s. A storm is hundreds.
	if during > 60 {
		t.Errorf("%d requests up to the end of a %s outage, want at most 60", during, outage.Round(time.Millisecond))
	}
	if v := d.metric("kubelogd_gaps_total"); v != 0 {
		t.Errorf("kubelogd_gaps_total = %v, want 0", v)
	}
}

// blind makes kubelogd's pod informer blind: the watch it has open ends (as at the
// apiserver's watch timeout), its resumption from the last resourceVersion is answered 410
// Gone (too old, as after a long disconnection or an etcd compaction), and the lists and
// list-watches it then falls back to fail with 503, so that it learns nothing until
// unblind. Log streams are not affected. It returns once a 410 was answered.
func blind(t *testing.T, p *faultproxy.HTTPProxy) {
	t.Helper()
	p.Fail(faultproxy.ResumingWatch, -1, http.StatusGone, status(410, "Expired", "too old resource version"))
	// client-go resumes a watch that ended cleanly after lasting a second; a shorter one
	// sends it back to list-watching. End the open watch until a resumption is refused.
	answered := func() bool {
		for _, r := range p.Requests(faultproxy.ResumingWatch) {
			if r.Injected == http.StatusGone {
				return true
			}
		}
		return false
	}
	for deadline := time.Now().Add(30 * time.Second); !answered(); {
		if time.Now().After(deadline) {
			t.Fatalf("no resuming watch to answer 410 within 30s (%d resuming watches)", len(p.Requests(faultproxy.ResumingWatch)))
		}
		time.Sleep(1500 * time.Millisecond)
		p.End(faultproxy.Watch)
	}
	p.Fail(faultproxy.List, -1, http.StatusServiceUnavailable, status(503, "ServiceUnavailable", "the server is currently unable to handle the request"))
}

// unblind lets the informer list again and waits until it did: the list (or list-watch)
// that follows replaces the informer's whole state, pods deleted meanwhile included.
func unblind(t *testing.T, p *faultproxy.HTTPProxy) {
	t.Helper()
	before := len(p.Requests(faultproxy.List))
	p.ClearFailures()
	eventually(t, 60*time.Second, "a list after the 410s", func() (bool, string) {
		n := len(p.Requests(faultproxy.List)) - before
		return n > 0, "no list yet"
	})
}

// TestFaultWatchGone410 (scenario 15): kubelogd's pod watch is cut and its resumption
// answered 410 Gone, and it cannot list again for a while: meanwhile a pod is created and a
// pod that kubelogd had read to its end is deleted. When it relists, the new pod is
// collected, the deleted pod arrives as a tombstone and its stream ends, and the pod that
// kept running lost nothing. No marker anywhere.
func TestFaultWatchGone410(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	e.pod("f", "keep", nil, "app")
	e.pod("f", "gone", nil, "app")
	e.start("f", "keep", "app")
	e.start("f", "gone", "app")
	e.emit("f", "keep", "app", 10)
	e.emit("f", "gone", "app", 10)
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir)
	d.waitReady()
	e.waitCollected(dir, "f", "keep", "app")
	ctx := context.Background()
	terminated := time.Now()
	if err := e.k.Terminate(ctx, "f", "gone", "app", 0, ""); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "kubelogd read the terminated container to its end", func() (bool, string) {
		for _, r := range e.requestsBetween("f", "gone", "app", terminated, time.Now().Add(time.Second)) {
			if !r.Options.Follow {
				return true, ""
			}
		}
		return false, "no request without follow since the termination"
	})
	e.exact(dir, "f", "gone", "app")

	blind(t, p)
	stop := e.flow("f", "keep", "app", 10*time.Millisecond, 1, numbered("f", "keep", "app", "blind"))
	defer stop()
	e.pod("f", "new", nil, "app")
	e.start("f", "new", "app")
	e.emit("f", "new", "app", 10)
	if err := e.c.Client.CoreV1().Pods("f").Delete(ctx, "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "pod gone deleted", func() (bool, string) {
		_, err := e.c.Client.CoreV1().Pods("f").Get(ctx, "gone", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	time.Sleep(3 * time.Second)
	goneLog := logPath(dir, "f", "gone", "app")
	if !holdsOpen(t, d.Cmd.Process.Pid, goneLog) {
		t.Fatal("kubelogd closed the deleted pod's file while its informer was blind: the test did not test the tombstone")
	}
	unblind(t, p)
	eventually(t, 60*time.Second, "the deleted pod's file closed (its deletion came as a tombstone)", func() (bool, string) {
		return !holdsOpen(t, d.Cmd.Process.Pid, goneLog), "still open"
	})
	e.emit("f", "new", "app", 10)
	stop()
	e.exact(dir, "f", "keep", "app")
	e.exact(dir, "f", "new", "app")
	e.exact(dir, "f", "gone", "app")
	if v := d.metric("kubelogd_gaps_total"); v != 0 {
		t.Errorf("kubelogd_gaps_total = %v, want 0", v)
	}
}

// TestFaultRestartWhileWatchBlind (scenario 15, with a restart): a container restarts while
// kubelogd's informer is blind for 20 s (410 on the resuming watch, no list). kubelogd's
// follow of the old instance ends at its exit; its next request, with no container ID in
// it, is served from the new instance, whose lines do not replay what was written. Those
// lines belong after a restart marker, once: the file must be the old instance's lines,
// the restart marker, the new instance's lines, with no gap (every line is still served),
// also after the follow stream open when the informer sees again ends.
func TestFaultRestartWhileWatchBlind(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	e.pod("f", "rb", nil, "app")
	e.start("f", "rb", "app")
	e.emit("f", "rb", "app", 20)
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir)
	d.waitReady()
	e.waitCollected(dir, "f", "rb", "app")
	blind(t, p)
	e.emit("f", "rb", "app", 10)
	if err := e.k.Restart(context.Background(), "f", "rb", "app", 1, ""); err != nil {
		t.Fatal(err)
	}
	stop := e.flow("f", "rb", "app", 200*time.Millisecond, 1, numbered("f", "rb", "app", "new instance"))
	defer stop()
	time.Sleep(20 * time.Second)
	unblind(t, p)
	time.Sleep(2 * time.Second)
	// The follow stream kubelogd has open ends some time (the kubelet's timeout, a cut);
	// what it resumes with then must agree with the pod status it now knows.
	e.k.EndFollow("f", "rb", "app")
	time.Sleep(time.Second)
	stop()
	e.sections(dir, "f", "rb", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.instanceLines("f", "rb", "app", 0)},
			{Marker: "container restarted (restartCount 1): previous instance exited with code 1 (Error)", Lines: e.instanceLines("f", "rb", "app", 1)},
		}
	})
}

// TestFaultDeletedWhileWatchLags (scenario 20's race, made certain): kubelogd's pod watch
// lags (its events are held back) while a pod's container stops and the pod is deleted.
// kubelogd's follow ends with the container, after its last line; its next request, made
// while the status it knows still says running, fails because the pod is gone. When the
// events arrive, the pod's final state says the container terminated, and the last stream
// that returned a body ended with it: the log was read to its end, no gap belongs there.
func TestFaultDeletedWhileWatchLags(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	e.pod("f", "lag", nil, "app")
	e.start("f", "lag", "app")
	e.emit("f", "lag", "app", 20)
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir)
	d.waitReady()
	e.waitCollected(dir, "f", "lag", "app")
	p.Hold(faultproxy.Watch)
	e.emit("f", "lag", "app", 20)
	e.waitCollected(dir, "f", "lag", "app")
	ctx := context.Background()
	deleted := time.Now()
	if err := e.c.Client.CoreV1().Pods("f").Delete(ctx, "lag", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "kubelogd asked for the log of the deleted pod and got 404", func() (bool, string) {
		for _, r := range p.Requests(faultproxy.PodLog) {
			if r.Time.After(deleted) && r.Status == http.StatusNotFound {
				return true, ""
			}
		}
		return false, "no 404 yet"
	})
	p.Release()
	logFile := logPath(dir, "f", "lag", "app")
	eventually(t, 60*time.Second, "the deleted pod's file closed", func() (bool, string) {
		return !holdsOpen(t, d.Cmd.Process.Pid, logFile), "still open"
	})
	e.exact(dir, "f", "lag", "app")
}

// TestFaultRecreatedWhileWatchBlind: a pod is deleted and created again with the same name
// (a StatefulSet pod) while kubelogd's pod watch is blind. The relist finds the new pod
// under the old one's key, and client-go delivers it as an update of the old object: the
// old pod's target must learn that its pod is gone (until it does, reads by that name
// serve the new pod, and the new pod's target cannot open the file the old one holds).
// The file: the old pod's lines, the recreate marker, the new pod's lines, each once.
// Found by the soak (seed 982157956).
func TestFaultRecreatedWhileWatchBlind(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	ctx := context.Background()
	first := e.pod("f", "sts-0", nil, "app")
	e.start("f", "sts-0", "app")
	e.emit("f", "sts-0", "app", 20)
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir)
	d.waitReady()
	e.waitCollected(dir, "f", "sts-0", "app")
	blind(t, p)
	if err := e.c.Client.CoreV1().Pods("f").Delete(ctx, "sts-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "old pod gone", func() (bool, string) {
		_, err := e.c.Client.CoreV1().Pods("f").Get(ctx, "sts-0", metav1.GetOptions{})
		return apierrors.IsNotFound(err), fmt.Sprint(err)
	})
	second := e.pod("f", "sts-0", nil, "app")
	e.start("f", "sts-0", "app")
	e.emit("f", "sts-0", "app", 30)
	time.Sleep(3 * time.Second) // kubelogd's old target reads by name meanwhile
	unblind(t, p)
	e.emit("f", "sts-0", "app", 10)
	e.sections(dir, "f", "sts-0", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.k.EmittedByUID(first.UID, "app")},
			// Honest, if every line came: the old pod's last read served the new pod.
			{Marker: "gap: pod deleted before its log was read to the end"},
			{Marker: fmt.Sprintf("pod f/sts-0 recreated with UID %s (previous UID %s)", second.UID, first.UID), Lines: e.k.EmittedByUID(second.UID, "app")},
		}
	})
}

// TestFaultRestartedBeforeFirstRead (soak seed 690359248): a container restarts after
// kubelogd's list named its first instance and before kubelogd's first read of it, while
// the pod watch is blind. The kubelet serves the read from the second instance, and with
// nothing written there is no replay to tell: the first line is checked against the pod,
// so the first instance is read with previous=true, then the restart marker, then the
// second — not the second's lines under the first's name and the first's lost.
func TestFaultRestartedBeforeFirstRead(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	ctx := context.Background()
	e.pod("f", "rbf", nil, "app")
	e.start("f", "rbf", "app")
	e.emit("f", "rbf", "app", 12)
	var refuse atomic.Bool
	refuse.Store(true)
	p.Fail(func(r *http.Request) bool { return faultproxy.PodLog(r) && refuse.Load() }, -1,
		http.StatusServiceUnavailable, status(503, "ServiceUnavailable", "busy"))
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir)
	d.waitReady()
	eventually(t, 30*time.Second, "a first read refused", func() (bool, string) {
		n := len(p.Requests(faultproxy.PodLog))
		return n > 0, fmt.Sprintf("%d log requests", n)
	})
	// The watch and the lists say nothing more: kubelogd knows only the first instance.
	p.Fail(faultproxy.List, -1, http.StatusInternalServerError, status(500, "InternalError", "down"))
	blind(t, p)
	if err := e.k.Restart(ctx, "f", "rbf", "app", 1, "Error"); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "rbf", "app", 20)
	refuse.Store(false)
	eventually(t, 60*time.Second, "the second instance's lines read", func() (bool, string) {
		lines := readLines(t, filepath.Join(dir, "f", "rbf", "app.log"))
		for _, l := range lines {
			if strings.HasSuffix(l, "f/rbf/app line 31") {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d lines", len(lines))
	})
	unblind(t, p)
	e.emit("f", "rbf", "app", 5)
	e.sections(dir, "f", "rbf", "app", func() []oracle.Want {
		return []oracle.Want{
			{Lines: e.instanceLines("f", "rbf", "app", 0)},
			{Marker: "container restarted (restartCount 1): previous instance exited with code 1 (Error)", Lines: e.instanceLines("f", "rbf", "app", 1)},
		}
	})
}
