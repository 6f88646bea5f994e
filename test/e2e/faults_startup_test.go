package e2e

import (
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/faultproxy"
)

// startupListFailure is the Status the proxy answers the pod lists with during the outage:
// what an apiserver whose etcd is struggling answers.
const startupListFailure = "etcdserver: request timed out (injected by the test)"

// TestStartupListOutage (issue 14, item 9): kubelogd starts while every list of pods fails
// with 500 for much longer than --sync-warn-interval. It must not exit (a crash loop exactly
// when the cluster struggles): it stays alive (/healthz 200), not ready (/readyz 503 naming
// the wait and the last list error), retries with client-go's backoff and warns at each
// interval; once lists go through it becomes ready and collects the pod exactly.
func TestStartupListOutage(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	e.pod("startup", "web", nil, "app")
	e.start("startup", "web", "app")
	e.emit("startup", "web", "app", 20)

	p.Fail(faultproxy.List, -1, http.StatusInternalServerError, status(500, "InternalError", startupListFailure))
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir, "--sync-warn-interval", "2s")

	// The outage lasts until kubelogd has had several lists refused and warned several
	// times: many times the interval that used to be a deadline.
	var polls int
	eventually(t, 120*time.Second, "several refused lists and warnings while kubelogd stays up", func() (bool, string) {
		polls++
		startupCheckAliveNotReady(t, d)
		refused := startupRefusedLists(p)
		warns := strings.Count(d.Output(), "waiting for the first list of pods")
		return refused >= 4 && warns >= 3, fmt.Sprintf("%d lists refused, %d warnings", refused, warns)
	})
	if polls < 2 {
		t.Fatalf("the health checks ran %d times during the outage, want several", polls)
	}
	_, body := startupGet(t, d.Metrics+"/readyz")
	t.Logf("/readyz during the outage: %s", strings.TrimSpace(body))
	if v := d.metric("kubelogd_informer_synced"); v != 0 {
		t.Fatalf("kubelogd_informer_synced = %v during the outage, want 0", v)
	}
	if files := startupLogFiles(t, dir); len(files) != 0 {
		t.Fatalf("kubelogd wrote %q before its first list", files)
	}

	p.ClearFailures()
	d.waitReady()
	e.emit("startup", "web", "app", 10)
	if markers := e.waitCollected(dir, "startup", "web", "app"); len(markers) != 0 {
		t.Errorf("markers after a startup outage: %q", markers)
	}
	if v := d.metric("kubelogd_informer_synced"); v != 1 {
		t.Errorf("kubelogd_informer_synced = %v after the outage, want 1", v)
	}
	if v := d.metric("kubelogd_gaps_total"); v != 0 {
		t.Errorf("kubelogd_gaps_total = %v, want 0", v)
	}
	d.stop()
}

// TestStartupListForbiddenExits: a pod list answered 403 at start (the self-check passed,
// but the list itself is refused) is not waited out like an outage: kubelogd exits 2 at
// once with a line naming the verb and the resource.
func TestStartupListForbiddenExits(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	const msg = `pods is forbidden: User "system:serviceaccount:kubelogd:kubelogd" cannot list resource "pods" in API group "" at the cluster scope`
	p.Fail(faultproxy.List, -1, http.StatusForbidden, status(403, "Forbidden", msg))
	d := e.kubelogdWith(kubeconfig, t.TempDir(), "--sync-warn-interval", "2s")
	select {
	case <-d.Done():
	case <-time.After(60 * time.Second):
		t.Fatalf("kubelogd still running 60s after its pod list was refused with 403:\n%s", tail(d.Output(), 30))
	}
	out := d.Output()
	if code := d.Cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(out, "cannot list/watch pods in all namespaces") || !strings.Contains(out, msg) {
		t.Fatalf("kubelogd exited %d; want 2 and a line naming list pods and the apiserver's message:\n%s", code, tail(out, 30))
	}
	t.Logf("kubelogd exited 2: %s", tail(strings.TrimSpace(out), 1))
}

