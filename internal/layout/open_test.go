//go:build unix

package layout

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestOpenFile(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	mustf(t, os.WriteFile(existing, []byte("old\n"), 0o600), "seed")
	tests := []struct {
		name    string
		path    string
		flag    int
		wantErr error
	}{
		{"read", existing, os.O_RDONLY, nil},
		{"append", existing, os.O_RDWR | os.O_APPEND, nil},
		{"create", filepath.Join(dir, "new"), os.O_WRONLY | os.O_CREATE | os.O_EXCL, nil},
		{"exclusive over existing", existing, os.O_WRONLY | os.O_CREATE | os.O_EXCL, fs.ErrExist},
		{"missing", filepath.Join(dir, "missing"), os.O_RDONLY, fs.ErrNotExist},
		{"directory", dir, os.O_RDONLY, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := OpenFile(tt.path, tt.flag, FileMode)
			if tt.wantErr != nil {
				var pe *fs.PathError
				if !errors.Is(err, tt.wantErr) || !errors.As(err, &pe) || pe.Op != "open" || pe.Path != tt.path {
					t.Fatalf("OpenFile: %v, want a *fs.PathError opening %s that is %v", err, tt.path, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fd := int(f.Fd())
			if flags, err := fcntl(fd, syscall.F_GETFD); err != nil || flags&syscall.FD_CLOEXEC == 0 {
				t.Errorf("descriptor flags %#x (%v), want close-on-exec", flags, err)
			}
			if flags, err := fcntl(fd, syscall.F_GETFL); err != nil || flags&syscall.O_NONBLOCK != 0 {
				t.Errorf("file status flags %#x (%v), want blocking", flags, err)
			}
			if err := f.Sync(); err != nil {
				t.Errorf("Sync: %v", err)
			}
			if tt.flag&os.O_APPEND != 0 {
				// As for os.OpenFile: WriteAt into an appending file is refused.
				if _, err := f.WriteAt([]byte("x"), 0); err == nil {
					t.Error("WriteAt on an O_APPEND file succeeded")
				}
			}
		})
	}
}

func fcntl(fd, cmd int) (int, error) {
	r, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), uintptr(cmd), 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

func TestRenameOverDirectory(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "f"), filepath.Join(dir, "d")
	mustf(t, os.WriteFile(src, nil, 0o600), "seed")
	mustf(t, os.Mkdir(dst, 0o700), "mkdir")
	if err := Rename(src, dst); err == nil {
		t.Error("Rename of a file over a directory succeeded")
	}
}

func TestSyncPath(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	mustf(t, os.WriteFile(file, []byte("x"), 0o600), "seed")
	tests := []struct {
		name    string
		path    string
		wantErr error
	}{
		{"file", file, nil},
		{"directory", dir, nil},
		{"missing", filepath.Join(dir, "missing"), fs.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := SyncPath(tt.path)
			if tt.wantErr == nil {
				if err != nil {
					t.Errorf("SyncPath: %v", err)
				}
				return
			}
			var pe *fs.PathError
			if !errors.Is(err, tt.wantErr) || !errors.As(err, &pe) || pe.Path != tt.path {
				t.Errorf("SyncPath: %v, want a *fs.PathError naming %s that is %v", err, tt.path, tt.wantErr)
			}
		})
	}
}
