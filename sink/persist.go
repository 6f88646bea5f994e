package sink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubelogd/kubelogd/internal/failpoint"
	"github.com/kubelogd/kubelogd/internal/layout"
)

// persistedCursor is the content of <Dir>/<ns>/<pod>/.<container>.cursor: the Cursor's
// fields, plus where in which file the data it covers ends.
type persistedCursor struct {
	// Version is the layout of this file; 1 so far.
	Version int `json:"version"`
	Cursor
	// Offset is the size of the current file once it held exactly the data the cursor
	// covers.
	Offset int64 `json:"offset"`
	// Inode identifies that current file, which may since have been rotated away. It is
	// what a save compares the file on disk with while kubelogd runs; after a restart only
	// a tie between two files that both hold the covered data is settled by it, since a
	// restored or copied directory has new inode numbers (and another file may have the
	// old one).
	Inode uint64 `json:"inode"`
	// TailLen and TailCRC identify the covered data by its content: the CRC-32C of the
	// TailLen (min(Offset, tailBytes)) bytes before Offset. Recovery takes a file for the
	// cursor's only if it holds those bytes there. Zero in cursors saved by a kubelogd
	// before them, and in one that covers no bytes: such a cursor proves nothing by
	// content (see keepFor).
	TailLen int    `json:"tailLen,omitempty"`
	TailCRC uint32 `json:"tailCRC,omitempty"`
	// LineLen and LineCRC identify the last line before Offset when it is longer than
	// TailLen: its length, and the CRC-32C of its first min(LineLen, lineHeadBytes)
	// bytes. Zero otherwise, and in cursors saved before them.
	LineLen int64  `json:"lineLen,omitempty"`
	LineCRC uint32 `json:"lineCRC,omitempty"`
	// Epoch is the shard epoch of the replica that saved it (see fence.go); 0 without
	// shards.
	Epoch int64 `json:"epoch,omitempty"`
	// Outside is a change made outside kubelogd (a removed pod directory, a current file
	// removed, replaced or truncated) that the File noticed and repaired but whose marker
	// the file it covers does not hold yet (see File.outsidePending). The removal took the
	// old cursor with it, so nothing else would tell the next run: Open reports it as
	// Recovery.Outside, for the collector to mark.
	Outside string `json:"outside,omitempty"`
}

const cursorVersion = 1

// cursorPrint is what decides whether a cursor needs saving again. Comparing these
// fields is much cheaper than encoding the cursor: what Write changes moves Lines or
// size, and the rest are the fields the collector sets itself (Reset, Done, NotBefore).
type cursorPrint struct {
	lines, size, margin int64
	inode               uint64
	pod, id             string
	restartCount        int32
	done                bool
	notBefore           time.Time
}

func (f *File) printCursor() cursorPrint { return f.printOf(&f.cursor) }

// printOf is the print of c saved now, at the current file's size and inode.
func (f *File) printOf(c *Cursor) cursorPrint {
	return cursorPrint{c.Lines, f.size, c.MarginSec, f.inode, c.PodUID, c.ContainerID, c.RestartCount, c.Done, c.NotBefore}
}

// persistCursor saves the live cursor with the current file's size and inode. The
// live cursor must cover exactly the file's data: the buffer must hold nothing but the
// unobserved bytes of a line Write has not counted yet.
//
// The cursor is written into one of the two slots of its file, so a crash leaves either
// the old or the new cursor (a power loss: see cursorfile.go). When SyncInterval has passed, the
// data file is fsynced first and then the cursor, so that after a power loss a durable
// cursor never covers data that is not durable (Open reports the opposite case as
// ShortBy).
func (f *File) persistCursor(unobserved int) error {
	return f.persist(unobserved, false)
}

// persistSynced is persistCursor, always synced: for the save right before a rotation
// (after a power loss the disk must not hold a cursor older than it once the rotation is
// on disk; see cursorfile.go).
func (f *File) persistSynced(unobserved int) error {
	return f.persist(unobserved, true)
}

