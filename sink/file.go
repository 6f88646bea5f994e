package sink

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"gopkg.in/natefinch/lumberjack.v2"

	"github.com/kubelogd/kubelogd/internal/failpoint"
	"github.com/kubelogd/kubelogd/internal/layout"
)

// Record is one line to write.
type Record struct {
	// Time is the kubelet's timestamp of the line, parsed.
	Time time.Time
	// RawTime is the timestamp exactly as the kubelet sent it (RFC3339 with a 9-digit
	// fraction). The timestamped format writes it verbatim; when empty, Time is formatted.
	RawTime []byte
	// Line is the line without its trailing newline: arbitrary bytes, possibly invalid
	// UTF-8 or holding control characters. The text formats write it verbatim, so it
	// should hold no '\n' (the kubelet's lines never do); the json format escapes all.
	Line []byte
	// Marker is set for a kubelogd event line (restart, gap, pod recreated) rather than an
	// application line. Its text is in Line, without the "kubelogd: " prefix the text
	// formats add. Markers are not counted by the cursor.
	Marker bool
	// Hash is HashLine(Line), for a caller that computed it already; 0 means the File
	// computes it. The cursor keeps it to recognise the line on resume.
	Hash uint64
}

// Stats counts what a File did since Open.
type Stats struct {
	// Lines and Markers count accepted application lines and marker lines.
	Lines, Markers int64
	// SplitLines counts lines longer than MaxLineBytes, written in several parts.
	SplitLines int64
	// Bytes counts bytes written to files.
	Bytes int64
	// Rotations counts rotations of the current file.
	Rotations int64
}

// output is what a File writes through: its loggerOutput, or in tests a wrapper that
// fails on demand. Its methods are called with File.mu held.
type output interface {
	io.WriteCloser
	Rotate() error
}

var (
	_ output    = (*lumberjack.Logger)(nil)
	_ output    = loggerOutput{}
	_ io.Closer = (*File)(nil)
)

// File writes one container's records to <Dir>/<ns>/<pod>/<container>.log and keeps its
// cursor. It is not safe for concurrent use: one goroutine owns it from Open to Close.
// Manager.Run may meanwhile close its file descriptor when it is idle, and delete its
// backups; mu keeps the two apart.
//
// Invariants, which crash recovery (Open) relies on:
//   - Records are buffered whole and written in order; a write to the file never starts
//     a record that would end in the next file, so a record is never split by rotation.
//   - The live cursor covers exactly the data written plus the data buffered. It is
//     persisted only when the buffer is empty, so a saved cursor never covers bytes that
//     are not in the file, and (Offset, Inode) say where the covered data ends.
//   - The cursor is persisted right before every rotation, so every backup is entirely
//     covered and only the current file can hold bytes no saved cursor covers. That save
//     is synced and the rotation's directory change too, so that after a power loss the
//     disk holds no cursor older than the rotation with the rotation done, nor one
//     naming the new file without it.
//   - No byte is written to a file without a saved cursor (see noCursor).
type File struct {
	m   *Manager
	cfg *settings
	key Key
	p   paths
	log *slog.Logger
	met *metrics
	enc encoder
	out output // loggerOutput{f}, unless a test interposes

	// mu is what the owner shares with Manager.Run. The owner holds it around every call
	// of out, that is per write to the file rather than per record, and around retention;
	// Run holds it to close an idle descriptor or delete a backup. It guards lg, and the
	// writes of spanned: the owner reads spanned without it, being its only writer.
	mu sync.Mutex
	// lg is borrowed from the Manager's pool while the file is open; nil once closed for
	// idleness (or before the first write), when the next write borrows one again.
	lg *lumberjack.Logger
	// lastOut is Now (UnixNano) at the last write through lg, 0 while lg is nil. Run reads
	// it without mu to find idle Files among thousands cheaply, then checks again under mu.
	lastOut atomic.Int64

	buf      []byte    // encoded records not yet written; may start with the tail of a record a failed write cut short
	bufSince time.Time // when buf last became non-empty
	ends     []int     // scratch: where each part of the line being added ends, from the line's start

	size  int64      // bytes in the current file; the rotation decision depends on it being exact
	inode uint64     // inode of the current file
	tail  tailWindow // its last bytes, which a saved cursor identifies its data by

	// outside describes a change to the files made outside kubelogd that the File
	// noticed and repaired, until the owner takes it (TakeOutsideChange).
	outside string
	// outsidePending is such a change until a saved cursor covers its marker: each save
	// records it (persistedCursor.Outside), so that a run killed before the marker is on
	// disk leaves it to the next. outsideTaken: the owner has taken it (and so written
	// the marker, which the next save covers).
	outsidePending string
	outsideTaken   bool
	// outsideMarked is a change the File marked in the file itself, until the owner takes
	// it (TakeOutsideMarked) to count and log it.
	outsideMarked string

	cursor    Cursor
	epoch     int64       // the shard epoch it writes in (fence.go)
	savedFP   cursorPrint // what the persisted cursor said, to skip saving an unchanged one
	slots     cursorSlots // where in the cursor file the next save goes
	lastSave  time.Time
	lastSync  time.Time
	lastRot   time.Time // wall time after the last rotation; see waitForNextMillisecond
	spanned   bool      // a line longer than a file is being written across files; written under mu
	recovered Recovery
	stats     Stats
	closed    bool

	// noCursor is set while the container has no cursor file and its current file no
	// data since Open: the state recovery treats like an empty cursor, so Open saves
	// none (one file creation and rename fewer per new container). The first write
	// saves one first (ensureCursor), as does any save of a changed cursor.
	noCursor bool

	// dirChange numbers (Manager.dirSeq) the last change to the pod directory that a
	// synced cursor save must not precede — a rotation, the cursor file's creation, files
	// created again — while it may not be on disk; 0 when there is none. See syncPodDir.
	dirChange uint64
}

