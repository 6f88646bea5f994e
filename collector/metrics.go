package collector

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a stream is reopened; the values of kubelogd_reconnects_total's reason label.
const (
	reasonEOF         = "eof_while_running" // the kubelet ended the stream; the container runs on
	reasonStall       = "stall"             // the watchdog found lines the stream did not deliver
	reasonLifetime    = "max_lifetime"      // the stream reached --max-stream-lifetime
	reasonDemoted     = "demoted"           // an idle stream gave its follow slot up (see budget)
	reasonHTTPError   = "http_error"        // the request failed with an HTTP error
	reasonForbidden   = "forbidden"         // 403: a permission is missing
	reasonAPIServer   = "apiserver_gone"    // no answer from the API server at all
	reasonBodyError   = "body_error"        // the kubelet wrote an error text into the stream
	reasonTornLine    = "torn_line"         // the stream ended in the middle of a line
	reasonShortReplay = "short_replay"      // a resumed stream ended before its replay was verified
)

var reconnectReasons = []string{reasonEOF, reasonStall, reasonLifetime, reasonDemoted, reasonHTTPError, reasonForbidden,
	reasonAPIServer, reasonBodyError, reasonTornLine, reasonShortReplay}

// Kinds of gap; the values of kubelogd_gaps_total's reason label.
const (
	gapInstancesLost  = "instances_lost"  // restartCount jumped past instances never read
	gapPrevious       = "previous_gone"   // the rest of a replaced instance is no longer served
	gapRotated        = "rotated"         // the last line written is no longer in the kubelet's log
	gapPodDeleted     = "pod_deleted"     // the pod was deleted before its log was read to the end
	gapNeverReadable  = "never_read"      // the pod was deleted before its log could be read at all
	gapDeletedRunning = "deleted_running" // deleted while running, after the last stream ended
	gapFileTruncated  = "file_truncated"  // the file lost bytes its cursor had recorded (power loss)
	gapFilesRemoved   = "files_removed"   // files were removed, renamed or truncated outside kubelogd
	gapFileUnverified = "file_unverified" // on start, the file could not be proven to be its cursor's
	gapLineTooLong    = "line_too_long"   // a replayed line longer than a replay holds had to be released
)

var gapReasons = []string{gapInstancesLost, gapPrevious, gapRotated, gapPodDeleted, gapNeverReadable, gapDeletedRunning, gapFileTruncated,
	gapFilesRemoved, gapFileUnverified, gapLineTooLong}

// Target states; the values of kubelogd_targets' state label.
const (
	stateStreaming = "streaming" // a log stream is open
	stateWaiting   = "waiting"   // waiting for a retry, the rate limiter, or the container to start
	stateFinished  = "finished"  // the instance's log was read to its end
	statePolling   = "polling"   // read by polls: beyond the follow budget, or its node cannot follow logs
)

var targetStates = []string{stateStreaming, stateWaiting, stateFinished, statePolling}

// Kinds of error text a kubelet writes into a log stream; the values of
// kubelogd_kubelet_errors_total's reason label.
const (
	kubeletErrInotify = "inotify_exhausted" // the node is out of inotify instances
	kubeletErrOther   = "other"
)

var kubeletErrReasons = []string{kubeletErrInotify, kubeletErrOther}

// metrics are the collector's Prometheus metrics. Label values known in advance are
// initialised so that every series exists from the first scrape.
type metrics struct {
	lines       *prometheus.CounterVec
	bytes       *prometheus.CounterVec
	streamsOpen prometheus.Gauge
	opened      prometheus.Counter
	reconnects  *prometheus.CounterVec
	skipped     prometheus.Counter
	gaps        *prometheus.CounterVec
	restarts    prometheus.Counter
	targets     *prometheus.GaugeVec
	lag         prometheus.Histogram
	desired     prometheus.Gauge
	// kubeletErrors counts error texts inside streams by kind; polls counts reads of
	// containers whose node cannot follow; nodesOut is how many nodes that is.
	kubeletErrors *prometheus.CounterVec
	polls         prometheus.Counter
	nodesOut      prometheus.Gauge
	// The follow budget: streams given to polled containers and taken from idle ones, and
	// the time between two polls of one container.
	promotions   prometheus.Counter
	demotions    prometheus.Counter
	pollInterval prometheus.Histogram
	// podFetches counts the requests of the checks of what a read served (podFetches).
	podFetches *prometheus.CounterVec
}

// Kinds of request a check of what a read served makes; the values of
// kubelogd_pod_fetches_total's kind label.
const (
	fetchGet  = "get"  // one pod
	fetchList = "list" // its namespace, shared by the checks waiting for it
)

