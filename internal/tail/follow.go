package tail

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// rescanEvery is how many poll intervals pass between full rescans of the tree while
// following. Events normally announce every new directory and file; the rescan catches
// what an overflowing or unwatchable (inotify limit) tree did not announce.
const rescanEvery = 10

// followBufSize is the follower's initial read buffer; it grows for longer lines.
const followBufSize = 256 << 10

// follower keeps printing what is appended to the selected containers' current files,
// like tail -F for a whole tree: it survives rotations (the daemon renames the current
// file to a backup and creates a new one), and picks up pods and containers that
// appear later. It runs in one goroutine; fsnotify events only say where to look, and
// what to do is decided by comparing the file system with what is followed, so a lost
// or coalesced event delays a line by at most one poll interval (a new container's
// first lines by at most rescanEvery intervals).
type follower struct {
	p       *plan
	pr      *printer
	w       *fsnotify.Watcher // nil when inotify is unavailable: polling only
	root    string
	conts   map[string]*followed // by namespace/pod/container
	watched map[string]bool      // directories being watched
	// selected caches whether a pod (namespace/pod) is selected, so that the writes of
	// pods a --selector rejects cost no metadata read each. It is decided again when
	// the pod's metadata changes and on every rescan.
	selected map[string]bool
	// watchFailed is set once adding a watch failed (usually the inotify limit): a
	// warning is logged once, and the periodic rescan covers those directories.
	watchFailed bool
	b           batch
}

// followed is one container whose current file is followed.
type followed struct {
	c    *container
	info *streamInfo
	path string
	// f is the open current file, nil while there is none (mid-rotation, or the pod's
	// directory is gone). ino identifies it, off is where reading goes on.
	f   *os.File
	ino uint64
	off int64
	sc  chunkScanner
}

// follow runs the follower until ctx is cancelled. hands are the current files the
// history ended in; they are continued where it stopped. Every other container found is
// new since the history was scanned and is read from its beginning.
func (p *plan) follow(ctx context.Context, pr *printer, hands map[string]*handoff) error {
	f := &follower{p: p, pr: pr, root: p.cfg.Dir, conts: map[string]*followed{}, watched: map[string]bool{}, selected: map[string]bool{}}
	// Without inotify (its per-user instance limit, 128 by default, is easily used up
	// on a busy node) following still works, by polling: slower to notice, the same
	// result.
	var events chan fsnotify.Event
	var errs chan error
	rescanTicks := rescanEvery
	if w, err := newWatcher(p.cfg.noWatch); err != nil {
		p.log.Warn("cannot watch for file events, polling instead", "every", p.cfg.PollInterval, "err", err)
		rescanTicks = 1
	} else {
		f.w, events, errs = w, w.Events, w.Errors
	}
	f.b.data = make([]byte, 0, followBufSize)
	if p.cfg.bufSize > 0 {
		f.b.data = make([]byte, 0, p.cfg.bufSize)
	}
	defer func() {
		// Close the watcher first: it stops fsnotify's goroutine, which must not
		// outlive follow.
		if f.w != nil {
			_ = f.w.Close()
		}
		for _, fc := range f.conts {
			if fc.f != nil {
				fc.f.Close()
			}
		}
	}()
	for key, h := range hands {
		fc := f.newFollowed(h.c, h.info)
		fc.f, fc.off = h.f, h.off
		fc.sc.dec.format, fc.sc.lastKey = h.format, h.lastKey
		if st, err := h.f.Stat(); err == nil {
			fc.ino = inodeOf(st)
		}
		f.conts[key] = fc
	}
	f.rescan()
	if err := f.flush(); err != nil {
		return err
	}
	if p.cfg.following != nil {
		p.cfg.following()
	}
	ticker := time.NewTicker(p.cfg.PollInterval)
	defer ticker.Stop()
	for tick := 1; ; {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events: // nil, never ready, when polling
			if !ok {
				return nil
			}
			f.event(ev)
			// Handle what else is queued before flushing, so a burst of writes is
			// printed with one write to the output.
			for more := true; more; {
				select {
				case ev, ok := <-events:
					if !ok {
						return f.flush()
					}
					f.event(ev)
				default:
					more = false
				}
			}
		case err, ok := <-errs:
			if !ok {
				return nil
			}
			p.log.Warn("file events lost, rescanning", "err", err)
			f.rescan()
		case <-ticker.C:
			if tick%rescanTicks == 0 {
				f.rescan()
			} else {
				for _, fc := range f.conts {
					f.readNew(fc)
				}
			}
			tick++
		}
		if err := f.flush(); err != nil {
			return err
		}
	}
}