func (f *File) persist(unobserved int, sync bool) error {
	if len(f.buf) != unobserved {
		return f.met.writeError(fmt.Errorf("internal error: saving the cursor of %s with %d bytes unwritten", f.p.current, len(f.buf)-unobserved))
	}
	if err := f.storeCursor(&f.cursor, sync); err != nil {
		return f.met.writeError(err)
	}
	return nil
}

// storeCursor persists c as the cursor of the current file's data as written so far
// (size and inode), synced if sync or SyncInterval has passed; see persistCursor.
//
// A synced save also syncs the directory first if it changed unsynced since (a rotation,
// the cursor file's creation): a durable cursor must not name a file whose name is not
// durable, nor be a file whose name is not. So is the first save after Open of a cursor
// found there, which may not be on disk yet, nor what it covers. The fsync of the
// directory may be another container's of the pod, begun after the change (syncPodDir).
func (f *File) storeCursor(c *Cursor, sync bool) error {
	// The save is what checks that the current file is still the one written to, also
	// the last one at Close: a pod directory removed since the last save took the cursor
	// with it, and a save into it would fail, leaving the next run nothing to resume
	// from nor to report the removal by. checkOutside creates it again, and the cursor
	// saved there names the change (Outside) until the owner's marker is in the file.
	if err := f.fenceSave(); err != nil {
		return err
	}
	f.checkOutside()
	if f.outsideTaken {
		// The owner took the change and wrote its marker before this save (the buffer
		// is flushed before every save), so the file this cursor covers holds it.
		f.outsidePending, f.outsideTaken = "", false
	}
	pc := persistedCursor{Version: cursorVersion, Cursor: *c, Offset: f.size, Inode: f.inode, Outside: f.outsidePending, Epoch: f.epoch}
	pc.TailLen, pc.TailCRC = f.tail.identity(f.size)
	if pc.TailLen > 0 {
		pc.LineLen, pc.LineCRC = f.tail.lineIdentity(f.size)
	}
	data, err := json.Marshal(pc)
	if err != nil {
		return fmt.Errorf("encoding cursor of %s: %w", f.p.current, err)
	}
	// A file that replaces a cursor (the cursor outgrew its slot, the file is of the old
	// layout or was found damaged) is synced (see writeCursor), so the save is a synced
	// one: the data it covers goes first.
	creates := !f.slots.fits(len(data))
	now := f.cfg.Now()
	sync = sync || now.Sub(f.lastSync) >= f.cfg.SyncInterval || f.slots.keep == keepUnknown || creates && f.slots.keep != keepNothing
	if sync {
		if err := f.syncBeforeCursor(); err != nil {
			return err
		}
	}
	// Crash tests: the data is written (flushed), its cursor not yet saved.
	failpoint.Hit(failpoint.AfterDataBeforeCursor)
	slots, err := writeCursor(f.p.cursor, f.slots, data, sync)
	f.slots = slots
	if err != nil {
		return err
	}
	if creates && !sync {
		f.noteDirChange()
	}
	f.lastSave = now
	if sync {
		f.lastSync = now
	}
	f.savedFP = f.printOf(c)
	f.noCursor = false
	return nil
}

// ensureCursor saves a cursor before the first write to a file that Open found without
// one (see File.noCursor): recovery keeps the data of a file without a cursor, so without
// it a crash after the write would have the collector, starting over, write those lines
// again. The cursor saved is the one Open recovered, the empty one, which covers none of
// the file: recovery cuts back whatever follows it. The live cursor cannot be saved
// instead, since it also counts the records in the buffer.
func (f *File) ensureCursor() error {
	if !f.noCursor {
		return nil
	}
	if err := f.storeCursor(&Cursor{}, false); err != nil {
		return f.met.writeError(err)
	}
	return nil
}

// writeFileAtomic replaces path with data (layout.WriteFileAtomic); with sync, the
// temporary file is synced before the rename and the directory after it.
func writeFileAtomic(path string, data []byte, sync bool) error {
	err := layout.WriteFileAtomic(path, data, layout.WriteOptions{
		Sync:       sync,
		BeforeSync: func(tmp string) { _ = observeSync(tmp) },
		// Crash tests: the new cursor is complete in its temporary file, the old one in place.
		BeforeRename: func() { failpoint.Hit(failpoint.CursorCreate) },
	})
	if err != nil || !sync {
		return err
	}
	dir := filepath.Dir(path)
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("syncing directory %s: %w", dir, err)
	}
	return nil
}

