package fakekubelet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	critest "k8s.io/cri-api/pkg/apis/testing"
)

// DefaultNodeName is the node name used when Config.NodeName is empty.
const DefaultNodeName = "fake-node"

// Config configures a fake kubelet.
type Config struct {
	// Client is an admin client of the apiserver the kubelet registers with.
	Client kubernetes.Interface
	// NodeName is the name of the Node object; DefaultNodeName when empty.
	NodeName string
	// ServingCert is the kubelet's serving certificate, valid for IP 127.0.0.1. The
	// apiserver verifies it when it is configured with --kubelet-certificate-authority.
	ServingCert tls.Certificate
	// Dir is where the CRI log files are written, as /var/log/pods is on a node.
	Dir string
	// Logger receives the kubelet's own logs, including those of the CRI log reader.
	// Nothing is logged when nil.
	Logger *slog.Logger
	// KeepTerminating disables graceful deletion: pods that get a deletionTimestamp stay
	// Terminating, with their containers running, until HoldDeletion releases them.
	KeepTerminating bool
	// KillExitCode is the exit code of the containers that a graceful deletion stops:
	// 0 (the default) ends them "Completed", anything else (such as 137) "Error".
	KillExitCode int32
	// ReclaimDelay is how long after a graceful deletion's final status the pod object is
	// deleted; DefaultReclaimDelay when 0, none when negative. The kubelet deletes it only
	// once the pod's resources are reclaimed after its containers stopped, never in the
	// same instant: a log reader has that while to read the stopped containers' logs to
	// their end. A forced deletion (grace period 0) has no such while.
	ReclaimDelay time.Duration
	// Exec runs the commands of /exec (pods/exec), such as ExecLocal; without it every
	// exec fails with an error status once the session is open.
	Exec Executor
}

// Kubelet is a fake kubelet: an HTTPS server for /containerLogs and /exec, a pod status writer driven
// by test verbs, and a watcher that completes graceful deletions of pods bound to it.
//
// All methods are safe for concurrent use.
type Kubelet struct {
	cfg     Config
	log     *slog.Logger
	client  kubernetes.Interface
	runtime *critest.FakeRuntimeService
	srv     *http.Server
	port    int

	// ctx bounds the background work (informer, deletion worker); Close cancels it.
	ctx     context.Context
	cancel  context.CancelFunc
	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer

	// opMu serializes the verbs that write pod status, so that each write starts from the
	// runtime state the previous one left and status writes of one pod never interleave.
	// It is taken before mu, never while holding it.
	opMu sync.Mutex

	// mu guards everything below. It is held only briefly and never across API calls
	// or blocking network writes.
	mu      sync.Mutex
	closed  bool
	state   map[types.UID]*podState
	byName  map[string]types.UID // "ns/name" → UID of the newest pod with that name
	streams map[*stream]struct{}
	// follows and maxFollows: follow streams open now, and the most ever open at once
	// (MaxFollowStreams).
	follows, maxFollows int
	// closeDelay is how long a follow whose client went away still counts (SetCloseDelay).
	closeDelay  time.Duration
	requests    []*Request
	execs       []ExecRequest
	execRunning int
	faults      faults
	holds       []target
	deleteSet   map[string]types.UID // pods whose graceful deletion is due, by "ns/name"
	reclaiming  map[types.UID]bool   // pods stopped whose object is deleted after ReclaimDelay

	// deleteKick wakes the deletion worker; buffered so that a kick never blocks.
	deleteKick chan struct{}
	// handlers counts running HTTP handlers and the serving goroutine; workers counts
	// the deletion worker and the deletions waiting for ReclaimDelay. Close waits for
	// both, so that no goroutine outlives it.
	handlers  sync.WaitGroup
	workers   sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New starts a fake kubelet listening on 127.0.0.1 on a free port. It starts watching pods
// bound to the node at once; Register creates the Node object. Close releases everything.
func New(cfg Config) (*Kubelet, error) {
	if cfg.Client == nil {
		return nil, errors.New("fakekubelet: Config.Client is required")
	}
	if cfg.Dir == "" {
		return nil, errors.New("fakekubelet: Config.Dir is required")
	}
	if len(cfg.ServingCert.Certificate) == 0 {
		return nil, errors.New("fakekubelet: Config.ServingCert is required")
	}
	if cfg.NodeName == "" {
		cfg.NodeName = DefaultNodeName
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("node", cfg.NodeName)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fakekubelet: listening on 127.0.0.1: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	k := &Kubelet{
		cfg:        cfg,
		log:        log,
		client:     cfg.Client,
		runtime:    critest.NewFakeRuntimeService(),
		port:       ln.Addr().(*net.TCPAddr).Port,
		ctx:        ctx,
		cancel:     cancel,
		state:      map[types.UID]*podState{},
		byName:     map[string]types.UID{},
		streams:    map[*stream]struct{}{},
		deleteSet:  map[string]types.UID{},
		reclaiming: map[types.UID]bool{},
		deleteKick: make(chan struct{}, 1),
	}
	k.faults.changed = make(chan struct{})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /containerLogs/{podNamespace}/{podID}/{containerName}", k.serveContainerLogs)
	mux.HandleFunc("GET /exec/{podNamespace}/{podID}/{containerName}", k.serveExec)
	mux.HandleFunc("POST /exec/{podNamespace}/{podID}/{containerName}", k.serveExec)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok"))
	})
	k.srv = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cfg.ServingCert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	k.handlers.Add(1)
	go func() {
		defer k.handlers.Done()
		// ServeTLS (unlike Serve on a tls.Listener) enables HTTP/2, as the kubelet's server has.
		if err := k.srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("serving kubelet API", "err", err)
		}
	}()

	k.startInformer()
	k.workers.Add(1)
	go k.runDeletions()
	log.Info("fake kubelet listening", "port", k.port)
	return k, nil
}

