package sink

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"strconv"

	"github.com/kubelogd/kubelogd/internal/failpoint"
)

// A cursor file holds two copies of the cursor in two slots of equal size, each a
// 4 KiB-aligned block of its own:
//
//	kubelogd cursor 2 seq 000000000000002a len 0000017c crc 1f2e3d4c\n
//	{"version":1,"podUID":...}\n
//	NUL padding to the end of the slot
//
// A save overwrites the slot that does not hold the newest copy, in place, and a load
// takes the intact copy (its CRC-32C over the seq and len fields and the JSON matches)
// with the higher seq. A save that a crash or a power loss tears thus leaves the
// previous cursor, as replacing the file by rename did; but it creates and frees no inode
// and changes no directory, which at a few hundred saves a second loaded the file
// system's journal enough to delay every container's writes (issue 8's latency).
//
// The file is created, and created again when a cursor outgrows its slot, by writing a
// temporary file and renaming it over the old one. A file that starts with '{' is of the
// layout before (one JSON document, replaced by rename); it is read, and the next save
// replaces it with a slotted one.
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
	// size is the bytes per slot; 0 while there is no slotted file (none yet, of the old
	// layout, or unreadable): the next save creates one.
	size int64
	// newest is the slot (0 or 1) holding the newest intact copy, seq its number.
	newest int
	seq    uint64
}

// encodeSlot fills slot with the header and JSON of copy number seq, padded with NULs.
// The JSON must fit: len(payload) <= len(slot)-cursorHeaderLen-1.
func encodeSlot(slot []byte, seq uint64, payload []byte) {
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
	if err != nil {
		return pc, slots, false, fmt.Errorf("reading cursor %s: %w", path, err)
	}
	payload := data
	if len(data) == 0 || data[0] != '{' {
		size := int64(len(data) / 2)
		if size == 0 || size%cursorSlotAlign != 0 || int64(len(data)) != 2*size {
			return pc, slots, false, fmt.Errorf("cursor %s has %d bytes, not two slots of a multiple of %d", path, len(data), cursorSlotAlign)
		}
		slots.size = size
		payload = nil
		for i := range 2 {
			seq, p, ok := decodeSlot(data[int64(i)*size : int64(i+1)*size])
			if ok && (payload == nil || seq > slots.seq) {
				slots.newest, slots.seq, payload = i, seq, p
			}
		}
		if payload == nil {
			return pc, cursorSlots{}, false, fmt.Errorf("cursor %s has no intact copy", path)
		}
	}
	if err := json.Unmarshal(payload, &pc); err != nil {
		return persistedCursor{}, cursorSlots{}, false, fmt.Errorf("decoding cursor %s: %w", path, err)
	}
	if pc.Version != cursorVersion {
		return persistedCursor{}, cursorSlots{}, false, fmt.Errorf("cursor %s has version %d, this kubelogd reads %d", path, pc.Version, cursorVersion)
	}
	return pc, slots, true, nil
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
// at path whose slots are s, and returns where the save after it goes. With sync the
// copy is on disk when it returns.
func writeCursor(path string, s cursorSlots, payload []byte, sync bool) (cursorSlots, error) {
	need := int64(cursorHeaderLen + len(payload) + 1)
	if s.size >= need {
		next := cursorSlots{size: s.size, newest: 1 - s.newest, seq: s.seq + 1}
		err := writeSlot(path, next, payload, sync)
		if err == nil {
			return next, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return s, err
		}
		// Removed behind kubelogd's back: create it again.
	}
	next := cursorSlots{size: (need + cursorSlotAlign - 1) / cursorSlotAlign * cursorSlotAlign, seq: s.seq + 1}
	data := make([]byte, 2*next.size)
	encodeSlot(data[:next.size], next.seq, payload)
	if err := writeFileAtomic(path, data, sync); err != nil {
		return s, err
	}
	return next, nil
}

// writeSlot writes copy next.seq into slot next.newest of the existing file at path.
func writeSlot(path string, next cursorSlots, payload []byte, sync bool) error {
	fd, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	defer fd.Close()
	slot := make([]byte, next.size)
	encodeSlot(slot, next.seq, payload)
	off := int64(next.newest) * next.size
	// Written in two parts around the failpoint, which tears the copy (the second part
	// holds the end of the JSON) as a power loss in the middle of the write could: the
	// load must take the other slot's copy.
	half := cursorHeaderLen + len(payload)/2
	if _, err := fd.WriteAt(slot[:half], off); err != nil {
		return fmt.Errorf("saving %s: %w; check free space in the directory", path, err)
	}
	failpoint.Hit(failpoint.CursorMidWrite)
	if _, err := fd.WriteAt(slot[half:], off+int64(half)); err != nil {
		return fmt.Errorf("saving %s: %w; check free space in the directory", path, err)
	}
	if sync {
		// Only the data: the file's size does not change, and its mtime need not be
		// durable.
		if err := datasync(fd); err != nil {
			return fmt.Errorf("syncing %s: %w", path, err)
		}
	}
	if err := fd.Close(); err != nil {
		return fmt.Errorf("saving %s: %w", path, err)
	}
	return nil
}
