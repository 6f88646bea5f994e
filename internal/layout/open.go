package layout

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
)

// OpenFile is os.OpenFile for the files kubelogd opens for a moment — to create, read,
// write in place or sync one — without offering the descriptor to the runtime's network
// poller. os.OpenFile does that for every file on Linux: it sets O_NONBLOCK, tries
// epoll_ctl, which refuses a regular file or directory (EPERM), and clears O_NONBLOCK
// again, five system calls per open that change nothing about the file. Here the open
// costs the openat and the one fcntl os.NewFile asks the flags with; the file then reads
// and writes blocking, as an os.OpenFile'd regular file does after the refusal.
//
// The descriptor is close-on-exec. Errors are *fs.PathError, as os.OpenFile's.
func OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	for {
		fd, err := syscall.Open(name, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
		if err == nil {
			return os.NewFile(uintptr(fd), name), nil
		}
		// Like os.OpenFile: a signal may interrupt an open on a slow file system.
		if !errors.Is(err, syscall.EINTR) {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
	}
}

// Rename is os.Rename for a regular file: rename(2) alone. os.Rename first stats newpath
// to refuse renaming over a directory, which rename(2) refuses for a file on its own
// (EISDIR).
func Rename(oldpath, newpath string) error {
	if err := syscall.Rename(oldpath, newpath); err != nil {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: err}
	}
	return nil
}

// createTemp creates a new file "<prefix><random>" in dir for reading and writing, mode
// 0600 as os.CreateTemp does, through OpenFile.
func createTemp(dir, prefix string) (*os.File, error) {
	for try := 0; ; try++ {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) || try == 10000 {
			return f, err
		}
	}
}