// SetPod tells the json format the node of the file's current pod and, with
// Config.JSONLabels, its labels. Labels that would not fit the bound every line is sized
// for are left out, with a warning. It is for the File's owner goroutine, like Write.
func (f *File) SetPod(node string, labels map[string]string) {
	if f.cfg.Format != FormatJSON {
		return
	}
	if !f.cfg.JSONLabels {
		labels = nil
	}
	enc := newPodEncoder(f.cfg.Format, f.key, node, labels)
	if len(enc.jsonMeta) > f.cfg.podReserve {
		f.log.Warn("pod labels too large for the json format; writing lines without them", "path", f.p.current)
		enc = newPodEncoder(f.cfg.Format, f.key, node, nil)
	}
	f.enc = enc
}

// Cursor returns the live cursor, which Write advances. Only the File's owner goroutine
// may use it; the collector calls Reset on it when a new container instance starts.
func (f *File) Cursor() *Cursor { return &f.cursor }

// Recovered reports what Open found and repaired in the container's existing files.
func (f *File) Recovered() Recovery { return f.recovered }

// Stats returns counters of what the File did since Open.
func (f *File) Stats() Stats { return f.stats }

// Path returns the current file's path.
func (f *File) Path() string { return f.p.current }

// Write adds rec to the buffer, writing earlier records out first if the buffer is full
// or if rec needs a fresh file. On error rec was not accepted (the cursor does not count
// it) and may be written again; earlier records stay buffered. The one exception is a
// line too long for even an empty file: if writing it fails part way, or the process
// dies before the next cursor save, its first parts may end up written twice.
//
// While a line is partial (Cursor().Partial, left by WritePart), an application record is
// the rest of that line: it is written as the line's next parts, and the cursor then
// counts the whole line. A marker ends a partial line first (see AbandonPartial).
func (f *File) Write(rec Record) error {
	if rec.Marker && f.cursor.Partial != nil {
		f.AbandonPartial()
	}
	_, err := f.add(rec, false)
	return err
}

