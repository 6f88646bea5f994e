package collector

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/kubelogd/kubelogd/sink"
)

// longLine is the state of a line longer than the read buffer while its chunks arrive.
//
// Outside a replay the line is not held whole: once more than a part has come, its
// leading parts go to the file (sink.File.WritePart), so a stream holds about one part
// (--max-line-bytes) of any line, however long. The cursor then knows the line as partial;
// if the stream breaks before the line's end, the next stream replays the line from its
// start, and its first bytes are compared with the ones written (by hash, without holding
// them) before the rest is written.
//
// In a replay the skipper needs whole lines; there at most maxLineBytes of a line are held,
// and the rest only hashed (cut), so the line is still recognised.
type longLine struct {
	active  bool      // a long line is being read
	discard bool      // the rest of a line begun before sinceTime: dropped (tailOfSkippedLine)
	hold    bool      // in a replay: gathered whole in buf (raw line, timestamp and all)
	ts      time.Time // the line's timestamp, once its head was parsed
	raw     []byte    // the timestamp as sent
	buf     []byte    // held: the raw line; streamed: text not yet written
	hash    uint64    // the hash of the line's text so far
	cut     int64     // held: bytes of text dropped beyond maxLineBytes
	// own is set once the cursor's partial line is this line: its leading parts were
	// written by this stream, or found to be the ones an earlier stream wrote.
	own bool
	// verify is how many bytes of the cursor's partial line are still to be compared
	// with this line's; vhash hashes what was compared so far.
	verify int64
	vhash  uint64
}

func (l *longLine) reset() {
	buf := l.buf[:0]
	if cap(buf) > 2*readBufferSize {
		buf = nil // a part can be MiBs: not kept while the stream idles
	}
	*l = longLine{buf: buf}
}

// chunk takes the next chunk of a line longer than the read buffer (not its last one).
// sinced is set for a stream read from a sinceTime, where a line may be the
// untimestamped rest of one begun before it (tailOfSkippedLine); replay while a skipper
// holds the stream's lines. It returns whether lines were written.
func (t *target) chunk(ctx context.Context, l *longLine, c []byte, sinced, replay bool) (bool, error) {
	if !l.active {
		l.active = true
		ts, raw, text, ok := parseLine(c)
		switch {
		case !ok && sinced:
			// The untimestamped rest of a line begun before sinceTime (see request.sinced).
			l.discard = true
			return false, nil
		case !ok:
			return false, unparsed(c, false)
		}
		l.ts, l.raw, l.hash = ts, bytes.Clone(raw), sink.HashStart
		if replay {
			l.hold = true
			l.buf = append(l.buf[:0], c[:len(c)-len(text)]...)
		} else if p := t.out.Cursor().Partial; p != nil {
			if ts.Equal(p.Time) {
				l.verify, l.vhash = p.Bytes, sink.HashStart
			} else {
				t.partialGone(p, "")
			}
		}
		c = text
	}
	return t.feed(ctx, l, c)
}

// feed adds text of the line.
func (t *target) feed(ctx context.Context, l *longLine, text []byte) (bool, error) {
	if l.discard {
		return false, nil
	}
	l.hash = sink.HashMore(l.hash, text)
	if l.hold {
		room := max(0, maxLineBytes-len(l.buf))
		if len(text) > room {
			l.cut += int64(len(text) - room)
			text = text[:room]
		}
		l.buf = append(l.buf, text...)
		return false, nil
	}
	if l.verify > 0 {
		n := min(l.verify, int64(len(text)))
		l.vhash = sink.HashMore(l.vhash, text[:n])
		l.verify -= n
		text = text[n:]
		if l.verify == 0 {
			p := t.out.Cursor().Partial
			if l.vhash == p.Hash {
				l.own = true
			} else {
				t.partialGone(p, fmt.Sprintf("; the first %d bytes of the next line, stamped the same, differ from them and are not written", p.Bytes))
			}
		}
	}
	l.buf = append(l.buf, text...)
	if l.verify > 0 || len(l.buf) < t.out.PartBytes()+readBufferSize {
		return false, nil
	}
	n, err := t.acceptPart(ctx, sink.Record{Time: l.ts, RawTime: l.raw, Line: l.buf})
	if err != nil {
		return false, err
	}
	l.own = true
	l.buf = l.buf[:copy(l.buf, l.buf[n:])]
	return n > 0, nil
}

// partialGone ends the cursor's partial line, whose rest is not in the log the kubelet
// serves now (it rotated the line away, or the instance is not the one written from),
// with a gap marker.
func (t *target) partialGone(p *sink.PartialLine, more string) {
	t.gap(gapRotated, fmt.Sprintf("the rest of a line stamped %s, of which %d bytes were written, is no longer in the kubelet's log%s",
		p.Time.UTC().Format(timeLayout), p.Bytes, more))
}

// acceptPart is accept for sink.File.WritePart.
func (t *target) acceptPart(ctx context.Context, rec sink.Record) (int, error) {
	if err := t.verifyFirst(rec); err != nil {
		return 0, err
	}
	for {
		n, err := t.out.WritePart(rec)
		if err == nil {
			return n, nil
		}
		t.flush(ctx)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if !t.sleep(ctx) {
			return 0, ctx.Err()
		}
	}
}

// endLong takes the last chunk of a long line, complete if it ended with a newline (which
// last no longer holds). A held line it returns, to go the way of any line (raw line,
// timestamp and all); a streamed line it writes here, and returns nil.
func (t *target) endLong(ctx context.Context, l *longLine, last []byte, complete bool, mode readMode) (line []byte, progress bool, err error) {
	defer l.reset()
	if l.discard {
		return nil, false, nil
	}
	if _, err := t.feed(ctx, l, last); err != nil {
		return nil, false, err
	}
	if l.hold {
		return l.buf, false, nil
	}
	if l.verify > 0 {
		// The line is shorter than what was written of the partial line.
		p := t.out.Cursor().Partial
		t.partialGone(p, fmt.Sprintf("; the next line, stamped the same, is shorter than that and is not written (%d bytes)", p.Bytes-l.verify))
		return nil, false, nil
	}
	if !complete {
		switch {
		case mode == readFollow:
			return nil, false, errTornLine
		case mode == readPoll:
			return nil, false, nil // still being written: the next poll reads it
		case !t.confirmHash(l.ts, l.hash):
			return nil, false, errTornLine
		}
	}
	if !l.own {
		return nil, true, t.write(ctx, l.ts, l.raw, l.buf)
	}
	// The rest of the line the cursor holds as partial.
	n := int(t.out.Cursor().Partial.Bytes) + len(l.buf)
	if err := t.accept(ctx, sink.Record{Time: l.ts, RawTime: l.raw, Line: l.buf}); err != nil {
		return nil, false, err
	}
	t.sm.line(n, l.ts, t.c.cfg.Now())
	return nil, true, nil
}
