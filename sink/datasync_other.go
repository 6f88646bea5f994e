//go:build !linux

package sink

import "os"

// datasync is fsync where fdatasync(2) is not available.
func datasync(fd *os.File) error { return fd.Sync() }
