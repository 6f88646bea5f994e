package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/kubelogd/kubelogd/internal/failpoint"
	"github.com/kubelogd/kubelogd/internal/layout"
)

// A cursor file holds two copies of the cursor in two slots of equal size, each a
// 4 KiB-aligned block of its own:
//
//	kubelogd cursor 2 seq 000000000000002a len 0000017c crc 1f2e3d4c\n
//	{"version":1,"podUID":...,"offset":...,"inode":...,"tailLen":...,"tailCRC":...}\n
//	NUL padding to the end of the slot
//
// A save overwrites one slot in place, and a load takes the intact copy (its CRC-32C over
// the seq and len fields and the JSON matches) with the higher seq. A save creates and
// frees no inode and changes no directory, which replacing the file by rename did: at a
// few hundred saves a second that loaded the file system's journal enough to delay every
// container's writes (issue 8's latency).
//
// Which slot a save overwrites decides what a crash or a power loss can leave:
//   - A crash (the process killed) loses no write the kernel took, so it can only tear
//     the copy being written; the other slot holds the previous cursor.
//   - A power loss also loses copies not yet written back, in any order, so the slot a
//     save must spare is the one holding the newest copy known to be on disk (synced),
//     not merely the newest copy: otherwise the disk could be left with only a copy older
//     than it. That matters across a rotation: a copy older than the save right before
//     it names the rotated file at less than its full size, and recovery would take what
//     the file holds beyond it for lines never written, and write them again. The save
//     before a rotation is therefore synced, and later saves overwrite the other slot
//     only, until the next synced save.
//
// A container's first save creates the file in place (O_EXCL): with no cursor file there,
// no older copy needs a temporary file and a rename to protect it, and a crash can leave
// only what a crash before the save would leave, or an empty or short file without an
// intact copy, which a load takes for no cursor (and the data file holds no byte a cursor
// saved since covers: none is written before the save returns). The file is created again
// when a cursor outgrows its slot or is found torn, by writing a temporary file and
// renaming it over the old one, synced, since the old one may be all the disk has. A file
// that starts with '{' is of the layout before (one JSON document, replaced by rename); it
// is read, and the next save replaces it.
const (
	cursorSlotAlign = 4096
	cursorMagic     = "kubelogd cursor 2"
	// cursorHeaderLen is the length of a slot's header line, newline included.
	cursorHeaderLen = len(cursorMagic + " seq 0000000000000000 len 00000000 crc 00000000\n")
	// cursorCRCFrom and cursorCRCTo delimit, in the header, the fields the CRC covers
	// beside the JSON: " seq ... len ...".
	cursorCRCFrom = len(cursorMagic)
	cursorCRCTo   = cursorCRCFrom + len(" seq 0000000000000000 len 00000000")
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// cursorSlots is where the next save of a container's cursor goes.
type cursorSlots struct {
	// size is the bytes per slot; 0 while there is no file to save into in place (none
	// yet, of the old layout, damaged): the next save creates one.
	size int64
	// newest is the slot (0 or 1) holding the newest copy, seq its number.
	newest int
	seq    uint64
	// keep is the copy a save must not overwrite: the newest synced one, or the first
	// copy of a file created unsynced until a save is synced.
	keep keepCopy
}

// keepCopy says which copy of a cursor file a save must spare (see the layout above).
type keepCopy int8

const (
	// keepNothing: there is no cursor file (the next save creates one).
	keepNothing keepCopy = iota
	// keepUnknown: the file was found at Open; which copy is on disk is not known. The
	// first save syncs the file before it overwrites anything.
	keepUnknown
	// keepSlot0 and keepSlot1: the copy to keep is in that slot.
	keepSlot0
	keepSlot1
)

func keepSlot(i int) keepCopy { return keepSlot0 + keepCopy(i) }

// slotNeed is the slot size a cursor of n bytes of JSON needs.
func slotNeed(n int) int64 { return int64(cursorHeaderLen + n + 1) }

// fits reports whether the next save of a cursor of n bytes of JSON can go in place.
func (s cursorSlots) fits(n int) bool { return s.size >= slotNeed(n) }

// encodeSlot fills slot with the header and JSON of copy number seq, padded with NULs.
// The JSON must fit: len(payload) <= len(slot)-cursorHeaderLen-1.
func encodeSlot(slot []byte, seq uint64, payload []byte) {
	if slotNeed(len(payload)) > int64(len(slot)) {
		panic(fmt.Sprintf("internal error: a cursor of %d bytes in a slot of %d", len(payload), len(slot)))
	}
	h := slot[:0]
	h = append(h, cursorMagic...)
	h = append(h, " seq "...)
	h = appendHex(h, seq, 16)
	h = append(h, " len "...)
	h = appendHex(h, uint64(len(payload)), 8)
	crc := crc32.Update(crc32.Checksum(h[cursorCRCFrom:cursorCRCTo], crc32c), crc32c, payload)
	h = append(h, " crc "...)
	h = appendHex(h, uint64(crc), 8)
	h = append(h, '\n')
	h = append(h, payload...)
	h = append(h, '\n')
	clear(slot[len(h):])
}

func appendHex(b []byte, v uint64, width int) []byte {
	s := strconv.FormatUint(v, 16)
	for range width - len(s) {
		b = append(b, '0')
	}
	return append(b, s...)
}

// decodeSlot returns the copy number and JSON of an intact slot; ok is false for a slot
// never written, torn or damaged.
func decodeSlot(slot []byte) (seq uint64, payload []byte, ok bool) {
	if len(slot) < cursorHeaderLen || !bytes.HasPrefix(slot, []byte(cursorMagic+" seq ")) {
		return 0, nil, false
	}
	h := slot[:cursorHeaderLen]
	field := func(name string, at, width int) (uint64, bool) {
		if string(h[at-len(name):at]) != name {
			return 0, false
		}
		v, err := strconv.ParseUint(string(h[at:at+width]), 16, 64)
		return v, err == nil
	}
	seq, ok1 := field(" seq ", cursorCRCFrom+5, 16)
	n, ok2 := field(" len ", cursorCRCTo-8, 8)
	crc, ok3 := field(" crc ", cursorHeaderLen-9, 8)
	if !ok1 || !ok2 || !ok3 || h[cursorHeaderLen-1] != '\n' || n > uint64(len(slot)-cursorHeaderLen-1) {
		return 0, nil, false
	}
	payload = slot[cursorHeaderLen : cursorHeaderLen+int(n)]
	if crc32.Update(crc32.Checksum(h[cursorCRCFrom:cursorCRCTo], crc32c), crc32c, payload) != uint32(crc) {
		return 0, nil, false
	}
	return seq, payload, true
}

// loadCursor reads a persisted cursor; found is false if there is none or it is unreadable
// (err says why). slots says where the next save goes.
func loadCursor(path string) (pc persistedCursor, slots cursorSlots, found bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pc, slots, false, nil
	}
	// From here on a file is there: whatever the next save writes replaces a cursor.
	slots.keep = keepUnknown
	if err != nil {
		return pc, slots, false, fmt.Errorf("reading cursor %s: %w", path, err)
	}
	payload := data
	if len(data) == 0 || data[0] != '{' {
		if payload, slots = pickCopy(data); payload == nil {
			return pc, slots, false, fmt.Errorf("cursor %s has no intact copy (%d bytes)", path, len(data))
		}
	}
	if err := json.Unmarshal(payload, &pc); err != nil {
		return persistedCursor{}, cursorSlots{keep: keepUnknown}, false, fmt.Errorf("decoding cursor %s: %w", path, err)
	}
	if pc.Version != cursorVersion {
		return persistedCursor{}, cursorSlots{keep: keepUnknown}, false, fmt.Errorf("cursor %s has version %d, this kubelogd reads %d", path, pc.Version, cursorVersion)
	}
	return pc, slots, true, nil
}

