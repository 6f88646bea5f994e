//go:build !linux

package layout

import "os"

// SyncPath fsyncs the file or directory at name through a descriptor of its own, with
// (*os.File).Sync: on macOS that is fcntl(F_FULLFSYNC), which a bare fsync(2) is not (it
// leaves the data in the drive's cache). Errors are *fs.PathError.
func SyncPath(name string) error {
	fd, err := os.Open(name)
	if err != nil {
		return err
	}
	err = fd.Sync()
	if cerr := fd.Close(); err == nil {
		err = cerr
	}
	return err
}
