package cluster

import (
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestStartStop(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the control plane")
	}
	start := time.Now()
	c, err := Start(t.Context(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane ready in %s", time.Since(start))
	dir := c.Dir
	ns, err := c.Client.CoreV1().Namespaces().Get(t.Context(), "default", metav1.GetOptions{})
	if err != nil || ns.Name != "default" {
		t.Fatalf("get namespace default: %v", err)
	}
	// RBAC is on: a fresh ServiceAccount with no bindings cannot list pods.
	if err := c.EnsureServiceAccount(t.Context(), "default", "nobody"); err != nil {
		t.Fatal(err)
	}
	cfg, err := c.ServiceAccountConfig(t.Context(), "default", "nobody")
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	_, err = sa.CoreV1().Pods("").List(t.Context(), metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list pods as an unbound serviceaccount: got %v, want Forbidden", err)
	}
	_ = corev1.Pod{}
	c.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("temp dir %s still exists after Stop: %v", dir, err)
	}
}
