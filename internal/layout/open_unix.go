//go:build unix

package layout

import (
	"errors"
	"io/fs"
	"os"
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
	fd, err := openFD(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), name), nil
}

// openFD is open(2) with O_CLOEXEC, retried when a signal interrupts it, as os.OpenFile
// does (an open on a slow file system can be).
func openFD(name string, flag int, perm fs.FileMode) (int, error) {
	var fd int
	err := ignoringEINTR(func() (err error) {
		fd, err = syscall.Open(name, flag|syscall.O_CLOEXEC, uint32(perm.Perm()))
		return err
	})
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return fd, nil
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); !errors.Is(err, syscall.EINTR) {
			return err
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
