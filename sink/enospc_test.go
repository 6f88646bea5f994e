package sink

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a small tmpfs for a real disk-full test, or skips when it cannot.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root; TestWriteFailureSeam covers the same paths")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0750", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs (%v: %s); TestWriteFailureSeam covers the same paths", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill takes all free space of the file system at dir but keep bytes.
func fill(t *testing.T, dir string, keep int64) string {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "filler")
	free := int64(st.Bavail) * st.Bsize
	if err := os.WriteFile(path, make([]byte, max(0, free-keep)), 0o600); err != nil && !errors.Is(err, syscall.ENOSPC) {
		t.Fatal(err)
	}
	return path
}

func TestDiskFull(t *testing.T) {
	for _, tc := range []struct {
		name  string
		crash bool // after the disk filled up: die, restart, resume from the cursor
	}{
		{"retry after space is freed", false},
		{"crash while full", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := mountTmpfs(t, "512k")
			out := filepath.Join(dir, "out")
			m := newTestManager(t, Config{Dir: out, Format: FormatRaw})
			f := mustOpen(t, m, testKey)
			filler := fill(t, dir, 12<<10)

			var sent []string
			var werr error
			for i := 0; i < 10000 && werr == nil; i++ {
				r := rec(i, fmt.Sprintf("%05d %s", i, strings.Repeat("f", 300)))
				if err := f.Write(r); err != nil {
					t.Fatalf("Write: %v", err) // buffered: the buffer is far from full
				}
				sent = append(sent, string(r.Line))
				werr = f.Flush()
			}
			if !errors.Is(werr, syscall.ENOSPC) {
				t.Fatalf("Flush on a full disk: %v, want ENOSPC", werr)
			}
			if !strings.Contains(werr.Error(), f.Path()) {
				t.Errorf("error %q does not name %s", werr, f.Path())
			}
			if err := f.Flush(); !errors.Is(err, syscall.ENOSPC) {
				t.Errorf("second Flush on a full disk: %v", err)
			}
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}

			if tc.crash {
				crash(f)
				f = mustOpen(t, m, testKey)
				for _, line := range sent[f.Cursor().Lines:] {
					if err := f.Write(Record{Line: []byte(line)}); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := f.Close(); err != nil {
				t.Fatalf("Close after space was freed: %v", err)
			}
			if got := allLines(t, out, testKey); !slices.Equal(got, sent) {
				t.Errorf("file holds %d lines, want the %d sent, each once", len(got), len(sent))
			}
		})
	}
}

// failingOutput is a seam double: it writes at most budget bytes through, then fails
// like a full disk, with a short write first.
type failingOutput struct {
	output
	budget int
}

func (o *failingOutput) Write(p []byte) (int, error) {
	if o.budget >= len(p) {
		o.budget -= len(p)
		return o.output.Write(p)
	}
	n, _ := o.output.Write(p[:o.budget])
	o.budget = 0
	return n, &fs.PathError{Op: "write", Path: "app.log", Err: syscall.ENOSPC}
}

func TestWriteFailureSeam(t *testing.T) {
	for _, budget := range []int{0, 1, 17, 40, 41, 100} {
		t.Run(fmt.Sprintf("budget %d", budget), func(t *testing.T) {
			dir := t.TempDir()
			m := newTestManager(t, Config{Dir: dir, Format: FormatRaw})
			f := mustOpen(t, m, testKey)
			fo := &failingOutput{output: f.out, budget: budget}
			f.out = fo
			var sent []string
			for i := range 5 {
				r := rec(i, fmt.Sprintf("line %d %s", i, strings.Repeat("s", 30))) // 40 bytes each
				if err := f.Write(r); err != nil {
					t.Fatal(err)
				}
				sent = append(sent, string(r.Line))
			}
			err := f.Flush()
			if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), f.Path()) {
				t.Fatalf("Flush: %v, want ENOSPC naming %s", err, f.Path())
			}
			if err := f.SaveCursor(); err == nil {
				t.Error("SaveCursor succeeded with data unwritten")
			}
			pc := readCursorFile(t, f)
			if st, _ := os.Stat(f.Path()); pc.Offset > st.Size() || pc.Lines != 0 {
				t.Errorf("saved cursor %+v covers more than the %d bytes written", pc, st.Size())
			}
			fo.budget = 1 << 20
			if err := f.Flush(); err != nil {
				t.Fatalf("retry: %v", err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got := allLines(t, dir, testKey); !slices.Equal(got, sent) {
				t.Errorf("after the retry the file holds %q, want %q", got, sent)
			}
		})
	}
}

