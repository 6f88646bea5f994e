package sink

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// A cursor names the data it covers by where it ends (Offset), by the inode of the file
// that held it when it was saved, and by a CRC of its last bytes (persistedCursor.TailLen
// and TailCRC). Recovery may cut bytes kubelogd wrote only once it has proven which file
// holds the covered data — by content: a restored or copied output directory has new
// inode numbers, and a new file may get an old file's number. When it cannot prove it, it
// keeps the bytes and reports the doubt (Recovery.Unverified) for a marker.

// tailBytes is how many bytes before Offset a cursor's content identity covers: enough
// to take in the last line's timestamp in most formats, few enough to keep in every File.
const tailBytes = 256

// tailWindow holds the last bytes of the current file as written: the bytes a cursor
// saved now would identify its data by. Keeping them costs a copy of at most tailBytes
// per write to the file, and no system call.
type tailWindow struct {
	b [tailBytes]byte
	// n is how many of the file's last bytes are in b, at its end; -1 while unknown
	// (they could not be read), until a write of tailBytes or more fills b again.
	n int
}

// add records that p was appended to the file.
func (w *tailWindow) add(p []byte) {
	if len(p) >= tailBytes {
		copy(w.b[:], p[len(p)-tailBytes:])
		w.n = tailBytes
		return
	}
	if w.n < 0 {
		return
	}
	keep := min(w.n, tailBytes-len(p))
	copy(w.b[tailBytes-len(p)-keep:], w.b[tailBytes-keep:tailBytes])
	copy(w.b[tailBytes-len(p):], p)
	w.n = keep + len(p)
}

// load reads the last bytes of the first size bytes of fd; on a read error the window
// is unknown, and cursors saved meanwhile carry no content identity.
func (w *tailWindow) load(fd io.ReaderAt, size int64) {
	n := int(min(size, tailBytes))
	w.n = -1
	if _, err := fd.ReadAt(w.b[tailBytes-n:], size-int64(n)); err == nil {
		w.n = n
	}
}

// identity returns the content identity of a file of size bytes ending in the window:
// (0, 0) when the window does not hold its last min(size, tailBytes) bytes, or size is 0.
func (w *tailWindow) identity(size int64) (n int, crc uint32) {
	n = int(min(size, tailBytes))
	if n == 0 || w.n != n {
		return 0, 0
	}
	return n, crc32.Checksum(w.b[tailBytes-n:], crc32c)
}

// holdsCovered reports whether the file behind r, size bytes long, holds the data pc
// covers: at least Offset bytes, ending in the bytes pc identifies. A cursor without a
// content identity proves nothing this way.
func holdsCovered(r io.ReaderAt, size int64, pc persistedCursor) (bool, error) {
	if pc.TailLen <= 0 || pc.TailLen > tailBytes || int64(pc.TailLen) > pc.Offset || size < pc.Offset {
		return false, nil
	}
	var buf [tailBytes]byte
	b := buf[:pc.TailLen]
	if _, err := r.ReadAt(b, pc.Offset-int64(pc.TailLen)); err != nil {
		return false, err
	}
	return crc32.Checksum(b, crc32c) == pc.TailCRC, nil
}

// keepFor decides how much of the current file, size bytes long, recovery keeps given
// the cursor pc found beside it, and reports what it could not prove in rec. It cuts only
// what it proved uncovered: bytes after the covered data in the file that holds it, or a
// whole file that came after the one holding it (a rotation after the last save).
// Otherwise it keeps every whole line and sets rec.Unverified.
func keepFor(fd *os.File, p paths, pc persistedCursor, size int64, inode uint64, rec *Recovery) (int64, error) {
	if pc.Offset == 0 {
		// A cursor that covers none of the current file: saved right after a rotation
		// (its lines are in the backup) or after the file was created again. Every byte
		// in the file was written after that save and is read again, in place or in a
		// copy: the empty data it covers is in every file, so there is nothing to prove
		// and no content identity to prove it by (TailLen is 0). Taking it for a cursor
		// of an earlier kubelogd kept the whole file in a copied directory, with a
		// file_unverified marker, and wrote those lines a second time after it.
		return 0, nil
	}
	sameInode := inode == pc.Inode
	holds, err := holdsCovered(fd, size, pc)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", p.current, err)
	}
	if holds && sameInode {
		// The common case: lines past Offset are not counted by the cursor and are read
		// again.
		return pc.Offset, nil
	}
	bk := backupHolding(p, pc)
	switch {
	case holds && !bk.found:
		// The file, or a copy of it (new inode numbers): as above.
		return pc.Offset, nil
	case bk.found && (!holds || bk.sameInode):
		// Rotated after the cursor was saved: the cursor is saved right before every
		// rotation, so the backup holds all it covers and the current file only lines it
		// does not count, which are read again.
		return 0, nil
	case holds:
		rec.Unverified = "both the current file and a backup hold the data the cursor covers"
	case pc.TailLen == 0 && sameInode:
		// A cursor of a kubelogd before content identities, or one covering no bytes:
		// the inode is all there is to go by, as then.
		if size >= pc.Offset {
			return pc.Offset, nil
		}
		rec.ShortBy = pc.Offset - size
		return lastLineEnd(fd, size)
	case sameInode && size < pc.Offset:
		// Shorter than the cursor recorded (a power loss before the data reached the
		// disk): what it covered beyond the end is gone; cut only a torn last line.
		rec.ShortBy = pc.Offset - size
		return lastLineEnd(fd, size)
	case pc.TailLen == 0:
		rec.Unverified = "the cursor, saved by an earlier kubelogd, names another file and records no content to recognise it by (a restored or copied directory?)"
	default:
		rec.Unverified = "neither the current file nor a backup holds the data the cursor covers (changed outside kubelogd?)"
	}
	if bsize, ok := backupSize(p, pc.Inode); ok && bsize < pc.Offset && !sameInode {
		rec.ShortBy = pc.Offset - bsize
	}
	keep, err := lastLineEnd(fd, size)
	if keep == 0 {
		// Nothing kept, nothing in doubt; but the data the cursor identifies is nowhere.
		rec.Unverified = ""
		if pc.TailLen > 0 && rec.ShortBy == 0 {
			rec.RemovedBytes = pc.Offset
		}
	}
	return keep, err
}

