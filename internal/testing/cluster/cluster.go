package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
)

// Options configures Start.
type Options struct {
	// BinDir holds etcd and kube-apiserver. Default: $KUBELOGD_BIN_DIR, else the bin/
	// directory of the kubelogd module found above the working directory.
	BinDir string
	// Logger receives progress messages. Default: discard.
	Logger *slog.Logger
}

// Cluster is a running etcd + kube-apiserver pair on loopback.
type Cluster struct {
	// Dir is the cluster's temporary directory: certificates, etcd data, process logs.
	Dir string
	// Kubeconfig is the path of an admin (system:masters) kubeconfig for this cluster.
	Kubeconfig string
	// Config is the admin client configuration; copy it before changing it.
	Config *rest.Config
	// Client is an admin clientset.
	Client kubernetes.Interface
	// Host is the apiserver's URL.
	Host string

	ca         *authority
	logger     *slog.Logger
	binDir     string
	apiArgs    []string
	etcd, api  *process
	janitor    *os.Process
	kubeletKey keyPair // the apiserver's client cert towards kubelets
	kubelets   []*fakekubelet.Kubelet
}

// Start brings up etcd and kube-apiserver and waits until the apiserver is ready and the
// default namespace has its default ServiceAccount. Stop must be called to tear it down.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	binDir, err := findBinDir(opts.BinDir)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "kubelogd-testcluster-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, logger: logger, binDir: binDir}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	if c.janitor, err = startJanitor(os.Getpid(), dir); err != nil {
		return nil, fmt.Errorf("starting temp-dir janitor: %w", err)
	}
	if err := c.writeCredentials(); err != nil {
		return nil, err
	}
	started := time.Now()
	// A port taken between freePorts and the bind makes a process exit at once; retry then.
	for attempt := 0; ; attempt++ {
		err = c.startProcesses(ctx)
		if err == nil || attempt == 2 || ctx.Err() != nil {
			break
		}
		logger.Info("control plane failed to start, retrying", "err", err)
		c.api.stop(5 * time.Second)
		c.etcd.stop(5 * time.Second)
	}
	if err != nil {
		return nil, err
	}
	if err := c.EnsureNamespace(ctx, metav1.NamespaceDefault); err != nil {
		return nil, err
	}
	logger.Info("control plane ready", "host", c.Host, "took", time.Since(started).Round(time.Millisecond))
	return c, nil
}

func findBinDir(dir string) (string, error) {
	if dir == "" {
		dir = os.Getenv("KUBELOGD_BIN_DIR")
	}
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		for d := wd; ; d = filepath.Dir(d) {
			if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
				strings.HasPrefix(string(data), "module github.com/kubelogd/kubelogd\n") {
				dir = filepath.Join(d, "bin")
				break
			}
			if filepath.Dir(d) == d {
				return "", errors.New("cannot find the kubelogd module above the working directory; set KUBELOGD_BIN_DIR")
			}
		}
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return "", fmt.Errorf("control-plane binary %s missing in %s: run `make testbin` first", b, dir)
		}
	}
	return dir, nil
}

// writeCredentials creates the CA, certificates, ServiceAccount signing key and the admin
// kubeconfig.
func (c *Cluster) writeCredentials() error {
	ca, err := newAuthority()
	if err != nil {
		return err
	}
	c.ca = ca
	serving, err := ca.issue("kube-apiserver", nil, true)
	if err != nil {
		return err
	}
	admin, err := ca.issue("kubelogd-test-admin", []string{"system:masters"}, false)
	if err != nil {
		return err
	}
	if c.kubeletKey, err = ca.issue("kube-apiserver-kubelet-client", []string{"system:masters"}, false); err != nil {
		return err
	}
	saPriv, saPub, err := serviceAccountKey()
	if err != nil {
		return err
	}
	if err := writeFiles(c.Dir, map[string][]byte{
		"ca.crt": ca.certPEM, "apiserver.crt": serving.certPEM, "apiserver.key": serving.keyPEM,
		"admin.crt": admin.certPEM, "admin.key": admin.keyPEM,
		"kubelet-client.crt": c.kubeletKey.certPEM, "kubelet-client.key": c.kubeletKey.keyPEM,
		"sa.key": saPriv, "sa.pub": saPub,
	}); err != nil {
		return err
	}
	c.Config = &rest.Config{
		TLSClientConfig: rest.TLSClientConfig{CAData: ca.certPEM, CertData: admin.certPEM, KeyData: admin.keyPEM},
		QPS:             -1, // tests create many objects; the admin client is never throttled
	}
	return nil
}

