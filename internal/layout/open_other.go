//go:build !unix

package layout

import (
	"io/fs"
	"os"
)

// OpenFile is os.OpenFile; see open_unix.go for what it saves on Unix.
func OpenFile(name string, flag int, perm fs.FileMode) (*os.File, error) {
	return os.OpenFile(name, flag, perm)
}

// Rename is os.Rename.
func Rename(oldpath, newpath string) error { return os.Rename(oldpath, newpath) }
