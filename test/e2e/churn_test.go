package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestChurnLeaksNothing: months of pod churn must not grow kubelogd. Its own /metrics
// show the same goroutines and open fds after 2,000 and after 4,000 pods were created,
// logged, collected and deleted — lumberjack's goroutine per Logger included.
func TestChurnLeaksNothing(t *testing.T) {
	t.Parallel() // minutes of API traffic; runs beside the other parallel e2e tests
	e := newEnv(t)
	dir := t.TempDir()
	if err := e.c.EnsureNamespace(context.Background(), "churn"); err != nil {
		t.Fatal(err)
	}
	d := startKubelogd(t, e.c.Kubeconfig, dir, "--log-level", "warn")
	d.waitReady()

	next := 0
	phase := func(pods int) (goroutines, fds float64) {
		const batch = 200
		for done := 0; done < pods; done += batch {
			names := make([]string, batch)
			for i := range names {
				names[i] = fmt.Sprintf("p-%d", next)
				next++
			}
			e.churnBatch(t, dir, names)
		}
		// Settle: every stream ended and every file closed.
		eventually(t, 60*time.Second, "streams ended", func() (bool, string) {
			mfs, _ := d.scrape()
			desired := value(mfs, "kubelogd_targets_desired", nil)
			open := value(mfs, "kubelogd_files_open", nil)
			return desired == 0 && open == 0, fmt.Sprintf("desired %v, files open %v", desired, open)
		})
		time.Sleep(2 * time.Second) // let idle HTTP connections and timers settle
		mfs, _ := d.scrape()
		return value(mfs, "go_goroutines", nil), value(mfs, "process_open_fds", nil)
	}
	g1, f1 := phase(2000)
	g2, f2 := phase(2000)
	t.Logf("after 2000 pods: %v goroutines, %v fds; after 4000: %v goroutines, %v fds", g1, f1, g2, f2)
	if g2 > g1+10 || f2 > f1+5 {
		t.Fatalf("kubelogd grows with churn: goroutines %v → %v, fds %v → %v", g1, g2, f1, f2)
	}
}

// churnBatch creates pods, logs three lines in each, waits until kubelogd wrote them, and
// deletes the pods (the fake kubelet completes the graceful deletion).
func (e *env) churnBatch(t *testing.T, dir string, names []string) {
	t.Helper()
	ctx := context.Background()
	parallel(t, names, func(name string) error {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "churn", Name: name},
			Spec: corev1.PodSpec{NodeName: e.k.NodeName(), Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
		if _, err := e.c.Client.CoreV1().Pods("churn").Create(ctx, p, metav1.CreateOptions{}); err != nil {
			return err
		}
		if err := e.k.StartContainer(ctx, "churn", name, "app"); err != nil {
			return err
		}
		e.emit("churn", name, "app", 3)
		return nil
	})
	for _, name := range names {
		e.waitCollected(dir, "churn", name, "app")
	}
	parallel(t, names, func(name string) error {
		return e.c.Client.CoreV1().Pods("churn").Delete(ctx, name, metav1.DeleteOptions{})
	})
	eventually(t, 60*time.Second, "batch deleted", func() (bool, string) {
		for _, name := range names {
			if _, err := e.c.Client.CoreV1().Pods("churn").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, name + " still exists"
			}
		}
		return true, ""
	})
}

// parallel runs f for every name on a few goroutines and fails the test on the first error.
func parallel(t *testing.T, names []string, f func(string) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	work := make(chan string)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				if err := f(n); err != nil {
					errs <- fmt.Errorf("%s: %w", n, err)
				}
			}
		}()
	}
	for _, n := range names {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
