package sink

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// startupGrace is how long Run waits after it starts before removing any pod directory
// for RetainDeleted. Right after a restart no File is open yet, so every container
// would look deleted; a running container that has been quiet for longer than
// RetainDeleted must get the time to be opened again by the collector first.
const startupGrace = 10 * time.Minute

// Run closes idle files and sweeps the output directory until ctx is cancelled, then
// returns nil; it returns an error only if it cannot start. It is the one goroutine the
// Manager needs: the caller starts it after NewManager and must wait for it to return
// before calling Close.
//
// Every min(IdleClose, SweepInterval) it closes the file descriptors of Files that have
// not written for IdleClose, and when the files open near MaxOpenFiles, the least
// recently written ones. At its start and then every SweepInterval it walks the
// output directory: it removes the pod directories of deleted pods (RetainDeleted),
// applies MaxBackups, MaxAgeDays and Compress to containers without an open File (whose
// retention otherwise never runs again), removes temporary files a crash left, deletes
// rotated files for MaxTotalAgeDays and MaxTotalSizeMB, and sets kubelogd_output_bytes.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return fmt.Errorf("running log sink %s: the sink is closed", m.cfg.Dir)
	case m.running:
		m.mu.Unlock()
		return fmt.Errorf("running log sink %s: Run is already running", m.cfg.Dir)
	}
	m.running = true
	m.started = m.cfg.Now()
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.running = false
		m.mu.Unlock()
	}()

	m.sweep(ctx)
	idle := time.NewTicker(min(m.cfg.IdleClose, m.cfg.SweepInterval))
	defer idle.Stop()
	sweep := time.NewTicker(m.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-idle.C:
			m.closeIdle(m.cfg.Now())
		case <-m.crowded:
			m.closeOldest()
		case <-sweep.C:
			m.sweep(ctx)
		}
	}
}

// reserve makes Open wait for dir, a pod or namespace directory, until unreserve, and
// returns how many containers in dir are open or being opened. While dir is reserved no
// container in it becomes open, so one found closed stays closed and the sweep may
// change its files; an open one may close meanwhile, which is harmless.
func (m *Manager) reserve(dir string) (busy int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweeping = dir
	return m.busy[dir]
}

func (m *Manager) unreserve() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.sweeping = ""
	m.wake.Broadcast()
}

// lookup returns key's File; open is set while the container is open or being opened,
// when f is nil.
func (m *Manager) lookup(key Key) (f *File, open bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, open = m.open[key]
	return f, open
}

// podFiles is what a sweep found in one pod directory.
type podFiles struct {
	key        Key // Container empty
	dir        string
	containers map[string][]sweptBackup // by container name, also those without backups
	bytes      int64                    // in regular files, and below subdirectories
	newest     time.Time                // latest modification of a regular file
	leftovers  bool                     // temporary files of an interrupted save or compression
}

// sweptBackup is a rotated file found by the sweep.
type sweptBackup struct {
	key  Key
	dir  string
	name string
	t    time.Time
	gz   bool
	size int64
}

// listPod reads a pod directory. The container names it reports come from the files'
// names, which only match valid container names.
func listPod(key Key, dir string) (podFiles, error) {
	pf := podFiles{key: key, dir: dir, containers: make(map[string][]sweptBackup)}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return pf, err
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() {
			if e.IsDir() {
				pf.bytes += treeBytes(filepath.Join(dir, name))
			}
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		pf.bytes += info.Size()
		if mt := info.ModTime(); mt.After(pf.newest) {
			pf.newest = mt
		}
		if n, ok := parseLogName(name); ok {
			c := n.Container
			if n.Current() {
				if _, seen := pf.containers[c]; !seen {
					pf.containers[c] = nil
				}
				continue
			}
			k := key
			k.Container = c
			pf.containers[c] = append(pf.containers[c], sweptBackup{key: k, dir: dir, name: name, t: n.Rotated, gz: n.Gz, size: info.Size()})
			continue
		}
		if strings.HasPrefix(name, ".") && strings.Contains(name, tmpInfix) {
			pf.leftovers = true
		}
	}
	return pf, nil
}

// parseLogName recognises the current file or a backup of any container
// (layout.ParseLogName) whose name is valid.
func parseLogName(name string) (layout.LogName, bool) {
	n, ok := layout.ParseLogName(name)
	return n, ok && layout.ValidName(n.Container, false) == nil
}

// treeBytes adds up the sizes of the regular files below dir.
func treeBytes(dir string) int64 {
	var total int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				total += info.Size()
			}
		}
		return nil
	})
	return total
}

// sweepTotals is what a sweep adds up over the whole output directory.
type sweepTotals struct {
	bytes   int64
	backups []sweptBackup
	deleted map[string]int // files deleted, by reason
}

