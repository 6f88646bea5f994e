package sink

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"syscall"
	"time"
)

// loggerOutput is a File's own output: the File's pooled lumberjack Logger, borrowed on
// the first write after Open or after an idle close and handed back on Close. Its
// methods are called with File.mu held.
type loggerOutput struct{ f *File }

// Write writes p through the Logger, opening the file first if it is closed.
func (o loggerOutput) Write(p []byte) (int, error) {
	if err := o.f.openLogger(true); err != nil {
		o.f.m.noteOpenError(err)
		return 0, err
	}
	n, err := o.f.lg.Write(p)
	if err != nil {
		o.f.m.noteOpenError(err)
	}
	return n, err
}

// Rotate moves the current file aside and starts a new one.
func (o loggerOutput) Rotate() error {
	// No check of the current file: lumberjack renames whatever is there, or creates
	// the file if nothing is, and rotate learns the new file from the disk afterwards.
	if err := o.f.openLogger(false); err != nil {
		return err
	}
	return o.f.lg.Rotate()
}

// Close closes the file and hands the Logger back to the pool.
func (o loggerOutput) Close() error {
	return o.f.closeLogger()
}

// openLogger borrows a Logger for the current file unless the File holds one. With
// check, it first makes sure the file on disk is the one size and inode describe. f.mu
// must be held; only the owner calls it.
func (f *File) openLogger(check bool) error {
	if f.lg != nil {
		return nil
	}
	if check {
		if err := f.checkCurrent(); err != nil {
			return err
		}
	}
	lg := f.m.acquireLogger()
	lg.Filename = f.p.current
	lg.MaxSize = f.cfg.MaxSizeMB
	f.lg = lg
	f.lastOut.Store(f.cfg.Now().UnixNano())
	return nil
}

// reopen opens the file again if it was closed (idle, or Rest), before a record is
// buffered for it: a change made outside kubelogd meanwhile (the pod directory or the file
// removed) is then found while the live cursor covers exactly the file's data, and the
// cursor is saved into the file created again before any line is written there. Found
// only when the buffer is written, the lines would reach a new file that has no cursor
// yet, and a crash before the next save would leave them to recovery as a file without
// one: kept, and read and written again (seed 257859014, soak-2/p-02/app, polled).
//
// A File that has no cursor yet (noCursor: nothing written since Open) is left to
// writeOut, which saves the first cursor before it opens the file.
func (f *File) reopen() error {
	if _, ok := f.out.(loggerOutput); !ok || f.noCursor {
		return nil // a test's output, or see above
	}
	f.mu.Lock()
	closed := f.lg == nil
	marked, unmarked := f.outsideMarked, f.outside
	var err error
	if closed {
		err = f.openLogger(true)
	}
	f.mu.Unlock()
	if err != nil {
		f.m.noteOpenError(err)
		return f.met.writeError(fmt.Errorf("opening %s again: %w; check free space and permissions in %s", f.p.current, restoreErrno(err), f.p.dir))
	}
	if !closed || f.outsideMarked == marked && f.outside == unmarked {
		return nil
	}
	return f.persistCursor(0)
}

