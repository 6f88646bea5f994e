package sink

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestPathValidation(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		key  Key
		ok   bool
	}{
		{"plain", Key{"default", "web-0", "app"}, true},
		{"pod with dots", Key{"kube-system", "coredns.abc-12", "coredns"}, true},
		{"longest label", Key{strings.Repeat("n", 63), "p", "c"}, true},
		{"parent namespace", Key{"..", "p", "c"}, false},
		{"dot pod", Key{"ns", ".", "c"}, false},
		{"escape in pod", Key{"ns", "../x", "c"}, false},
		{"escape in container", Key{"ns", "p", "../../etc/passwd"}, false},
		{"slash", Key{"a/b", "p", "c"}, false},
		{"backslash", Key{"ns", `a\b`, "c"}, false},
		{"absolute", Key{"/etc", "p", "c"}, false},
		{"NUL", Key{"ns", "p", "c\x00"}, false},
		{"empty namespace", Key{"", "p", "c"}, false},
		{"empty pod", Key{"ns", "", "c"}, false},
		{"empty container", Key{"ns", "p", ""}, false},
		{"upper case", Key{"ns", "Pod", "c"}, false},
		{"hidden container", Key{"ns", "p", ".c"}, false},
		{"leading dash", Key{"ns", "p", "-c"}, false},
		{"dot in namespace", Key{"a.b", "p", "c"}, false},
		{"dot in container", Key{"ns", "p", "c.log"}, false},
		{"label too long", Key{"ns", "p", strings.Repeat("c", 64)}, false},
		{"space", Key{"ns", "p q", "c"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := pathsFor(dir, tc.key)
			if (err == nil) != tc.ok {
				t.Fatalf("pathsFor(%q) error = %v, want ok %v", tc.key, err, tc.ok)
			}
			if err != nil {
				return
			}
			if rel, err := filepath.Rel(dir, p.current); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s is not under %s", p.current, dir)
			}
			if want := filepath.Join(dir, tc.key.Namespace, tc.key.Pod, tc.key.Container+".log"); p.current != want {
				t.Errorf("path %s, want %s", p.current, want)
			}
		})
	}
}

