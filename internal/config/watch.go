package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"
)

// settle is how long the watcher waits after a change in the directory before it reads
// the file: an editor's save or the kubelet's update of a ConfigMap volume is several
// events (a new directory, a temporary symlink, a rename, a removal), and the file is
// read once, after the last of them.
const settle = 100 * time.Millisecond

// Watcher reloads the configuration file when it changes, and on every signal from its
// hangup channel (SIGHUP).
//
// It watches the file's directory, not the file: a ConfigMap volume is updated by the
// kubelet's atomic writer, which writes the new content in a new timestamped directory,
// points a temporary symlink ..data_tmp at it and renames that over ..data, through which
// the file's name is a symlink; a watch on the file itself would stay on the old,
// deleted inode after the first update. Editors that save by renaming are handled the
// same way.
type Watcher struct {
	path   string
	apply  func(ctx context.Context) error
	hup    <-chan os.Signal
	logger *slog.Logger

	reloads *prometheus.CounterVec
	success prometheus.Gauge
	// last is the content last handed to apply (good or not): directory events that
	// leave the content as it was (an unrelated file, a touch) reload nothing.
	last []byte
}

// Metrics are the reload metrics. They exist without a configuration file too
// (success 1, no reloads), so that dashboards and alerts see every kubelogd alike.
type Metrics struct {
	reloads *prometheus.CounterVec
	success prometheus.Gauge
}

// NewMetrics registers the reload metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubelogd_config_reloads_total",
			Help: "Reloads of the configuration file (--config), on a change of the file or SIGHUP, by result: success or error (the last good configuration stays in force).",
		}, []string{"result"}),
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubelogd_config_last_reload_success",
			Help: "1 if the last reload of the configuration file (--config) succeeded, or none was tried yet; 0 if it failed and the configuration before it stays in force.",
		}),
	}
	m.reloads.WithLabelValues("success")
	m.reloads.WithLabelValues("error")
	m.success.Set(1)
	reg.MustRegister(m.reloads, m.success)
	return m
}

// NewWatcher returns a Watcher of the file at path, whose content was read and applied
// at start, counting its reloads in m. Run calls apply for each new content and for
// each signal on hup (nil: none); apply reads the file itself, so that a content that
// changes again meanwhile is never half-applied.
func NewWatcher(path string, apply func(ctx context.Context) error, hup <-chan os.Signal, m *Metrics, logger *slog.Logger) *Watcher {
	w := &Watcher{path: path, apply: apply, hup: hup, logger: logger, reloads: m.reloads, success: m.success}
	w.last, _ = os.ReadFile(path)
	return w
}

// Run watches until ctx is cancelled. It fails only if the directory cannot be watched.
func (w *Watcher) Run(ctx context.Context) error {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching the configuration file: %w", err)
	}
	defer fw.Close()
	dir := filepath.Dir(w.path)
	if err := fw.Add(dir); err != nil {
		return fmt.Errorf("watching the configuration file's directory %s: %w", dir, err)
	}
	// A stopped timer that the events rearm: the reload comes settle after the last one.
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fw.Events:
			if !ok {
				return errors.New("the configuration file's watcher stopped")
			}
			w.logger.Debug("configuration directory changed", "event", ev.String())
			timer.Reset(settle)
		case err, ok := <-fw.Errors:
			if !ok {
				return errors.New("the configuration file's watcher stopped")
			}
			// An overflow loses events, not the watch: read the file in case.
			w.logger.Warn("watching the configuration file", "file", w.path, "err", err)
			timer.Reset(settle)
		case <-timer.C:
			w.reload(ctx, false)
		case <-w.hup:
			w.logger.Info("SIGHUP: reloading the configuration file", "file", w.path)
			w.reload(ctx, true)
		}
	}
}

// reload applies the file if its content changed, or always when forced (SIGHUP).
func (w *Watcher) reload(ctx context.Context, force bool) {
	data, err := os.ReadFile(w.path)
	if err == nil && !force && bytes.Equal(data, w.last) {
		return
	}
	if err == nil {
		w.last = data
		err = w.apply(ctx)
	} else {
		// A file removed from the volume, or a directory mid-update: a reload that failed.
		w.last = nil
		err = &Error{Path: w.path, Reason: fmt.Sprintf("cannot read the configuration file: %v", err)}
	}
	if ctx.Err() != nil {
		return // stopping: the outcome does not matter any more
	}
	if err != nil {
		w.reloads.WithLabelValues("error").Inc()
		w.success.Set(0)
		attrs := []any{"file", w.path, "err", err}
		var ce *Error
		if errors.As(err, &ce) && ce.Line > 0 {
			attrs = append(attrs, "line", ce.Line)
		}
		w.logger.Error("invalid configuration file; keeping the last good configuration", attrs...)
		return
	}
	w.reloads.WithLabelValues("success").Inc()
	w.success.Set(1)
	w.logger.Info("configuration file reloaded", "file", w.path)
}