// pickCopy returns the JSON of the newest intact copy in data, a slotted cursor file,
// and where the next save goes. A file that is not two whole slots (a power loss right
// after its creation can cut it), or whose other slot holds a torn copy, is saved into
// anew by the next save (slots.size 0): a torn copy may carry a higher seq than the
// intact one, and stale bytes of it could complete a later torn write into a copy that
// passes its checksum.
func pickCopy(data []byte) (payload []byte, slots cursorSlots) {
	slots.keep = keepUnknown
	if size := int64(len(data) / 2); size > 0 && size%cursorSlotAlign == 0 && int64(len(data)) == 2*size {
		torn := false
		for i := range 2 {
			slot := data[int64(i)*size : int64(i+1)*size]
			seq, p, ok := decodeSlot(slot)
			switch {
			case ok && (payload == nil || seq > slots.seq):
				slots.newest, slots.seq, payload = i, seq, p
			case !ok && bytes.HasPrefix(slot, []byte(cursorMagic)):
				torn = true
			}
		}
		if payload != nil {
			if !torn {
				slots.size = size
			}
			return payload, slots
		}
	}
	// Cut short, or two slots that hold no intact copy: its first slot, if intact, of any
	// size.
	_, payload, _ = decodeSlot(data)
	return payload, slots
}

