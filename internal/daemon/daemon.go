// Package daemon wires kubelogd together: API client, pod informers, collector, sink and
// the metrics and health server, all driven by one context.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubelogd/kubelogd/collector"
	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/internal/config"
	"github.com/kubelogd/kubelogd/internal/rbac"
	"github.com/kubelogd/kubelogd/sink"
)

// Config is kubelogd's validated configuration.
type Config struct {
	// Kubeconfig is a kubeconfig path; empty uses the in-cluster configuration.
	Kubeconfig string
	// QPS and Burst bound the client's request rate, log stream opens included.
	QPS   float32
	Burst int
	// MetricsAddr serves /metrics, /healthz and /readyz; empty disables the server.
	MetricsAddr string
	// Version is reported by kubelogd_build_info.
	Version string
	// LogFormat is the format of kubelogd's own logs (text or json), and LogLevel the
	// level of its logger's handler, which a reload sets; nil: none to set.
	LogFormat string
	LogLevel  *slog.LevelVar
	// ConfigFile is the --config file, watched while kubelogd runs (and reread on
	// SIGHUP); on each change Reload builds the Config anew from the command line, the
	// environment and the file, and Run applies what can change (see reload.go).
	ConfigFile string
	Reload     func() (Config, error)

	Informer  informer.Config
	Collector collector.Config
	Sink      sink.Config
	HA        HAConfig
}

// HAConfig shares the pods among replicas through shard Leases (Shards > 0).
type HAConfig struct {
	Shards         int
	LeaseNamespace string // "" finds it: $POD_NAMESPACE, the service account's, "kubelogd"
	ReplicaID      string // "" finds it: $POD_NAME, the hostname
	LeaseDuration  time.Duration
	RenewDeadline  time.Duration
	RetryPeriod    time.Duration
}

// validate checks the durations' order, as client-go's leader election does.
func (h HAConfig) validate() error {
	switch {
	case h.Shards < 0:
		return errors.New("--shards must not be negative (0: one kubelogd)")
	case h.Shards == 0:
		return nil
	case h.RetryPeriod <= 0:
		return errors.New("--retry-period must be positive")
	case h.RenewDeadline <= h.RetryPeriod:
		return fmt.Errorf("--renew-deadline %s must exceed --retry-period %s", h.RenewDeadline, h.RetryPeriod)
	case h.LeaseDuration <= h.RenewDeadline:
		return fmt.Errorf("--lease-duration %s must exceed --renew-deadline %s: a holder must stop writing before another may take over", h.LeaseDuration, h.RenewDeadline)
	}
	return nil
}

// Validate checks what can be checked before contacting anything.
func (c *Config) Validate() error {
	if c.QPS <= 0 || c.Burst <= 0 {
		return errors.New("--kube-api-qps and --kube-api-burst must be positive")
	}
	if c.Sink.Dir == "" {
		return errors.New("--output-dir must not be empty")
	}
	if c.Collector.Since < 0 {
		return errors.New("--since must not be negative")
	}
	if c.Collector.StallTimeout < time.Second {
		return errors.New("--stall-timeout must be at least 1s")
	}
	if err := c.HA.validate(); err != nil {
		return err
	}
	return c.Informer.Validate()
}

// ErrUsage marks errors caused by the configuration or the environment kubelogd was
// started in (bad flag, unreachable API server, unwritable directory): exit code 2.
var ErrUsage = errors.New("usage")

// RestConfig loads the client configuration with kubelogd's rate limits.
func (c *Config) RestConfig() (*rest.Config, error) {
	var rc *rest.Config
	var err error
	if c.Kubeconfig != "" {
		rc, err = clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	} else {
		rc, err = rest.InClusterConfig()
		if errors.Is(err, rest.ErrNotInCluster) {
			// Outside a cluster, behave like kubectl: $KUBECONFIG or ~/.kube/config.
			rc, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
				clientcmd.NewDefaultClientConfigLoadingRules(), nil).ClientConfig()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("loading Kubernetes client configuration: %w", err)
	}
	rc.QPS, rc.Burst = c.QPS, c.Burst
	rc.UserAgent = "kubelogd"
	// Protobuf, as kubectl asks for: every type kubelogd reads is built in, and pods
	// decode about four times faster than from JSON (the informer's lists, the first-line
	// checks' fetches; BenchmarkDecodePodPage in hack/bench). Log streams are text either
	// way.
	rc.ContentType = runtime.ContentTypeProtobuf
	rc.AcceptContentTypes = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON
	return rc, nil
}

