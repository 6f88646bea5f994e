package sink

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeClock is an injectable Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{t: time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newTestManager returns a Manager on a fresh directory (unless cfg.Dir is set) that is
// closed when the test ends.
func newTestManager(t testing.TB, cfg Config) *Manager {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	m, err := NewManager(cfg)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Manager.Close: %v", err)
		}
	})
	return m
}

func mustOpen(t testing.TB, m *Manager, key Key) *File {
	t.Helper()
	f, err := m.Open(key)
	if err != nil {
		t.Fatalf("Open(%v): %v", key, err)
	}
	return f
}

var testKey = Key{Namespace: "default", Pod: "web-0", Container: "app"}

// startInstance points f's cursor at a container instance, as the collector does before
// the instance's first line, and saves it.
func startInstance(t testing.TB, f *File) {
	t.Helper()
	f.Cursor().Reset("uid-1", "containerd://abc", 0)
	if err := f.SaveCursor(); err != nil {
		t.Fatal(err)
	}
}

// rec builds the i-th application record of a test stream; line defaults to "line <i>".
func rec(i int, line string) Record {
	t := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC).Add(time.Duration(i) * 7 * time.Millisecond)
	if line == "" {
		line = fmt.Sprintf("line %d", i)
	}
	return Record{Time: t, RawTime: []byte(t.Format(timeLayout)), Line: []byte(line)}
}

// fileSet returns the container's backups, oldest first, then the current file.
func fileSet(t testing.TB, dir string, key Key) []string {
	t.Helper()
	p, err := pathsFor(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	backups, err := listBackups(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, b := range slices.Backward(backups) {
		out = append(out, filepath.Join(p.dir, b.name))
	}
	return append(out, p.current)
}

// readContent returns a file's bytes, decompressing .gz files.
func readContent(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Ext(path) != gzExt {
		return data
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return plain
}

// allLines returns every line of the container's files in write order, checking that
// each file holds whole lines only.
func allLines(t testing.TB, dir string, key Key) []string {
	t.Helper()
	var lines []string
	for _, path := range fileSet(t, dir, key) {
		data := readContent(t, path)
		if len(data) > 0 && data[len(data)-1] != '\n' {
			t.Errorf("%s does not end in a newline", path)
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}

func mode(t testing.TB, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}