// sweep walks the output directory once; see Run. Only directories with valid
// namespace and pod names are changed; anything else is measured and left alone.
func (m *Manager) sweep(ctx context.Context) {
	now := m.cfg.Now()
	tot := sweepTotals{deleted: make(map[string]int)}
	entries, err := os.ReadDir(m.cfg.Dir)
	if err != nil {
		m.log.Warn("cannot sweep output directory", "dir", m.cfg.Dir, "err", err)
		return
	}
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		path := filepath.Join(m.cfg.Dir, e.Name())
		switch {
		case e.Type().IsRegular():
			if info, err := e.Info(); err == nil {
				tot.bytes += info.Size()
			}
		case e.IsDir() && layout.ValidName(e.Name(), false) == nil:
			m.sweepNamespace(ctx, e.Name(), now, &tot)
		case e.IsDir():
			tot.bytes += treeBytes(path)
		}
	}
	if ctx.Err() != nil {
		return
	}
	m.enforceTotals(ctx, now, &tot)
	m.met.outputBytes.Set(float64(tot.bytes))
	if len(tot.deleted) > 0 {
		args := []any{"outputBytes", tot.bytes}
		for _, r := range []string{reasonRetainDeleted, reasonAge, reasonBudget} {
			if n := tot.deleted[r]; n > 0 {
				args = append(args, r, n)
			}
		}
		m.log.Info("swept output directory", args...)
	}
}

// sweepNamespace sweeps the pod directories of one namespace directory, and removes it
// if it is left empty.
func (m *Manager) sweepNamespace(ctx context.Context, ns string, now time.Time, tot *sweepTotals) {
	nsDir := filepath.Join(m.cfg.Dir, ns)
	entries, err := os.ReadDir(nsDir)
	if err != nil {
		m.log.Warn("cannot sweep namespace directory", "dir", nsDir, "err", err)
		return
	}
	left := 0
	for _, e := range entries {
		if ctx.Err() != nil {
			return
		}
		path := filepath.Join(nsDir, e.Name())
		switch {
		case e.IsDir() && m.cfg.Owns != nil && !m.cfg.Owns(ns, e.Name()):
			// Another replica's shard: its sweep, its bytes.
		case e.IsDir() && layout.ValidName(e.Name(), true) == nil:
			if m.sweepPod(Key{Namespace: ns, Pod: e.Name()}, path, now, tot) {
				continue
			}
		case e.IsDir():
			tot.bytes += treeBytes(path)
		default:
			if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
				tot.bytes += info.Size()
			}
		}
		left++
	}
	if left > 0 {
		return
	}
	// Not while an Open in the namespace is in progress: it may be creating the pod
	// directory. ENOTEMPTY means something else appeared meanwhile, which is fine.
	if m.reserve(nsDir) == 0 {
		err := os.Remove(nsDir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTEMPTY) {
			m.log.Warn("cannot remove empty namespace directory", "dir", nsDir, "err", err)
		}
		if err == nil {
			m.forgetDirs(nsDir) // while reserved: an Open waiting for it must create it again
		}
	}
	m.unreserve()
}

// sweepPod sweeps one pod directory and reports whether it removed it. The directory is
// reserved meanwhile, so no container in it is opened while its files change.
func (m *Manager) sweepPod(key Key, dir string, now time.Time, tot *sweepTotals) (removed bool) {
	// Listed only once reserved: a File closed just before would otherwise count as
	// closed with the modification times from before its Close.
	busy := m.reserve(dir)
	defer m.unreserve()
	pf, err := listPod(key, dir)
	if err != nil {
		m.log.Warn("cannot sweep pod directory", "dir", dir, "err", err)
		return false
	}
	if busy == 0 && now.Sub(m.started) >= startupGrace && now.Sub(pf.newest) > m.live.Load().RetainDeleted {
		n, gone := m.removePod(pf)
		tot.deleted[reasonRetainDeleted] += n
		if gone {
			return true
		}
		pf, _ = listPod(key, dir) // count what is left
	}
	changed := false
	if pf.leftovers && removeStaleTemps(dir, now) {
		changed = true
	}
	for c, backups := range pf.containers {
		k := key
		k.Container = c
		if _, open := m.lookup(k); open {
			// Its owner applies retention; the budget may still delete its backups.
			continue
		}
		p, err := pathsFor(m.cfg.Dir, k)
		if err != nil {
			continue
		}
		if pf.leftovers {
			removeLeftovers(p)
			changed = true
		}
		if m.needsRetention(backups, now) && m.retain(p, m.log.With("namespace", k.Namespace, "pod", k.Pod, "container", c)) {
			changed = true
		}
	}
	if changed {
		pf, _ = listPod(key, dir)
	}
	tot.bytes += pf.bytes
	for _, backups := range pf.containers {
		tot.backups = append(tot.backups, backups...)
	}
	return false
}

// removeStaleTemps removes the temporary files of .pod.json in a pod directory that are
// staleTmpAge old: a crash interrupted their save. Unlike the sink's own (removeLeftovers),
// their writer does not coordinate with the sweep, so their age tells. It reports whether
// it removed any.
func removeStaleTemps(dir string, now time.Time) (removed bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), layout.MetaTmpPrefix) || !e.Type().IsRegular() {
			continue
		}
		if info, err := e.Info(); err == nil && now.Sub(info.ModTime()) >= staleTmpAge {
			removed = os.Remove(filepath.Join(dir, e.Name())) == nil || removed
		}
	}
	return removed
}