func newWatcher(disabled bool) (*fsnotify.Watcher, error) {
	if disabled {
		return nil, errors.New("disabled by a test")
	}
	return fsnotify.NewWatcher()
}

func (f *follower) flush() error {
	if err := f.pr.flush(); err != nil {
		return fmt.Errorf("writing output: %w", err)
	}
	return nil
}

func (f *follower) newFollowed(c *container, info *streamInfo) *followed {
	return &followed{
		c: c, info: info,
		path: filepath.Join(layout.PodDir(f.root, c.Namespace, c.Pod), layout.LogFileName(c.Name)),
		sc:   chunkScanner{f: &f.p.filter, dec: decoder{format: f.p.cfg.Format}},
	}
}

// watch adds a watch on dir once.
func (f *follower) watch(dir string) {
	if f.w == nil || f.watched[dir] {
		return
	}
	if err := f.w.Add(dir); err != nil {
		if !f.watchFailed && !isNotExist(err) {
			f.watchFailed = true
			f.p.log.Warn("cannot watch directory, relying on the periodic rescan", "dir", dir, "err", err)
		}
		return
	}
	f.watched[dir] = true
}

// rescan walks the whole tree: it reads what every followed file gained, then
// watches every selected directory and follows every selected container not followed
// yet (read in the same pass, after the known ones).
func (f *follower) rescan() {
	for key, fc := range f.conts {
		f.readNew(fc)
		if fc.f == nil {
			// Forget containers whose pod directory is gone (the daemon removes those of
			// deleted pods): a long follow must not accumulate them. Should the pod
			// come back, its directory's creation brings it back.
			if _, err := os.Stat(filepath.Dir(fc.path)); isNotExist(err) {
				delete(f.conts, key)
				delete(f.selected, fc.c.Namespace+"/"+fc.c.Pod)
			}
		}
	}
	f.watch(f.root)
	entries, err := os.ReadDir(f.root)
	if err != nil {
		f.p.log.Warn("cannot list output directory", "dir", f.root, "err", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			f.scanNamespace(e.Name())
		}
	}
}

func (f *follower) scanNamespace(ns string) {
	if ns[0] == '.' || !f.p.sel.namespace(ns) {
		return
	}
	dir := filepath.Join(f.root, ns)
	f.watch(dir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return // removed meanwhile
	}
	for _, e := range entries {
		if e.IsDir() {
			f.scanPod(ns, e.Name())
		}
	}
}

// scanPod watches a pod directory and follows its selected containers. It is called
// again when the pod's metadata changes, which may select it.
func (f *follower) scanPod(ns, pod string) {
	if pod[0] == '.' || !f.p.sel.namespace(ns) || !f.p.sel.podName(pod) {
		return
	}
	dir := filepath.Join(f.root, ns, pod)
	f.watch(dir)
	meta, ok := f.p.sel.podMeta(dir)
	f.selected[ns+"/"+pod] = ok
	if !ok {
		return
	}
	conts, err := scanPodDir(dir, ns, pod, f.p.sel.container)
	if err != nil {
		return
	}
	for _, c := range conts {
		c.meta = meta
		key := c.key()
		if f.conts[key] != nil || len(c.files) == 0 || !c.files[len(c.files)-1].current {
			continue
		}
		fc := f.newFollowed(c, newStreamInfo(c, f.p.cfg.Color))
		f.conts[key] = fc
		f.readNew(fc)
	}
}

// event acts on one file system event: it only says where to look.
func (f *follower) event(ev fsnotify.Event) {
	rel, err := filepath.Rel(f.root, ev.Name)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return
	}
	parts := strings.Split(rel, string(filepath.Separator))
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		delete(f.watched, ev.Name) // a removed directory's watch is gone with it
	}
	switch len(parts) {
	case 1:
		if ev.Has(fsnotify.Create) {
			f.scanNamespace(parts[0])
		}
	case 2:
		if ev.Has(fsnotify.Create) {
			f.scanPod(parts[0], parts[1])
		}
	case 3:
		ns, pod, name := parts[0], parts[1], parts[2]
		if name == layout.MetaFileName {
			f.scanPod(ns, pod)
			return
		}
		cont, _, ok := parseLogName(name)
		if !ok {
			return
		}
		if fc := f.conts[ns+"/"+pod+"/"+cont]; fc != nil {
			// A write, the rename of a rotation, the new current file or a new backup:
			// readNew works out which by looking at the files.
			f.readNew(fc)
			return
		}
		selected, known := f.selected[ns+"/"+pod]
		if (!known || selected) && f.p.sel.container(cont) && (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write)) {
			f.scanPod(ns, pod)
		}
	}
}