// WritePart writes the leading parts of a line whose end has not been read yet: of
// rec.Line, the line's bytes not written so far, it writes the parts that Write would
// write for the whole line, except the last, and returns how many bytes that took (0
// while rec.Line is not longer than a part). The cursor keeps the line as partial
// (Cursor.Partial) until Write gets its rest. Reading a line longer than MaxLineBytes
// this way, a reader holds no more than a part of it in memory, and the file holds the
// same bytes as if the line had been written whole.
func (f *File) WritePart(rec Record) (int, error) {
	if rec.Marker {
		return 0, fmt.Errorf("writing to %s: a marker cannot be written in parts", f.p.current)
	}
	return f.add(rec, true)
}

// AbandonPartial ends a partial line without its rest: the reader cannot get it any more
// (the kubelet rotated it away, or the instance is gone). The cursor counts the line as
// written, identified by the bytes that were; the caller writes a marker saying so.
func (f *File) AbandonPartial() {
	if p := f.cursor.Partial; p != nil {
		f.cursor.Partial = nil
		f.cursor.ObserveHashed(p.Time, p.Hash)
		f.stats.Lines++
	}
}

// PartBytes is the longest part a line is written in (Config.MaxLineBytes, as validated).
func (f *File) PartBytes() int { return f.cfg.MaxLineBytes }

// add is Write, and with more WritePart.
func (f *File) add(rec Record, more bool) (int, error) {
	if f.closed {
		return 0, fmt.Errorf("writing to %s: %w", f.p.current, os.ErrClosed)
	}
	line := rec.Line
	if more {
		// Only parts that end where they would in the whole line: splitAt looks up to
		// utf8.UTFMax bytes beyond the limit.
		n := 0
		for len(line)-n >= f.cfg.MaxLineBytes+utf8.UTFMax {
			n += splitAt(line[n:], f.cfg.MaxLineBytes)
		}
		if n == 0 {
			return 0, nil
		}
		line = line[:n]
	}
	if len(f.buf) >= f.cfg.bufLimit {
		if err := f.flushBuffer(); err != nil {
			return 0, err
		}
	}
	if len(f.buf) == 0 {
		if err := f.reopen(); err != nil {
			return 0, err
		}
	}
	if f.buf == nil {
		f.buf = getWriteBuffer()
	}
	lineStart := len(f.buf)
	f.ends = f.ends[:0]
	first := 1
	if p := f.cursor.Partial; p != nil && !rec.Marker {
		first = p.Parts + 1 // the rest of a partial line
	}
	for rest, partNo := line, first; ; partNo++ {
		n := splitAt(rest, f.cfg.MaxLineBytes)
		f.buf = f.enc.appendPart(f.buf, &rec, rest[:n], partNo)
		f.ends = append(f.ends, len(f.buf)-lineStart)
		rest = rest[n:]
		if len(rest) == 0 {
			break
		}
	}
	if f.size+int64(len(f.buf)) >= f.cfg.maxBytes {
		if err := f.makeRoom(lineStart); err != nil {
			return 0, err
		}
	}
	// Observe only now: the record is in the buffer (or written), so from here on a
	// persisted cursor may count it.
	p := f.cursor.Partial
	switch {
	case rec.Marker:
		f.stats.Markers++
	case more && p == nil:
		f.cursor.Partial = &PartialLine{Time: rec.Time, Bytes: int64(len(line)), Parts: len(f.ends), Hash: HashLine(line)}
		f.stats.SplitLines++
		f.met.linesSplit.Inc()
	case more:
		// A new value, not an update in place: a saved cursor's print may share p.
		f.cursor.Partial = &PartialLine{Time: p.Time, Bytes: p.Bytes + int64(len(line)), Parts: p.Parts + len(f.ends), Hash: HashMore(p.Hash, line)}
	case p != nil:
		f.cursor.Partial = nil
		f.cursor.ObserveHashed(p.Time, HashMore(p.Hash, line))
		f.stats.Lines++
	default:
		h := rec.Hash
		if h == 0 {
			h = HashLine(rec.Line)
		}
		f.cursor.ObserveHashed(rec.Time, h)
		f.stats.Lines++
		if len(f.ends) > 1 {
			f.stats.SplitLines++
			f.met.linesSplit.Inc()
		}
	}
	if f.spanned {
		// The line spanned files and the saved cursor still points before it, into a
		// file that retention has not touched yet; cover the line, then clean up.
		f.setSpanned(false)
		if err := f.persistCursor(0); err != nil {
			f.log.Warn("cannot save cursor after a line longer than a file", "err", err)
		} else {
			f.applyRetention()
		}
	}
	if len(f.buf) > 0 && f.bufSince.IsZero() {
		f.bufSince = f.cfg.Now()
	}
	return len(line), nil
}