// needsRetention tells from a listing whether retain would change anything, sparing
// the sweep a second listing per container in the common case.
func (m *Manager) needsRetention(backups []sweptBackup, now time.Time) bool {
	s := m.live.Load()
	if s.MaxBackups > 0 && len(backups) > s.MaxBackups {
		return true
	}
	cutoff := now.Add(-time.Duration(s.MaxAgeDays) * 24 * time.Hour)
	for i, b := range backups {
		switch {
		case s.Compress && !b.gz, s.MaxAgeDays > 0 && b.t.Before(cutoff):
			return true
		case i+1 < len(backups) && backups[i+1].name == b.name+gzExt:
			// The original of a finished compression (listPod keeps ReadDir's name
			// order, in which it comes right before its .gz).
			return true
		}
	}
	return false
}

// removePod removes a deleted pod's directory with everything in it: log files,
// cursors, temporary files and others' metadata such as .pod.json. Subdirectories are
// not kubelogd's and are left, and so then is the directory. It reports whether the
// directory is gone, and how many log files (current files and backups) it removed.
func (m *Manager) removePod(pf podFiles) (logFiles int, gone bool) {
	entries, err := os.ReadDir(pf.dir)
	if err != nil {
		return 0, false
	}
	removed := 0
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		name := e.Name()
		path := filepath.Join(pf.dir, name)
		if err := os.Remove(path); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				m.log.Warn("cannot remove file of deleted pod", "path", path, "err", err)
			}
			continue
		}
		removed++
		if isLogFile(name) {
			logFiles++
			m.met.deleted.WithLabelValues(reasonRetainDeleted).Inc()
		}
	}
	if err := os.Remove(pf.dir); err != nil {
		if removed > 0 {
			m.log.Warn("cannot remove directory of deleted pod", "dir", pf.dir, "err", err)
		}
		return logFiles, false
	}
	m.forgetDirs(pf.dir) // while reserved (see sweepPod): an Open waiting for it creates it again
	m.log.Info("removed files of deleted pod", "namespace", pf.key.Namespace, "pod", pf.key.Pod,
		"files", removed, "bytes", pf.bytes, "lastModified", pf.newest)
	return logFiles, true
}

// isLogFile reports whether name is a container's current file or backup.
func isLogFile(name string) bool {
	_, ok := parseLogName(name)
	return ok
}

// enforceTotals deletes rotated files older than MaxTotalAgeDays, then the oldest
// rotated files of all containers until the output fits MaxTotalSizeMB. Current files
// are never candidates.
func (m *Manager) enforceTotals(ctx context.Context, now time.Time, tot *sweepTotals) {
	s := m.live.Load()
	var cutoff time.Time
	if s.MaxTotalAgeDays > 0 {
		cutoff = now.Add(-time.Duration(s.MaxTotalAgeDays) * 24 * time.Hour)
	}
	limit := s.totalBytes
	if m.cfg.Share != nil && limit > 0 {
		// At least a byte: 0 would mean no bound.
		limit = max(1, int64(float64(limit)*m.cfg.Share()))
	}
	if cutoff.IsZero() && (limit == 0 || tot.bytes <= limit) {
		return
	}
	sort.Slice(tot.backups, func(i, j int) bool {
		a, b := tot.backups[i], tot.backups[j]
		if !a.t.Equal(b.t) {
			return a.t.Before(b.t)
		}
		return filepath.Join(a.dir, a.name) < filepath.Join(b.dir, b.name)
	})
	for _, b := range tot.backups {
		if ctx.Err() != nil {
			return
		}
		var reason string
		switch {
		case !cutoff.IsZero() && b.t.Before(cutoff):
			reason = reasonAge
		case limit > 0 && tot.bytes > limit:
			reason = reasonBudget
		default:
			// Sorted oldest first: no later file is too old, and the budget is met.
			return
		}
		if m.deleteBackup(b, reason) {
			tot.bytes -= b.size
			tot.deleted[reason]++
		}
	}
	if limit > 0 && tot.bytes > limit {
		m.log.Warn("output directory exceeds its size budget, but no rotated file that may be deleted is left; current files are never deleted",
			"dir", m.cfg.Dir, "bytes", tot.bytes, "budgetBytes", limit)
	}
}

// deleteBackup deletes one rotated file for the sweep. For an open container it takes
// the File's mu, which its owner holds while applying retention, and skips the file
// while a line longer than a file is being written (see setSpanned). A container being
// opened is skipped: its recovery reads the backups.
func (m *Manager) deleteBackup(b sweptBackup, reason string) bool {
	m.reserve(b.dir)
	defer m.unreserve()
	path := filepath.Join(b.dir, b.name)
	f, open := m.lookup(b.key)
	switch {
	case !open:
		return m.remove(path, reason, m.log)
	case f == nil:
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.spanned {
		return false
	}
	return m.remove(path, reason, f.log)
}