// Port is the port of the kubelet API on 127.0.0.1.
func (k *Kubelet) Port() int { return k.port }

// NodeName is the name of the node the kubelet registers and serves pods for.
func (k *Kubelet) NodeName() string { return k.cfg.NodeName }

// Dir is the directory holding the CRI log files.
func (k *Kubelet) Dir() string { return k.cfg.Dir }

// Register creates or updates the Node object so that the apiserver proxies pods/log of pods
// bound to it here: status.addresses holds only InternalIP 127.0.0.1 (the apiserver prefers
// a Hostname address, which would not resolve), kubeletEndpoint is Port and Ready is True.
// It then waits until the kubelet's pod watch has synced.
func (k *Kubelet) Register(ctx context.Context) error {
	nodes := k.client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, k.cfg.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		node, err = nodes.Create(ctx, &v1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:   k.cfg.NodeName,
				Labels: map[string]string{"kubernetes.io/hostname": k.cfg.NodeName, "kubernetes.io/os": "linux"},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return fmt.Errorf("creating node %s: %w", k.cfg.NodeName, err)
		}
	case err != nil:
		return fmt.Errorf("getting node %s: %w", k.cfg.NodeName, err)
	case len(node.Spec.Taints) > 0 || node.Spec.Unschedulable:
		node.Spec.Taints = nil
		node.Spec.Unschedulable = false
		if node, err = nodes.Update(ctx, node, metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("updating node %s: %w", k.cfg.NodeName, err)
		}
	}

	now := metav1.Now()
	capacity := v1.ResourceList{
		v1.ResourceCPU:    resource.MustParse("8"),
		v1.ResourceMemory: resource.MustParse("32Gi"),
		v1.ResourcePods:   resource.MustParse("1000"),
	}
	node.Status = v1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity,
		Phase:       v1.NodeRunning,
		Conditions: []v1.NodeCondition{{
			Type: v1.NodeReady, Status: v1.ConditionTrue, Reason: "KubeletReady",
			Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now,
		}},
		Addresses:       []v1.NodeAddress{{Type: v1.NodeInternalIP, Address: "127.0.0.1"}},
		DaemonEndpoints: v1.NodeDaemonEndpoints{KubeletEndpoint: v1.DaemonEndpoint{Port: int32(k.port)}},
		NodeInfo: v1.NodeSystemInfo{
			KubeletVersion: "v1.37.2", ContainerRuntimeVersion: "containerd://fake",
			OperatingSystem: "linux", Architecture: "amd64", OSImage: "fakekubelet",
		},
	}
	if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating status of node %s: %w", k.cfg.NodeName, err)
	}
	if !cache.WaitForCacheSync(ctx.Done(), k.pods.HasSynced) {
		return fmt.Errorf("waiting for the pod watch of node %s to sync: %w", k.cfg.NodeName, context.Cause(ctx))
	}
	k.log.Info("node registered", "port", k.port)
	return nil
}

// Close stops the server, ends every open log stream, stops the pod watch and the deletion
// worker, and waits until all of its goroutines have returned. It leaves the Node object and
// the log files in place, and the pods whose deletion waited for ReclaimDelay Terminating.
// Calling it again returns the first result.
func (k *Kubelet) Close() error {
	k.closeOnce.Do(func() {
		k.mu.Lock()
		k.closed = true
		for s := range k.streams {
			s.end(endClosed)
		}
		k.mu.Unlock()
		k.cancel()
		// Close (not Shutdown): follow streams never end by themselves.
		k.closeErr = k.srv.Close()
		k.handlers.Wait()
		k.workers.Wait()
		k.factory.Shutdown()

		k.mu.Lock()
		defer k.mu.Unlock()
		for _, ps := range k.state {
			for _, c := range ps.containers {
				for _, in := range c.instances {
					in.closeFile()
				}
			}
		}
	})
	return k.closeErr
}

// beginHandler registers a running HTTP handler unless the kubelet is closing. Adding under
// mu, and Close setting closed under mu before it waits, keeps Add from racing with Wait.
func (k *Kubelet) beginHandler() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	k.handlers.Add(1)
	return true
}
