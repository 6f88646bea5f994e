package sink

import (
	"os"
	"sync"
)

// fsBarrier makes what was written to the output directory's file system durable for many
// containers at once. A synced cursor save needs the data it covers and the names of its
// files (the pod directory) on disk before the cursor: one fsync of the file and one of
// the directory each. Thousands of containers that write make those syncs every
// SyncInterval, and the containers found at start all make their first within a second.
// Where the file system is known to implement syncfs(2) fully, one syncfs covers every
// container that asked while the previous one ran (group commit): a save waits for a
// syncfs that began after it asked, which covers everything written before. The cursor's
// own fdatasync stays per file; its slot bookkeeping needs to know that copy is durable.
//
// Elsewhere (another file system, another OS) fd is nil and saves sync file by file.
type fsBarrier struct {
	fd *os.File // the output directory, on the file system syncfs syncs; nil: per file

	mu   sync.Mutex
	cond *sync.Cond
	// started numbers the syncfs calls begun, finished the last one that returned (err its
	// result); running is set while one is in progress.
	started, finished uint64
	running           bool
	err               error
	syncfs            func(*os.File) error // syncFS; a test counts the calls
}

// newFSBarrier returns the barrier of the file system that holds dir: a group one where
// syncfs is known to make every file's data and every directory change durable, else
// the per-file fallback.
func newFSBarrier(dir string) *fsBarrier {
	b := &fsBarrier{syncfs: syncFS}
	b.cond = sync.NewCond(&b.mu)
	if !perFileSync {
		b.fd = openSyncFS(dir)
	}
	return b
}

// perFileSync, set by tests, makes every barrier the per-file fallback, which the tests'
// file system would not get.
var perFileSync bool

// grouped reports whether saves sync through the barrier rather than file by file.
func (b *fsBarrier) grouped() bool { return b != nil && b.fd != nil }

// sync returns once a syncfs that began after the call has returned, with its error.
// Callers that arrive while one runs share the next one.
func (b *fsBarrier) sync() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	want := b.started + 1 // the one running, if any, began before this call
	for b.finished < want {
		if b.running {
			b.cond.Wait()
			continue
		}
		b.running = true
		b.started++
		n := b.started
		b.mu.Unlock()
		err := b.syncfs(b.fd)
		b.mu.Lock()
		b.running = false
		b.finished, b.err = n, err
		b.cond.Broadcast()
	}
	return b.err
}

// close releases the directory's descriptor.
func (b *fsBarrier) close() {
	if b.grouped() {
		_ = b.fd.Close()
		b.fd = nil
	}
}
