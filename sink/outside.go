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
// a change it creates the directory and the file again, or adopts the file it finds,
// continues there, and keeps a description of the change for its owner to mark in the
// file (TakeOutsideChange). The cursor counts the container's lines, not bytes, so it
// stays valid; the lines written to the removed file before the check went with it.

// TakeOutsideChange returns, once, what the File found changed outside kubelogd in its
// files since the last call — the directory or the current file removed, renamed,
// replaced or truncated — after it created them again and went on writing there; "" if
// nothing. The owner should write a marker right away, so that it precedes the lines
// written from then on.
func (f *File) TakeOutsideChange() string {
	what := f.outside
	f.outside = ""
	if what != "" {
		f.outsideTaken = true
	}
	return what
}

// noteOutside records a change for TakeOutsideChange, keeping the first one until taken.
func (f *File) noteOutside(what string) {
	f.log.Warn("log file changed outside kubelogd; writing on in a new file", "path", f.p.current, "change", what)
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
	// again (checkCurrent, then lumberjack in append mode).
	_ = f.closeLogger()
	err = f.adoptCurrent()
	f.mu.Unlock()
	if err != nil {
		// The save and the next writes fail on their own and are retried; so is this.
		f.log.Warn("cannot create log file again after a change outside kubelogd", "path", f.p.current, "err", err)
		return
	}
	f.noteOutside(what)
}

// adoptCurrent creates the pod directory and the current file where missing, and takes
// the file at the path, new or found, as the one written from now on: its size, inode
// and last bytes. f.mu must be held.
func (f *File) adoptCurrent() error {
	fd, err := openCurrent(f.p, os.O_RDWR)
	if err != nil {
		return err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return err
	}
	f.size, f.inode = st.Size(), inodeOf(st)
	f.tail.load(fd, f.size)
	// The directory and the file's name may be new: a synced save syncs them first.
	f.dirUnsynced = true
	return nil
}

// loadTail reads the last bytes of the current file, f.size long, into f.tail, for a
// file the File did not write all of itself; unknown if they cannot be read.
func (f *File) loadTail() {
	f.tail.n = 0
	if f.size == 0 {
		return
	}
	f.tail.n = -1
	if fd, err := os.Open(f.p.current); err == nil {
		f.tail.load(fd, f.size)
		_ = fd.Close()
	}
}

// openCurrent opens the current file with flag, creating it (0640) and the pod and
// namespace directories (0750) where missing.
func openCurrent(p paths, flag int) (*os.File, error) {
	fd, err := os.OpenFile(p.current, flag, 0)
	if !errors.Is(err, fs.ErrNotExist) {
		return fd, err
	}
	if err := layout.MkdirAll(p.dir); err != nil {
		return nil, fmt.Errorf("creating directory %s: %w", p.dir, err)
	}
	fd, err = os.OpenFile(p.current, flag|os.O_CREATE, fileMode)
	if err == nil {
		_ = fd.Chmod(fileMode) // despite the umask
	}
	return fd, err
}
