package tail

import (
	"bytes"
	"errors"
	"io"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// lineRef locates one selected line in its batch's data. All offsets are absolute.
type lineRef struct {
	// start:end is the line as in the file, without its newline.
	start, end int
	// tsStart:tsEnd is its timestamp text (empty if none).
	tsStart, tsEnd int
	// msgStart:msgEnd is the message as the timestamped format shows it: in the line
	// for text formats, after the file's bytes for a json line that needed decoding.
	msgStart, msgEnd int
	// key orders lines: Unix nanoseconds, inherited from the line before when a line has
	// no time, and 0 in raw files (so they merge file by file).
	key int64
}

// batch is a run of selected lines of one file, handed from a reader to the merger or
// the follower. data is normally the very buffer the file was read into, so a selected
// line is never copied; the reader gets the batch back once it is printed.
type batch struct {
	data  []byte
	lines []lineRef
	// format is the file's format (never layout.FormatAuto): with --output json, lines of json
	// files are printed as they are.
	format layout.Format
}

func (b *batch) reset() {
	b.data, b.lines = b.data[:0], b.lines[:0]
}

// lineFilter is what a line must pass besides the container selection.
type lineFilter struct {
	grep, grepV *matcher
	// since and until bound line times (Unix nanoseconds) when hasSince / hasUntil.
	since, until       int64
	hasSince, hasUntil bool
	// needTime asks for each selected line's time to be parsed: for --since, --until and
	// for merging several containers. Without it, a line's timestamp is located but
	// never parsed.
	needTime bool
}

// chunkScanner selects lines from chunks of one file.
type chunkScanner struct {
	f   *lineFilter
	dec decoder
	// lastKey is handed to lines without a time of their own.
	lastKey int64
}

// searchable reports whether the buffer-level search applies: the pattern's required
// literal is found in the raw file bytes exactly when it is in some message. That holds
// for the text formats (a message is bytes of the line), not for json (escapes,
// base64), and not for a needle with a newline, which no line holds.
func (s *chunkScanner) searchable() bool {
	g := s.f.grep
	return g != nil && len(g.need) > 0 && s.dec.format != layout.FormatJSON && bytes.IndexByte(g.need, '\n') < 0
}

// scan appends to b the selected lines of b.data[from:to], which holds whole lines: each
// ends in '\n' except possibly the last, which ends at to. Decoded messages are
// appended to b.data after its current length, which the caller keeps at the end of
// the bytes read so that nothing unread is overwritten.
func (s *chunkScanner) scan(b *batch, from, to int) {
	if !s.searchable() {
		for pos := from; pos < to; {
			le := bytes.IndexByte(b.data[pos:to], '\n')
			if le < 0 {
				le = to
			} else {
				le += pos
			}
			s.take(b, pos, le, -1)
			pos = le + 1
		}
		return
	}
	// Like grep: look for the needle across many lines at once and only then find the
	// line around a hit. Lines without the needle are never looked at one by one.
	find := &s.f.grep.find
	for pos := from; pos < to; {
		i := find.index(b.data[pos:to])
		if i < 0 {
			return
		}
		hit := pos + i
		ls := bytes.LastIndexByte(b.data[pos:hit], '\n') + 1 + pos
		le := bytes.IndexByte(b.data[hit:to], '\n')
		if le < 0 {
			le = to
		} else {
			le += hit
		}
		s.take(b, ls, le, hit-ls)
		pos = le + 1
	}
}

// take appends the line b.data[ls:le] to b if it passes the filter. hit, when not
// negative, is where the literal needle was found in the line.
func (s *chunkScanner) take(b *batch, ls, le, hit int) {
	line := b.data[ls:le]
	var d decoded
	s.dec.decode(line, &d)
	msg := line[d.msgStart:d.msgEnd]
	if d.inScratch {
		msg = s.dec.scratch[d.msgStart:d.msgEnd]
	}
	if g := s.f.grep; g != nil {
		// A hit inside the message of a literal pattern is a match as it stands; a hit
		// in the timestamp proves nothing.
		if !(g.literal && hit >= d.msgStart && !d.inScratch) && !g.match(msg) {
			return
		}
	}
	if g := s.f.grepV; g != nil && g.match(msg) {
		return
	}
	key := s.lastKey
	if s.f.needTime && s.dec.format != layout.FormatRaw {
		if d.tsEnd > d.tsStart {
			if k, ok := parseTime(line[d.tsStart:d.tsEnd]); ok {
				key, s.lastKey = k, k
			}
		}
		if (s.f.hasSince && key < s.f.since) || (s.f.hasUntil && key > s.f.until) {
			return
		}
	}
	ref := lineRef{start: ls, end: le, tsStart: ls + d.tsStart, tsEnd: ls + d.tsEnd, msgStart: ls + d.msgStart, msgEnd: ls + d.msgEnd, key: key}
	if d.inScratch {
		ref.msgStart = len(b.data)
		b.data = append(b.data, msg...)
		ref.msgEnd = len(b.data)
	}
	b.lines = append(b.lines, ref)
}

// fill reads from r into buf[n:] until it is full or r is exhausted; at the end it
// returns io.EOF with the bytes read before it.
func fill(r io.Reader, buf []byte, n int) (int, error) {
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, io.EOF
			}
			return n, err
		}
		if m == 0 {
			return n, io.ErrNoProgress
		}
	}
	return n, nil
}
