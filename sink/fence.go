package sink

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Replicas sharing an output directory (Config.Shards) hand a pod's files over through
// its shard's Lease. A File of such a replica is fenced: before every write, rotation and
// cursor save it asks Config.Fence whether this replica still holds the pod's shard in
// the epoch it opened the File in, and a save first reads the cursor on disk, which a
// newer holder's saves mark with its higher epoch. Either refusal is ErrNotHolder,
// counted as kubelogd_write_errors_total{reason="fenced"}: the bytes stay unwritten and
// the cursor unsaved, so the holder that took over reads them from the last cursor.

// ErrNotHolder is the error of a write refused because this replica no longer holds the
// pod's shard.
var ErrNotHolder = errors.New("this replica no longer holds the pod's shard")

// fence returns ErrNotHolder (wrapped, counted) if the File may not write now.
func (f *File) fence() error {
	if f.cfg.Fence == nil {
		return nil
	}
	if epoch, ok := f.cfg.Fence(f.key.Namespace, f.key.Pod); !ok || epoch != f.epoch {
		return f.met.writeError(fmt.Errorf("writing %s: %w (epoch %d); the replica holding it now goes on from the last saved cursor", f.p.current, ErrNotHolder, f.epoch))
	}
	return nil
}

// fenceSave is fence for a cursor save: also refused when the cursor on disk was saved
// by a holder of a later epoch (this one was frozen past its Lease and has not noticed).
func (f *File) fenceSave() error {
	if err := f.fence(); err != nil || f.cfg.Fence == nil {
		return err
	}
	pc, _, found, err := loadCursor(f.p.cursor)
	if err == nil && found && pc.Epoch > f.epoch {
		return f.met.writeError(fmt.Errorf("saving the cursor of %s: %w: a replica in epoch %d saved it since (this one is in %d)", f.p.current, ErrNotHolder, pc.Epoch, f.epoch))
	}
	return nil
}

// openEpoch returns the epoch a File of key opens in, or ErrNotHolder.
func openEpoch(cfg *settings, key Key, p paths, onDisk int64) (int64, error) {
	if cfg.Fence == nil {
		return 0, nil
	}
	epoch, ok := cfg.Fence(key.Namespace, key.Pod)
	switch {
	case !ok:
		return 0, fmt.Errorf("opening %s: %w", p.current, ErrNotHolder)
	case onDisk > epoch:
		return 0, fmt.Errorf("opening %s: %w: a replica in epoch %d saved its cursor (this one is in %d)", p.current, ErrNotHolder, onDisk, epoch)
	}
	return epoch, nil
}

// fencedSuffix names the file, beside a container's files, that keeps the bytes another
// replica appended to its current file after this one took the shard over (".app.fenced").
// kubelogd tail does not read it; nothing else removes it but the pod's retention.
const fencedSuffix = ".fenced"

// moveForeign checks, before a write, that the current file holds only what this File
// wrote: bytes past f.size were appended by a holder frozen past its Lease that resumed
// between its check and its write (the one window a check cannot close). They are
// copied to the .fenced file and cut from the current file, so that it stays exact and
// nothing is destroyed. One stat per write, only with shards.
func (f *File) moveForeign() {
	if f.cfg.Fence == nil || f.inode == 0 {
		return
	}
	info, err := os.Stat(f.p.current)
	if err != nil || info.Size() <= f.size || inodeOf(info) != f.inode {
		return // checkOutside deals with a file replaced or removed
	}
	extra := info.Size() - f.size
	side := filepath.Join(f.p.dir, "."+f.p.name+fencedSuffix)
	if err := appendRange(f.p.current, f.size, extra, side); err != nil {
		f.log.Error("cannot keep bytes another replica wrote; leaving them in place", "path", f.p.current, "bytes", extra, "err", err)
		return
	}
	if err := os.Truncate(f.p.current, f.size); err != nil {
		f.log.Error("cannot cut bytes another replica wrote", "path", f.p.current, "bytes", extra, "err", err)
		return
	}
	f.met.writeErrors.WithLabelValues(reasonFenced).Inc()
	f.log.Warn("moved bytes another replica wrote after this one took the shard over", "path", f.p.current, "bytes", extra, "keptIn", side)
}

// appendRange appends n bytes of src from off to dst, synced.
func appendRange(src string, off, n int64, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_APPEND, fileMode)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, io.NewSectionReader(in, off, n))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}
