package tail

import (
	"bytes"
	"context"
	"io"
	"slices"
	"time"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// backBlock is how much a backwards read fetches at a time.
const backBlock = 64 << 10

// collected is the selected lines of one file, in file order, each copied out of the
// read buffers.
type collected struct {
	data   []byte
	lines  []lineRef
	format layout.Format
}

// produceLast sends the last --tail lines of a container that pass the filter. Plain
// files are read backwards from the end, newest file first, until enough lines are
// found, so `--tail 20` costs the same on a 100 MB file as on a small one; compressed
// backups cannot be read backwards and are read forwards keeping the last lines.
func (p *plan) produceLast(ctx context.Context, s *stream) {
	need := p.cfg.Tail
	var found []collected // newest file first
	files := s.c.files
	for i := len(files) - 1; i >= 0 && ctx.Err() == nil; i-- {
		lf := files[i]
		following := lf.current && p.cfg.Follow
		if need == 0 && !following {
			break
		}
		var start time.Time
		if i > 0 {
			start = files[i-1].end
		}
		if skip, stop := p.window(start, lf.end, p.cfg.Format); (skip || stop) && !following {
			if stop {
				continue // a later file: earlier ones may still be in the window
			}
			break // ended before --since: so did every earlier file
		}
		of, err := open(lf)
		if err != nil {
			if !isNotExist(err) {
				p.log.Warn("cannot read log file", "path", lf.path, "err", err)
			}
			continue
		}
		format := p.cfg.Format
		if format == layout.FormatAuto {
			format = detectFormat(of.head(lf.gz))
		}
		if skip, stop := p.window(start, of.end, format); (skip || stop) && !following {
			of.f.Close()
			if stop {
				continue
			}
			break
		}
		dec := decoder{format: format}
		var col collected
		var end int64
		var older bool
		if lf.gz {
			col, older, err = p.lastForward(of.r, &dec, need)
		} else {
			col, end, older, err = p.lastBackward(of, &dec, need, !lf.current)
		}
		if err != nil {
			p.log.Warn("cannot read log file", "path", lf.path, "err", err)
		}
		col.format = format
		need -= len(col.lines)
		found = append(found, col)
		if following && err == nil {
			if of.size == 0 && p.cfg.Format == layout.FormatAuto {
				format = layout.FormatAuto
			}
			var lastKey int64
			if n := len(col.lines); n > 0 {
				lastKey = col.lines[n-1].key
			}
			s.hand = &handoff{f: of.f, off: end, format: format, lastKey: lastKey}
		} else {
			of.f.Close()
		}
		if older {
			break // lines before --since reached: older files hold nothing newer
		}
	}
	for i := len(found) - 1; i >= 0; i-- {
		col := found[i]
		if len(col.lines) == 0 {
			continue
		}
		if err := s.send(ctx, &batch{data: col.data, lines: col.lines, format: col.format}); err != nil {
			return
		}
	}
}

// lastBackward collects up to need selected lines from the end of a plain file,
// reading it backwards in blocks. Only whole lines are taken from the current file
// (final unset); end is where they end, the offset to follow from. older reports that a
// line before --since (by more than clockSlack) was reached, so nothing older is needed.
func (p *plan) lastBackward(of *openFile, dec *decoder, need int, final bool) (col collected, end int64, older bool, err error) {
	end = of.size
	var buf []byte // file bytes [pos, pos+len(buf))
	pos := end
	sc := chunkScanner{f: &p.filter, dec: *dec}
	var one batch
	e := -1 // end of the unread part of buf; -1 before the first block
	for {
		if e <= 0 || bytes.LastIndexByte(buf[:e], '\n') < 0 {
			// buf[:e] is (the end of) a line whose start is not loaded yet.
			if pos == 0 {
				if e > 0 && len(col.lines) < need {
					older = p.takeBack(&sc, &one, &col, buf[:e])
				}
				break
			}
			n := min(int64(backBlock), pos)
			pos -= n
			if e < 0 {
				e = 0
			}
			nb := make([]byte, int(n)+e)
			if _, rerr := of.f.ReadAt(nb[:n], pos); rerr != nil && rerr != io.EOF {
				return finish(col), end, older, rerr
			}
			copy(nb[n:], buf[:e])
			buf, e = nb, len(nb)
			if pos+int64(len(buf)) == end {
				// The first block, at the end of the file: what follows the last newline
				// is a line still being written in the current file.
				if !final {
					nl := bytes.LastIndexByte(buf, '\n')
					end = pos + int64(nl+1)
					e = nl + 1
				}
				if e > 0 && buf[e-1] == '\n' {
					e--
				}
			}
			continue
		}
		if len(col.lines) >= need {
			break
		}
		nl := bytes.LastIndexByte(buf[:e], '\n')
		if older = p.takeBack(&sc, &one, &col, buf[nl+1:e]); older {
			break
		}
		e = nl
	}
	return finish(col), end, older, nil
}

// takeBack applies the filter to one line met while reading backwards and copies it to
// col if selected. It reports whether the line lies before --since by more than
// clockSlack, where reading backwards can stop.
func (p *plan) takeBack(sc *chunkScanner, one *batch, col *collected, line []byte) bool {
	// With its newline, so that scan sees a line even when it is empty.
	one.data = append(append(one.data[:0], line...), '\n')
	one.lines = one.lines[:0]
	sc.scan(one, 0, len(one.data))
	if len(one.lines) == 0 {
		if !p.filter.hasSince || sc.dec.format == layout.FormatRaw {
			return false
		}
		var d decoded
		sc.dec.decode(line, &d)
		k, ok := parseTime(line[d.tsStart:d.tsEnd])
		return ok && k < p.filter.since-int64(clockSlack)
	}
	l := one.lines[0]
	base := len(col.data)
	col.data = append(col.data, one.data...)
	col.lines = append(col.lines, lineRef{
		start: base + l.start, end: base + l.end,
		tsStart: base + l.tsStart, tsEnd: base + l.tsEnd,
		msgStart: base + l.msgStart, msgEnd: base + l.msgEnd,
		key: l.key,
	})
	return false
}

// finish puts lines collected backwards into file order. Their bytes stay where they
// are; only the references are reversed.
func finish(col collected) collected {
	slices.Reverse(col.lines)
	return col
}

// lastForward collects the last need selected lines of r (a compressed backup) reading
// it forwards.
func (p *plan) lastForward(r io.Reader, dec *decoder, need int) (collected, bool, error) {
	if need <= 0 {
		return collected{}, false, nil
	}
	sc := chunkScanner{f: &p.filter, dec: *dec}
	type kept struct {
		data []byte
		ref  lineRef
	}
	ring := make([]kept, 0, min(need, 1024))
	next := 0 // ring index to overwrite once the ring is full
	b := batch{data: make([]byte, 0, 1<<20)}
	carry := 0
	var rerr error
	for rerr == nil {
		if carry == cap(b.data) {
			nb := make([]byte, carry, 2*cap(b.data))
			copy(nb, b.data)
			b.data = nb
		}
		var n int
		n, rerr = fill(r, b.data[:cap(b.data)], carry)
		b.data = b.data[:n]
		to := n
		if rerr == nil {
			to = bytes.LastIndexByte(b.data, '\n') + 1
		}
		b.lines = b.lines[:0]
		sc.scan(&b, 0, to)
		for _, l := range b.lines {
			var k *kept
			if len(ring) < need {
				ring = append(ring, kept{})
				k = &ring[len(ring)-1]
			} else {
				k = &ring[next]
				next = (next + 1) % need
			}
			// The line and, after it, its message if decoded elsewhere in b.data.
			k.data = append(k.data[:0], b.data[l.start:l.end]...)
			ms, me := l.msgStart-l.start, l.msgEnd-l.start
			if l.msgStart < l.start || l.msgEnd > l.end {
				ms = len(k.data)
				k.data = append(k.data, b.data[l.msgStart:l.msgEnd]...)
				me = len(k.data)
			}
			k.ref = lineRef{tsStart: l.tsStart - l.start, tsEnd: l.tsEnd - l.start, msgStart: ms, msgEnd: me, end: l.end - l.start, key: l.key}
		}
		b.data = b.data[:copy(b.data, b.data[to:n])]
		carry = len(b.data)
	}
	if rerr == io.EOF {
		rerr = nil
	}
	var col collected
	for i := range ring {
		k := &ring[(next+i)%len(ring)]
		base := len(col.data)
		col.data = append(col.data, k.data...)
		r := k.ref
		r.start, r.end = base, base+r.end
		r.tsStart, r.tsEnd, r.msgStart, r.msgEnd = base+r.tsStart, base+r.tsEnd, base+r.msgStart, base+r.msgEnd
		col.lines = append(col.lines, r)
	}
	return col, false, rerr
}
