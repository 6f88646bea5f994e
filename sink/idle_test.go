package sink

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// fdCount counts the process's open file descriptors.
func fdCount(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count file descriptors: %v", err)
	}
	return len(entries)
}

// TestIdleCloseReleasesFDs opens many quiet containers and checks that their
// descriptors are gone after IdleClose, and that writing on across idle closes,
// reopens and rotations keeps every line exactly once.
func TestIdleCloseReleasesFDs(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, Now: clock.Now, IdleClose: 5 * time.Minute, maxSizeBytes: 2000, Registerer: reg})
	const n = 50
	var files []*File
	sent := make(map[Key][]string)
	write := func(f *File, lines int) {
		t.Helper()
		for range lines {
			line := fmt.Sprintf("%s %03d %s", f.key.Pod, len(sent[f.key]), strings.Repeat("i", 60))
			if err := f.Write(Record{Line: []byte(line)}); err != nil {
				t.Fatal(err)
			}
			sent[f.key] = append(sent[f.key], line)
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
	}

	base := fdCount(t)
	for i := range n {
		before := fdCount(t)
		f := mustOpen(t, m, Key{Namespace: "ns", Pod: fmt.Sprintf("quiet-%d", i), Container: "c"})
		files = append(files, f)
		if got := fdCount(t); got != before {
			t.Fatalf("Open holds %d descriptors before the first write", got-before)
		}
		write(f, 1)
	}
	if got := fdCount(t) - base; got < n {
		t.Fatalf("%d descriptors for %d files written: the test counts the wrong thing", got, n)
	}
	if got := testutil.ToFloat64(m.met.filesOpen); got != n {
		t.Errorf("kubelogd_files_open = %v, want %d", got, n)
	}

	clock.Advance(5*time.Minute - time.Second)
	m.closeIdle(clock.Now())
	if got := fdCount(t) - base; got < n {
		t.Errorf("files closed before IdleClose: %d descriptors left", got)
	}
	clock.Advance(time.Second)
	m.closeIdle(clock.Now())
	if got := fdCount(t) - base; got > 0 {
		t.Errorf("%d descriptors left after IdleClose, want none", got)
	}
	if got := testutil.ToFloat64(m.met.idleCloses); got != n {
		t.Errorf("kubelogd_idle_closes_total = %v, want %d", got, n)
	}
	if got := testutil.ToFloat64(m.met.filesOpen); got != 0 {
		t.Errorf("kubelogd_files_open = %v after idle close, want 0", got)
	}

	// Write on: each round reopens, rotates now and then, and goes idle again.
	for range 6 {
		for _, f := range files {
			write(f, 7)
		}
		clock.Advance(6 * time.Minute)
		m.closeIdle(clock.Now())
		if got := fdCount(t) - base; got > 0 {
			t.Fatalf("%d descriptors left after IdleClose", got)
		}
	}
	for _, f := range files {
		if f.Stats().Rotations == 0 {
			t.Fatalf("%s never rotated: the test does not mix rotations in", f.key)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := allLines(t, dir, f.key); !slices.Equal(got, sent[f.key]) {
			t.Fatalf("%s holds %d lines, want the %d written, each once", f.key, len(got), len(sent[f.key]))
		}
		if pc := readCursorFile(t, f); pc.Lines != int64(len(sent[f.key])) {
			t.Errorf("%s: cursor counts %d lines, %d written", f.key, pc.Lines, len(sent[f.key]))
		}
		g := mustOpen(t, m, f.key)
		if r := g.Recovered(); r.TruncatedBytes != 0 || r.ShortBy != 0 {
			t.Errorf("%s: reopening after idle closes recovered %+v", f.key, r)
		}
		if err := g.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if m.loggers > n {
		t.Errorf("%d Loggers created for at most %d files open at once", m.loggers, n)
	}
}

// TestOpenFilesBounded: with more containers writing than MaxOpenFiles, the files open
// stay within the bound — the least recently written are closed, in batches, before
// IdleClose — and every line is written once across the closes and reopens. A failed
// open (EMFILE) closes a tenth of the files open even without a bound.
func TestOpenFilesBounded(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	const bound, n = 20, 60
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, Now: clock.Now, MaxOpenFiles: bound})
	sent := map[Key][]string{}
	var files []*File
	write := func(f *File) {
		t.Helper()
		line := fmt.Sprintf("%s %03d", f.key.Pod, len(sent[f.key]))
		if err := f.Write(Record{Line: []byte(line)}); err != nil {
			t.Fatal(err)
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		sent[f.key] = append(sent[f.key], line)
		clock.Advance(time.Second)
		select { // what Run does when signalled
		case <-m.crowded:
			m.closeOldest()
		default:
		}
		if open := m.openFiles.Load(); open > highWater(bound) {
			t.Fatalf("%d files open, over the high-water mark %d of the bound %d", open, highWater(bound), bound)
		}
	}
	for i := range n {
		f := mustOpen(t, m, Key{Namespace: "ns", Pod: fmt.Sprintf("busy-%02d", i), Container: "c"})
		files = append(files, f)
		write(f)
	}
	for range 3 {
		for _, f := range slices.Backward(files) {
			write(f)
		}
	}
	closes := testutil.ToFloat64(m.met.limitCloses)
	if closes == 0 {
		t.Fatal("no file closed for the bound: the test does not reach it")
	}
	if idle := testutil.ToFloat64(m.met.idleCloses); idle != 0 {
		t.Errorf("kubelogd_idle_closes_total = %v; nothing was idle for IdleClose", idle)
	}
	// The file written last is open; the oldest write's was closed.
	if files[0].lg == nil || files[n-1].lg != nil {
		t.Errorf("files[0] (written last) open %v, files[%d] (written least recently) open %v; want the least recently written closed",
			files[0].lg != nil, n-1, files[n-1].lg != nil)
	}

	m.noteOpenError(&os.PathError{Op: "open", Path: "x", Err: syscall.EMFILE})
	m.cfg.MaxOpenFiles = -1
	before := m.openFiles.Load()
	select {
	case <-m.crowded:
		m.closeOldest()
	default:
		t.Fatal("EMFILE did not ask Run to close files")
	}
	if after := m.openFiles.Load(); after != before-before/10 {
		t.Errorf("after EMFILE: %d files open, was %d; want a tenth closed", after, before)
	}

	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		if got := allLines(t, dir, f.key); !slices.Equal(got, sent[f.key]) {
			t.Fatalf("%s holds %q, want %q", f.key, got, sent[f.key])
		}
	}
	t.Logf("%v files closed for the bound over %d writes to %d files", closes, 4*n, n)
}