func TestOpenRefusesBadNames(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir})
	if _, err := m.Open(Key{"..", "..", "x"}); err == nil || !strings.Contains(err.Error(), "invalid namespace name") {
		t.Errorf("Open with \"..\": %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(dir))
	for _, e := range entries {
		if e.Name() == "x.log" {
			t.Error("a file was created outside the output directory")
		}
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	m1, err := NewManager(Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewManager(Config{Dir: dir})
	want := fmt.Sprintf("output directory %s is in use by another kubelogd (lock %s is held)", dir, filepath.Join(dir, lockFileName))
	if err == nil || err.Error() != want {
		t.Fatalf("second NewManager: %v, want %q", err, want)
	}
	// Another process is refused the same way.
	if os.Getenv("SINK_LOCK_CHILD") == "" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestLockChild$")
		cmd.Env = append(os.Environ(), "SINK_LOCK_CHILD="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("child process: %v\n%s", err, out)
		}
	}
	if err := m1.Close(); err != nil {
		t.Fatal(err)
	}
	m2, err := NewManager(Config{Dir: dir})
	if err != nil {
		t.Fatalf("NewManager after Close: %v", err)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestLockChild runs in a child process of TestLock.
func TestLockChild(t *testing.T) {
	dir := os.Getenv("SINK_LOCK_CHILD")
	if dir == "" {
		t.Skip("only run by TestLock")
	}
	if _, err := NewManager(Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use by another kubelogd") {
		t.Fatalf("NewManager in another process: %v", err)
	}
}

func TestNewManagerErrors(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		cfg        Config
	}{
		{"no dir", "set Config.Dir", Config{}},
		{"dir is a file", notDir + " exists and is not a directory", Config{Dir: notDir}},
		{"below a file", "creating output directory " + notDir + "/sub", Config{Dir: notDir + "/sub"}},
		{"negative", "max backups must not be negative", Config{Dir: t.TempDir(), MaxBackups: -1}},
		{"line too long", "max line bytes 2000000 is too large", Config{Dir: t.TempDir(), MaxSizeMB: 1, MaxLineBytes: 2000000}},
		{"json line too long", "max line bytes 500000 is too large", Config{Dir: t.TempDir(), MaxSizeMB: 1, MaxLineBytes: 500000, Format: FormatJSON}},
		{"bad format", "unknown log format", Config{Dir: t.TempDir(), Format: 7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := NewManager(tc.cfg)
			if err == nil {
				_ = m.Close()
				t.Fatal("NewManager succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestMaxLineBytesDefaultFits(t *testing.T) {
	for _, format := range []Format{FormatTimestamped, FormatRaw, FormatJSON} {
		s, err := Config{Dir: "/x", MaxSizeMB: 1, Format: format}.complete()
		if err != nil {
			t.Fatal(err)
		}
		factor, fixed := s.partBound()
		if got := factor*int64(s.MaxLineBytes) + fixed; got >= s.maxBytes || s.MaxLineBytes <= 0 {
			t.Errorf("%v: max line bytes %d encodes to up to %d bytes, max size %d", format, s.MaxLineBytes, got, s.maxBytes)
		}
	}
}

func TestOpenTwice(t *testing.T) {
	m := newTestManager(t, Config{})
	f := mustOpen(t, m, testKey)
	if _, err := m.Open(testKey); err == nil || !strings.Contains(err.Error(), "already open") {
		t.Errorf("second Open: %v", err)
	}
	if err := m.Close(); err == nil || !strings.Contains(err.Error(), "1 files still open") {
		t.Errorf("Manager.Close with an open file: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Open(testKey); err == nil {
		t.Error("Open after Manager.Close succeeded")
	}
	// newTestManager's cleanup closes m again, which now releases the lock.
}

// TestGoroutinesBoundedByOpenFiles proves that lumberjack's goroutine per Logger does
// not grow with the number of containers ever written: Loggers are reused, so the count
// depends only on how many files were open at once.
func TestGoroutinesBoundedByOpenFiles(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 6,000 files")
	}
	const atOnce = 16
	m := newTestManager(t, Config{})
	opened := 0
	phase := func(files int) int {
		t.Helper()
		for opened < files {
			var batch []*File
			for range atOnce {
				key := Key{Namespace: "ns", Pod: fmt.Sprintf("pod-%d", opened), Container: "c"}
				opened++
				f := mustOpen(t, m, key)
				if err := f.Write(rec(opened, "")); err != nil {
					t.Fatal(err)
				}
				if err := f.Flush(); err != nil { // opens the file in lumberjack
					t.Fatal(err)
				}
				batch = append(batch, f)
			}
			for _, f := range batch {
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
			}
		}
		return runtime.NumGoroutine()
	}
	before := runtime.NumGoroutine()
	after2000 := phase(2000)
	after6000 := phase(6000)
	if after2000 != after6000 {
		t.Errorf("goroutines grew with files ever opened: %d after 2,000 files, %d after 6,000", after2000, after6000)
	}
	if after6000-before > atOnce {
		t.Errorf("%d goroutines added for at most %d files open at once", after6000-before, atOnce)
	}
	if m.loggers != atOnce {
		t.Errorf("%d lumberjack Loggers created, want %d", m.loggers, atOnce)
	}
	t.Logf("goroutines: %d before, %d after 2,000 files, %d after 6,000", before, after2000, after6000)
}

// TestConcurrentFiles has many owners open, write and close files at once, so pooled
// Loggers pass between goroutines and files; -race checks the hand-over and each file
// must hold exactly its own lines.
func TestConcurrentFiles(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, maxSizeBytes: 4096})
	const owners, rounds, lines = 8, 25, 40
	errs := make(chan error, owners)
	for g := range owners {
		go func() {
			errs <- func() error {
				for r := range rounds {
					key := Key{Namespace: "ns", Pod: fmt.Sprintf("pod-%d", g), Container: fmt.Sprintf("c-%d", r)}
					f, err := m.Open(key)
					if err != nil {
						return err
					}
					for i := range lines {
						if err := f.Write(Record{Line: []byte(fmt.Sprintf("%s %d %s", key, i, strings.Repeat("w", 100)))}); err != nil {
							return err
						}
						if i%7 == 0 {
							if err := f.Flush(); err != nil {
								return err
							}
						}
					}
					if err := f.Close(); err != nil {
						return err
					}
				}
				return nil
			}()
		}()
	}
	for range owners {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for g := range owners {
		for r := range rounds {
			key := Key{Namespace: "ns", Pod: fmt.Sprintf("pod-%d", g), Container: fmt.Sprintf("c-%d", r)}
			got := allLines(t, dir, key)
			if len(got) != lines {
				t.Fatalf("%s holds %d lines, want %d", key, len(got), lines)
			}
			for i, l := range got {
				if want := fmt.Sprintf("%s %d ", key, i); !strings.HasPrefix(l, want) {
					t.Fatalf("%s line %d is %.40q, want it to start with %q", key, i, l, want)
				}
			}
		}
	}
	if m.loggers > owners {
		t.Errorf("%d Loggers for %d concurrent owners", m.loggers, owners)
	}
}

// TestConcurrentPodContainers opens the containers of a few pods all at once, each from
// its own goroutine, with every save synced: the pod directory is created once, every
// container is recorded as opened there, and the directory fsyncs they share leave
// cursors that resume every file exactly.
func TestConcurrentPodContainers(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, CursorInterval: time.Nanosecond, SyncInterval: time.Nanosecond})
	const pods, containers, lines = 3, 6, 5
	key := func(p, c int) Key {
		return Key{Namespace: "ns", Pod: fmt.Sprintf("pod-%d", p), Container: fmt.Sprintf("c-%d", c)}
	}
	var wg sync.WaitGroup
	errs := make(chan error, pods*containers)
	for p := range pods {
		for c := range containers {
			wg.Go(func() {
				f, err := m.Open(key(p, c))
				if err != nil {
					errs <- err
					return
				}
				f.Cursor().Reset("uid", "containerd://abc", 0)
				err = f.SaveCursor()
				for i := 0; i < lines && err == nil; i++ {
					if err = f.Write(rec(i, "")); err == nil {
						err = f.Flush()
					}
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				errs <- err
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for p := range pods {
		st := m.dirs[filepath.Join(dir, "ns", fmt.Sprintf("pod-%d", p))]
		if !st.created || len(st.opened) != containers {
			t.Errorf("pod-%d directory %+v, want created here with %d containers opened", p, st, containers)
		}
		for c := range containers {
			f := mustOpen(t, m, key(p, c))
			if r := f.Recovered(); !r.HadCursor || r.TruncatedBytes != 0 || f.Cursor().Lines != lines {
				t.Errorf("%s opened again: %+v, %d lines; want its cursor of %d lines, nothing cut", key(p, c), r, f.Cursor().Lines, lines)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}
}
