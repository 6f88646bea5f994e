package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

type ref struct{ ns, pod, container string }

// TestCollectsEveryContainerExactlyOnce: 3 namespaces, 20 pods, init containers and a
// 3-container pod; lines logged before and after kubelogd starts all land once, in order.
func TestCollectsEveryContainerExactlyOnce(t *testing.T) {
	e := newEnv(t)
	var refs []ref
	for i := range 20 {
		ns := fmt.Sprintf("team-%d", i%3)
		name := fmt.Sprintf("pod-%d", i)
		switch {
		case i == 0:
			e.pod(ns, name, nil, "app", "sidecar", "proxy")
			e.start(ns, name, "app", "sidecar", "proxy")
			refs = append(refs, ref{ns, name, "app"}, ref{ns, name, "sidecar"}, ref{ns, name, "proxy"})
		case i%4 == 1:
			e.pod(ns, name, func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox"}}
			}, "app")
			e.start(ns, name, "init")
			e.emit(ns, name, "init", 5)
			if err := e.k.Terminate(context.Background(), ns, name, "init", 0, "Completed"); err != nil {
				t.Fatal(err)
			}
			e.start(ns, name, "app")
			refs = append(refs, ref{ns, name, "init"}, ref{ns, name, "app"})
		default:
			e.pod(ns, name, nil, "app")
			e.start(ns, name, "app")
			refs = append(refs, ref{ns, name, "app"})
		}
	}
	// Lines that exist before kubelogd starts.
	for _, r := range refs {
		if r.container != "init" {
			e.emit(r.ns, r.pod, r.container, 50)
		}
	}
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir)
	d.waitReady()
	// Lines that arrive while it follows.
	for round := range 5 {
		for _, r := range refs {
			if r.container != "init" {
				e.emit(r.ns, r.pod, r.container, 10+round)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, r := range refs {
		if markers := e.waitCollected(dir, r.ns, r.pod, r.container); len(markers) > 0 {
			t.Errorf("%v: unexpected markers %q", r, markers)
		}
	}
	checkModes(t, dir)
}

// checkModes: directories 0750, files 0640, whatever lumberjack would have chosen.
func checkModes(t *testing.T, dir string) {
	t.Helper()
	err := filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil || path == dir {
			return err
		}
		switch {
		case info.IsDir() && info.Mode().Perm() != 0o750:
			t.Errorf("%s: mode %v, want 0750", path, info.Mode().Perm())
		case strings.HasSuffix(path, ".log") && info.Mode().Perm() != 0o640:
			t.Errorf("%s: mode %v, want 0640", path, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestPodLifecycle: a pod created after start is picked up, a restarted container's new
// instance continues the file after a restart marker, and a deleted pod's stream stops and
// its file is closed.
func TestPodLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir)
	d.waitReady()

	e.pod("apps", "late", nil, "app")
	e.start("apps", "late", "app")
	e.emit("apps", "late", "app", 20)
	e.waitCollected(dir, "apps", "late", "app")

	// Restart: the old instance's last lines and the new instance's lines, once each.
	e.emit("apps", "late", "app", 5)
	if err := e.k.Restart(ctx, "apps", "late", "app", 137, "OOMKilled"); err != nil {
		t.Fatal(err)
	}
	e.emit("apps", "late", "app", 20)
	markers := e.waitCollected(dir, "apps", "late", "app")
	if len(markers) != 1 || !strings.Contains(markers[0], "restarted") || !strings.Contains(markers[0], "137") || !strings.Contains(markers[0], "OOMKilled") {
		t.Fatalf("markers = %q, want one restart marker naming exit code 137 and OOMKilled", markers)
	}

	// Delete: the stream ends and kubelogd no longer holds the file open.
	path := logPath(dir, "apps", "late", "app")
	if !holdsOpen(t, d.Cmd.Process.Pid, path) {
		t.Fatalf("kubelogd does not hold %s open while the pod runs", path)
	}
	if err := e.c.Client.CoreV1().Pods("apps").Delete(ctx, "late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "file closed after pod deletion", func() (bool, string) {
		return !holdsOpen(t, d.Cmd.Process.Pid, path), "still open"
	})
	e.waitCollected(dir, "apps", "late", "app")
}

// holdsOpen reports whether process pid has path open.
func holdsOpen(t *testing.T, pid int, path string) bool {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && target == path {
			return true
		}
	}
	return false
}

// TestFilters: an excluded namespace, the exclude annotations and a non-matching selector
// produce no file, while a matching pod is collected.
func TestFilters(t *testing.T) {
	e := newEnv(t)
	e.pod("keep", "match", nil, "app", "noisy")
	e.pod("skip", "other-ns", nil, "app")
	e.pod("keep", "annotated", func(p *corev1.Pod) {
		p.Annotations = map[string]string{"kubelogd.io/exclude": "true"}
	}, "app")
	e.pod("keep", "partial", func(p *corev1.Pod) {
		p.Annotations = map[string]string{"kubelogd.io/exclude-containers": "noisy"}
	}, "app", "noisy")
	e.pod("keep", "unlabelled", func(p *corev1.Pod) { p.Labels = map[string]string{"app": "x", "tier": "db"} }, "app")
	for _, p := range []struct{ ns, pod string }{{"keep", "match"}, {"skip", "other-ns"}, {"keep", "annotated"}, {"keep", "partial"}, {"keep", "unlabelled"}} {
		cs := []string{"app"}
		if p.pod == "match" || p.pod == "partial" {
			cs = append(cs, "noisy")
		}
		e.start(p.ns, p.pod, cs...)
		for _, c := range cs {
			e.emit(p.ns, p.pod, c, 10)
		}
	}
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir, "--exclude-namespace", "skip", "--selector", "tier!=db")
	d.waitReady()
	e.waitCollected(dir, "keep", "match", "app")
	e.waitCollected(dir, "keep", "match", "noisy")
	e.waitCollected(dir, "keep", "partial", "app")
	// Everything collectable is on disk; give the others the same chance, then check.
	time.Sleep(2 * time.Second)
	for _, p := range []string{"skip/other-ns/app", "keep/annotated/app", "keep/partial/noisy", "keep/unlabelled/app"} {
		parts := strings.Split(p, "/")
		if _, err := os.Stat(logPath(dir, parts[0], parts[1], parts[2])); !os.IsNotExist(err) {
			t.Errorf("%s: file exists (err=%v), want none", p, err)
		}
	}
}

