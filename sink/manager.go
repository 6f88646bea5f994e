package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/kubelogd/kubelogd/internal/layout"
)

var _ io.Closer = (*Manager)(nil)

// Manager owns the output directory: it holds the lock that keeps other kubelogd
// processes out, opens one File per container and, in Run, closes idle files and keeps
// the directory within its limits. It is safe for concurrent use.
type Manager struct {
	cfg settings
	// live is the settings that Reconfigure last set (cfg at first): retention, the disk
	// budget and the settings of files opened from now on. The fields Reconfigure
	// cannot change are the same in both.
	live atomic.Pointer[settings]
	// given is the Config NewManager was given, before defaults, for Reconfigure.
	given Config
	log   *slog.Logger
	met   *metrics
	lock  *os.File // holds the flock on <Dir>/.kubelogd.lock until Close
	// barrier syncs the output file system for the synced cursor saves of many Files at
	// once, where it can (see fsBarrier).
	barrier *fsBarrier

	mu sync.Mutex
	// pool holds closed lumberjack Loggers for reuse. Each Logger starts a goroutine on
	// its first open that lives as long as the process (lumberjack#56), so Loggers are
	// never dropped: reusing them bounds those goroutines by the peak number of files
	// open at once (idle ones are closed) instead of the number of containers ever seen.
	pool    []*lumberjack.Logger
	loggers int // Loggers ever created, each with its goroutine
	// openFiles counts the Loggers Files hold (log files open); crowded is signalled when
	// it nears MaxOpenFiles, for Run to close the least recently written (see closeOldest).
	openFiles atomic.Int64
	crowded   chan struct{}
	// crowdWarned is set once closeOldest has logged (Run's goroutine only).
	crowdWarned bool
	// open has one entry per container with a File: two would interleave in one file.
	// The value is nil while Open is still recovering the container's files.
	open map[Key]*File
	// busy counts the entries of open per pod directory and per namespace directory,
	// so that the sweep can tell whether anything in a directory is open without
	// walking open.
	busy map[string]int
	// dirs holds the pod directories known to exist, so that Open creates or checks a
	// pod's directory once rather than once per container. The sweep forgets the ones
	// it removes; one removed behind kubelogd's back is noticed by Open (recoverContainer).
	dirs map[string]dirState
	// dirSeq numbers the changes to pod directories that a synced cursor save must not
	// precede, in the order they were made (File.noteDirChange).
	dirSeq atomic.Uint64
	// sweeping is the directory the sweep is working in ("" if none). Open waits until
	// the sweep leaves the directory it needs (see reserve); wake signals that.
	sweeping string
	wake     *sync.Cond
	running  bool      // Run has not returned
	started  time.Time // when Run started, by Config.Now
	closed   bool
}

// NewManager validates cfg, creates the output directory (0750) if needed, checks that
// it is writable and locks it against other kubelogd processes, since lumberjack
// assumes a single writer.
func NewManager(cfg Config) (*Manager, error) {
	s, err := cfg.complete()
	if err != nil {
		return nil, err
	}
	if err := layout.MkdirAll(s.Dir); err != nil {
		return nil, fmt.Errorf("creating output directory %s: %w; create it or choose another output directory", s.Dir, err)
	}
	probe, err := os.CreateTemp(s.Dir, probeFilePatt)
	if err != nil {
		return nil, fmt.Errorf("output directory %s is not writable: %w; fix its owner or permissions, or choose another output directory", s.Dir, err)
	}
	_ = probe.Close()
	if err := os.Remove(probe.Name()); err != nil {
		return nil, fmt.Errorf("output directory %s does not allow removing files: %w; fix its permissions", s.Dir, err)
	}
	lock, err := claimDir(s.Dir, s.Shards)
	if err != nil {
		return nil, err
	}
	met, err := newMetrics(s.Registerer)
	if err != nil {
		if lock != nil {
			_ = lock.Close()
		}
		return nil, err
	}
	m := &Manager{
		cfg:  s,
		log:  s.Logger,
		met:  met,
		lock: lock,
		open: make(map[Key]*File),
		busy: make(map[string]int),
		dirs: make(map[string]dirState),

		barrier: newFSBarrier(s.Dir),
		crowded: make(chan struct{}, 1),
	}
	m.wake = sync.NewCond(&m.mu)
	m.live.Store(&m.cfg)
	m.given = cfg
	return m, nil
}