// Run runs kubelogd until ctx is cancelled, then stops every stream, flushes and closes
// every file and returns. Errors that prevent starting wrap ErrUsage.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	given := cfg
	var hup <-chan os.Signal
	if cfg.ConfigFile != "" {
		// From the start: SIGHUP's default action would end the process, and one sent
		// while kubelogd starts is a reload once the watcher runs.
		var stop func()
		hup, stop = notifyHUP()
		defer stop()
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	rc, err := cfg.RestConfig()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	rc, why, err := withHTTP2Transport(rc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if why != "" {
		logger.Info("using client-go's HTTP transport", "why", why)
	}
	reg := prometheus.NewRegistry()
	registerClientMetrics(reg) // before the first client is built: client-go reads the hooks then
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	if err := retryServerErrors(ctx, logger, "reaching the API server", func(ctx context.Context) error {
		return checkReachable(ctx, client, rc.Host)
	}); err != nil {
		if ctx.Err() != nil {
			return nil // stopped (SIGTERM) while starting: nothing was collected yet
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	// Fail at start, naming what is missing, rather than collect less in silence: a
	// reflector without list permission would retry forever.
	if err := retryServerErrors(ctx, logger, "checking kubelogd's permissions", func(ctx context.Context) error {
		return rbac.CheckSelf(ctx, client, cfg.Informer.Namespaces)
	}); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	var reps *replicas
	if cfg.HA.Shards > 0 {
		if reps, err = newReplicas(ctx, &cfg, client, logger); err != nil || ctx.Err() != nil {
			return err // nil when stopped while checking
		}
	}
	cfg.Sink.Logger = logger
	cfg.Sink.Registerer = reg
	files, err := sink.NewManager(cfg.Sink)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	defer func() {
		if err := files.Close(); err != nil {
			logger.Error("closing output files", "err", err)
		}
	}()

	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	meta := newMetaWriter(cfg.Sink.Dir, logger)
	cfg.Collector.OnPod = meta.OnPod
	coll := collector.New(cfg.Collector, client.CoreV1(), files, reg, logger)
	var handler informer.Handler = coll
	if reps != nil {
		if handler, err = reps.attach(coll, rc, cfg.HA, logger); err != nil {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
	}
	disc, err := newSelection(client, cfg.Informer, handler, logger)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUsage, err)
	}
	disc.release = coll.Release
	if reps != nil {
		disc.forget = reps.gate.forget
	}
	registerDaemonMetrics(reg, cfg.Version, files.BudgetBytes, disc.Synced)
	registerShardMetrics(reg, reps.manager)

	var g group
	if cfg.MetricsAddr != "" {
		srv, err := newServer(cfg.MetricsAddr, reg, disc.SyncError, coll.Forbidden, cfg.Sink.Dir)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		logger.Info("serving metrics and health", "addr", srv.addr(), "metrics", "http://"+srv.addr()+"/metrics")
		g.last("metrics server", srv.run)
	}
	reloads := config.NewMetrics(reg)
	if cfg.ConfigFile != "" && cfg.Reload != nil {
		r := &reloader{cur: cfg, given: given, client: client, sel: disc, coll: coll, files: files, logger: logger}
		w := config.NewWatcher(cfg.ConfigFile, r.apply, hup, reloads, logger)
		g.run("configuration file watcher", w.Run)
	}
	g.run("file sweeper", files.Run)
	g.run("pod metadata", meta.Run)
	g.run("collector", coll.Run)
	if reps != nil {
		// On shutdown it gives every shard up once the collector has closed its files.
		g.run("shard leases", reps.m.Run)
	}
	g.run("informer", func(ctx context.Context) error {
		// A slow or failing first list is waited out (disc.Run retries and warns); only a
		// list refused with 403 ends it, and that is the environment's fault: exit 2, as
		// when the self-check above finds a permission missing.
		err := disc.Run(ctx)
		if apierrors.IsForbidden(err) {
			return fmt.Errorf("%w: %w", ErrUsage, err)
		}
		return err
	})
	logger.Info("kubelogd started", "apiserver", rc.Host, "output_dir", cfg.Sink.Dir)
	return g.wait(ctx, func() { logger.Info("stopping: closing streams and flushing files") })
}

// group runs kubelogd's goroutines under one context: the first to fail stops them all,
// and its error is the group's. Those started with last (the metrics and health server)
// stop only after the others have returned, so that /metrics and /healthz answer while
// the collector drains its streams and flushes its files.
type group struct {
	workers, lasts []namedFunc
}

type namedFunc struct {
	name string
	f    func(context.Context) error
}

func (g *group) run(name string, f func(context.Context) error) {
	g.workers = append(g.workers, namedFunc{name, f})
}
func (g *group) last(name string, f func(context.Context) error) {
	g.lasts = append(g.lasts, namedFunc{name, f})
}

// wait starts every function and returns once all have returned: after ctx is done, or
// one of them failed. stopping is called once the workers are told to stop.
func (g *group) wait(ctx context.Context, stopping func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lastCtx, stopLast := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLast()
	errs := make(chan error, len(g.workers)+len(g.lasts)) // none blocks on failing
	start := func(wg *sync.WaitGroup, ctx context.Context, nf namedFunc) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := nf.f(ctx); err != nil {
				if !errors.Is(err, ErrUsage) {
					err = fmt.Errorf("%s: %w", nf.name, err)
				}
				errs <- err
				cancel()
			}
		}()
	}
	var workers, lasts sync.WaitGroup
	for _, nf := range g.lasts {
		start(&lasts, lastCtx, nf)
	}
	for _, nf := range g.workers {
		start(&workers, ctx, nf)
	}
	<-ctx.Done()
	stopping()
	workers.Wait()
	stopLast()
	lasts.Wait()
	close(errs)
	return <-errs
}