func newMetrics(reg prometheus.Registerer, oldestWaiting func() float64) *metrics {
	m := &metrics{
		lines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_lines_written_total", Help: "Application lines written to files, by namespace.",
		}, []string{"namespace"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_line_bytes_written_total", Help: "Bytes of application lines written (without timestamps or format), by namespace.",
		}, []string{"namespace"}),
		streamsOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelogd_streams_active", Help: "Log streams open now.",
		}),
		opened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_streams_opened_total", Help: "Log streams opened (requests answered with a body).",
		}),
		reconnects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_reconnects_total", Help: "Log streams reopened, by reason.",
		}, []string{"reason"}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_duplicate_lines_skipped_total", Help: "Replayed lines skipped on resume because they were written already.",
		}),
		gaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_gaps_total", Help: "Gap markers written where continuity could not be proven, by reason.",
		}, []string{"reason"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_container_restarts_total", Help: "Container restarts seen (restart markers written).",
		}),
		targets: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubelogd_targets", Help: "Collected containers by state.",
		}, []string{"state"}),
		desired: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelogd_targets_desired", Help: "Containers that should be collected (one stream owner each).",
		}),
		kubeletErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_kubelet_errors_total", Help: "Error texts kubelets wrote into log streams, by kind.",
		}, []string{"reason"}),
		polls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_polls_total", Help: "Reads without follow of running containers without a stream: beyond the follow budget, or on a node that cannot follow logs.",
		}),
		promotions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_stream_promotions_total", Help: "Polled containers given a follow stream (a slot of the follow budget came free).",
		}),
		demotions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_stream_demotions_total", Help: "Idle streams that gave their follow slot to a busier polled container.",
		}),
		pollInterval: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubelogd_poll_interval_seconds",
			Help:    "Time between two polls of one container; above --poll-max-interval when the poll rate (--poll-qps) cannot keep up.",
			Buckets: []float64{1, 2, 5, 10, 15, 20, 30, 45, 60, 120, 300},
		}),
		podFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_pod_fetches_total", Help: "Requests for pods made to check which instance a log read served, by kind: get (one pod) or list (a namespace, shared by the checks waiting).",
		}, []string{"kind"}),
		nodesOut: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelogd_nodes_inotify_exhausted", Help: "Nodes whose kubelet is out of inotify instances: their containers are polled.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kubelogd_lag_seconds",
			Help:    "Time from the kubelet's timestamp of a line to its hand-over to the file writer.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
		}),
	}
	reg.MustRegister(m.lines, m.bytes, m.streamsOpen, m.opened, m.reconnects, m.skipped, m.gaps,
		m.restarts, m.targets, m.desired, m.lag, m.kubeletErrors, m.polls, m.nodesOut,
		m.promotions, m.demotions, m.pollInterval, m.podFetches,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "kubelogd_oldest_waiting_target_age_seconds",
			Help: "How long the container that has waited longest for a stream has been waiting (0: none waits).",
		}, oldestWaiting))
	for _, r := range reconnectReasons {
		m.reconnects.WithLabelValues(r)
	}
	for _, r := range gapReasons {
		m.gaps.WithLabelValues(r)
	}
	for _, r := range kubeletErrReasons {
		m.kubeletErrors.WithLabelValues(r)
	}
	for _, k := range []string{fetchGet, fetchList} {
		m.podFetches.WithLabelValues(k)
	}
	for _, s := range targetStates {
		m.targets.WithLabelValues(s)
	}
	return m
}

// targetMetrics is one target's view: children resolved once, so the per-line path costs
// two atomic adds and a histogram observation.
type targetMetrics struct {
	m     *metrics
	lines prometheus.Counter
	bytes prometheus.Counter
	state string
}

func (m *metrics) forTarget(namespace string) *targetMetrics {
	return &targetMetrics{m: m, lines: m.lines.WithLabelValues(namespace), bytes: m.bytes.WithLabelValues(namespace)}
}

func (sm *targetMetrics) line(n int, ts, now time.Time) {
	sm.lines.Inc()
	sm.bytes.Add(float64(n))
	sm.m.lag.Observe(now.Sub(ts).Seconds())
}

// setState moves the target between states; "" removes it from every state.
func (sm *targetMetrics) setState(state string) {
	if state == sm.state {
		return
	}
	if sm.state != "" {
		sm.m.targets.WithLabelValues(sm.state).Dec()
	}
	if state != "" {
		sm.m.targets.WithLabelValues(state).Inc()
	}
	sm.state = state
}