// Reconfigure changes the settings a running Manager can change, as a reload of
// kubelogd's configuration does: retention (MaxBackups, MaxAgeDays, Compress), the
// totals the sweep enforces (MaxTotalSizeMB, MaxTotalAgeDays, RetainDeleted) from its
// next round, and the format and rotation (Format, JSONLabels, MaxSizeMB) of the files
// opened from now on; a File already open keeps the settings it was opened with, so
// that a file is never half in one format and half in another. The other fields of cfg
// are ignored. Nothing changes if the result is invalid.
func (m *Manager) Reconfigure(cfg Config) error {
	next := m.given
	next.Format, next.JSONLabels, next.MaxSizeMB = cfg.Format, cfg.JSONLabels, cfg.MaxSizeMB
	next.MaxBackups, next.MaxAgeDays, next.Compress = cfg.MaxBackups, cfg.MaxAgeDays, cfg.Compress
	next.MaxTotalSizeMB, next.MaxTotalAgeDays, next.RetainDeleted = cfg.MaxTotalSizeMB, cfg.MaxTotalAgeDays, cfg.RetainDeleted
	s, err := next.complete()
	if err != nil {
		return err
	}
	m.live.Store(&s)
	return nil
}

// BudgetBytes is the disk budget in force (MaxTotalSizeMB in bytes); 0 for none.
func (m *Manager) BudgetBytes() int64 { return m.live.Load().totalBytes }

// claimDir makes the directory this kubelogd's: with no shards it takes the lock; with
// shards it checks (or, in a directory without one, records) the shard count, and
// returns no lock: the shard Leases keep replicas apart, and an flock over NFS would
// keep every replica but the first out.
func claimDir(dir string, shards int) (*os.File, error) {
	recorded, err := readShards(dir)
	if err != nil {
		return nil, err
	}
	switch {
	case shards == 0 && recorded == 0:
		return lockDir(dir)
	case shards == 0:
		return nil, fmt.Errorf("output directory %s is shared by replicas with --shards %d (%s); start with --shards %d", dir, recorded, shardsFileName, recorded)
	case recorded != 0 && recorded != shards:
		return nil, fmt.Errorf("output directory %s is shared by replicas with --shards %d (%s), not %d: every replica must use the same count", dir, recorded, shardsFileName, shards)
	case recorded == 0:
		if err := writeShards(dir, shards); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// readShards returns the shard count recorded in dir, 0 if none is.
func readShards(dir string) (int, error) {
	path := filepath.Join(dir, shardsFileName)
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w; check permissions of %s", path, err, dir)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%s holds %q, not a shard count; restore it or remove it", path, strings.TrimSpace(string(raw)))
	}
	return n, nil
}