// readNew prints what fc's current file gained. When the name now points at another
// file (a rotation) or at none, the old file is read to its end first — the daemon
// renames it only after its last write, and the name is looked at before the old file
// is drained, so nothing written before the rename is missed — then any backup rotated
// after it that was never seen as the current file (two rotations between two looks),
// and then the new file from its beginning.
func (f *follower) readNew(fc *followed) {
	st, statErr := os.Stat(fc.path)
	if fc.f != nil {
		replaced := statErr != nil || inodeOf(st) != fc.ino
		if !replaced {
			if fst, err := fc.f.Stat(); err == nil && fst.Size() < fc.off {
				// Truncated: the daemon's crash recovery cut what no cursor covered, and
				// will write it again. Go on from the new end.
				fc.off = fst.Size()
			}
		}
		f.drain(fc, replaced)
		if !replaced {
			return
		}
		fc.f.Close()
		fc.f = nil
		f.readMissed(fc)
	}
	if statErr != nil {
		return // rotation in progress, or the pod's directory was removed
	}
	file, err := os.Open(fc.path)
	if err != nil {
		return
	}
	fst, err := file.Stat()
	if err != nil {
		file.Close()
		return
	}
	fc.f, fc.ino, fc.off = file, inodeOf(fst), 0
	if f.p.cfg.Format == layout.FormatAuto {
		fc.sc.dec.format = layout.FormatAuto // a new file: detect again
	}
	f.drain(fc, false)
}

// readMissed prints the backups of fc's container rotated after the file just left
// (found by its inode among the plain backups), which were current files the follower
// never saw. If that file is not found (already compressed or removed), nothing is
// read: printing a line twice would be worse than the rare loss.
func (f *follower) readMissed(fc *followed) {
	dir := filepath.Dir(fc.path)
	conts, err := scanPodDir(dir, fc.c.Namespace, fc.c.Pod, func(name string) bool { return name == fc.c.Name })
	if err != nil || len(conts) == 0 {
		return
	}
	var backups []logFile
	for _, lf := range conts[0].files {
		if !lf.current {
			backups = append(backups, lf)
		}
	}
	own := -1
	for i := len(backups) - 1; i >= 0 && own < 0; i-- {
		if st, err := os.Stat(backups[i].path); err == nil && !backups[i].gz && inodeOf(st) == fc.ino {
			own = i
		}
	}
	if own < 0 {
		return
	}
	for _, lf := range backups[own+1:] {
		of, err := open(lf)
		if err != nil {
			continue
		}
		if f.p.cfg.Format == layout.FormatAuto {
			fc.sc.dec.format = detectFormat(of.head(lf.gz))
		}
		f.printFrom(fc, of.r, true)
		of.f.Close()
	}
}

// drain prints the complete lines of fc's file from fc.off on. final also takes an
// unterminated last line: the file was rotated away and will not grow.
func (f *follower) drain(fc *followed, final bool) {
	fc.off += f.printFrom(fc, io.NewSectionReader(fc.f, fc.off, 1<<62), final)
}

// printFrom prints the selected lines of r and returns how many bytes it consumed:
// up to the last newline, or everything if final.
func (f *follower) printFrom(fc *followed, r io.Reader, final bool) int64 {
	b := &f.b
	var consumed int64
	carry := 0
	for {
		if carry == cap(b.data) {
			nb := make([]byte, carry, 2*cap(b.data)) // a line longer than the buffer
			copy(nb, b.data)
			b.data = nb
		}
		n, err := fill(r, b.data[:cap(b.data)], carry)
		if err != nil && !errors.Is(err, io.EOF) {
			f.p.log.Warn("cannot read log file", "path", fc.path, "err", err)
		}
		b.data, b.lines = b.data[:n], b.lines[:0]
		if fc.sc.dec.format == layout.FormatAuto {
			if n == 0 {
				return consumed
			}
			fc.sc.dec.format = detectFormat(b.data)
		}
		b.format = fc.sc.dec.format
		to := bytes.LastIndexByte(b.data, '\n') + 1
		if err != nil && final {
			to = n
		}
		fc.sc.scan(b, 0, to)
		for i := range b.lines {
			f.pr.line(fc.info, b, &b.lines[i])
		}
		consumed += int64(to)
		b.data = b.data[:copy(b.data, b.data[to:n])]
		carry = len(b.data)
		if err != nil {
			return consumed
		}
	}
}

// isNotExist reports a missing file or directory: files come and go under a reader,
// through rotation, retention and the sweep of deleted pods.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
