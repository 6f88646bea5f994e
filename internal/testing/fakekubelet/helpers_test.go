package fakekubelet

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/util/cert"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// klog's flush daemon is started by klog's init and lives for the process.
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		// A closed SPDY exec connection (client or server side) hands its close error to
		// nobody for up to a second before this goroutine ends by itself.
		goleak.IgnoreTopFunction("github.com/moby/spdystream.(*Connection).shutdown"),
	)
}

// servingCert is one self-signed certificate for 127.0.0.1 shared by the tests, since
// generating RSA keys takes a good part of a second.
var servingCert = sync.OnceValues(func() ([2][]byte, error) {
	certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	return [2][]byte{certPEM, keyPEM}, err
})

// env is one fake kubelet on a fake clientset, with an HTTPS client that trusts it.
type env struct {
	k      *Kubelet
	client *fake.Clientset
	http   *http.Client
}

// newEnv starts and registers a fake kubelet; cleanup closes it and the client's connections.
func newEnv(t *testing.T, mod ...func(*Config)) *env {
	t.Helper()
	pems, err := servingCert()
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(pems[0], pems[1])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pems[0])
	client := fake.NewClientset()
	cfg := Config{
		Client:      client,
		ServingCert: pair,
		Dir:         t.TempDir(),
		Logger:      slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, m := range mod {
		m(&cfg)
	}
	k, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	e := &env{k: k, client: client, http: &http.Client{Transport: tr}}
	t.Cleanup(func() {
		if err := k.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		tr.CloseIdleConnections()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := k.Register(ctx); err != nil {
		t.Fatal(err)
	}
	return e
}

// podSpec is a pod bound to the fake kubelet with the named regular containers.
func (e *env) podSpec(ns, name string, containers ...string) *v1.Pod {
	pod := &v1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + ns + "-" + name)},
		Spec:       v1.PodSpec{NodeName: e.k.NodeName(), RestartPolicy: v1.RestartPolicyAlways},
	}
	for _, c := range containers {
		pod.Spec.Containers = append(pod.Spec.Containers, v1.Container{Name: c, Image: "busybox:1.36"})
	}
	return pod
}

func (e *env) create(t *testing.T, pod *v1.Pod) *v1.Pod {
	t.Helper()
	got, err := e.client.CoreV1().Pods(pod.Namespace).Create(t.Context(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// running creates a pod with the named containers and starts them all.
func (e *env) running(t *testing.T, ns, name string, containers ...string) {
	t.Helper()
	e.create(t, e.podSpec(ns, name, containers...))
	for _, c := range containers {
		if err := e.k.StartContainer(t.Context(), ns, name, c); err != nil {
			t.Fatal(err)
		}
	}
}

func (e *env) getPod(t *testing.T, ns, name string) *v1.Pod {
	t.Helper()
	pod, err := e.client.CoreV1().Pods(ns).Get(t.Context(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

func (e *env) appendText(t *testing.T, ns, pod, container string, texts ...string) {
	t.Helper()
	lines := make([]Line, len(texts))
	for i, s := range texts {
		lines[i] = Line{Text: s}
	}
	if err := e.k.Append(ns, pod, container, lines...); err != nil {
		t.Fatal(err)
	}
}

func (e *env) url(ns, pod, container, query string) string {
	return fmt.Sprintf("https://127.0.0.1:%d/containerLogs/%s/%s/%s?%s", e.k.Port(), ns, pod, container, query)
}

// get does a log request and reads the whole body, with a deadline.
func (e *env) get(t *testing.T, ns, pod, container, query string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	resp := e.do(t, ctx, ns, pod, container, query)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp.StatusCode, string(body)
}

func (e *env) do(t *testing.T, ctx context.Context, ns, pod, container, query string) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url(ns, pod, container, query), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", req.URL, err)
	}
	return resp
}

// follower reads a follow stream line by line.
type follower struct {
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
}

// follow opens a follow stream and waits until the kubelet registered it. The stream is
// closed at cleanup and fails the test by its deadline if it hangs.
func (e *env) follow(t *testing.T, ns, pod, container, query string) *follower {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	resp := e.do(t, ctx, ns, pod, container, "follow=true&"+query)
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("follow: status %d: %s", resp.StatusCode, body)
	}
	f := &follower{resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(f.close)
	return f
}

func (f *follower) close() {
	f.cancel()
	_ = f.resp.Body.Close()
}

// lines reads n newline-terminated lines.
func (f *follower) lines(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		l, err := f.r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: reading line: %q, %v", out, l, err)
		}
		out = append(out, strings.TrimSuffix(l, "\n"))
	}
	return out
}

// rest reads the stream to its end and returns what came and how it ended.
func (f *follower) rest() (string, error) {
	b, err := io.ReadAll(f.r)
	return string(b), err
}

func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got lines\n  %q\nwant\n  %q", got, want)
	}
}

// eventually polls cond until it holds or 10s passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
