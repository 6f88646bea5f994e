package layout

import (
	"io/fs"
	"os"
	"syscall"
)

// SyncPath fsyncs the file or directory at name through a descriptor of its own: any
// descriptor of an inode flushes it, whoever else has it open. It costs an open, the
// fsync and a close, without an *os.File's fcntl (see OpenFile). Errors are
// *fs.PathError, as (*os.File).Sync's.
func SyncPath(name string) error {
	fd, err := openFD(name, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	err = ignoringEINTR(func() error { return syscall.Fsync(fd) })
	if err != nil {
		err = &fs.PathError{Op: "sync", Path: name, Err: err}
	}
	if cerr := syscall.Close(fd); cerr != nil && err == nil {
		err = &fs.PathError{Op: "close", Path: name, Err: cerr}
	}
	return err
}