// datasync is fdatasync(2) where available, fsync elsewhere.
func datasync(fd *os.File) error {
	if err := observeSync(fd.Name()); err != nil {
		return err
	}
	return fdatasync(fd)
}

// syncObserver, when a test sets it, is told the path of every sync of a container's
// files, before it happens: the order of syncs is what power-loss safety rests on, and
// no test can cut the power. An error it returns is the sync's.
var syncObserver func(path string) error

func observeSync(path string) error {
	if syncObserver != nil {
		return syncObserver(path)
	}
	return nil
}

// noteDirChange records a change to the pod directory that a synced cursor save must not
// precede (see File.dirChange). It is called once the change is made: a sync of the
// directory that begins later covers it.
func (f *File) noteDirChange() { f.dirChange = f.m.dirChangeIf(true) }

// syncBeforeCursor makes the data of the current file durable, and the pod directory's
// changes up to f.dirChange (syncPodDir), before a synced save writes the cursor: by one
// syncfs shared with the other Files saving at the same time where the file system
// allows (fsBarrier), else by an fsync of each.
func (f *File) syncBeforeCursor() error {
	if !f.m.barrier.grouped() {
		if err := syncPath(f.p.current); err != nil {
			return fmt.Errorf("syncing %s: %w; check the disk holding %s", f.p.current, err, f.p.dir)
		}
		if err := f.syncPodDir(); err != nil {
			return fmt.Errorf("syncing directory %s: %w; check the disk holding it", f.p.dir, err)
		}
		return nil
	}
	// The tests' observer sees the same order as file by file: data, directory, cursor.
	if err := observeSync(f.p.current); err != nil {
		return fmt.Errorf("syncing %s: %w; check the disk holding %s", f.p.current, err, f.p.dir)
	}
	dir := f.dirChange != 0 && !f.m.dirSyncedSince(f.p.dir, f.dirChange)
	var seq uint64
	if dir {
		if err := dirSyncError(observeSync(f.p.dir)); err != nil {
			return fmt.Errorf("syncing directory %s: %w; check the disk holding it", f.p.dir, err)
		}
		seq = f.m.dirSeq.Load() // before the syncfs begins: see syncPodDir
	}
	if err := f.m.barrier.sync(); err != nil {
		return fmt.Errorf("syncing the file system of %s: %w; check the disk holding it", f.p.dir, err)
	}
	if dir {
		f.m.noteDirSynced(f.p.dir, seq)
	}
	f.dirChange = 0
	return nil
}

// syncPodDir makes the pod directory's changes up to f.dirChange durable, if they may not
// be: by an fsync of the directory, unless one that began after them succeeded already.
// That one may be another File's: the containers of a pod, created together, share the
// fsync of their directory instead of making one each.
func (f *File) syncPodDir() error {
	if f.dirChange == 0 {
		return nil
	}
	if !f.m.dirSyncedSince(f.p.dir, f.dirChange) {
		// Read before the fsync begins: what was numbered up to here is done, and covered.
		seq := f.m.dirSeq.Load()
		if err := syncDir(f.p.dir); err != nil {
			return err
		}
		f.m.noteDirSynced(f.p.dir, seq)
	}
	f.dirChange = 0
	return nil
}

// syncDir fsyncs a directory. A file system that cannot fsync directories (EINVAL,
// ENOTSUP) makes its changes durable otherwise or not at all; either way nothing more can
// be done, and failing every save over it would stop collection.
func syncDir(path string) error {
	return dirSyncError(syncPath(path))
}