// makeRoom handles a line, buffered at buf[lineStart:], that would make the current file
// reach MaxSize: the data before it goes to the current file, the cursor (which covers
// exactly that data) is persisted, and the file is rotated, so the line starts the next
// file. A line larger than a whole file is then written part by part across files.
// On error the line is dropped from the buffer, except for the unwritten rest of a part
// a failed write cut short, which must still be completed to keep the file line-aligned.
func (f *File) makeRoom(lineStart int) error {
	// Retention waits while a line longer than a file is written: it might free the inode
	// the saved cursor names, a file created meanwhile could get that number, and
	// recovery would mistake it for the cursor's file. Write applies it after the line.
	// Run's deletions wait too (see setSpanned).
	spans := int64(len(f.buf)-lineStart) >= f.cfg.maxBytes
	if spans {
		f.setSpanned(true)
	}
	if f.size > 0 || lineStart > 0 {
		if n, err := f.writeOut(lineStart); err != nil {
			f.buf = f.buf[:lineStart-n]
			return err
		}
		f.bufSince = time.Time{} // what waited is written; Write restarts the wait
		if err := f.persistSynced(len(f.buf)); err != nil {
			f.buf = f.buf[:0]
			return err
		}
		// The save may have found the file removed and started an empty one (see
		// checkOutside): no need to rotate that away.
		if f.size > 0 {
			if err := f.rotate(!spans); err != nil {
				f.buf = f.buf[:0]
				return err
			}
		}
	}
	if !spans {
		return nil
	}

	// The line alone exceeds a file. Its parts are whole records each and go out in
	// groups that fit, rotating in between; the cursor is not saved at these rotations
	// because it cannot count half a line.
	base := 0 // bytes of the line written so far
	for j := 0; j < len(f.ends); {
		group := 0
		for j < len(f.ends) && f.size+int64(f.ends[j]-base) < f.cfg.maxBytes {
			group = f.ends[j] - base
			j++
		}
		if group == 0 {
			// Validation guarantees a part fits in an empty file, so size > 0 here.
			if err := f.rotate(false); err != nil {
				f.buf = f.buf[:0]
				return err
			}
			continue
		}
		n, err := f.writeOut(group)
		if err != nil {
			// Keep the rest of the part being written, drop the later parts.
			// base is a part boundary, so with n == 0 no part was begun.
			written, keep := base+n, 0
			for _, e := range f.ends {
				if n > 0 && e >= written {
					keep = e - written
					break
				}
			}
			f.buf = f.buf[:keep]
			return err
		}
		base += group
	}
	return nil
}

// writeOut writes buf[:k] (whole records, or a record's tail left by a failed write) to
// the current file and removes what was written from buf. It returns how many bytes were
// written, which on error may be fewer than k: those are in the file and must not be
// written again.
func (f *File) writeOut(k int) (int, error) {
	if k == 0 {
		return 0, nil
	}
	if err := f.ensureCursor(); err != nil {
		return 0, err
	}
	if err := f.fence(); err != nil {
		return 0, err
	}
	f.moveForeign()
	f.mu.Lock()
	if k > 1 && failpoint.Reached(failpoint.MidLine) {
		// Crash tests: half of a record on disk, the rest never.
		_, _ = f.out.Write(f.buf[:k/2])
		failpoint.Kill(failpoint.MidLine)
	}
	n, err := f.out.Write(f.buf[:k])
	f.touch()
	f.mu.Unlock()
	n = max(0, min(n, k))
	f.tail.add(f.buf[:n])
	f.size += int64(n)
	f.stats.Bytes += int64(n)
	if n > 0 {
		f.buf = f.buf[:copy(f.buf, f.buf[n:])]
	}
	if err == nil && n < k {
		err = io.ErrShortWrite
	}
	if err != nil {
		return n, f.met.writeError(fmt.Errorf("writing %s (%d of %d bytes written, the rest stays buffered): %w; check free space and permissions in %s",
			f.p.current, n, k, restoreErrno(err), f.p.dir))
	}
	return n, nil
}

