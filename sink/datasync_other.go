//go:build !linux

package sink

import "os"

// fdatasync is fsync where fdatasync(2) is not available.
func fdatasync(fd *os.File) error { return fd.Sync() }