// TestIdleCloseRacesWriter closes the File's descriptor as often as it can while its
// owner writes, rotates and writes lines longer than a file; -race checks the locking
// and the files must hold every line once.
func TestIdleCloseRacesWriter(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, MaxLineBytes: 300, maxSizeBytes: 1500})
	f := mustOpen(t, m, testKey)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			m.closeIdle(time.Now().Add(time.Hour)) // everything counts as idle
		}
	})
	var sent []string
	for i := range 1500 {
		line := fmt.Sprintf("%04d %s", i, strings.Repeat("r", i*31%200))
		if i%300 == 150 {
			line += strings.Repeat("L", 4000) // spans files
		}
		if err := f.Write(Record{Line: []byte(line)}); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, line)
		if i%3 == 0 {
			if err := f.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stop)
	wg.Wait()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if f.Stats().Rotations < 10 || testutil.ToFloat64(m.met.idleCloses) == 0 {
		t.Fatalf("%d rotations, %v idle closes: the test exercises too little", f.Stats().Rotations, testutil.ToFloat64(m.met.idleCloses))
	}
	if got := decodeLines(t, FormatRaw, allLines(t, dir, testKey)); !slices.Equal(got, sent) {
		t.Errorf("files hold %d lines, want the %d written, each once", len(got), len(sent))
	}
}

// TestCurrentDeletedWhileIdle deletes the current file while it is closed for
// idleness: the next write recreates it with kubelogd's mode (lumberjack alone would
// make it 0600), and the cursor describes the new file. TestReadOnly covers a file
// made read-only meanwhile.
func TestCurrentDeletedWhileIdle(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw})
	f := mustOpen(t, m, testKey)
	put := func(line string) {
		t.Helper()
		if err := f.Write(Record{Line: []byte(line)}); err != nil {
			t.Fatal(err)
		}
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	put("first")
	m.closeIdle(time.Now().Add(time.Hour))
	if err := os.Remove(f.Path()); err != nil {
		t.Fatal(err)
	}
	put("after deletion")
	if got := mode(t, f.Path()); got != fileMode {
		t.Errorf("recreated file has mode %03o", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	// The File marks the removal itself, before the line written to the new file.
	if got := allLines(t, dir, testKey); len(got) != 2 || !strings.HasPrefix(got[0], markerPrefix+"gap: ") || !strings.Contains(got[0], "outside kubelogd") || got[1] != "after deletion" {
		t.Errorf("file holds %q, want the marker of the removal, then the line after it", got)
	}
	f = mustOpen(t, m, testKey)
	if r := f.Recovered(); r.TruncatedBytes != 0 || r.ShortBy != 0 {
		t.Errorf("reopening recovered %+v: the cursor does not match the recreated file", r)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestRunClosesIdleFiles runs the real goroutine: it closes idle files on its own, the
// next line reopens the file, Close refuses while Run runs, and Run returns on cancel.
func TestRunClosesIdleFiles(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, IdleClose: 20 * time.Millisecond, SweepInterval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("Run to start", func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.running })
	if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("second Run: %v", err)
	}

	f := mustOpen(t, m, testKey)
	var sent []string
	for round := range 3 {
		line := fmt.Sprintf("round %d", round)
		if err := f.Write(Record{Line: []byte(line)}); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, line)
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		waitFor("the idle close", func() bool { return f.lastOut.Load() == 0 })
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := allLines(t, dir, testKey); !slices.Equal(got, sent) {
		t.Errorf("file holds %q, want %q", got, sent)
	}
	if err := m.Close(); err == nil || !strings.Contains(err.Error(), "Run has not returned") {
		t.Errorf("Close while Run runs: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if err := m.Close(); err != nil {
		t.Errorf("Close after Run returned: %v", err)
	}
	if err := m.Run(t.Context()); err == nil {
		t.Error("Run after Close succeeded")
	}
}