// startupCheckAliveNotReady fails the test unless kubelogd runs, /healthz answers 200 and
// /readyz 503 naming the wait for the pod list and the injected list error.
func startupCheckAliveNotReady(t *testing.T, d *daemon) {
	t.Helper()
	if d.Exited() {
		t.Fatalf("kubelogd exited (code %d) while the pod list failed:\n%s", d.Cmd.ProcessState.ExitCode(), tail(d.Output(), 30))
	}
	code, body := startupGet(t, d.Metrics+"/healthz")
	if code != http.StatusOK {
		t.Fatalf("/healthz = %d %q during the list outage, want 200", code, body)
	}
	// The reason names the last list error once there was one. Whether there was is read
	// before /readyz: kubelogd keeps the error before it logs it, so an error logged
	// before the request is in its answer (one logged after it may not be).
	logged := startupListErrorLogged(d)
	code, body = startupGet(t, d.Metrics+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not synced") {
		t.Fatalf("/readyz = %d %q during the list outage, want 503 naming the informer sync", code, body)
	}
	if logged && !strings.Contains(body, startupListFailure) {
		t.Fatalf("/readyz body %q does not name the last list error %q", body, startupListFailure)
	}
}

// startupListErrorLogged reports whether kubelogd has logged a refused pod list; it keeps
// the error for /readyz before it logs it.
func startupListErrorLogged(d *daemon) bool {
	return strings.Contains(d.Output(), "pod watch failed")
}

// startupGet returns the status and body of a GET; the metrics server is up from the start,
// so a failed request fails the test.
func startupGet(t *testing.T, url string) (int, string) {
	t.Helper()
	var resp *http.Response
	var err error
	// The server starts listening a moment after the process starts.
	for range 50 {
		if resp, err = http.Get(url); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// startupRefusedLists counts the pod lists the proxy refused.
func startupRefusedLists(p *faultproxy.HTTPProxy) int {
	n := 0
	for _, r := range p.Requests(faultproxy.List) {
		if r.Injected != 0 {
			n++
		}
	}
	return n
}

// startupLogFiles lists the container files (*.log) under dir.
func startupLogFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() && strings.HasSuffix(path, ".log") {
			out = append(out, path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestStartupServerErrors (found by the soak, seed 495333016): the API server answers
// kubelogd's start-up checks — the /version probe and the permission reviews — with 500
// and 503 (restarting, or in a brownout). kubelogd used to exit 2 ("cannot reach the
// Kubernetes API server"), a crash loop exactly when the cluster struggles. It must wait
// them out, warn, and then collect as usual.
func TestStartupServerErrors(t *testing.T) {
	e := parallelEnv(t)
	p, kubeconfig := e.httpProxy()
	e.pod("startup-5xx", "web", nil, "app")
	e.start("startup-5xx", "web", "app")
	e.emit("startup-5xx", "web", "app", 20)

	version := func(r *http.Request) bool { return r.URL.Path == "/version" }
	reviews := func(r *http.Request) bool {
		return r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/apis/authorization.k8s.io/")
	}
	p.Fail(version, 2, http.StatusInternalServerError, "")
	p.Fail(reviews, 2, http.StatusServiceUnavailable, status(503, "ServiceUnavailable", "the server is currently unable to handle the request (injected by the test)"))
	dir := t.TempDir()
	d := e.kubelogdWith(kubeconfig, dir)
	d.waitReady()
	if n := strings.Count(d.Output(), "the API server failed a start-up check; retrying"); n < 3 {
		t.Errorf("%d warnings of retried start-up checks, want at least 3 (2 probes, 1+ reviews):\n%s", n, tail(d.Output(), 20))
	}
	e.emit("startup-5xx", "web", "app", 10)
	if markers := e.waitCollected(dir, "startup-5xx", "web", "app"); len(markers) != 0 {
		t.Errorf("markers after start-up server errors: %q", markers)
	}
	d.stop()
}