// ReadCursorFile returns the cursor saved at path, a container's .<container>.cursor,
// for tools and tests that look at a collector's files.
func ReadCursorFile(path string) (Cursor, error) {
	pc, _, found, err := loadCursor(path)
	if err == nil && !found {
		err = fmt.Errorf("reading cursor %s: %w", path, fs.ErrNotExist)
	}
	return pc.Cursor, err
}

// writeCursor saves payload, the JSON of a cursor, as the next copy in the cursor file
// at path whose slots are s, and returns where the save after it goes, also on error.
// With sync the copy is on disk when it returns.
func writeCursor(path string, s cursorSlots, payload []byte, sync bool) (cursorSlots, error) {
	if s.fits(len(payload)) {
		next, err := writeInPlace(path, s, payload, sync)
		if err == nil || !errors.Is(err, fs.ErrNotExist) {
			return next, err
		}
		// Removed behind kubelogd's back: create it again.
	}
	// Its one copy is kept, synced or not: with no other copy in the file, until a synced
	// save it is the one that may be on disk.
	size := (slotNeed(len(payload)) + cursorSlotAlign - 1) / cursorSlotAlign * cursorSlotAlign
	next := cursorSlots{size: size, seq: s.seq + 1, keep: keepSlot0}
	buf := slotBuffer(2 * next.size)
	defer putSlotBuffer(buf)
	data := buf[:2*next.size]
	encodeSlot(data[:next.size], next.seq, payload)
	clear(data[next.size:])
	if s.keep == keepNothing {
		left, err := createCursor(path, data, sync)
		if errors.Is(err, fs.ErrExist) {
			// A file appeared since Open, not by kubelogd's doing. The next save replaces
			// it as one found: synced, after the data (see storeCursor).
			left = keepUnknown
		}
		if err != nil {
			return cursorSlots{seq: next.seq, keep: left}, err
		}
		return next, nil
	}
	// A cursor file that replaces one is synced: until it is on disk, the one it replaces
	// may be all the disk has.
	if err := writeFileAtomic(path, data, true); err != nil {
		// Renamed into place or not: the next save creates the file again, synced.
		return cursorSlots{seq: next.seq, keep: keepUnknown}, err
	}
	return next, nil
}

