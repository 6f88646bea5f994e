package sink

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/kubelogd/kubelogd/internal/failpoint"
	"github.com/kubelogd/kubelogd/internal/layout"
)

// backup is one rotated file of a container.
type backup struct {
	name string // base name
	t    time.Time
	gz   bool
}

// parseBackup recognises "<container>-<time>.log" and "<container>-<time>.log.gz"
// (layout.ParseLogName): container "a" never claims the files of a container "a-b" in
// the same pod.
func parseBackup(name, container string) (t time.Time, gz bool, ok bool) {
	n, ok := layout.ParseLogName(name)
	if !ok || n.Current() || n.Container != container {
		return time.Time{}, false, false
	}
	return n.Rotated, n.Gz, true
}

// listBackups returns the container's backups, newest first.
func listBackups(p paths) ([]backup, error) {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return nil, fmt.Errorf("listing backups in %s: %w", p.dir, err)
	}
	current := filepath.Base(p.current)
	var out []backup
	for _, e := range entries {
		name := e.Name()
		if name == current || !e.Type().IsRegular() {
			continue
		}
		if t, gz, ok := parseBackup(name, p.name); ok {
			out = append(out, backup{name: name, t: t, gz: gz})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].t.Equal(out[j].t) {
			return out[i].t.After(out[j].t)
		}
		return out[i].gz && !out[j].gz // the compressed copy of a pair first
	})
	return out, nil
}

// applyRetention enforces MaxBackups, MaxAgeDays and Compress on the container's
// backups. lumberjack's own retention is switched off (see Manager): it runs in a
// goroutine per Logger that never ends. This runs in the File owner's goroutine instead,
// right after a rotation and on Open, so nothing outlives Close and no two cleanups of
// one container ever race: Run's sweep applies retention only to containers without an
// open File, and takes mu, held here, for the deletions it makes in open ones.
// Compressing synchronously pauses the stream for the time it takes (about a second per
// 100 MB); the kubelet's stream simply waits meanwhile.
func (f *File) applyRetention() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m.retain(f.p, f.log)
}

// retain enforces MaxBackups, MaxAgeDays and Compress on one container's backups and
// reports whether it changed any file. The caller keeps everyone else out of them: the
// File's owner, or the sweep for a container without a File.
//
// The current file never matches a backup name, and is excluded by name besides.
// Failures are logged, not returned: the records were written, only cleanup lags.
func (m *Manager) retain(p paths, log *slog.Logger) (changed bool) {
	s := m.live.Load()
	backups, err := listBackups(p)
	if err != nil {
		log.Warn("cannot apply log retention", "err", err)
		return false
	}
	cutoff := time.Time{}
	if s.MaxAgeDays > 0 {
		cutoff = m.cfg.Now().Add(-time.Duration(s.MaxAgeDays) * 24 * time.Hour)
	}
	kept := 0
	for i, b := range backups {
		path := filepath.Join(p.dir, b.name)
		if !b.gz && i > 0 && backups[i-1].gz && backups[i-1].t.Equal(b.t) {
			// A compression was interrupted after the .gz was renamed into place,
			// which only happens once it is complete: the original is redundant.
			m.remove(path, "", log)
			changed = true
			continue
		}
		kept++
		switch {
		case s.MaxBackups > 0 && kept > s.MaxBackups:
			m.remove(path, reasonCount, log)
			changed = true
		case !cutoff.IsZero() && b.t.Before(cutoff):
			m.remove(path, reasonAge, log)
			changed = true
		case s.Compress && !b.gz:
			if err := compressFile(path); err != nil {
				log.Warn("cannot compress rotated log file", "path", path, "err", err)
				continue
			}
			m.met.compressions.Inc()
			changed = true
		}
	}
	return changed
}

// remove deletes a log file and counts it under reason, unless reason is empty. It
// reports whether the file was deleted (by this call).
func (m *Manager) remove(path, reason string, log *slog.Logger) bool {
	if err := os.Remove(path); err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			log.Warn("cannot remove log file", "path", path, "err", err)
		}
		return false
	}
	if reason != "" {
		m.met.deleted.WithLabelValues(reason).Inc()
	}
	return true
}

// compressFile replaces path with path.gz. The gzip stream goes to a temporary file that
// is synced and renamed into place only when complete, and the original is removed only
// after that: a crash leaves the original, a complete .gz, or both, never a partial .gz
// in place of the original.
func compressFile(path string) (err error) {
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	dir, base := filepath.Split(path)
	tmp, err := os.CreateTemp(dir, "."+base+gzExt+tmpInfix+"*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(fileMode); err != nil {
		return err
	}
	zw := gzip.NewWriter(tmp)
	zw.Name = base
	zw.ModTime = st.ModTime()
	if _, err := io.Copy(zw, in); err != nil {
		return err
	}
	if failpoint.Reached(failpoint.GzipMidway) {
		// Crash tests: part of the .gz is on disk, under its temporary name.
		_ = zw.Flush()
		failpoint.Kill(failpoint.GzipMidway)
	}
	if err := zw.Close(); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path+gzExt); err != nil {
		return err
	}
	if err := syncDir(dir); err != nil {
		return err
	}
	return os.Remove(path)
}
