package collector

import (
	"bufio"
	"bytes"
	"io"
	"sync"
)

// readBufferSize is the size of the buffer a stream reads into while lines arrive.
const readBufferSize = 4 << 10

// idleReadSize is how much a stream reads while it has nothing buffered.
const idleReadSize = 256

var readBuffers = sync.Pool{New: func() any { b := make([]byte, readBufferSize); return &b }}

// lineReader is bufio.Reader's ReadSlice for log streams, minus its buffer while idle:
// thousands of followed containers are quiet most of the time, each blocked in a read.
// With nothing buffered it gives its buffer back to a pool and waits with a small read of
// its own; once bytes arrive it borrows a buffer again. Like bufio.Reader, a slice it
// returns is valid only until the next call.
type lineReader struct {
	src  io.Reader
	buf  *[]byte // borrowed while bytes are buffered; nil while idle
	r, w int     // buf[r:w] is unread
	err  error   // from src, returned once buf is drained
	// empty counts reads in a row that returned nothing and no error.
	empty int
	idle  [idleReadSize]byte
}

func newLineReader(src io.Reader) *lineReader { return &lineReader{src: src} }

// Buffered returns the number of bytes that can be read without reading from src.
func (l *lineReader) Buffered() int { return l.w - l.r }

// ReadSlice reads until the first occurrence of delim, like bufio.Reader.ReadSlice: it
// returns bufio.ErrBufferFull with a full buffer of a longer line, and what is left before
// an error from src together with it.
func (l *lineReader) ReadSlice(delim byte) ([]byte, error) {
	for {
		if l.buf != nil {
			b := (*l.buf)[l.r:l.w]
			if i := bytes.IndexByte(b, delim); i >= 0 {
				l.r += i + 1
				return b[:i+1], nil
			}
			if l.err != nil {
				l.r = l.w
				return b, l.readErr()
			}
			if len(b) == len(*l.buf) {
				l.r = l.w
				return b, bufio.ErrBufferFull
			}
		} else if l.err != nil {
			return nil, l.readErr()
		}
		l.fill()
	}
}

func (l *lineReader) readErr() error {
	err := l.err
	l.err = nil
	return err
}

// fill reads from src once.
func (l *lineReader) fill() {
	if l.buf != nil && l.r == l.w {
		l.release()
	}
	var n int
	if l.buf == nil {
		n, l.err = l.src.Read(l.idle[:])
		if n > 0 {
			l.buf = readBuffers.Get().(*[]byte)
			l.r, l.w = 0, copy(*l.buf, l.idle[:n])
		}
	} else {
		if l.r > 0 {
			l.w = copy(*l.buf, (*l.buf)[l.r:l.w])
			l.r = 0
		}
		n, l.err = l.src.Read((*l.buf)[l.w:])
		l.w += n
	}
	if n > 0 || l.err != nil {
		l.empty = 0
	} else if l.empty++; l.empty >= 100 {
		l.err = io.ErrNoProgress // as bufio does with a reader that keeps returning nothing
	}
}

// release gives the buffer back; what it held was read.
func (l *lineReader) release() {
	if l.buf != nil {
		readBuffers.Put(l.buf)
		l.buf, l.r, l.w = nil, 0, 0
	}
}