// createCursor creates the cursor file at path, where none is, holding data (see the
// layout above); with sync, the file is synced, then its directory. On failure it removes
// the file it created, and returns what is left: keepNothing, or keepUnknown if the file
// could not be removed.
func createCursor(path string, data []byte, sync bool) (left keepCopy, err error) {
	dir := filepath.Dir(path)
	fd, err := layout.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fileMode)
	if err != nil {
		return keepNothing, fmt.Errorf("saving %s: %w; check free space and permissions in %s", path, err, dir)
	}
	defer func() {
		if err != nil {
			_ = fd.Close()
			if os.Remove(path) != nil {
				left = keepUnknown
			}
		}
	}()
	// Crash tests: the file is there, empty.
	failpoint.Hit(failpoint.CursorCreate)
	// Explicit, whatever the umask.
	if err := fd.Chmod(fileMode); err != nil {
		return keepNothing, fmt.Errorf("saving %s: %w", path, err)
	}
	if _, err := fd.Write(data); err != nil {
		return keepNothing, fmt.Errorf("saving %s: %w; check free space in %s", path, err, dir)
	}
	if sync {
		if err := observeSync(path); err != nil {
			return keepNothing, err
		}
		if err := fd.Sync(); err != nil {
			return keepNothing, fmt.Errorf("syncing %s: %w", path, err)
		}
	}
	if err := fd.Close(); err != nil {
		return keepNothing, fmt.Errorf("saving %s: %w", path, err)
	}
	if sync {
		// Its name, and whatever else the directory holds unsynced (the current file's).
		if err := syncDir(dir); err != nil {
			return keepNothing, fmt.Errorf("syncing directory %s: %w", dir, err)
		}
	}
	return keepNothing, nil
}

// slotBuffers holds buffers of two default slots. Thousands of containers save a few
// hundred times a second; garbage per save would grow the heap between collections.
var slotBuffers = sync.Pool{New: func() any { return new([2 * cursorSlotAlign]byte) }}

// slotBuffer returns a buffer of at least n bytes; putSlotBuffer releases it.
func slotBuffer(n int64) []byte {
	if n > 2*cursorSlotAlign {
		return make([]byte, n)
	}
	return slotBuffers.Get().(*[2 * cursorSlotAlign]byte)[:]
}

func putSlotBuffer(b []byte) {
	if len(b) == 2*cursorSlotAlign {
		slotBuffers.Put((*[2 * cursorSlotAlign]byte)(b))
	}
}

// writeInPlace writes the next copy into the slot that s says to write, and returns the
// slots after it; see the layout above.
func writeInPlace(path string, s cursorSlots, payload []byte, sync bool) (cursorSlots, error) {
	fd, err := layout.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return s, fmt.Errorf("saving %s: %w", path, err)
	}
	defer fd.Close()
	if s.keep == keepUnknown {
		// Found at Open, perhaps still in the page cache only: make what it holds the
		// copy to keep.
		if err := datasync(fd); err != nil {
			return s, fmt.Errorf("syncing %s: %w", path, err)
		}
		s.keep = keepSlot(s.newest)
	}
	next := s
	next.seq++
	next.newest = 1 - s.newest
	if s.keep == keepSlot(next.newest) {
		// The newest copy is not on disk yet and the other one is: overwrite the newest.
		next.newest = s.newest
	}
	if err := writeSlot(fd, next, payload); err != nil {
		return s, fmt.Errorf("saving %s: %w; check free space in %s", path, err, filepath.Dir(path))
	}
	if sync {
		// Only the data: the file's size does not change, and its mtime need not be
		// durable.
		if err := datasync(fd); err != nil {
			return s, fmt.Errorf("syncing %s: %w", path, err)
		}
		next.keep = keepSlot(next.newest)
	}
	if err := fd.Close(); err != nil {
		return s, fmt.Errorf("saving %s: %w", path, err)
	}
	return next, nil
}

// writeSlot writes copy next.seq into slot next.newest of fd.
func writeSlot(fd *os.File, next cursorSlots, payload []byte) error {
	buf := slotBuffer(next.size)
	defer putSlotBuffer(buf)
	slot := buf[:next.size]
	encodeSlot(slot, next.seq, payload)
	off := int64(next.newest) * next.size
	if failpoint.Reached(failpoint.CursorMidWrite) {
		// Crash tests: the copy torn (the end of its JSON never written), as a power loss
		// in the middle of the write could leave it. The load must take the other copy.
		_, _ = fd.WriteAt(slot[:cursorHeaderLen+len(payload)/2], off)
		failpoint.Kill(failpoint.CursorMidWrite)
	}
	_, err := fd.WriteAt(slot, off)
	return err
}