// dirSyncError is err, or nil if it says that the file system cannot fsync directories
// (see syncDir).
func dirSyncError(err error) error {
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// syncPath fsyncs a file or directory by name. Any descriptor of an inode flushes its
// data, so the file need not be the one lumberjack writes through.
func syncPath(path string) error {
	if err := observeSync(path); err != nil {
		return err
	}
	return layout.SyncPath(path)
}

// Recovery reports what Open found in a container's existing files and what it repaired.
// The zero value means a fresh start: no cursor, an empty file.
type Recovery struct {
	// HadCursor is set when a saved cursor was loaded into File.Cursor.
	HadCursor bool
	// CursorError is set when a cursor file existed but could not be read. The File
	// starts with an empty cursor then, as without one.
	CursorError error
	// TruncatedBytes were cut from the end of the current file: data written after the
	// saved cursor (the collector reads those lines again from the cursor), or, without a
	// cursor, a torn last line that a crash left without its newline.
	TruncatedBytes int64
	// ShortBy is how many bytes the file the saved cursor points into lacks of what the
	// cursor covers: written data was lost, typically to a power failure before a sync.
	// The collector should write a gap marker.
	ShortBy int64
	// KeptBytes is the size of the current file after repair, which new records follow.
	KeptBytes int64
	// Unverified says why the current file could not be proven to be the one the saved
	// cursor covers (a directory restored or copied with a cursor of an earlier kubelogd,
	// a file changed outside kubelogd, both the file and a backup ending in the covered
	// data); "" when it was, or when nothing was kept. The file was kept whole, torn last
	// line aside: lines it holds beyond what the cursor counts are written again after it.
	// The collector should write a marker.
	Unverified string
	// RemovedBytes is how many bytes of collected lines the saved cursor covers in a
	// current file that is gone while no backup holds them: deleted or moved away outside
	// kubelogd. The collector should write a marker.
	RemovedBytes int64
	// Outside is a change made outside kubelogd that the last run noticed and repaired
	// (it created the files again) but had not marked in the file before it was killed
	// or stopped (persistedCursor.Outside). The collector should write a marker.
	Outside string
}

// recovered is what recoverFiles found and left.
type recovered struct {
	cur   Cursor
	rec   Recovery
	size  int64  // of the current file, after repair
	inode uint64 // of the current file
	// tail holds its last bytes. A pointer: recovered passes by value through Open's
	// frames, and 260 bytes more in each pushed new streams' stacks past 8 KiB.
	tail  *tailWindow
	slots cursorSlots
	epoch int64 // of the replica that saved the cursor (fence.go)
	// backups is set when the directory holds backups of the container (or could not be
	// listed): retention may have something to do.
	backups bool
}

// recoverFiles brings a container's current file back to a state consistent with its
// saved cursor after any crash, creating the file (0640) if missing. It cuts only bytes
// it proved uncovered, by content (see keepFor), and reports doubts in Recovery. The
// file must not be open for writing.
func recoverFiles(p paths) (r recovered, err error) {
	r.backups = removeLeftovers(p)
	saved, slots, found, cerr := loadCursor(p.cursor)
	r.rec.CursorError = cerr
	r.slots, r.epoch = slots, saved.Epoch
	rec := &r.rec

	_, statErr := os.Lstat(p.current)
	existed := statErr == nil
	fd, st, err := openForRecovery(p, os.O_CREATE, "opening")
	if err != nil {
		return r, err
	}
	defer fd.Close()
	size, inode := st.Size(), inodeOf(st)

	keep := size
	switch {
	case found && !existed:
		rec.ShortBy, rec.RemovedBytes, rec.Unverified = missingCurrent(p, saved)
	case found:
		if keep, err = keepFor(fd, p, saved, size, inode, rec); err != nil {
			return r, err
		}
	default:
		// No cursor: keep the data, but never let a torn line be glued to the next one.
		if keep, err = lastLineEnd(fd, size); err != nil {
			return r, err
		}
	}
	if keep < size {
		if err := fd.Truncate(keep); err != nil {
			return r, fmt.Errorf("truncating %s to %d bytes: %w", p.current, keep, err)
		}
		rec.TruncatedBytes = size - keep
		size = keep
	}
	rec.KeptBytes = size
	r.tail = new(tailWindow)
	r.tail.load(fd, size)
	if found {
		rec.HadCursor = true
		r.cur = saved.Cursor
		rec.Outside = saved.Outside
	}
	r.size, r.inode = size, inode
	return r, nil
}

// newFiles creates the current file (0640) of a container that has no files: it does
// what recoverFiles does then, without looking for a cursor, backups and temporary files
// that are not there. It fails if the current file exists or the directory does not,
// creating nothing then.
func newFiles(p paths) (r recovered, err error) {
	fd, st, err := openForRecovery(p, os.O_CREATE|os.O_EXCL, "creating")
	if err != nil {
		return r, err
	}
	defer fd.Close()
	r.inode = inodeOf(st)
	r.tail = new(tailWindow) // holds the file's last 0 bytes
	return r, nil
}

// openForRecovery opens the current file read-write with flags added (verb names it in the
// error), sets its mode and returns it with its FileInfo. lumberjack keeps the mode of
// the file it finds, also across rotations; the umask must not decide it.
func openForRecovery(p paths, flags int, verb string) (*os.File, os.FileInfo, error) {
	fd, err := layout.OpenFile(p.current, os.O_RDWR|flags, fileMode)
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w; check permissions in %s", verb, p.current, err, p.dir)
	}
	if err := fd.Chmod(fileMode); err != nil {
		fd.Close()
		return nil, nil, fmt.Errorf("setting mode of %s: %w", p.current, err)
	}
	st, err := fd.Stat()
	if err != nil {
		fd.Close()
		return nil, nil, fmt.Errorf("inspecting %s: %w", p.current, err)
	}
	return fd, st, nil
}

