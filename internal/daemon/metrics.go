package daemon

import (
	"context"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientmetrics "k8s.io/client-go/tools/metrics"
)

// registerDaemonMetrics registers the process-level series: build info and informer sync.
func registerDaemonMetrics(reg prometheus.Registerer, version string, budgetBytes func() int64, synced func() bool) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubelogd_output_budget_bytes",
			Help: "The disk budget of the output directory (--max-total-size-mb) in bytes; 0 when there is none.",
		}, func() float64 { return float64(budgetBytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "kubelogd_build_info",
			Help:        "Always 1; the labels give kubelogd's version and the Go version it was built with.",
			ConstLabels: prometheus.Labels{"version": version, "goversion": runtime.Version()},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubelogd_informer_synced",
			Help: "1 once every pod informer has completed its first list, else 0.",
		}, func() float64 {
			if synced() {
				return 1
			}
			return 0
		}),
	)
}

// client-go's metrics hooks can be registered once per process (tools/metrics.Register
// uses a sync.Once), but a process may run the daemon more than once (tests do). So the
// hooks are registered once with adapters that forward to the metrics of the daemon
// running now.
var (
	clientHooksOnce sync.Once
	clientTarget    atomic.Pointer[clientMetrics]
)

// clientMetrics are client-go's request metrics for one daemon's registry.
type clientMetrics struct {
	latency *prometheus.HistogramVec
	results *prometheus.CounterVec
}

func registerClientMetrics(reg prometheus.Registerer) {
	m := &clientMetrics{
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kubelogd_kube_api_request_duration_seconds",
			Help:    "Latency of Kubernetes API requests until the response headers, by verb. Log streams count until their first byte.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"verb"}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_kube_api_requests_total",
			Help: "Kubernetes API requests by HTTP status code (\"<error>\" when no response) and method.",
		}, []string{"code", "method"}),
	}
	reg.MustRegister(m.latency, m.results)
	clientTarget.Store(m)
	clientHooksOnce.Do(func() {
		clientmetrics.Register(clientmetrics.RegisterOpts{
			RequestLatency: latencyAdapter{},
			RequestResult:  resultAdapter{},
		})
	})
}

type latencyAdapter struct{}

func (latencyAdapter) Observe(_ context.Context, verb string, _ url.URL, d time.Duration) {
	if m := clientTarget.Load(); m != nil {
		m.latency.WithLabelValues(verb).Observe(d.Seconds())
	}
}

type resultAdapter struct{}

func (resultAdapter) Increment(_ context.Context, code, method, _ string) {
	if m := clientTarget.Load(); m != nil {
		m.results.WithLabelValues(code, method).Inc()
	}
}
