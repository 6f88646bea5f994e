package collector

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"time"

	"github.com/kubelogd/kubelogd/sink"
)

// maxLineBytes bounds how much of one line is held in memory while reading. The sink splits
// long lines further; this only keeps a runaway line from exhausting memory.
const maxLineBytes = 64 << 20

// lineSink is what the read loop writes through: the container's *sink.File, which
// advances its cursor as it accepts lines, or a unit test's stand-in.
type lineSink interface {
	// Cursor is the live cursor: what was written of the instance, where to resume.
	Cursor() *sink.Cursor
	// Write adds a line or a marker; on error it was not taken, and may be offered again.
	Write(rec sink.Record) error
	// WritePart writes the leading parts of a line whose end has not been read yet and
	// returns how many of rec.Line's bytes that took (see sink.File.WritePart).
	WritePart(rec sink.Record) (int, error)
	// PartBytes is the longest part a line is written in.
	PartBytes() int
	// Flush writes what is buffered; FlushDue reports whether that is due at now.
	Flush() error
	FlushDue(now time.Time) bool
	// TakeOutsideChange returns, once, what was found changed in the files outside
	// kubelogd and is left to the collector to mark; TakeOutsideMarked, such a change the
	// File marked itself, to count and log (see flush).
	TakeOutsideChange() string
	TakeOutsideMarked() string
}

var _ lineSink = (*sink.File)(nil)

// consumer is the read loop's state for one response body: a new body starts a new one.
type consumer struct {
	t   *target
	req request
	wd  *watchdog // nil: nothing guards the body
	cur *sink.Cursor
	// replay holds the lines the body replays until they are verified (see skipper); nil
	// when the request replays nothing, and once they are verified.
	replay   *skipper
	long     longLine // a line longer than the reader's buffer (see longLine)
	progress bool     // lines were written
}

// consume writes the lines of one response body, read from body, through t.out until the
// body ends. ctx is the request's, which the watchdog cancels with a cause: errShortReplay
// ends a replay that went quiet. consume reports whether lines were written, and why the
// body ended short of what it should have delivered: nil when the body ended cleanly
// (the end of a follow, or of the instance's log), otherwise an error of errors.go, or the
// error that failed the read.
func (t *target) consume(ctx context.Context, body io.Reader, req request, wd *watchdog) (progress bool, err error) {
	c := &consumer{t: t, req: req, wd: wd, cur: t.out.Cursor()}
	if c.replay = newReplay(req, c.cur); c.replay != nil {
		wd.startReplay()
	}
	// A small buffer, and none while idle: thousands of streams are idle for hours (a
	// 64 KiB buffer was 73% of the heap at 2,000 idle streams, a 4 KiB one still 30%).
	// Longer lines are gathered in c.long.
	r := newLineReader(body)
	defer r.release()
	for {
		line, rerr := r.ReadSlice('\n')
		if rerr == bufio.ErrBufferFull {
			wrote, err := t.chunk(ctx, &c.long, line, req.sinced(), c.replay != nil)
			c.progress = c.progress || wrote
			if err != nil {
				return c.progress, err
			}
			continue
		}
		if err := c.line(ctx, line, r.Buffered() == 0); err != nil {
			return c.progress, err
		}
		if rerr != nil {
			return c.progress, c.end(ctx, rerr)
		}
	}
}

// line takes what the reader returned short of a full buffer: a line with its newline, or
// the body's last bytes without one; either may end a long line. idle says that nothing
// more is buffered.
func (c *consumer) line(ctx context.Context, line []byte, idle bool) error {
	var cut int64 // bytes of a held long line dropped beyond maxLineBytes
	var hash uint64
	if c.long.active {
		cut, hash = c.long.cut, c.long.hash
		var err error
		if line, err = c.endLong(ctx, line); err != nil {
			return err
		}
	}
	if line = c.drop(line); len(line) == 0 {
		return nil
	}
	if err := c.take(ctx, line, cut, hash); err != nil {
		return err
	}
	if idle || c.t.out.FlushDue(c.t.c.cfg.Now()) {
		// Nothing more is waiting: make what was read visible before blocking.
		c.t.flush(ctx)
		c.t.publish(c.wd)
	}
	return nil
}

// endLong takes the last chunk of a long line. A line held whole (in a replay) it returns,
// newline and all, to go the way of any line; one written in parts it ends here.
func (c *consumer) endLong(ctx context.Context, line []byte) ([]byte, error) {
	complete := len(line) > 0 && line[len(line)-1] == '\n'
	if complete {
		line = line[:len(line)-1]
	}
	held, wrote, err := c.t.endLong(ctx, &c.long, line, complete, c.req.mode)
	c.progress = c.progress || wrote
	if err != nil {
		return nil, err
	}
	if held != nil && complete {
		held = append(held, '\n')
	}
	if wrote {
		c.t.flush(ctx)
		c.t.publish(c.wd)
	}
	return held, nil
}

// drop returns nil for a line that is not written now, else the line.
func (c *consumer) drop(line []byte) []byte {
	if len(line) > 0 && c.req.sinced() && tailOfSkippedLine(line) {
		// The line's first part is stamped before sinceTime, and a resume starts
		// MarginSec before the newest line written, so the line was written already
		// (and is not among the lines counted for the replay); read from --since, it
		// is older than what is collected. Either way it is not written now.
		c.t.logger.Debug("skipping the rest of a line begun before the stream's sinceTime", "bytes", len(line))
		return nil
	}
	if len(line) > 0 && c.req.mode == readPoll && line[len(line)-1] != '\n' {
		// The last line of a poll's body without newline is still being written (or
		// the body was cut in it): the next poll reads it whole.
		return nil
	}
	return line
}

