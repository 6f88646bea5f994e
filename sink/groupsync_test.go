package sink

import (
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestFSBarrierGroups: saves that ask for a sync while one runs share the next one, and
// every caller returns only after a sync that began after its call has returned — the
// sync that ran when it asked may have missed its writes.
func TestFSBarrierGroups(t *testing.T) {
	b := newFSBarrier(t.TempDir())
	if !b.grouped() {
		t.Skip("the test directory's file system is not one syncfs is used on")
	}
	defer b.close()
	var begun, finishedOf atomic.Uint64 // syncs begun; the number of the last one finished
	b.syncfs = func(*os.File) error {
		n := begun.Add(1)
		time.Sleep(5 * time.Millisecond)
		finishedOf.Store(n)
		return nil
	}
	const callers = 64
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			before := begun.Load()
			if err := b.sync(); err != nil {
				t.Error(err)
			}
			if got := finishedOf.Load(); got <= before {
				t.Errorf("returned after sync %d, which began before the call (%d had begun)", got, before)
			}
		}()
	}
	wg.Wait()
	if n := begun.Load(); n == 0 || n >= callers {
		t.Errorf("%d syncs for %d concurrent callers, want at least 1 and fewer than %d", n, callers, callers)
	}
}

// TestFSBarrierError: a failed syncfs fails the saves waiting for it, and the next one
// is tried again.
func TestFSBarrierError(t *testing.T) {
	b := newFSBarrier(t.TempDir())
	if !b.grouped() {
		t.Skip("the test directory's file system is not one syncfs is used on")
	}
	defer b.close()
	eio := errors.New("input/output error")
	fail := true
	b.syncfs = func(*os.File) error {
		if fail {
			return eio
		}
		return nil
	}
	if err := b.sync(); !errors.Is(err, eio) {
		t.Fatalf("sync = %v, want %v", err, eio)
	}
	fail = false
	if err := b.sync(); err != nil {
		t.Fatalf("sync after the error = %v, want nil", err)
	}
}

// TestPerFileSync runs the tests of what is synced, and in which order, with the syncs
// file by file that file systems without a trusted syncfs get (this one has one).
func TestPerFileSync(t *testing.T) {
	perFileSync = true
	defer func() { perFileSync = false }()
	for _, test := range []struct {
		name string
		run  func(*testing.T)
	}{
		{"CursorOutgrowsSlot", TestCursorOutgrowsSlot},
		{"CursorKeepsSyncedCopy", TestCursorKeepsSyncedCopy},
		{"CursorSyncOrder", TestCursorSyncOrder},
		{"DirSyncErrors", TestDirSyncErrors},
		{"PodDirSyncShared", TestPodDirSyncShared},
		{"NewContainerCursorSaves", TestNewContainerCursorSaves},
		{"CursorCreatedInPlace", TestCursorCreatedInPlace},
		{"NewFilesInCreatedDir", TestNewFilesInCreatedDir},
	} {
		t.Run(test.name, func(t *testing.T) {
			if newFSBarrier(t.TempDir()).grouped() {
				t.Fatal("perFileSync is set, but the barrier is a group one")
			}
			test.run(t)
		})
	}
}
