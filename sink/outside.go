package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// Operators free space by removing a pod's directory or a container's current file, or
// move a file away, while kubelogd runs. lumberjack would go on writing to the removed
// inode, and the cursor saves would fail for good once the directory is gone. A File
// therefore checks, at each cursor save (every CursorInterval at most while it writes,
// never per line), that the file at its path is the one it writes; and when it opens its
// file for writing (checkCurrent), that the file did not change while it was closed. On
// a change it creates the directory and the file again, or adopts the file it finds, and
// writes a files_removed marker there at once (OutsideDetail), before any byte written
// after it: the check can run inside a write (the save before a rotation), and records
// buffered then or written later belong after the marker. The owner learns of the change
// (TakeOutsideMarked) to count and log it. Should the marker fail to write (a full disk),
// the owner writes it instead (TakeOutsideChange). The cursor counts the container's
// lines, not bytes, so it stays valid; the lines written to the removed file before the
// check went with it.

// OutsideDetail is the text of the gap marker for a change outside kubelogd, what.
func OutsideDetail(what string) string {
	return what + "; lines written to the earlier file before this marker are not in this one"
}

// TakeOutsideMarked returns, once, a change outside kubelogd that the File found and
// marked in the file itself (see above), for the owner to count and log; "" if none.
func (f *File) TakeOutsideMarked() string {
	what := f.outsideMarked
	f.outsideMarked = ""
	return what
}

// TakeOutsideChange returns, once, what the File found changed outside kubelogd in its
// files since the last call — the directory or the current file removed, renamed,
// replaced or truncated — after it created them again and went on writing there, and
// could not mark itself (see above); "" if nothing. The owner should write a marker
// right away, so that it precedes the lines written from then on.
func (f *File) TakeOutsideChange() string {
	what := f.outside
	f.outside = ""
	if what != "" {
		f.outsideTaken = true
	}
	return what
}

// noteOutside records a change: for TakeOutsideMarked when marked (the marker is in the
// file), else for TakeOutsideChange, keeping the first one until taken.
func (f *File) noteOutside(what string, marked bool) {
	f.log.Warn("log file changed outside kubelogd; writing on in a new file", "path", f.p.current, "change", what, "marked", marked)
	if marked {
		if f.outsideMarked == "" {
			f.outsideMarked = what
		}
		return
	}
	if f.outside == "" {
		f.outside = what
	}
	if f.outsidePending == "" || f.outsideTaken {
		f.outsidePending = what
	}
	f.outsideTaken = false
}

// checkOutside compares the current file at its path with the one the File writes (one
// stat) and, if it was removed, renamed, replaced or truncated, adopts what is there now
// or creates it again (see above). A stat that fails otherwise (a permission) changes
// nothing: the writes and saves report that themselves.
func (f *File) checkOutside() {
	if f.inode == 0 {
		return // a failed rotation left the file unknown; checkCurrent learns it
	}
	st, err := os.Stat(f.p.current)
	var what string
	switch {
	case err == nil && inodeOf(st) == f.inode && st.Size() >= f.size:
		return
	case err == nil && inodeOf(st) == f.inode:
		what = fmt.Sprintf("%s was truncated outside kubelogd, from %d to %d bytes", f.p.current, f.size, st.Size())
	case err == nil:
		what = fmt.Sprintf("%s was replaced outside kubelogd by another file of %d bytes", f.p.current, st.Size())
	case !errors.Is(err, fs.ErrNotExist):
		return
	case !exists(f.p.dir):
		what = fmt.Sprintf("the directory %s was removed outside kubelogd", f.p.dir)
	default:
		what = fmt.Sprintf("%s was removed or renamed outside kubelogd", f.p.current)
	}
	f.mu.Lock()
	// The descriptor lumberjack holds is the old file's: the next write opens the path
	// again (checkCurrent, then lumberjack in append mode), after the marker.
	_ = f.closeLogger()
	marked, err := f.adoptCurrent(what)
	f.mu.Unlock()
	if err != nil {
		// The save and the next writes fail on their own and are retried; so is this.
		f.log.Warn("cannot create log file again after a change outside kubelogd", "path", f.p.current, "err", err)
		return
	}
	f.noteOutside(what, marked)
}

// adoptCurrent creates the pod directory and the current file where missing, writes the
// marker of change at its end (see markOutside), and takes the file at the path, new or
// found, as the one written from now on: its size, inode and last bytes. f.mu must be
// held.
func (f *File) adoptCurrent(change string) (marked bool, err error) {
	fd, err := openCurrent(f.p, os.O_RDWR|os.O_APPEND)
	if err != nil {
		return false, err
	}
	defer fd.Close()
	marked = f.markOutside(fd, change)
	st, err := fd.Stat()
	if err != nil {
		return marked, err
	}
	f.size, f.inode = st.Size(), inodeOf(st)
	f.tail.load(fd, f.size)
	// The directory and the file's name may be new: a synced save syncs them first.
	f.noteDirChange()
	return marked, nil
}

// markOutside appends the gap marker of change to fd, the current file opened for
// appending right after the change was found, before any record is written there. It
// reports whether the whole marker was written; one written in part (a full disk) is a
// torn last line, which recovery cuts, and the owner writes the marker instead.
func (f *File) markOutside(fd *os.File, change string) bool {
	rec := Record{Time: f.cfg.Now(), Marker: true, Line: []byte("gap: " + OutsideDetail(change))}
	b := f.enc.appendPart(nil, &rec, rec.Line, 1)
	if _, err := fd.Write(b); err != nil {
		f.log.Warn("cannot write the marker of a change outside kubelogd; the collector writes it", "path", f.p.current, "err", f.met.writeError(err))
		return false
	}
	f.stats.Markers++
	return true
}

// loadTail reads the last bytes of the current file, f.size long, into f.tail, for a
// file the File did not write all of itself; unknown if they cannot be read.
func (f *File) loadTail() {
	f.tail.empty()
	if f.size == 0 {
		return
	}
	f.tail.unknown()
	if fd, err := layout.OpenFile(f.p.current, os.O_RDONLY, 0); err == nil {
		f.tail.load(fd, f.size)
		_ = fd.Close()
	}
}

// openCurrent opens the current file with flag, creating it (0640) and the pod and
// namespace directories (0750) where missing.
func openCurrent(p paths, flag int) (*os.File, error) {
	fd, err := layout.OpenFile(p.current, flag, 0)
	if !errors.Is(err, fs.ErrNotExist) {
		return fd, err
	}
	if err := layout.MkdirAll(p.dir); err != nil {
		return nil, fmt.Errorf("creating directory %s: %w", p.dir, err)
	}
	fd, err = layout.OpenFile(p.current, flag|os.O_CREATE, fileMode)
	if err == nil {
		_ = fd.Chmod(fileMode) // despite the umask
	}
	return fd, err
}