// checkCurrent opens the current file for appending before a Logger does, and adopts
// what it finds. lumberjack, when it cannot open the file (made read-only, say), moves
// it aside as a backup and starts a new file without a word, and when the file is gone
// it creates one with mode 0600; either way size and inode, which the cursor's offset
// is checked against on recovery, would describe a file that is not being written.
// Here a file that cannot be opened is an error naming it (the records stay buffered),
// and a file changed behind kubelogd's back — removed with its directory or alone,
// replaced, truncated — is created again or adopted, continued at its end, and the change
// marked there (see markOutside).
func (f *File) checkCurrent() error {
	fd, err := openCurrent(f.p, os.O_RDWR|os.O_APPEND)
	if err != nil {
		return err
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil {
		return err
	}
	if size, inode := st.Size(), inodeOf(st); size != f.size || inode != f.inode {
		// inode 0: a failed rotation could not tell which file would be next.
		if f.inode != 0 {
			what := fmt.Sprintf("%s changed outside kubelogd while kubelogd had it closed (%d bytes, %d expected)", f.p.current, size, f.size)
			if inode != f.inode && size == 0 {
				what = fmt.Sprintf("%s was removed outside kubelogd while kubelogd had it closed", f.p.current)
			}
			marked := f.markOutside(fd, what)
			if marked {
				if st, err = fd.Stat(); err != nil {
					return err
				}
				size = st.Size()
			}
			f.noteOutside(what, marked)
		}
		if inode != f.inode {
			f.noteDirChange() // perhaps created just now, directory and all
		}
		f.size, f.inode = size, inode
		f.tail.load(fd, f.size)
	}
	return nil
}

// closeLogger closes the file and hands the Logger back to the pool. f.mu must be held.
func (f *File) closeLogger() error {
	if f.lg == nil {
		return nil
	}
	err := f.lg.Close()
	f.m.putLogger(f.lg)
	f.lg = nil
	f.lastOut.Store(0)
	return err
}

// touch records a write through the Logger. f.mu must be held.
func (f *File) touch() {
	if f.lg != nil {
		f.lastOut.Store(f.cfg.Now().UnixNano())
	}
}

// setSpanned sets spanned under mu. While it is set, Run deletes none of the File's
// backups: one of them holds the data the saved cursor ends in, and if its inode were
// freed, a file created meanwhile could get the number and mislead recovery.
func (f *File) setSpanned(v bool) {
	f.mu.Lock()
	f.spanned = v
	f.mu.Unlock()
}

// Rest closes the file's descriptor now, as an idle close would, if nothing is buffered:
// for an owner that will not write for a while (a polled container between two polls),
// so that thousands of quiet containers hold no descriptor and no Logger. The next write
// opens the file again, checked as after an idle close. With records buffered it does
// nothing: Flush first.
func (f *File) Rest() {
	if f.closed || len(f.buf) > 0 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.closeLogger(); err != nil {
		f.log.Warn("cannot close log file", "path", f.p.current, "err", err)
	}
}

// closeIfIdle closes f's file if nothing was written through it since cutoff (UnixNano).
// It runs in Run's goroutine and reports whether it closed the file.
func (f *File) closeIfIdle(cutoff int64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if last := f.lastOut.Load(); f.lg == nil || last == 0 || last > cutoff {
		return false
	}
	// The owner's out may be a test wrapper, but the descriptor is the Logger's.
	if err := f.closeLogger(); err != nil {
		f.log.Warn("cannot close idle log file", "path", f.p.current, "err", err)
	}
	return true
}

// closeIdle closes the files of all Files that have not written for IdleClose.
func (m *Manager) closeIdle(now time.Time) {
	cutoff := now.Add(-m.cfg.IdleClose).UnixNano()
	m.mu.Lock()
	var idle []*File
	for _, f := range m.open {
		if f == nil { // being opened
			continue
		}
		if last := f.lastOut.Load(); last != 0 && last <= cutoff {
			idle = append(idle, f)
		}
	}
	m.mu.Unlock()
	// f.mu is taken with m.mu released: the owner takes m.mu with f.mu held (to borrow
	// or return a Logger), so the order is always f.mu, then m.mu.
	for _, f := range idle {
		if f.closeIfIdle(cutoff) {
			m.met.idleCloses.Inc()
		}
	}
}

// highWater is the count of open files at which Run starts closing the least recently
// written ones, and lowWater the count it closes them down to: a tenth of the bound
// apart, so that it closes files in batches rather than one per open.
func highWater(max int) int64 { return int64(max) - int64(max)/20 }
func lowWater(max int) int64  { return int64(max) - int64(max)/20 - int64(max)/10 }

// signalCrowded asks Run to close the least recently written files (closeOldest).
func (m *Manager) signalCrowded() {
	select {
	case m.crowded <- struct{}{}:
	default:
	}
}

// noteOpenError signals Run when a write failed because the process is out of file
// descriptors (the bound was set above what connections leave free): the next try of
// the write, after the collector's pause, then finds descriptors closed for it.
func (m *Manager) noteOpenError(err error) {
	if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
		m.signalCrowded()
	}
}

// closeOldest closes the files of the least recently written Files until no more than
// lowWater(MaxOpenFiles) are open (or, after a failed open, a tenth of those open),
// each as an idle close does: the next write reopens it. A File written since it was
// picked keeps its file.
func (m *Manager) closeOldest() {
	type cand struct {
		f    *File
		last int64
	}
	m.mu.Lock()
	var open []cand
	for _, f := range m.open {
		if f == nil {
			continue
		}
		if last := f.lastOut.Load(); last != 0 {
			open = append(open, cand{f, last})
		}
	}
	m.mu.Unlock()
	target := int64(len(open)) - int64(len(open))/10
	if max := m.cfg.MaxOpenFiles; max > 0 {
		target = min(target, lowWater(max))
	}
	excess := int(m.openFiles.Load() - target)
	if excess <= 0 {
		return
	}
	slices.SortFunc(open, func(a, b cand) int { return cmp.Compare(a.last, b.last) })
	closed := 0
	for _, c := range open {
		if closed >= excess {
			break
		}
		if c.f.closeIfIdle(c.last) {
			closed++
			m.met.limitCloses.Inc()
		}
	}
	if closed > 0 && !m.crowdWarned {
		m.crowdWarned = true
		m.log.Warn("more log files are written than kubelogd may hold open; the least recently written are closed and reopened by their next line",
			"maxOpenFiles", m.cfg.MaxOpenFiles, "closed", closed)
	}
}