// retryServerErrors runs a start-up check until it passes, fails for a reason a retry
// cannot fix, or ctx ends. The API server's own errors — a 5xx, a 429, a server-side
// timeout: an API server restarting or in a brownout — are retried with backoff (1 s,
// doubling up to 30 s), each with a WARN: exiting then would crash-loop kubelogd exactly
// when the cluster is struggling (the first pod list is waited out the same way).
// Anything else (no connection, TLS, credentials, a permission missing) is
// configuration, reported at once.
func retryServerErrors(ctx context.Context, logger *slog.Logger, what string, check func(context.Context) error) error {
	delay := time.Second
	for {
		err := check(ctx)
		if err == nil || !serverError(err) || ctx.Err() != nil {
			return err
		}
		logger.Warn("the API server failed a start-up check; retrying", "check", what, "retryIn", delay, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		delay = min(2*delay, 30*time.Second)
	}
}

// serverError reports whether err is the API server's answer that it could not serve
// the request now, rather than a refusal of it.
func serverError(err error) bool {
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	code := st.Status().Code
	return code >= 500 || code == http.StatusTooManyRequests || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err)
}

// checkReachable asks the API server for its version, so an unreachable or misconfigured
// server is one clear line at start rather than endless retries.
func checkReachable(ctx context.Context, client kubernetes.Interface, host string) error {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := client.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Error(); err != nil {
		return fmt.Errorf("cannot reach the Kubernetes API server at %s: %w", host, err)
	}
	return nil
}

// server serves metrics and health endpoints.
type server struct {
	ln  net.Listener
	srv *http.Server
}

func newServer(addr string, reg *prometheus.Registry, syncErr func() error, forbidden func() string, dir string) (*server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on --metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", readyHandler(syncErr, forbidden, dir))
	return &server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

// readyHandler answers 200 once the informers have synced (syncErr returns nil), no log
// stream was refused for lack of permission lately and the output directory takes new
// files, and 503 with the reason otherwise. Until the first pod list succeeds the reason
// says how long kubelogd has waited and the list's last error.
func readyHandler(syncErr func() error, forbidden func() string, dir string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if err := syncErr(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		if msg := forbidden(); msg != "" {
			http.Error(w, "not ready: permission denied reading logs: "+msg, http.StatusServiceUnavailable)
			return
		}
		if err := checkWritable(dir); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	}
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) run(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