// lastLineEnd returns the offset just past the last '\n' in the first size bytes of fd
// (0 if there is none).
func lastLineEnd(fd *os.File, size int64) (int64, error) {
	return lastLineEndBy(fd, size, lastLineBlock)
}

// lastLineEndBy is lastLineEnd reading block bytes at a time.
func lastLineEndBy(fd *os.File, size, block int64) (int64, error) {
	if size <= 0 {
		return 0, nil
	}
	// On the heap, not the stack: a 64 KiB array here grew every stream goroutine's stack
	// to 128 KiB on its first Open (an idle stream then costs that until GCs shrink it).
	// The last newline is nearly always within the last block.
	buf := make([]byte, min(size, block))
	for end := size; end > 0; {
		start := max(0, end-int64(len(buf)))
		b := buf[:end-start]
		if _, err := fd.ReadAt(b, start); err != nil && err != io.EOF {
			return 0, fmt.Errorf("reading %s: %w", fd.Name(), err)
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] == '\n' {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}

// lastLineBlock is how much lastLineEnd reads at a time, backwards from the end.
const lastLineBlock = 16 << 10

// backupSize finds the uncompressed backup with the given inode.
func backupSize(p paths, inode uint64) (int64, bool) {
	backups, err := listBackups(p)
	if err != nil {
		return 0, false
	}
	for _, b := range backups {
		if b.gz {
			continue
		}
		if st, err := os.Stat(filepath.Join(p.dir, b.name)); err == nil && inodeOf(st) == inode {
			return st.Size(), true
		}
	}
	return 0, false
}

// removeLeftovers removes the temporary files of cursor saves and compressions a crash
// interrupted. Their names are matched exactly, so another container's are never touched.
// It reports whether the directory holds backups of the container (or could not be
// listed), that is whether retention may have anything to do: Open spares itself a
// second listing when not.
func removeLeftovers(p paths) (backups bool) {
	entries, err := os.ReadDir(p.dir)
	if err != nil {
		return true
	}
	cursorTmp := filepath.Base(p.cursor) + tmpInfix
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, cursorTmp) {
			_ = os.Remove(filepath.Join(p.dir, name))
			continue
		}
		if !strings.HasPrefix(name, ".") {
			if !backups {
				_, _, backups = parseBackup(name, p.name)
			}
			continue
		}
		if target, _, ok := strings.Cut(name[1:], gzExt+tmpInfix); ok {
			if _, gz, ok := parseBackup(target, p.name); ok && !gz {
				_ = os.Remove(filepath.Join(p.dir, name))
			}
		}
	}
	return backups
}

// inodeOf returns the inode number of a file on Linux (0 elsewhere).
func inodeOf(st os.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}
