package cluster

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

// StartKubelet starts a fake kubelet with a serving certificate from the cluster CA and
// registers its Node, so the apiserver proxies pods/log of pods bound to it. The kubelet
// is closed by Stop.
func (c *Cluster) StartKubelet(ctx context.Context, nodeName string, opts ...func(*fakekubelet.Config)) (*fakekubelet.Kubelet, error) {
	certPEM, keyPEM, err := c.KubeletServingCert()
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(c.Dir, "kubelet-"+nodeName)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	cfg := fakekubelet.Config{Client: c.Client, NodeName: nodeName, ServingCert: cert, Dir: dir, Logger: c.logger}
	for _, o := range opts {
		o(&cfg)
	}
	k, err := fakekubelet.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("starting fake kubelet: %w", err)
	}
	if err := k.Register(ctx); err != nil {
		_ = k.Close()
		return nil, fmt.Errorf("registering fake kubelet node %s: %w", nodeName, err)
	}
	c.kubelets = append(c.kubelets, k)
	return k, nil
}

// New starts a cluster with one fake kubelet (node "fake-node") for a test and stops both
// when the test ends, failed or not. Under go test -short it skips the test.
func New(t testing.TB) (*Cluster, *fakekubelet.Kubelet) {
	t.Helper()
	if testing.Short() {
		t.Skip("needs the control plane (skipped with -short)")
	}
	var logger *slog.Logger
	if os.Getenv("KUBELOGD_TEST_VERBOSE") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	c, err := Start(context.Background(), Options{Logger: logger})
	if err != nil {
		t.Fatalf("starting control plane: %v", err)
	}
	t.Cleanup(c.Stop)
	k, err := c.StartKubelet(context.Background(), fakekubelet.DefaultNodeName)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}
