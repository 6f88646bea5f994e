// Command demo runs kubelogd against a local control plane: etcd, kube-apiserver and a fake
// kubelet on loopback, with a few namespaces of pods that log continuously, restart and
// finish. It is what `make demo` runs; Ctrl-C stops everything and cleans up.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubelogd/kubelogd/internal/testing/cluster"
	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

func main() {
	kubelogd := flag.String("kubelogd", "bin/kubelogd", "kubelogd binary to run")
	outDir := flag.String("output-dir", "demo-logs", "where kubelogd writes")
	metrics := flag.String("metrics-addr", "127.0.0.1:8080", "kubelogd's metrics address")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *kubelogd, *outDir, *metrics, logger); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, bin, outDir, metricsAddr string, logger *slog.Logger) error {
	fmt.Println("demo: starting etcd, kube-apiserver and a fake kubelet on loopback…")
	c, err := cluster.Start(ctx, cluster.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer c.Stop()
	k, err := c.StartKubelet(ctx, fakekubelet.DefaultNodeName)
	if err != nil {
		return err
	}
	d := &driver{c: c, k: k}
	if err := d.createPods(ctx); err != nil {
		return err
	}

	if err := os.MkdirAll(outDir, 0o750); err != nil {
		return err
	}
	cmd := exec.Command(bin, "--kubeconfig", c.Kubeconfig, "--output-dir", outDir, "--metrics-addr", metricsAddr)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	// kubelogd gets its own process group so that Ctrl-C reaches it once, from us, after
	// which we wait for its final flush before tearing the control plane down.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	fmt.Printf(`
demo: running. Try:
  kubeconfig:  export KUBECONFIG=%s   (kubectl get pods -A; make kubectl builds kubectl into bin/)
  log files:   find %s -name '*.log'
               tail -F %s/demo-shop/web/app.log
  metrics:     curl -s http://%s/metrics | grep kubelogd_
  health:      curl -s http://%s/readyz
Ctrl-C stops kubelogd, then the control plane.

`, c.Kubeconfig, outDir, outDir, metricsAddr, metricsAddr)

	driveErr := make(chan error, 1)
	dctx, cancelDrive := context.WithCancel(ctx)
	go func() { driveErr <- d.drive(dctx) }()
	select {
	case <-ctx.Done():
	case err := <-exited:
		cancelDrive()
		<-driveErr
		return fmt.Errorf("kubelogd exited: %v", err)
	}
	cancelDrive()
	<-driveErr
	fmt.Println("\ndemo: stopping kubelogd…")
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	fmt.Printf("demo: done; the collected files stay in %s\n", outDir)
	return nil
}

// driver plays the workload: what the pods log, when they restart and finish.
type driver struct {
	c   *cluster.Cluster
	k   *fakekubelet.Kubelet
	job int
}

func podSpec(ns, name string, init []string, containers ...string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"app": name}},
		Spec:       corev1.PodSpec{NodeName: fakekubelet.DefaultNodeName, RestartPolicy: corev1.RestartPolicyAlways},
	}
	for _, n := range init {
		p.Spec.InitContainers = append(p.Spec.InitContainers, corev1.Container{Name: n, Image: "busybox"})
	}
	for _, n := range containers {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: n, Image: "busybox"})
	}
	return p
}

func (d *driver) create(ctx context.Context, p *corev1.Pod) error {
	_, err := d.c.Client.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{})
	return err
}

func (d *driver) createPods(ctx context.Context) error {
	for _, ns := range []string{"demo-shop", "demo-infra", "demo-batch"} {
		if err := d.c.EnsureNamespace(ctx, ns); err != nil {
			return err
		}
	}
	// A multi-container pod.
	if err := d.create(ctx, podSpec("demo-shop", "web", nil, "app", "proxy")); err != nil {
		return err
	}
	for _, c := range []string{"app", "proxy"} {
		if err := d.k.StartContainer(ctx, "demo-shop", "web", c); err != nil {
			return err
		}
	}
	// A pod with an init container that logs, finishes, then the main container runs.
	if err := d.create(ctx, podSpec("demo-shop", "api", []string{"migrate"}, "api")); err != nil {
		return err
	}
	if err := d.k.StartContainer(ctx, "demo-shop", "api", "migrate"); err != nil {
		return err
	}
	for i := range 5 {
		_ = d.k.Append("demo-shop", "api", "migrate", fakekubelet.Line{Text: fmt.Sprintf("applying migration %d/5", i+1)})
	}
	if err := d.k.Terminate(ctx, "demo-shop", "api", "migrate", 0, "Completed"); err != nil {
		return err
	}
	if err := d.k.StartContainer(ctx, "demo-shop", "api", "api"); err != nil {
		return err
	}
	// A pod that crashes and restarts every minute.
	if err := d.create(ctx, podSpec("demo-infra", "flaky", nil, "worker")); err != nil {
		return err
	}
	return d.k.StartContainer(ctx, "demo-infra", "flaky", "worker")
}

// drive appends lines several times a second, restarts the flaky worker every minute and
// runs a short-lived job every 20 seconds, until ctx is cancelled.
func (d *driver) drive(ctx context.Context) error {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	lastRestart, lastJob := start, start.Add(-time.Hour)
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		n++
		_ = d.k.Append("demo-shop", "web", "app", fakekubelet.Line{Text: fmt.Sprintf(`GET /products/%d 200 %dms`, rand.N(500), rand.N(80))})
		if n%2 == 0 {
			_ = d.k.Append("demo-shop", "web", "proxy", fakekubelet.Line{Text: fmt.Sprintf("upstream=app latency=%dms", rand.N(20))})
		}
		if n%4 == 0 {
			_ = d.k.Append("demo-shop", "api", "api", fakekubelet.Line{Stream: "stderr", Text: fmt.Sprintf(`level=info msg="order %d placed"`, n)})
		}
		_ = d.k.Append("demo-infra", "flaky", "worker", fakekubelet.Line{Text: fmt.Sprintf("processing item %d", n)})
		if time.Since(lastRestart) > time.Minute {
			lastRestart = time.Now()
			_ = d.k.Append("demo-infra", "flaky", "worker", fakekubelet.Line{Stream: "stderr", Text: "panic: out of memory"})
			if err := d.k.Restart(ctx, "demo-infra", "flaky", "worker", 137, "OOMKilled"); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
		}
		if time.Since(lastJob) > 20*time.Second {
			lastJob = time.Now()
			if err := d.runJob(ctx); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
		}
	}
}

// runJob creates a pod that logs a few lines and succeeds; the previous job pod is deleted.
func (d *driver) runJob(ctx context.Context) error {
	if d.job > 0 {
		_ = d.c.Client.CoreV1().Pods("demo-batch").Delete(ctx, fmt.Sprintf("report-%d", d.job), metav1.DeleteOptions{})
	}
	d.job++
	name := fmt.Sprintf("report-%d", d.job)
	p := podSpec("demo-batch", name, nil, "report")
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	if err := d.create(ctx, p); err != nil {
		return err
	}
	if err := d.k.StartContainer(ctx, "demo-batch", name, "report"); err != nil {
		return err
	}
	for i := range 10 {
		_ = d.k.Append("demo-batch", name, "report", fakekubelet.Line{Text: fmt.Sprintf("report %d: row %d", d.job, i)})
	}
	return d.k.Terminate(ctx, "demo-batch", name, "report", 0, "Completed")
}
