package sink

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// nobody is the user the permission tests run as when the tests run as root, whom
// file permissions do not stop.
const nobody = 65534

// asUnprivileged reports whether the calling test may go on. As root, it instead runs
// the test in a copy of the test binary as nobody, reports the child's result and
// returns false.
func asUnprivileged(t *testing.T) bool {
	t.Helper()
	if os.Geteuid() != 0 {
		return true
	}
	work, err := os.MkdirTemp("", "sink-unprivileged-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(work) })
	for d := filepath.Dir(work); d != "/"; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm()&0o001 == 0 {
			t.Skipf("%s is not searchable by other users; cannot run as nobody", d)
		}
	}
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(work, nobody, nobody); err != nil {
		t.Skipf("cannot hand a directory to nobody: %v", err)
	}
	bin := filepath.Join(work, "sink.test")
	copyFile(t, os.Args[0], bin)
	cmd := exec.Command(bin, "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "TMPDIR="+work, "HOME="+work)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err != nil && !errors.As(err, &exit):
		t.Skipf("cannot run the test as nobody: %v", err)
	case err != nil:
		t.Errorf("as nobody: %v\n%s", err, out)
	case !strings.Contains(string(out), "--- PASS: "+t.Name()):
		t.Errorf("as nobody the test did not pass:\n%s", out)
	default:
		t.Logf("ran as nobody:\n%s", out)
	}
	return false
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestReadOnly makes the pod directory and then the current file read-only while a File
// writes, and checks that every failure is an error naming the path that errors.Is
// recognises as a permission error, that a failed Write is not accepted, that the saved
// cursor never covers unwritten data, and that after the permissions are repaired and
// a crash, resuming from the cursor yields every line exactly once.
func TestReadOnly(t *testing.T) {
	if !asUnprivileged(t) {
		return
	}
	clock := newFakeClock()
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, Now: clock.Now, CursorInterval: time.Second, maxSizeBytes: 2000})
	f := mustOpen(t, m, testKey)
	podDir := filepath.Dir(f.Path())
	var src []string
	for i := range 200 {
		src = append(src, fmt.Sprintf("%03d %s", i, strings.Repeat("o", 40)))
	}
	next := 0 // src[:next] were accepted by Write
	write := func(n int) error {
		t.Helper()
		for range n {
			if err := f.Write(Record{Line: []byte(src[next])}); err != nil {
				return err
			}
			next++
		}
		return nil
	}
	isPermission := func(err error, path string) {
		t.Helper()
		if !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), path) {
			t.Errorf("error %v: want a permission error naming %s", err, path)
		}
	}
	checkCursor := func(when string) {
		t.Helper()
		pc := readCursorFile(t, f)
		data, err := os.ReadFile(f.Path())
		if err != nil {
			t.Fatal(err)
		}
		if pc.Offset > int64(len(data)) || pc.Lines > int64(next) {
			t.Errorf("%s: saved cursor covers %d lines and %d bytes, but %d were accepted and the file has %d bytes",
				when, pc.Lines, pc.Offset, next, len(data))
		}
	}
	if err := write(10); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}

	// The directory and the cursor file turn read-only: data still reaches the open file,
	// but the cursor cannot be saved (it is written in place, so the directory alone would
	// not stop it), and a rotation is refused.
	if err := os.Chmod(podDir, 0o550); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.p.cursor, 0o440); err != nil {
		t.Fatal(err)
	}
	if err := write(5); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Second)
	err := f.Flush()
	isPermission(err, podDir)
	checkCursor("cursor save refused")
	accepted, lines := next, f.Cursor().Lines
	for range 100 {
		if err = write(1); err != nil {
			break
		}
	}
	isPermission(err, podDir)
	if f.Cursor().Lines != lines+int64(next-accepted) {
		t.Errorf("cursor counts %d lines, %d were accepted", f.Cursor().Lines, lines+int64(next-accepted))
	}
	checkCursor("rotation refused")
	if _, err := m.Open(Key{Namespace: testKey.Namespace, Pod: testKey.Pod, Container: "new"}); !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), podDir) {
		t.Errorf("Open in a read-only directory: %v", err)
	}

	// The directory is writable again, and another container's file read-only while
	// closed for idleness: the reopen fails with its name, and lumberjack does not
	// quietly start a new file.
	if err := os.Chmod(podDir, dirMode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(f.p.cursor, fileMode); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil {
		t.Fatalf("Flush after repairing the directory: %v", err)
	}
	checkCursor("directory repaired")
	other := Key{Namespace: testKey.Namespace, Pod: testKey.Pod, Container: "other"}
	g := mustOpen(t, m, other)
	if err := g.Write(Record{Line: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	if err := g.Flush(); err != nil {
		t.Fatal(err)
	}
	m.closeIdle(clock.Now().Add(time.Hour))
	if err := os.Chmod(g.Path(), 0o440); err != nil {
		t.Fatal(err)
	}
	// The next record opens the file again first (see File.reopen), and is refused.
	after := Record{Line: []byte("after")}
	isPermission(g.Write(after), g.Path())
	if got := fileSet(t, dir, other); len(got) != 1 {
		t.Errorf("a read-only current file was moved aside: %v", got)
	}
	if err := os.Chmod(g.Path(), fileMode); err != nil {
		t.Fatal(err)
	}
	if err := g.Write(after); err != nil {
		t.Fatal(err)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if got := allLines(t, dir, other); !slices.Equal(got, []string{"before", "after"}) {
		t.Errorf("%s holds %q", other, got)
	}
	// The cursor save, the rotation and the reopen; Open's failure is not a write's.
	if got := testutil.ToFloat64(m.met.writeErrors.WithLabelValues(reasonPermission)); got != 3 {
		t.Errorf("kubelogd_write_errors_total{reason=permission} = %v, want 3", got)
	}

	// A crash: the restarted File resumes from its cursor.
	if err := write(20); err != nil {
		t.Fatal(err)
	}
	crash(f)
	f = mustOpen(t, m, testKey)
	next = int(f.Cursor().Lines)
	if err := write(len(src) - next); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := allLines(t, dir, testKey); !slices.Equal(got, src) {
		t.Errorf("files hold %d lines, want the %d sent, each once", len(got), len(src))
	}
}

// TestRotateReadOnlyFile rotates a current file someone made read-only: lumberjack
// moves it aside but recreates it with its mode and then cannot open it. The Write
// reports that, and the next one goes on in a file with kubelogd's mode.
func TestRotateReadOnlyFile(t *testing.T) {
	if !asUnprivileged(t) {
		return
	}
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, maxSizeBytes: 1000})
	f := mustOpen(t, m, testKey)
	if err := f.Write(Record{Line: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	if err := f.Flush(); err != nil { // the descriptor stays open and writable
		t.Fatal(err)
	}
	if err := os.Chmod(f.Path(), 0o440); err != nil {
		t.Fatal(err)
	}
	sent := []string{"first"}
	failures := 0
	for i := 0; f.Stats().Rotations < 2; i++ {
		line := fmt.Sprintf("%02d %s", i, strings.Repeat("q", 50))
		for {
			err := f.Write(Record{Line: []byte(line)})
			if err == nil {
				break
			}
			if failures++; failures > 1 || !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), f.Path()) {
				t.Fatalf("Write: %v; want one permission error naming %s", err, f.Path())
			}
		}
		sent = append(sent, line)
	}
	if failures != 1 {
		t.Errorf("%d failed rotations, want 1", failures)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := allLines(t, dir, testKey); !slices.Equal(got, sent) {
		t.Errorf("files hold %d lines, want the %d sent, each once", len(got), len(sent))
	}
	if got := mode(t, f.Path()); got != fileMode {
		t.Errorf("current file has mode %03o", got)
	}
}
