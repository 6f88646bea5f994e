package tail

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// clockSlack is how far a line's time may lie after the moment the daemon wrote it
// (node clock ahead of the daemon's, or lines written a little out of order). Whole
// files are skipped by their rotation time only beyond it; lines are still filtered
// exactly.
const clockSlack = 2 * time.Minute

// batchesPerStream is how many batches a stream has in flight: one being filled, one in
// the channel, one being printed and one spare so the reader never waits on the printer
// to hand a batch back before it can go on.
const batchesPerStream = 4

// stream is one container's selected lines, in file order, produced by one goroutine
// and consumed by the merger.
type stream struct {
	idx  int // position in the sorted container list: the merge's tie-break
	c    *container
	info *streamInfo
	// out carries filled batches; the producer closes it when done.
	out chan *batch
	// free returns printed batches to the producer. Its capacity is the number of
	// batches, so handing one back never blocks.
	free    chan *batch
	bufSize int
	// hand is the current file left open for --follow. The producer sets it before
	// closing out, so whoever has seen out closed may read it.
	hand *handoff
}

// handoff is where the history of a container ended in its current file: following
// continues there, on the very same open file, so no line written in between is lost
// even if the file was rotated meanwhile.
type handoff struct {
	c       *container
	info    *streamInfo
	f       *os.File
	off     int64
	format  layout.Format // layout.FormatAuto while the file was empty
	lastKey int64
}

func newStream(idx int, c *container, info *streamInfo, bufSize int) *stream {
	s := &stream{idx: idx, c: c, info: info, out: make(chan *batch, 1), free: make(chan *batch, batchesPerStream), bufSize: bufSize}
	for range batchesPerStream {
		s.free <- &batch{}
	}
	return s
}

