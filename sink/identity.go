package sink

import (
	"bytes"
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

// A last line longer than tailBytes is identified by its start too (persistedCursor.LineLen
// and LineCRC): lines that long often end alike (padding, a long constant suffix), and
// when a new file has grown past the same offset, a line of it can end there in the same
// bytes as the file the cursor covers (seed 999076264: both files "held" the cursor's
// data, and recovery kept every byte in doubt). A line's first bytes hold its timestamp
// in the timestamped and JSON formats, and its first words in the raw one.
const (
	// lineHeadBytes is how many of the last line's first bytes the identity covers.
	lineHeadBytes = 64
	// lineScanBytes bounds how far back from the end of a file load looks for the start
	// of its last line (about that far: it reads in 4 KiB steps after the last 256
	// bytes); a longer one gets no line identity.
	lineScanBytes = 64 << 10
)

// tailWindow holds the last bytes of the current file as written: the bytes a cursor
// saved now would identify its data by. Keeping them costs a copy of at most tailBytes
// per write to the file, and no system call.
type tailWindow struct {
	b [tailBytes]byte
	// n is how many of the file's last bytes are in b, at its end; -1 while unknown
	// (they could not be read), until a write of tailBytes or more fills b again.
	n int
	// The last line is the one holding the file's last byte. lineLen is its length so
	// far, -1 while unknown (until a line starts); head holds its first
	// min(lineLen, lineHeadBytes) bytes; ended is whether the last byte is '\n', so that
	// the next byte starts a line.
	head    [lineHeadBytes]byte
	lineLen int64
	ended   bool
}

// empty makes the window that of an empty file.
func (w *tailWindow) empty() { *w = tailWindow{} }

// unknown makes the window that of a file whose last bytes are not known.
func (w *tailWindow) unknown() { w.n, w.lineLen, w.ended = -1, -1, false }

// add records that p was appended to the file.
func (w *tailWindow) add(p []byte) {
	w.addLine(p)
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

// addLine follows the last line through the append of p.
func (w *tailWindow) addLine(p []byte) {
	if len(p) == 0 {
		return
	}
	seg := p
	if i := bytes.LastIndexByte(p[:len(p)-1], '\n'); i >= 0 {
		seg, w.lineLen = p[i+1:], 0
	} else if w.ended {
		w.lineLen = 0
	}
	if w.lineLen >= 0 {
		if w.lineLen < lineHeadBytes {
			copy(w.head[w.lineLen:], seg)
		}
		w.lineLen += int64(len(seg))
	}
	w.ended = p[len(p)-1] == '\n'
}

// load reads the last bytes of the first size bytes of fd, and the start of the last
// line; on a read error the window is unknown, and cursors saved meanwhile carry no
// content identity (or no line identity, while the last line's start is unknown).
func (w *tailWindow) load(fd io.ReaderAt, size int64) {
	n := int(min(size, tailBytes))
	w.unknown()
	if _, err := fd.ReadAt(w.b[tailBytes-n:], size-int64(n)); err != nil {
		return
	}
	w.n = n
	if n == 0 {
		w.lineLen = 0
		return
	}
	w.ended = w.b[tailBytes-1] == '\n'
	start, ok := lastLineStart(fd, size, w.b[tailBytes-n:])
	if !ok {
		return
	}
	h := int(min(size-start, lineHeadBytes))
	if _, err := fd.ReadAt(w.head[:h], start); err == nil {
		w.lineLen = size - start
	}
}

// lastLineStart finds where the line holding the last of size bytes of r starts: after
// the last '\n' before that byte. last is the file's last bytes, already read. It gives
// up (false) after lineScanBytes or on a read error.
func lastLineStart(r io.ReaderAt, size int64, last []byte) (int64, bool) {
	if i := bytes.LastIndexByte(last[:len(last)-1], '\n'); i >= 0 {
		return size - int64(len(last)) + int64(i) + 1, true
	}
	end := size - int64(len(last)) // bytes before it are not looked at yet
	buf := make([]byte, 4<<10)
	for end > 0 {
		if size-end > lineScanBytes {
			return 0, false
		}
		k := min(end, int64(len(buf)))
		if _, err := r.ReadAt(buf[:k], end-k); err != nil {
			return 0, false
		}
		if i := bytes.LastIndexByte(buf[:k], '\n'); i >= 0 {
			return end - k + int64(i) + 1, true
		}
		end -= k
	}
	return 0, true
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

// lineIdentity returns the line identity of a file of size bytes ending in the window:
// (0, 0) unless its last line is longer than tailBytes and known.
func (w *tailWindow) lineIdentity(size int64) (lineLen int64, crc uint32) {
	if w.lineLen <= tailBytes || w.lineLen > size {
		return 0, 0
	}
	return w.lineLen, crc32.Checksum(w.head[:min(w.lineLen, lineHeadBytes)], crc32c)
}

// holdsCovered reports whether the file behind r, size bytes long, holds the data pc
// covers: at least Offset bytes, ending in the bytes pc identifies, and in a line that
// starts with the bytes it identifies, if it names one. A cursor without a content
// identity proves nothing this way.
func holdsCovered(r io.ReaderAt, size int64, pc persistedCursor) (bool, error) {
	if pc.TailLen <= 0 || pc.TailLen > tailBytes || int64(pc.TailLen) > pc.Offset || size < pc.Offset {
		return false, nil
	}
	var buf [tailBytes]byte
	b := buf[:pc.TailLen]
	if _, err := r.ReadAt(b, pc.Offset-int64(pc.TailLen)); err != nil {
		return false, err
	}
	if crc32.Checksum(b, crc32c) != pc.TailCRC {
		return false, nil
	}
	if pc.LineLen == 0 {
		return true, nil
	}
	start := pc.Offset - pc.LineLen
	if pc.LineLen < 0 || start < 0 {
		return false, nil
	}
	// The byte before the line, if any, ends the line before it.
	from := max(start-1, 0)
	b = buf[:start-from+min(pc.LineLen, lineHeadBytes)]
	if _, err := r.ReadAt(b, from); err != nil {
		return false, err
	}
	if start > 0 && b[0] != '\n' {
		return false, nil
	}
	return crc32.Checksum(b[start-from:], crc32c) == pc.LineCRC, nil
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
	lineLen, lineCRC := w.lineIdentity(total)
	return total == pc.Offset && n == pc.TailLen && crc == pc.TailCRC &&
		(pc.LineLen == 0 || lineLen == pc.LineLen && lineCRC == pc.LineCRC)
}
