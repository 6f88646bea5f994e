package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// WriteOptions tune WriteFileAtomic. The zero value writes without syncing into a
// directory that must exist.
type WriteOptions struct {
	// Sync fsyncs the temporary file before the rename, so that the name never points at
	// content that is not on disk. The directory is not synced: a caller that needs the
	// rename itself durable syncs the directory after WriteFileAtomic returns.
	Sync bool
	// MakeDir creates the file's directory (MkdirAll) when it is missing.
	MakeDir bool
	// BeforeSync, if set, is told the temporary file's path right before it is synced
	// (the sink's tests record the order of syncs).
	BeforeSync func(path string)
	// BeforeRename, if set, runs when the new content is complete in the temporary file
	// and the old file is still in place: a crash point for tests.
	BeforeRename func()
}

// WriteFileAtomic replaces path with data (mode FileMode) through a temporary file in
// the same directory, "<name>.tmp-<random>", renamed over path once complete: a reader,
// or a process that crashed meanwhile, sees the old content or the new, never a mix. On
// failure the temporary file is removed; a crash can leave it, and its name, which
// starts with the final name, tells whose it is.
func WriteFileAtomic(path string, data []byte, o WriteOptions) (err error) {
	dir := filepath.Dir(path)
	prefix := filepath.Base(path) + TmpInfix
	tmp, err := createTemp(dir, prefix)
	if o.MakeDir && errors.Is(err, fs.ErrNotExist) {
		// The directory usually exists: it is created only when the file cannot be.
		if err := MkdirAll(dir); err != nil {
			return fmt.Errorf("saving %s: %w", path, err)
		}
		tmp, err = createTemp(dir, prefix)
	}
	if err != nil {
		return fmt.Errorf("saving %s: %w; check free space and permissions in %s", path, err, dir)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	// Explicit, whatever the umask: createTemp makes 0600.
	if err := tmp.Chmod(FileMode); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("saving %s: %w; check free space in %s", path, err, dir)
	}
	if o.Sync {
		if o.BeforeSync != nil {
			o.BeforeSync(tmp.Name())
		}
		if err := tmp.Sync(); err != nil {
			return fmt.Errorf("saving %s: %w", path, err)
		}
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	if o.BeforeRename != nil {
		o.BeforeRename()
	}
	if err := Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}
