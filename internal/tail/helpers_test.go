package tail

import (
	"bytes"
	"compress/gzip"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kubelogd/kubelogd/internal/layout"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// TestMain fails the package if any test leaves a goroutine behind: a follow must stop
// cleanly, fsnotify's reader included.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// t0 is the time the fixtures' lines are relative to.
var t0 = time.Date(2026, 11, 27, 3, 0, 0, 0, time.UTC)

// at returns t0 plus a number of milliseconds.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// stamp formats a time as the kubelet does.
func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z07:00") }

// tl is a timestamped line at t0 + ms.
func tl(ms int, msg string) string { return stamp(at(ms)) + " " + msg }

// backupName is lumberjack's name for a backup of container rotated at t.
func backupName(container string, t time.Time) string {
	return container + "-" + t.UTC().Format(layout.BackupTimeLayout) + ".log"
}

// writeLines writes lines, each followed by a newline, to root/rel.
func writeLines(t testing.TB, root, rel string, lines ...string) string {
	t.Helper()
	var b strings.Builder
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return writeFile(t, root, rel, b.String())
}

func writeFile(t testing.TB, root, rel, content string) string {
	t.Helper()
	path := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if strings.HasSuffix(rel, ".gz") {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		_, _ = zw.Write([]byte(content))
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		content = buf.String()
	}
	if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
		t.Fatal(err)
	}
	return path
}

func appendFile(t testing.TB, path, content string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(content); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeMeta(t testing.TB, root, ns, pod, node string, labels map[string]string) {
	t.Helper()
	if err := layout.WriteMeta(root, layout.PodMeta{UID: "uid-" + pod, Namespace: ns, Pod: pod, Labels: labels, Node: node, FirstSeen: t0, LastSeen: t0}); err != nil {
		t.Fatal(err)
	}
}

// logBuffer collects warnings.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// run runs Run to completion and returns its output and warnings.
func run(t *testing.T, cfg Config) (out, warnings string, err error) {
	t.Helper()
	var w bytes.Buffer
	var logs logBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	err = Run(ctx, cfg, &w)
	return w.String(), logs.String(), err
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (-update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// lines joins lines with a newline after each, as output is compared.
func lines(ls ...string) string {
	if len(ls) == 0 {
		return ""
	}
	return strings.Join(ls, "\n") + "\n"
}

// syncBuffer is an output written by a follower while a test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor polls until the output contains want, or fails the test.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %q; output so far:\n%s", want, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func mustf(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