// TestWriteRejectedWhenBufferFull checks that a Write that cannot make room reports an
// error and is not counted, so the caller may send the record again.
func TestWriteRejectedWhenBufferFull(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw})
	f := mustOpen(t, m, testKey)
	f.out = &failingOutput{output: f.out}
	line := strings.Repeat("b", 1000)
	var err error
	accepted := 0
	for ; err == nil; accepted++ {
		err = f.Write(rec(accepted, line))
	}
	accepted--
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write with a full buffer and a full disk: %v", err)
	}
	if got := f.Cursor().Lines; got != int64(accepted) {
		t.Errorf("cursor counts %d lines, %d were accepted", got, accepted)
	}
	if err := f.Close(); err == nil || !strings.Contains(err.Error(), "dropped") {
		t.Errorf("Close with unwritable data: %v", err)
	}
	if pc := readCursorFile(t, f); pc.Lines != 0 {
		t.Errorf("cursor saved at a failed Close covers %d lines", pc.Lines)
	}
}

// rotateFailOutput fails the next Rotate calls, after renaming the file away if
// renamed is set, as lumberjack does when it cannot create the new file.
type rotateFailOutput struct {
	output
	path    string
	fails   int
	renamed bool
}

func (o *rotateFailOutput) Rotate() error {
	if o.fails == 0 {
		return o.output.Rotate()
	}
	o.fails--
	_ = o.output.Close()
	if o.renamed {
		backup := strings.TrimSuffix(o.path, logExt) + "-" + time.Now().UTC().Format(backupTimeLayout) + logExt
		if err := os.Rename(o.path, backup); err != nil {
			return err
		}
		time.Sleep(2 * time.Millisecond) // keep the next backup name distinct
	}
	return errors.New("can't open new logfile: no space left on device")
}

func TestRotationFailure(t *testing.T) {
	for _, renamed := range []bool{false, true} {
		t.Run(fmt.Sprintf("renamed %v", renamed), func(t *testing.T) {
			dir := t.TempDir()
			m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, maxSizeBytes: 1000})
			f := mustOpen(t, m, testKey)
			o := &rotateFailOutput{output: f.out, path: f.Path(), fails: 2, renamed: renamed}
			f.out = o
			var sent []string
			failures := 0
			for i := range 60 {
				r := rec(i, fmt.Sprintf("%02d %s", i, strings.Repeat("r", 60)))
				for {
					err := f.Write(r)
					if err == nil {
						break
					}
					if failures++; failures > 2 {
						t.Fatalf("Write keeps failing: %v", err)
					}
					if !strings.Contains(err.Error(), "rotating "+f.Path()) {
						t.Errorf("error %q does not name the rotation of %s", err, f.Path())
					}
				}
				sent = append(sent, string(r.Line))
			}
			if failures != 2 {
				t.Fatalf("%d failed rotations, want 2", failures)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got := allLines(t, dir, testKey); !slices.Equal(got, sent) {
				t.Errorf("files hold %d lines, want the %d sent, each once", len(got), len(sent))
			}
			for _, path := range fileSet(t, dir, testKey) {
				if got := mode(t, path); got != fileMode {
					t.Errorf("%s has mode %03o", path, got)
				}
			}
			f = mustOpen(t, m, testKey)
			if r := f.Recovered(); r.TruncatedBytes != 0 || r.ShortBy != 0 {
				t.Errorf("reopening after a clean Close recovered %+v", r)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