func (c *Cluster) startProcesses(ctx context.Context) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	_ = os.RemoveAll(filepath.Join(c.Dir, "etcd"))
	c.etcd, err = startProcess(c.Dir, "etcd", filepath.Join(c.binDir, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL,
		// Test data is thrown away: fsync only slows every write down.
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	d := func(name string) string { return filepath.Join(c.Dir, name) }
	c.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--cert-dir=" + d("apiserver-certs"),
		"--tls-cert-file=" + d("apiserver.crt"), "--tls-private-key-file=" + d("apiserver.key"),
		"--client-ca-file=" + d("ca.crt"),
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + d("sa.pub"),
		"--service-account-signing-key-file=" + d("sa.key"),
		"--service-cluster-ip-range=10.96.0.0/16",
		// The default reconciler refuses a loopback advertise address.
		"--endpoint-reconciler-type=none",
		"--kubelet-certificate-authority=" + d("ca.crt"),
		"--kubelet-client-certificate=" + d("kubelet-client.crt"),
		"--kubelet-client-key=" + d("kubelet-client.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--profiling=false",
	}
	if c.api, err = startProcess(c.Dir, "kube-apiserver", filepath.Join(c.binDir, "kube-apiserver"), c.apiArgs...); err != nil {
		return err
	}
	c.Host = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	c.Config.Host = c.Host
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	if err := c.waitReady(ctx, readyTimeout); err != nil {
		return err
	}
	return c.writeKubeconfig()
}

// waitReady polls /readyz until the apiserver answers ok.
func (c *Cluster) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		return err
	}
	defer rc.CloseIdleConnections()
	var last string
	for {
		for _, p := range []*process{c.etcd, c.api} {
			if p.exited() {
				return fmt.Errorf("%s %w:\n%s", p.name, errExited, p.tail())
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Host+"/readyz", nil)
		resp, err := rc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after %s (last answer: %s):\n%s", timeout, last, c.api.tail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// writeKubeconfig writes the admin kubeconfig, so kubectl and kubelogd itself can be run
// against the cluster.
func (c *Cluster) writeKubeconfig() error {
	c.Kubeconfig = filepath.Join(c.Dir, "admin.kubeconfig")
	return WriteKubeconfig(c.Config, c.Kubeconfig)
}

// WriteKubeconfig writes cfg (certificate or bearer-token credentials) as a kubeconfig file.
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["testcluster"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["user"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData, Token: cfg.BearerToken,
	}
	kc.Contexts["testcluster"] = &clientcmdapi.Context{Cluster: "testcluster", AuthInfo: "user"}
	kc.CurrentContext = "testcluster"
	return clientcmd.WriteToFile(*kc, path)
}

// EnsureNamespace creates a namespace and its default ServiceAccount, which a
// controller-manager would otherwise create and without which pods are rejected.
func (c *Cluster) EnsureNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating namespace %s: %w", name, err)
	}
	return c.EnsureServiceAccount(ctx, name, "default")
}

// EnsureServiceAccount creates a ServiceAccount if it does not exist.
func (c *Cluster) EnsureServiceAccount(ctx context.Context, ns, name string) error {
	_, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating serviceaccount %s/%s: %w", ns, name, err)
	}
	return nil
}

// ServiceAccountConfig mints a token for ns/name with the TokenRequest API and returns a
// client configuration that authenticates with only that token.
func (c *Cluster) ServiceAccountConfig(ctx context.Context, ns, name string) (*rest.Config, error) {
	expiry := int64(3600)
	tr, err := c.Client.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("requesting a token for serviceaccount %s/%s: %w", ns, name, err)
	}
	return &rest.Config{
		Host:            c.Host,
		BearerToken:     tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.ca.certPEM},
	}, nil
}

// StopAPIServer stops kube-apiserver (etcd keeps running), for outage scenarios. It is
// killed after a second: an outage is abrupt, and a graceful drain only slows tests down.
func (c *Cluster) StopAPIServer() { c.api.stop(time.Second) }

// StartAPIServer starts kube-apiserver again on the same port with the same arguments and
// waits until it is ready.
func (c *Cluster) StartAPIServer(ctx context.Context) error {
	if c.api != nil && !c.api.exited() {
		return errors.New("kube-apiserver is already running")
	}
	var err error
	// The old listening socket may linger for a moment; retry the bind.
	for attempt := 0; attempt < 3; attempt++ {
		if c.api, err = startProcess(c.Dir, "kube-apiserver", filepath.Join(c.binDir, "kube-apiserver"), c.apiArgs...); err != nil {
			return err
		}
		if err = c.waitReady(ctx, readyTimeout); err == nil || !errors.Is(err, errExited) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

// RestartAPIServer stops and starts kube-apiserver.
func (c *Cluster) RestartAPIServer(ctx context.Context) error {
	c.StopAPIServer()
	return c.StartAPIServer(ctx)
}

// KubeletServingCert issues a serving certificate for 127.0.0.1 signed by the cluster CA,
// which the apiserver verifies when it proxies to a kubelet.
func (c *Cluster) KubeletServingCert() (certPEM, keyPEM []byte, err error) {
	kp, err := c.ca.issue("fake-kubelet", nil, true)
	return kp.certPEM, kp.keyPEM, err
}

// Stop kills the processes and removes the temporary directory. It is safe to call twice.
func (c *Cluster) Stop() {
	if c == nil {
		return
	}
	for _, k := range c.kubelets {
		_ = k.Close()
	}
	c.kubelets = nil
	c.api.stop(5 * time.Second)
	c.etcd.stop(5 * time.Second)
	if c.Dir != "" {
		_ = os.RemoveAll(c.Dir)
	}
	if c.janitor != nil {
		_ = c.janitor.Kill()
		c.janitor = nil
	}
}

// readyTimeout bounds the wait for the apiserver's /readyz. It is ready in about 2.5 s on
// an idle machine; the bound is generous because a loaded 2-core machine (parallel test
// packages, race detector) can take far longer to start it.
const readyTimeout = 3 * time.Minute
