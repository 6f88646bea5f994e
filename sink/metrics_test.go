package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// sinkMetrics are the names of all the sink's metrics.
var sinkMetrics = []string{
	"kubelogd_rotations_total", "kubelogd_write_errors_total", "kubelogd_lines_split_total",
	"kubelogd_output_bytes", "kubelogd_backups_deleted_total", "kubelogd_files_open",
	"kubelogd_idle_closes_total", "kubelogd_fd_limit_closes_total", "kubelogd_compressions_total",
}

func TestMetricsLint(t *testing.T) {
	reg := prometheus.NewRegistry()
	newTestManager(t, Config{Registerer: reg})
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := make(map[string]int)
	for _, mf := range families {
		series[mf.GetName()] = len(mf.GetMetric())
	}
	for _, name := range sinkMetrics {
		want := 1
		switch name {
		case "kubelogd_write_errors_total":
			want = 4 // every reason, before any error
		case "kubelogd_backups_deleted_total":
			want = 4
		}
		if series[name] != want {
			t.Errorf("%s has %d series at start, want %d", name, series[name], want)
		}
	}
	if len(families) != len(sinkMetrics) {
		t.Errorf("%d metric families registered, want %d", len(families), len(sinkMetrics))
	}
	// A second Manager on the same registry is refused, not half registered.
	if _, err := NewManager(Config{Dir: t.TempDir(), Registerer: reg}); err == nil || !strings.Contains(err.Error(), "registering log sink metrics") {
		t.Errorf("second registration: %v", err)
	}
}