// get returns an empty batch with a buffer of at least bufSize.
func (s *stream) get(ctx context.Context) (*batch, error) {
	select {
	case b := <-s.free:
		if cap(b.data) < s.bufSize {
			b.data = make([]byte, 0, s.bufSize)
		}
		b.reset()
		return b, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// recycle hands a printed batch back to the producer. The free list has room for every
// pooled batch; the one-off batches of produceLast find it full and are dropped.
func (s *stream) recycle(b *batch) {
	select {
	case s.free <- b:
	default:
	}
}

func (s *stream) send(ctx context.Context, b *batch) error {
	select {
	case s.out <- b:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openFile is one log file opened for reading.
type openFile struct {
	f    *os.File
	r    io.Reader // f, or a gzip reader over it
	size int64
	ino  uint64
	// end is when the file stopped growing: the rotation time for a backup, the
	// modification time for the current file.
	end time.Time
}

// open opens lf, or its compressed twin if the daemon removed the plain form between
// the listing and now.
func open(lf logFile) (*openFile, error) {
	f, err := os.Open(lf.path)
	if err != nil && isNotExist(err) && lf.alt != "" {
		lf.path, lf.gz = lf.alt, true
		f, err = os.Open(lf.path)
	}
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	of := &openFile{f: f, r: f, size: st.Size(), ino: inodeOf(st), end: lf.end}
	if lf.current {
		of.end = st.ModTime()
	}
	if lf.gz {
		// flate reads through a bufio.Reader of 4 KiB unless given a ByteReader: a
		// larger one saves most of the read calls.
		zr, err := gzip.NewReader(bufio.NewReaderSize(f, 64<<10))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("reading %s: %w", lf.path, err)
		}
		of.r = zr
	}
	return of, nil
}

// head returns the first bytes of the file's content, for detecting its format.
func (of *openFile) head(gz bool) []byte {
	buf := make([]byte, layout.MaxTimeLen+2)
	var n int
	if gz {
		zr, err := gzip.NewReader(io.NewSectionReader(of.f, 0, of.size))
		if err != nil {
			return nil
		}
		n, _ = io.ReadFull(zr, buf)
	} else {
		n, _ = of.f.ReadAt(buf, 0)
	}
	return buf[:n]
}

// inodeOf returns the inode number of a file (0 where there is none).
func inodeOf(st os.FileInfo) uint64 {
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		return sys.Ino
	}
	return 0
}

// window decides from file times alone whether a file may hold lines in the
// --since/--until window: skip means this file cannot, stop that no later file can
// either. start is when the file began (the previous file's end; zero for the first).
// Raw files have no line times, so for them the window is applied to the file times
// exactly; for the others with clockSlack, as their lines are filtered anyway.
func (p *plan) window(start, end time.Time, format layout.Format) (skip, stop bool) {
	slack := clockSlack
	if format == layout.FormatRaw {
		slack = 0
	}
	f := &p.filter
	if f.hasUntil && !start.IsZero() && start.Add(-slack).UnixNano() > f.until {
		return true, true
	}
	if f.hasSince && !end.IsZero() && end.Add(slack).UnixNano() < f.since {
		return true, false
	}
	return false, false
}

// produce reads a container's files in order and sends their selected lines. With
// --tail it reads backwards instead (produceLast).
func (p *plan) produce(ctx context.Context, s *stream) {
	defer close(s.out)
	if p.cfg.Tail >= 0 {
		p.produceLast(ctx, s)
		return
	}
	sc := chunkScanner{f: &p.filter}
	var start time.Time
	for _, lf := range s.c.files {
		following := lf.current && p.cfg.Follow
		if skip, stop := p.window(start, lf.end, p.cfg.Format); stop && !following {
			return
		} else if skip && !following {
			start = lf.end
			continue
		}
		of, err := open(lf)
		if err != nil {
			if !isNotExist(err) { // a backup removed by retention meanwhile is no news
				p.log.Warn("cannot read log file", "path", lf.path, "err", err)
			}
			continue
		}
		format := p.cfg.Format
		if format == layout.FormatAuto {
			format = detectFormat(of.head(lf.gz))
		}
		skip, stop := p.window(start, of.end, format)
		start = of.end
		if (skip || stop) && !following {
			of.f.Close()
			if stop {
				return
			}
			continue
		}
		sc.dec.format = format
		off, err := p.readForward(ctx, s, &sc, of.r, format, !lf.current)
		if err != nil && ctx.Err() == nil {
			p.log.Warn("cannot read log file to the end", "path", lf.path, "err", err)
		}
		if following && err == nil {
			if of.size == 0 && p.cfg.Format == layout.FormatAuto {
				format = layout.FormatAuto // still to be detected when lines arrive
			}
			s.hand = &handoff{f: of.f, off: off, format: format, lastKey: sc.lastKey}
			continue
		}
		of.f.Close()
		if ctx.Err() != nil {
			return
		}
	}
}

// readForward sends the selected lines of r. Lines are complete when they end in a
// newline; an unterminated last line is taken too if final (a backup, which will not
// grow), else left for --follow. It returns how many bytes of r it consumed.
func (p *plan) readForward(ctx context.Context, s *stream, sc *chunkScanner, r io.Reader, format layout.Format, final bool) (int64, error) {
	b, err := s.get(ctx)
	if err != nil {
		return 0, err
	}
	b.format = format
	var consumed int64
	carry := 0 // bytes at the start of b.data: the beginning of a line not yet complete
	for {
		if carry == cap(b.data) {
			// A line longer than the buffer: make room for it.
			nb := make([]byte, carry, 2*cap(b.data))
			copy(nb, b.data)
			b.data = nb
		}
		n, rerr := fill(r, b.data[:cap(b.data)], carry)
		b.data = b.data[:n]
		done := rerr != nil
		to := bytes.LastIndexByte(b.data, '\n') + 1
		if done && final {
			to = n
		}
		sc.scan(b, 0, to)
		consumed += int64(to)
		rest := n - to
		if len(b.lines) > 0 {
			nb, err := s.get(ctx)
			if err != nil {
				return consumed, err
			}
			if cap(nb.data) < rest {
				nb.data = make([]byte, 0, cap(b.data))
			}
			nb.data = append(nb.data[:0], b.data[to:n]...)
			nb.format = format
			if err := s.send(ctx, b); err != nil {
				return consumed, err
			}
			b = nb
		} else {
			b.data = b.data[:copy(b.data, b.data[to:n])]
		}
		carry = rest
		if done {
			s.recycle(b)
			if errors.Is(rerr, io.EOF) {
				return consumed, nil
			}
			return consumed, rerr
		}
	}
}