// writeShards records the shard count: written to a temporary file and linked in place,
// so that two replicas starting at once cannot record two counts (link fails if the
// name exists; the loser reads the winner's).
func writeShards(dir string, shards int) error {
	path := filepath.Join(dir, shardsFileName)
	tmp, err := os.CreateTemp(dir, shardsFileName+".tmp-*")
	if err != nil {
		return fmt.Errorf("recording the shard count in %s: %w", dir, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(strconv.Itoa(shards) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		_ = os.Chmod(tmp.Name(), fileMode)
		err = os.Link(tmp.Name(), path)
	}
	if errors.Is(err, fs.ErrExist) {
		if n, rerr := readShards(dir); rerr != nil || n != shards {
			return fmt.Errorf("output directory %s: another replica recorded --shards %d, not %d (%v)", dir, n, shards, rerr)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("recording the shard count in %s: %w", path, err)
	}
	return syncDir(dir)
}

// lockDir takes an exclusive, non-blocking flock on <dir>/.kubelogd.lock. The kernel
// drops it when the process dies, so a crash never leaves a stale lock.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFileName)
	fd, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %s: %w; check permissions of %s", path, err, dir)
	}
	_ = fd.Chmod(fileMode) // despite the umask, like every file here
	if err := syscall.Flock(int(fd.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = fd.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("output directory %s is in use by another kubelogd (lock %s is held)", dir, path)
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	// The pid is for humans wondering who holds the lock; the flock is what counts.
	if err := fd.Truncate(0); err == nil {
		_, _ = fd.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return fd, nil
}

// Open opens the File of a container, recovering its files from a crash first (see
// Recovery). A container can be open only once at a time.
func (m *Manager) Open(key Key) (*File, error) {
	p, err := pathsFor(m.cfg.Dir, key)
	if err != nil {
		return nil, err
	}
	nsDir := filepath.Dir(p.dir)
	m.mu.Lock()
	// The sweep may be deleting the directory; once it has left, it will see this key.
	for m.sweeping != "" && (m.sweeping == p.dir || m.sweeping == nsDir) && !m.closed {
		m.wake.Wait()
	}
	switch {
	case m.closed:
		m.mu.Unlock()
		return nil, fmt.Errorf("opening %s: the log sink is closed", p.current)
	case hasKey(m.open, key):
		m.mu.Unlock()
		return nil, fmt.Errorf("opening %s: already open for container %s", p.current, key)
	}
	m.open[key] = nil
	m.busy[p.dir]++
	m.busy[nsDir]++
	m.mu.Unlock()

	f, err := m.openFile(key, p)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		m.forget(key, p.dir)
		return nil, err
	}
	m.open[key] = f
	return f, nil
}

func hasKey(set map[Key]*File, key Key) bool {
	_, ok := set[key]
	return ok
}

// forget removes key, whose pod directory is dir, from open. m.mu must be held.
func (m *Manager) forget(key Key, dir string) {
	delete(m.open, key)
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if m.busy[d]--; m.busy[d] <= 0 {
			delete(m.busy, d)
		}
	}
}

func (m *Manager) openFile(key Key, p paths) (*File, error) {
	// Recovery changes the files: only their holder may run it.
	if _, err := openEpoch(&m.cfg, key, p, 0); err != nil {
		return nil, err
	}
	r, err := m.recoverContainer(p)
	if err != nil {
		return nil, err
	}
	epoch, err := openEpoch(&m.cfg, key, p, r.epoch)
	if err != nil {
		return nil, err
	}
	rec, size := r.rec, r.size
	log := m.log.With("namespace", key.Namespace, "pod", key.Pod, "container", key.Container)
	if rec.CursorError != nil {
		log.Warn("ignoring unreadable cursor, lines already written may be written again", "err", rec.CursorError)
	}
	if rec.TruncatedBytes > 0 || rec.ShortBy > 0 {
		log.Info("recovered log file", "path", p.current, "truncatedBytes", rec.TruncatedBytes, "shortBy", rec.ShortBy)
	}
	if rec.Unverified != "" || rec.RemovedBytes > 0 {
		log.Warn("log file not as its cursor describes it; kept every byte found", "path", p.current,
			"keptBytes", rec.KeptBytes, "removedBytes", rec.RemovedBytes, "why", rec.Unverified)
	}
	if rec.Outside != "" {
		log.Warn("the last run changed these files again after a change outside kubelogd and stopped before marking it", "path", p.current, "change", rec.Outside)
	}
	now := m.cfg.Now()
	live := m.live.Load()
	f := &File{
		m:      m,
		cfg:    live, // a File keeps the settings it was opened with
		key:    key,
		p:      p,
		log:    log,
		met:    m.met,
		enc:    newEncoder(live.Format, key, m.cfg.Node),
		size:   size,
		inode:  r.inode,
		cursor: r.cur,
		epoch:  epoch,
		slots:  r.slots,
		// A cursor file found may be on disk without its name, or what it names without
		// theirs: the first save syncs (see storeCursor), the directory too.
		dirChange: m.dirChangeIf(r.slots.keep == keepUnknown),
		lastSave:  now,
		lastSync:  now,
		recovered: rec,
		// The collector marks it at once (Recovered); the next save covers the marker.
		outsidePending: rec.Outside,
		outsideTaken:   rec.Outside != "",
	}
	if r.tail != nil {
		f.tail = *r.tail
	}
	// The file is opened by the first write: an Open'ed container that stays quiet
	// holds no descriptor.
	f.out = loggerOutput{f}
	switch {
	case rec.Unverified != "" || rec.RemovedBytes > 0 || rec.Outside != "":
		// Not saved until the collector's marker is written after what was kept: a crash
		// before must find the same doubt again, and mark it again.
		f.savedFP = f.printCursor()
	case rec.HadCursor && rec.TruncatedBytes == 0 && rec.ShortBy == 0:
		f.savedFP = f.printCursor() // the saved cursor is exactly the live one
	case !rec.HadCursor && rec.CursorError == nil && size == 0:
		// No cursor file and an empty file, as for every new container: recovery makes
		// the same of this as of the empty cursor saved below, so none is saved. Before
		// anything is written, one is (ensureCursor); usually the collector's SaveCursor
		// for the container's instance comes first, and is then the only save.
		f.savedFP = f.printCursor()
		f.noCursor = true
	}
	// Persist the recovered state at once, and a first cursor for a file with data but
	// none: a crash before the first periodic save must find a cursor to cut the file
	// back to, or the lines written meanwhile would be written again after the restart.
	if f.printCursor() != f.savedFP {
		if err := f.persistCursor(0); err != nil {
			return nil, err
		}
	}
	if r.backups {
		f.applyRetention()
	}
	return f, nil
}

// recoverContainer creates the pod directory of p if it is not known to exist, and recovers the
// container's files in it (recoverFiles), or creates them (newFiles) where it knows that
// there are none.
func (m *Manager) recoverContainer(p paths) (recovered, error) {
	known, none, err := m.enterDir(p)
	if err != nil {
		return recovered{}, err
	}
	if none {
		if r, err := newFiles(p); err == nil {
			return r, nil
		}
		// Not so after all (a file there, the directory gone): look at what there is.
	}
	r, err := recoverFiles(p)
	if known && errors.Is(err, fs.ErrNotExist) {
		// The directory was removed by someone else than the sweep (which forgets what
		// it removes): create it again. What was in it is gone; this is a new start.
		m.forgetDirs(p.dir)
		if _, err := m.makeDir(p.dir, p.name); err != nil {
			return recovered{}, err
		}
		r, err = recoverFiles(p)
	}
	return r, err
}

// enterDir makes sure the pod directory of p exists, creating it if it is not known to,
// and records that p's container has been opened there. none reports that the container
// has no files there: the Manager created the directory, and no Open of the container
// came before this one since.
func (m *Manager) enterDir(p paths) (known, none bool, err error) {
	m.mu.Lock()
	st, known := m.dirs[p.dir]
	if known && !slices.Contains(st.opened, p.name) {
		// Recorded whether the directory counts as created here or not: a makeDir
		// racing with this one may yet find that it created it (see makeDir).
		st.opened = append(st.opened, p.name)
		m.dirs[p.dir] = st
		none = st.created
	}
	m.mu.Unlock()
	if known {
		return true, none, nil
	}
	none, err = m.makeDir(p.dir, p.name)
	return false, none, err
}

// makeDir creates a pod directory and its namespace directory where missing, remembers
// it, and records that container is being opened there. none reports that the container
// has no files there: makeDir created the directory.
func (m *Manager) makeDir(dir, container string) (none bool, err error) {
	created, err := layout.MkdirAllCreated(dir)
	if err != nil {
		return false, fmt.Errorf("creating directory %s: %w; check permissions and free space in %s", dir, err, m.cfg.Dir)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.dirs[dir]
	// The directory counts as created here if this call created it — also when another
	// container's Open of the same pod, racing with this one, found it made (by this
	// call) and recorded it first: it did not exist before this mkdir, so every container
	// with files in it was opened since, and each is in opened (enterDir and makeDir
	// record every one, created or not). Replicas sharing the directory (Shards) take no
	// lock, and hand pods over with their Leases: another may have written any
	// container's files here, so none counts as created.
	if created && m.cfg.Shards == 0 {
		st.created = true
	}
	first := !slices.Contains(st.opened, container)
	if first {
		st.opened = append(st.opened, container)
	}
	m.dirs[dir] = st
	return st.created && created && first, nil
}

// dirState is what the Manager knows of a pod directory that exists.
type dirState struct {
	// synced is dirSeq as it was right before the last fsync of the directory that
	// succeeded began: the changes numbered up to it are on disk. A directory forgotten
	// and found again starts at 0, so that no fsync of its earlier self counts.
	synced uint64
	// created is set when the Manager created the directory and holds the lock (no
	// Shards). Then only the containers in opened, each opened there since, can have
	// files in it: nothing but the sink writes containers' files, and another kubelogd
	// cannot (the lock). Those of any other container need no recovery (newFiles).
	// Forgotten with the directory.
	created bool
	opened  []string
}

// dirChangeIf numbers a change to a pod directory that a synced cursor save must not
// precede (see File.dirChange), if changed; it returns 0 if not.
func (m *Manager) dirChangeIf(changed bool) uint64 {
	if !changed {
		return 0
	}
	return m.dirSeq.Add(1)
}

// dirSyncedSince reports whether an fsync of dir that began after the change numbered
// change (File.noteDirChange) has succeeded.
func (m *Manager) dirSyncedSince(dir string, change uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st, known := m.dirs[dir]
	return known && st.synced >= change
}

// noteDirSynced records a successful fsync of dir that began when dirSeq was seq.
func (m *Manager) noteDirSynced(dir string, seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st, known := m.dirs[dir]; known && seq > st.synced {
		st.synced = seq
		m.dirs[dir] = st
	}
}

// forgetDirs forgets dir and the directories below it, which the sweep removed (a pod
// or an empty namespace directory) or Open found missing.
func (m *Manager) forgetDirs(dir string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.dirs, dir)
	below := dir + string(filepath.Separator)
	for d := range m.dirs {
		if strings.HasPrefix(d, below) {
			delete(m.dirs, d)
		}
	}
}

// acquireLogger returns a pooled Logger, or a new one. Only Filename and MaxSize ever
// change, and only while the Logger is closed; MaxBackups, MaxAge and Compress stay
// zero so that its goroutine returns from every cleanup at once without reading
// anything else, which makes the reuse race-free.
func (m *Manager) acquireLogger() *lumberjack.Logger {
	m.met.filesOpen.Inc()
	if n := m.openFiles.Add(1); m.cfg.MaxOpenFiles > 0 && n >= highWater(m.cfg.MaxOpenFiles) {
		m.signalCrowded()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if n := len(m.pool); n > 0 {
		lg := m.pool[n-1]
		m.pool[n-1] = nil
		m.pool = m.pool[:n-1]
		return lg
	}
	m.loggers++
	return &lumberjack.Logger{MaxBackups: 0, MaxAge: 0, Compress: false, LocalTime: false}
}

// putLogger takes back a closed Logger.
func (m *Manager) putLogger(lg *lumberjack.Logger) {
	m.met.filesOpen.Dec()
	m.openFiles.Add(-1)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.pool = append(m.pool, lg)
}

// release forgets a closed File.
func (m *Manager) release(f *File) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forget(f.key, f.p.dir)
	f.out = nil
}

// Close releases the directory lock. Every File must be closed and Run must have
// returned first: otherwise Close keeps the lock (their writes and deletions would race
// a new owner) and says so. The goroutines lumberjack started, one per Logger ever
// needed at once, stay parked until the process exits; lumberjack offers no way to
// stop them.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true // no more Opens
	m.wake.Broadcast()
	if len(m.open) == 0 && !m.running {
		m.barrier.close() // no File left to save through it
	}
	if m.lock == nil {
		return nil
	}
	if n := len(m.open); n > 0 {
		return fmt.Errorf("closing log sink %s: %d files still open; close them first", m.cfg.Dir, n)
	}
	if m.running {
		return fmt.Errorf("closing log sink %s: Run has not returned; cancel its context and wait for it first", m.cfg.Dir)
	}
	if m.lock == nil {
		return nil // sharded: no lock
	}
	err := m.lock.Close()
	m.lock = nil
	if err != nil {
		return fmt.Errorf("releasing lock %s: %w", filepath.Join(m.cfg.Dir, lockFileName), err)
	}
	return nil
}