// take parses one line and writes it, or gives it to the replay. cut and hash describe a
// long line that was held: what of it is not in line, and the hash of all of it.
func (c *consumer) take(ctx context.Context, line []byte, cut int64, hash uint64) error {
	complete := line[len(line)-1] == '\n'
	if complete {
		line = line[:len(line)-1]
	}
	ts, raw, text, ok := parseLine(line)
	if !ok {
		return unparsed(line, complete)
	}
	if c.replay != nil || !complete {
		if cut == 0 {
			hash = sink.HashLine(text)
		}
	}
	if !complete && !c.replay.isLast(ts, hash) {
		// The stream ended mid-line. Following, the line is read again on resume. At
		// the end of a finished instance it may be a last line without newline:
		// write it once a second read ends with the same line. (The line written last,
		// replayed, is that line whether or not a newline follows: the replay skips it.)
		if c.req.follow() || !c.t.confirmHash(ts, hash) {
			return errTornLine
		}
	}
	if c.replay != nil {
		return c.offer(ctx, heldLine{ts: ts, raw: bytes.Clone(raw), text: bytes.Clone(text), hash: hash, cut: cut})
	}
	if err := c.t.write(ctx, ts, raw, text); err != nil {
		return err
	}
	c.progress = true
	return nil
}

// end takes the end of the body: rerr is io.EOF, or what failed the read.
func (c *consumer) end(ctx context.Context, rerr error) error {
	// The watchdog ends a follow whose replay went quiet before it was verified.
	replayCut := rerr != io.EOF && c.replay != nil && errors.Is(context.Cause(ctx), errShortReplay)
	if rerr != io.EOF && !replayCut {
		return rerr
	}
	if c.replay != nil {
		if err := c.settle(ctx, replayCut); err != nil {
			return err
		}
	}
	c.t.flush(ctx)
	if replayCut {
		return errShortReplay
	}
	return nil
}

// confirmHash reports whether an unterminated last line, known by its timestamp and hash,
// was seen at the end of the previous read too, so it is the instance's real last line
// rather than a torn one.
func (t *target) confirmHash(ts time.Time, h uint64) bool {
	if f := t.inst.fragment; f != nil && f.ts.Equal(ts) && f.hash == h {
		t.inst.fragment = nil
		return true
	}
	t.inst.fragment = &pendingLine{ts: ts, hash: h}
	return false
}

// write hands one application line to the sink, which also advances the cursor. While the
// cursor holds a partial line (the stream broke inside a long line written in parts), the
// first line written is that line again: only its rest is written, once its first bytes
// prove to be the ones written; any other line means the rest is gone (a gap).
func (t *target) write(ctx context.Context, ts time.Time, raw, text []byte) error {
	if p := t.out.Cursor().Partial; p != nil {
		if ts.Equal(p.Time) && int64(len(text)) >= p.Bytes && sink.HashLine(text[:p.Bytes]) == p.Hash {
			if err := t.accept(ctx, sink.Record{Time: ts, RawTime: raw, Line: text[p.Bytes:]}); err != nil {
				return err
			}
			t.sm.line(len(text), ts, t.c.cfg.Now())
			return nil
		}
		t.partialGone(p, "")
	}
	if err := t.accept(ctx, sink.Record{Time: ts, RawTime: raw, Line: text}); err != nil {
		return err
	}
	t.sm.line(len(text), ts, t.c.cfg.Now())
	return nil
}

// accept writes rec, waiting while the disk refuses data. A Write that fails did not take
// the record (and the cursor did not count it), so it is offered again once what is
// buffered could be flushed: nothing is lost, nothing is written twice.
func (t *target) accept(ctx context.Context, rec sink.Record) error {
	if err := t.verifyFirst(rec); err != nil {
		return err
	}
	for {
		err := t.out.Write(rec)
		if err == nil {
			return nil
		}
		t.flush(ctx) // returns once the buffer is on disk, or ctx is done
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !t.sleep(ctx) {
			return ctx.Err()
		}
	}
}

// parseLine splits a line of a timestamps=true stream into its timestamp and text.
func parseLine(line []byte) (ts time.Time, raw, text []byte, ok bool) {
	sp := bytes.IndexByte(line, ' ')
	if sp < 20 || sp > 40 {
		return time.Time{}, nil, nil, false
	}
	ts, err := time.Parse(time.RFC3339Nano, string(line[:sp]))
	if err != nil {
		return time.Time{}, nil, nil, false
	}
	return ts, line[:sp], line[sp+1:], true
}

// tailOfSkippedLine reports whether line, of a stream read from a sinceTime (its first
// line, or one after lines stamped later), is the untimestamped rest of a line split into
// CRI partial records whose first record is stamped before sinceTime: ReadLogs skips
// records older than sinceTime but tracks "at the start of a line" across them, so the
// line's next record comes out without a timestamp (cri-client pkg/logs ReadLogs, writer.write(msg, isNewLine)). Such a rest
// ends with a newline, which a kubelet error text written into the body never has.
func tailOfSkippedLine(line []byte) bool {
	if line[len(line)-1] != '\n' {
		return false
	}
	_, _, _, ok := parseLine(line[:len(line)-1])
	return !ok
}