// flushBuffer writes the whole buffer to the current file. It never rotates: Write keeps
// the buffer small enough to fit.
func (f *File) flushBuffer() error {
	if len(f.buf) == 0 {
		putWriteBuffer(f.buf) // emptied another way (a line across files, a failed write)
		f.buf = nil
		return nil
	}
	if _, err := f.writeOut(len(f.buf)); err != nil {
		return err
	}
	f.bufSince = time.Time{}
	// Empty now: an idle container's file holds no buffer (most files are idle most of
	// the time, and thousands are open).
	putWriteBuffer(f.buf)
	f.buf = nil
	return nil
}

// writeBuffers holds the write buffers of files that had nothing to write.
var writeBuffers sync.Pool

// maxPooledBuffer bounds the buffers kept for reuse: one grown by a very long line is
// left to the garbage collector.
const maxPooledBuffer = 256 << 10

func getWriteBuffer() []byte {
	if b, ok := writeBuffers.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, 4<<10)
}

func putWriteBuffer(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledBuffer {
		return
	}
	writeBuffers.Put(&b)
}

// Flush writes the buffered records to the file and persists the cursor if
// CursorInterval has passed since it was last persisted. The owner calls it when its
// reader has nothing more buffered, and when FlushDue says so. On error the unwritten
// records stay buffered and a later Flush retries them.
func (f *File) Flush() error {
	if f.closed {
		return fmt.Errorf("flushing %s: %w", f.p.current, os.ErrClosed)
	}
	if err := f.flushBuffer(); err != nil {
		return err
	}
	if f.cfg.Now().Sub(f.lastSave) >= f.cfg.CursorInterval && f.printCursor() != f.savedFP {
		return f.persistCursor(0)
	}
	return nil
}

// SaveCursor flushes the buffer and persists the cursor now, whatever CursorInterval
// says: for the collector to call after it changed the cursor itself (Reset, Done). A
// cursor that equals the saved one is not written again: the file on disk already says
// the same (and it is no sync point either, see Config.SyncInterval).
func (f *File) SaveCursor() error {
	if f.closed {
		return fmt.Errorf("saving cursor of %s: %w", f.p.current, os.ErrClosed)
	}
	if err := f.flushBuffer(); err != nil {
		return err
	}
	if f.printCursor() == f.savedFP {
		return nil
	}
	return f.persistCursor(0)
}

// FlushDue reports whether buffered data has waited FlushInterval or longer at now.
func (f *File) FlushDue(now time.Time) bool {
	return len(f.buf) > 0 && now.Sub(f.bufSince) >= f.cfg.FlushInterval
}

// Close flushes the buffer, persists the cursor and closes the file. If the buffer
// cannot be written, the cursor is not persisted either: the saved one covers only data
// in the file, so the lost records will be read again after a restart. Close is
// idempotent.
func (f *File) Close() error {
	if f.closed {
		return nil
	}
	f.closed = true
	err := f.flushBuffer()
	if err != nil {
		err = fmt.Errorf("closing %s: %d buffered bytes dropped, the saved cursor does not cover them: %w", f.p.current, len(f.buf), err)
	} else {
		// Also with nothing new to save: files removed outside kubelogd since the last
		// save must be found now, or the next run finds no cursor to resume from and
		// nothing to say what was lost (see storeCursor).
		f.checkOutside()
		if f.printCursor() != f.savedFP || f.outsidePending != "" {
			err = f.persistCursor(0)
		}
	}
	f.mu.Lock()
	cerr := f.out.Close()
	f.mu.Unlock()
	if cerr != nil && err == nil {
		err = fmt.Errorf("closing %s: %w", f.p.current, cerr)
	}
	f.buf = nil
	f.m.release(f)
	return err
}