// TestSIGTERMFlushesAndResumes: lines flow while kubelogd gets SIGTERM; it exits 0, what
// it wrote is an exact prefix of what was emitted (nothing received is lost, nothing is
// doubled), and a restarted kubelogd completes the file exactly once.
func TestSIGTERMFlushesAndResumes(t *testing.T) {
	e := newEnv(t)
	e.pod("apps", "busy", nil, "app")
	e.start("apps", "busy", "app")
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir)
	d.waitReady()

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			_ = e.k.Append("apps", "busy", "app", fakekubelet.Line{Text: fmt.Sprintf("flowing line %d", i)})
			time.Sleep(time.Millisecond)
		}
	}()
	eventually(t, 30*time.Second, "some lines on disk", func() (bool, string) {
		n := len(readLines(t, logPath(dir, "apps", "busy", "app")))
		return n > 200, fmt.Sprintf("%d lines", n)
	})
	d.stop()
	onDisk := readLines(t, logPath(dir, "apps", "busy", "app"))
	cancel()
	wg.Wait()
	emitted := e.k.Emitted("apps", "busy", "app")
	if len(onDisk) == 0 || len(onDisk) > len(emitted) {
		t.Fatalf("%d lines on disk, %d emitted", len(onDisk), len(emitted))
	}
	for i, l := range onDisk {
		if _, text, _ := strings.Cut(l, " "); text != emitted[i] {
			t.Fatalf("line %d on disk = %q, want %q (the file must be an exact prefix of what was emitted)", i, l, emitted[i])
		}
	}
	t.Logf("%d of %d emitted lines on disk at SIGTERM", len(onDisk), len(emitted))

	d2 := startKubelogd(t, e.c.Kubeconfig, dir)
	d2.waitReady()
	e.waitCollected(dir, "apps", "busy", "app")
}

// TestSecondInstanceRefused: lumberjack assumes one writer per file, so a second kubelogd
// on the same output directory must refuse to start.
func TestSecondInstanceRefused(t *testing.T) {
	e := newEnv(t)
	dir := t.TempDir()
	d := startKubelogd(t, e.c.Kubeconfig, dir)
	d.waitReady()
	d2 := startKubelogd(t, e.c.Kubeconfig, dir)
	select {
	case <-d2.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("second kubelogd still running")
	}
	if code := d2.Cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(d2.Output(), "in use by another kubelogd") {
		t.Fatalf("second kubelogd: exit %d, output %q", code, d2.Output())
	}
}
