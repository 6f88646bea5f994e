package sink

import (
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a write failed; the values of kubelogd_write_errors_total's reason label.
const (
	reasonNoSpace    = "no_space"
	reasonPermission = "permission"
	reasonOther      = "other"
	reasonFenced     = "fenced" // see fence.go
)

// Reasons a file was deleted; the values of kubelogd_backups_deleted_total's reason label.
const (
	reasonBudget        = "budget"         // MaxTotalSizeMB
	reasonAge           = "age"            // MaxAgeDays or MaxTotalAgeDays
	reasonCount         = "count"          // MaxBackups
	reasonRetainDeleted = "retain_deleted" // RetainDeleted
)

// metrics are the sink's Prometheus metrics. They exist even without a Registerer, so
// that the code counting needs no nil checks.
type metrics struct {
	rotations    prometheus.Counter
	writeErrors  *prometheus.CounterVec
	linesSplit   prometheus.Counter
	outputBytes  prometheus.Gauge
	deleted      *prometheus.CounterVec
	filesOpen    prometheus.Gauge
	idleCloses   prometheus.Counter
	limitCloses  prometheus.Counter
	compressions prometheus.Counter
}

// newMetrics creates the metrics and registers them with reg unless reg is nil. Every
// label value is initialised, so that a rate() over a series that never moved is 0 rather
// than absent.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		rotations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_rotations_total", Help: "Rotations of current log files.",
		}),
		writeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_write_errors_total", Help: "Failed writes, rotations and cursor saves of log files, by reason (no_space, permission, other; fenced: refused because this replica no longer holds the pod's shard).",
		}, []string{"reason"}),
		linesSplit: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_lines_split_total", Help: "Lines longer than the maximum line length, written in several parts.",
		}),
		outputBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelogd_output_bytes", Help: "Bytes in files under the output directory, as measured by the last sweep.",
		}),
		deleted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_backups_deleted_total", Help: "Log files deleted, by reason (budget, age, count, retain_deleted); retain_deleted counts current files too.",
		}, []string{"reason"}),
		filesOpen: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelogd_files_open", Help: "Log files held open, one file descriptor each; files closed while idle are not counted.",
		}),
		idleCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_idle_closes_total", Help: "Log files closed after being idle, to be reopened by their next line.",
		}),
		limitCloses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_fd_limit_closes_total", Help: "Log files closed before --idle-close because the files open neared kubelogd's file descriptor limit, to be reopened by their next line.",
		}),
		compressions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubelogd_compressions_total", Help: "Rotated log files compressed.",
		}),
	}
	for _, r := range []string{reasonNoSpace, reasonPermission, reasonOther, reasonFenced} {
		m.writeErrors.WithLabelValues(r)
	}
	for _, r := range []string{reasonBudget, reasonAge, reasonCount, reasonRetainDeleted} {
		m.deleted.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	cs := []prometheus.Collector{m.rotations, m.writeErrors, m.linesSplit, m.outputBytes, m.deleted, m.filesOpen, m.idleCloses, m.limitCloses, m.compressions}
	for i, c := range cs {
		if err := reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				reg.Unregister(done)
			}
			return nil, fmt.Errorf("registering log sink metrics: %w", err)
		}
	}
	return m, nil
}

// writeError counts err under its reason and returns it.
func (m *metrics) writeError(err error) error {
	m.writeErrors.WithLabelValues(errorReason(err)).Inc()
	return err
}

// errorReason classifies a write error for kubelogd_write_errors_total.
func errorReason(err error) string {
	switch {
	case errors.Is(err, ErrNotHolder):
		return reasonFenced
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return reasonNoSpace
	case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EROFS):
		return reasonPermission
	}
	return reasonOther
}

// diskErrnos are the errors a full disk or a permission produces.
var diskErrnos = []syscall.Errno{syscall.ENOSPC, syscall.EDQUOT, syscall.EACCES, syscall.EPERM, syscall.EROFS}

// restoreErrno makes errors.Is see the errno in an error of lumberjack's: it formats
// the errors of opening and renaming with %s, which keeps only their text, so a
// rotation in a full or read-only directory would otherwise not be reported like a
// write there.
func restoreErrno(err error) error {
	var errno syscall.Errno
	if err == nil || errors.As(err, &errno) {
		return err
	}
	msg := err.Error()
	for _, e := range diskErrnos {
		if strings.HasSuffix(msg, ": "+e.Error()) {
			return errnoError{err, e}
		}
	}
	return err
}

// errnoError is an error whose text names errno, unwrapping to both.
type errnoError struct {
	error
	errno syscall.Errno
}

func (e errnoError) Unwrap() []error { return []error{e.error, e.errno} }