// TestMetricsScenario runs rotations with per-container retention, a split line, a
// failed write, an idle close, a sweep over a budget and a deleted pod, and compares
// the counters with what happened.
func TestMetricsScenario(t *testing.T) {
	clock := newFakeClock()
	now := clock.Now()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	m := newTestManager(t, Config{
		Dir: dir, Format: FormatRaw, Now: clock.Now, Registerer: reg,
		MaxBackups: 2, Compress: true, MaxLineBytes: 300, maxSizeBytes: 1000,
	})
	m.started = now.Add(-startupGrace)
	// A deleted pod, and a closed container with two backups for the budget.
	old := now.Add(-8 * 24 * time.Hour)
	plant(t, filepath.Join(dir, "gone", "pod", "app.log"), 10, old)
	plant(t, filepath.Join(dir, "gone", "pod", backupName("app", old, true)), 10, old)
	plant(t, filepath.Join(dir, "ns", "closed", backupName("x", now.Add(-48*time.Hour), true)), 500, now)
	plant(t, filepath.Join(dir, "ns", "closed", backupName("x", now.Add(-47*time.Hour), true)), 500, now)

	f := mustOpen(t, m, testKey)
	for i := range 40 {
		line := fmt.Sprintf("%02d %s", i, strings.Repeat("m", 100))
		if i == 7 {
			line += strings.Repeat("S", 400) // split in two parts
		}
		if err := f.Write(Record{Line: []byte(line)}); err != nil {
			t.Fatal(err)
		}
	}
	rotations := f.Stats().Rotations
	if rotations < 4 {
		t.Fatalf("only %d rotations", rotations)
	}
	f.out = &failingOutput{output: f.out}
	if err := f.Flush(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Flush through a full disk: %v", err)
	}
	f.out = f.out.(*failingOutput).output
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	m.closeIdle(now.Add(time.Hour))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The budget leaves room for the current file, cursors, the lock and f's backups.
	m.cfg.totalBytes = dirBytes(t, dir) - 20 - 1000 + 1 // without the deleted pod and x's backups
	m.sweep(t.Context())

	want := fmt.Sprintf(`
# HELP kubelogd_backups_deleted_total Log files deleted, by reason (budget, age, count, retain_deleted); retain_deleted counts current files too.
# TYPE kubelogd_backups_deleted_total counter
kubelogd_backups_deleted_total{reason="age"} 0
kubelogd_backups_deleted_total{reason="budget"} 2
kubelogd_backups_deleted_total{reason="count"} %d
kubelogd_backups_deleted_total{reason="retain_deleted"} 2
# HELP kubelogd_compressions_total Rotated log files compressed.
# TYPE kubelogd_compressions_total counter
kubelogd_compressions_total %d
# HELP kubelogd_fd_limit_closes_total Log files closed before --idle-close because the files open neared kubelogd's file descriptor limit, to be reopened by their next line.
# TYPE kubelogd_fd_limit_closes_total counter
kubelogd_fd_limit_closes_total 0
# HELP kubelogd_files_open Log files held open, one file descriptor each; files closed while idle are not counted.
# TYPE kubelogd_files_open gauge
kubelogd_files_open 0
# HELP kubelogd_idle_closes_total Log files closed after being idle, to be reopened by their next line.
# TYPE kubelogd_idle_closes_total counter
kubelogd_idle_closes_total 1
# HELP kubelogd_lines_split_total Lines longer than the maximum line length, written in several parts.
# TYPE kubelogd_lines_split_total counter
kubelogd_lines_split_total 1
# HELP kubelogd_rotations_total Rotations of current log files.
# TYPE kubelogd_rotations_total counter
kubelogd_rotations_total %d
# HELP kubelogd_write_errors_total Failed writes, rotations and cursor saves of log files, by reason (no_space, permission, other; fenced: refused because this replica no longer holds the pod's shard).
# TYPE kubelogd_write_errors_total counter
kubelogd_write_errors_total{reason="fenced"} 0
kubelogd_write_errors_total{reason="no_space"} 1
kubelogd_write_errors_total{reason="other"} 0
kubelogd_write_errors_total{reason="permission"} 0
`, rotations-2, rotations, rotations)
	names := make([]string, 0, len(sinkMetrics))
	for _, n := range sinkMetrics {
		if n != "kubelogd_output_bytes" { // checked against the disk below
			names = append(names, n)
		}
	}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if got, want := int64(testutil.ToFloat64(m.met.outputBytes)), dirBytes(t, dir); got != want {
		t.Errorf("kubelogd_output_bytes = %d, files hold %d", got, want)
	}
	if got, want := int64(testutil.ToFloat64(m.met.outputBytes)), m.cfg.totalBytes; got > want {
		t.Errorf("kubelogd_output_bytes = %d after the sweep, over the budget of %d", got, want)
	}
}

func TestRestoreErrno(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error
		target error
		reason string
	}{
		{"lumberjack rename", fmt.Errorf("can't rename log file: %s", &fs.PathError{Op: "rename", Path: "/x/a.log", Err: syscall.EACCES}), fs.ErrPermission, reasonPermission},
		{"lumberjack create", fmt.Errorf("can't open new logfile: %s", &fs.PathError{Op: "open", Path: "/x/a.log", Err: syscall.ENOSPC}), syscall.ENOSPC, reasonNoSpace},
		{"read-only file system", fmt.Errorf("can't open new logfile: %s", &fs.PathError{Op: "open", Path: "/x/a.log", Err: syscall.EROFS}), syscall.EROFS, reasonPermission},
		{"wrapped already", fmt.Errorf("x: %w", &fs.PathError{Op: "write", Path: "/x/a.log", Err: syscall.EDQUOT}), syscall.EDQUOT, reasonNoSpace},
		{"other", errors.New("write length 5 exceeds maximum file size 4"), nil, reasonOther},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := restoreErrno(tc.err)
			if got.Error() != tc.err.Error() {
				t.Errorf("text changed to %q", got)
			}
			if tc.target != nil && !errors.Is(got, tc.target) {
				t.Errorf("errors.Is(%q, %v) = false", got, tc.target)
			}
			if r := errorReason(got); r != tc.reason {
				t.Errorf("reason %q, want %q", r, tc.reason)
			}
		})
	}
}