// rotate moves the current file aside as a backup, starts a new one and, if retain,
// applies retention to the backups.
func (f *File) rotate(retain bool) error {
	if err := f.fence(); err != nil {
		return err
	}
	waitForFreeBackupName(f.p, f.lastRot)
	f.mu.Lock()
	err := restoreErrno(f.out.Rotate())
	// Crash tests: the old file is renamed to its backup name; the bookkeeping below (mode,
	// inode, retention) has not happened. lumberjack renames and creates the new file in
	// one call, so this is the closest point to "between the two" reachable from here.
	failpoint.Hit(failpoint.RotationAfterRename)
	if err != nil {
		// Hand the Logger back: lumberjack has closed its file, and its next open must
		// go through openLogger's check rather than lumberjack's own (see checkCurrent).
		_ = f.out.Close()
	}
	f.touch()
	f.mu.Unlock()
	f.lastRot = time.Now().Round(0)
	if err != nil {
		// lumberjack may have failed before or after renaming the file away. Learn from
		// the disk which, so that size matches what its next open will find, and if the
		// file is gone create it as Open does: lumberjack would create it 0600. A file
		// there that is not the old one is lumberjack's new file, created with the old
		// file's mode, which may not even allow writing it (a read-only old file).
		old := f.inode
		f.size, f.inode = 0, 0
		if st, serr := os.Stat(f.p.current); serr == nil && inodeOf(st) != old {
			_ = os.Chmod(f.p.current, fileMode)
		}
		if fd, cerr := layout.OpenFile(f.p.current, os.O_WRONLY|os.O_CREATE, fileMode); cerr == nil {
			_ = fd.Chmod(fileMode)
			if st, serr := fd.Stat(); serr == nil {
				f.size, f.inode = st.Size(), inodeOf(st)
			}
			_ = fd.Close()
		}
		f.noteDirChange() // failed or not, something may have been renamed or created
		f.loadTail()
		return f.met.writeError(fmt.Errorf("rotating %s: %w; check free space and permissions in %s", f.p.current, err, f.p.dir))
	}
	f.size = 0
	f.tail.empty()
	f.stats.Rotations++
	f.met.rotations.Inc()
	// lumberjack created the new file with the old file's mode, minus the umask.
	if err := os.Chmod(f.p.current, fileMode); err != nil {
		f.log.Warn("cannot set mode of rotated log file", "path", f.p.current, "err", err)
	}
	if st, err := os.Stat(f.p.current); err == nil {
		f.inode = inodeOf(st)
	}
	// The rename and the new file on disk before any cursor naming the new file can be:
	// recovery would otherwise take the old file, still named current, for one rotated
	// after the cursor was saved, and empty it. If this fails, the next synced save tries
	// again first, and fails while it cannot (the copy saved before the rotation is kept
	// meanwhile).
	f.noteDirChange()
	if err := f.syncPodDir(); err != nil {
		f.log.Warn("cannot sync directory after rotating", "path", f.p.dir, "err", f.met.writeError(err))
	}
	if retain {
		f.applyRetention()
	}
	return nil
}

// waitForNextMillisecond sleeps until the wall clock is past the millisecond of last.
// lumberjack names a backup after the rotation time in milliseconds and renames over
// an existing name; two rotations in one millisecond would make the first backup vanish.
// waitForFreeBackupName waits until the backup name lumberjack will give a rotation now
// (its wall clock, in milliseconds) is free. lastRot only knows this File's rotations; a
// File opened again within the same millisecond (after a crash, or a recreated pod whose
// stream takes over the file) would otherwise rename over a backup an earlier File made.
func waitForFreeBackupName(p paths, last time.Time) {
	waitForNextMillisecond(last)
	for range 1000 {
		name := filepath.Join(p.dir, layout.BackupName(p.name, time.Now()))
		if !exists(name) && !exists(name+".gz") {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func waitForNextMillisecond(last time.Time) {
	if last.IsZero() {
		return
	}
	next := last.Truncate(time.Millisecond).Add(time.Millisecond)
	if d := next.Sub(time.Now().Round(0)); d > 0 {
		time.Sleep(d)
	}
}
