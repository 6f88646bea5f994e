// Package e2e runs the kubelogd binary against a real kube-apiserver and etcd with a fake
// kubelet, as it runs in a cluster, and checks the files it writes line by line.
package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/kubelogdproc"
	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// kubelogdBin is the binary under test, built once by TestMain.
var kubelogdBin string

func TestMain(m *testing.M) {
	os.Exit(func() int {
		// The build has -tags failpoint: the crash tests arm internal/failpoint, which the
		// release build leaves out.
		bin, cleanup, err := kubelogdproc.Build("kubelogd-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cleanup()
		kubelogdBin = bin
		defer func() {
			if pluginBinDir != "" {
				_ = os.RemoveAll(pluginBinDir)
			}
		}()
		return m.Run()
	}())
}

// daemon is a running kubelogd process.
type daemon struct {
	*kubelogdproc.Proc
	t       *testing.T
	Metrics string // base URL of the metrics server
	Dir     string
}

// watched registers what every e2e kubelogd gets when its test ends: SIGKILL if it
// still runs, and the last 200 lines of its output in the log of a failed test.
func watched(t *testing.T, d *daemon) *daemon {
	t.Cleanup(func() {
		d.Kill()
		if t.Failed() {
			t.Logf("kubelogd output:\n%s", tail(d.Output(), 200))
		}
	})
	return d
}

func freePort(t *testing.T) int {
	port, err := kubelogdproc.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// startKubelogd runs kubelogd against the cluster with kubeconfig, writing into dir. It is
// stopped (SIGKILL if still running) when the test ends; its output is logged on failure.
func startKubelogd(t *testing.T, kubeconfig, dir string, args ...string) *daemon {
	t.Helper()
	return startKubelogdEnv(t, nil, kubeconfig, dir, args...)
}

func tail(s string, lines int) string {
	all := strings.Split(s, "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// waitReady waits until /readyz answers 200.
func (d *daemon) waitReady() {
	d.t.Helper()
	eventually(d.t, 60*time.Second, "kubelogd /readyz", func() (bool, string) {
		select {
		case <-d.Done():
			d.t.Fatalf("kubelogd exited early:\n%s", d.Output())
		default:
		}
		resp, err := http.Get(d.Metrics + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == 200, string(body)
	})
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() {
	d.t.Helper()
	if !d.Term(30 * time.Second) {
		d.t.Fatalf("kubelogd did not exit within 30s of SIGTERM")
	}
	if code := d.Cmd.ProcessState.ExitCode(); code != 0 {
		d.t.Fatalf("kubelogd exited with %d after SIGTERM:\n%s", code, tail(d.Output(), 50))
	}
}

// eventually polls cond until it holds or timeout passes; the last detail is reported.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var detail string
	for {
		var ok bool
		if ok, detail = cond(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached within %s: %s", what, timeout, detail)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// env is one control plane with its fake kubelet.
type env struct {
	t *testing.T
	c *cluster.Cluster
	k *fakekubelet.Kubelet
}

func newEnv(t *testing.T) *env {
	c, k := cluster.New(t)
	return &env{t: t, c: c, k: k}
}

// pod creates a pod bound to the fake kubelet and starts the named containers.
func (e *env) pod(ns, name string, mut func(*corev1.Pod), containers ...string) *corev1.Pod {
	e.t.Helper()
	ctx := context.Background()
	if err := e.c.EnsureNamespace(ctx, ns); err != nil {
		e.t.Fatal(err)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: e.k.NodeName()},
	}
	for _, c := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: c, Image: "busybox"})
	}
	if mut != nil {
		mut(p)
	}
	p, err := e.c.Client.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) start(ns, pod string, containers ...string) {
	e.t.Helper()
	for _, c := range containers {
		if err := e.k.StartContainer(context.Background(), ns, pod, c); err != nil {
			e.t.Fatalf("starting %s/%s/%s: %v", ns, pod, c, err)
		}
	}
}

// emit appends n numbered lines to a container.
func (e *env) emit(ns, pod, container string, n int) {
	e.t.Helper()
	lines := make([]fakekubelet.Line, n)
	for i := range lines {
		lines[i] = fakekubelet.Line{Text: fmt.Sprintf("%s/%s/%s line %d", ns, pod, container, len(e.k.Emitted(ns, pod, container))+i)}
	}
	if err := e.k.Append(ns, pod, container, lines...); err != nil {
		e.t.Fatal(err)
	}
}

// emitText appends one line with the given text.
func (e *env) emitText(ns, pod, container, text string) {
	e.t.Helper()
	if err := e.k.Append(ns, pod, container, fakekubelet.Line{Text: text}); err != nil {
		e.t.Fatal(err)
	}
}

// logPath is where kubelogd writes a container's lines.
func logPath(dir, ns, pod, container string) string {
	return filepath.Join(dir, ns, pod, container+".log")
}

// collected compares a container's file with what the fake kubelet emitted.
func (e *env) collected(dir, ns, pod, container string) (oracle.Report, []string, error) {
	lines, markers, err := oracle.ReadRotated(logPath(dir, ns, pod, container), "timestamped")
	if err != nil {
		return oracle.Report{}, nil, err
	}
	return oracle.Compare(e.k.Emitted(ns, pod, container), lines), markers, nil
}

// waitCollected waits until the container's file holds exactly what it emitted.
func (e *env) waitCollected(dir, ns, pod, container string) []string {
	e.t.Helper()
	var markers []string
	eventually(e.t, 60*time.Second, fmt.Sprintf("%s/%s/%s collected exactly once", ns, pod, container), func() (bool, string) {
		r, m, err := e.collected(dir, ns, pod, container)
		if err != nil {
			return false, err.Error()
		}
		markers = m
		return r.OK(), r.String()
	})
	return markers
}

// readLines returns a file's lines (nil if it does not exist).
func readLines(t *testing.T, path string) []string {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}