// missingCurrent judges a current file that is gone while its cursor is there: deleted
// or moved away outside kubelogd, or rotated away with a crash before the new file was
// created. It returns what the cursor covered that is missing from disk: shortBy when a
// backup holds part of it (a power loss), removed when nothing does, and unverified when
// a cursor without a content identity cannot tell.
func missingCurrent(p paths, pc persistedCursor) (shortBy, removed int64, unverified string) {
	if pc.Offset == 0 || pc.TailLen > 0 && backupHolding(p, pc).found {
		return 0, 0, ""
	}
	// A new file may reuse the old inode number, so only a backup tells (and one with the
	// cursor's inode that is shorter than Offset is what a power loss leaves).
	if bsize, ok := backupSize(p, pc.Inode); ok {
		if bsize < pc.Offset {
			shortBy = pc.Offset - bsize
		}
		return shortBy, 0, ""
	}
	if pc.TailLen == 0 {
		return 0, 0, "the current file is missing, and the cursor, saved by an earlier kubelogd, cannot tell whether a backup holds its data"
	}
	return 0, pc.Offset, ""
}

// backupMatch is the backup backupHolding found.
type backupMatch struct {
	found     bool
	sameInode bool // it also has the cursor's inode
}

// backupHolding finds a backup of the container (plain or compressed) that holds exactly
// the data pc covers: Offset bytes, ending in the bytes pc identifies. A backup is cut
// by a rotation right after the save that covers it, so its size is Offset. Sizes rule
// out nearly every backup without reading it: a plain one's from stat, a compressed
// one's from its gzip trailer.
func backupHolding(p paths, pc persistedCursor) backupMatch {
	if pc.TailLen <= 0 {
		return backupMatch{}
	}
	backups, err := listBackups(p)
	if err != nil {
		return backupMatch{}
	}
	for _, b := range backups {
		path := filepath.Join(p.dir, b.name)
		var ok bool
		var inode uint64
		if b.gz {
			ok = gzipHolds(path, pc)
		} else {
			ok, inode = plainHolds(path, pc)
		}
		if ok {
			return backupMatch{found: true, sameInode: !b.gz && inode == pc.Inode}
		}
	}
	return backupMatch{}
}

// plainHolds reports whether the uncompressed backup at path holds exactly what pc
// covers, and returns its inode.
func plainHolds(path string, pc persistedCursor) (bool, uint64) {
	fd, err := layout.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return false, 0
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil || st.Size() != pc.Offset {
		return false, 0
	}
	ok, err := holdsCovered(fd, st.Size(), pc)
	return ok && err == nil, inodeOf(st)
}

// gzipHolds reports whether the compressed backup at path holds exactly what pc covers.
// Only a backup whose trailer gives the right size (modulo 2^32) is decompressed.
func gzipHolds(path string, pc persistedCursor) bool {
	fd, err := layout.OpenFile(path, os.O_RDONLY, 0)
	if err != nil {
		return false
	}
	defer fd.Close()
	st, err := fd.Stat()
	if err != nil || st.Size() < 18 {
		return false
	}
	var isize [4]byte
	if _, err := fd.ReadAt(isize[:], st.Size()-4); err != nil || binary.LittleEndian.Uint32(isize[:]) != uint32(pc.Offset) {
		return false
	}
	zr, err := gzip.NewReader(io.NewSectionReader(fd, 0, st.Size()))
	if err != nil {
		return false
	}
	var w tailWindow
	var total int64
	buf := make([]byte, 32<<10)
	for {
		n, err := zr.Read(buf)
		w.add(buf[:n])
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil || total > pc.Offset {
			return false
		}
	}
	n, crc := w.identity(total)
	return total == pc.Offset && n == pc.TailLen && crc == pc.TailCRC
}
