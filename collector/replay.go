package collector

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/kubelogd/kubelogd/sink"
)

// newReplay returns the skipper for the lines req replays, or nil when it replays none.
func newReplay(req request, cur *sink.Cursor) *skipper {
	switch {
	case req.settled:
		return nil
	case req.byContent:
		return newContentSkipper(cur)
	case req.resuming && req.skip > 0:
		return newSkipper(cur, req.skip)
	}
	return nil
}

// offer gives a replayed line to the replay and writes the lines it lets go of.
func (c *consumer) offer(ctx context.Context, h heldLine) error {
	held, marker := c.replay.offer(h)
	if marker != "" {
		// The watchdog must not cut the stream while the pod is fetched.
		c.wd.endReplay()
		if err := c.t.checkReplayed(held, c.req.previous); err != nil {
			return err
		}
	}
	if err := c.release(ctx, held, marker); err != nil {
		return err
	}
	if c.replay.done {
		c.t.inst.quiet = nil
		c.t.sm.m.skipped.Add(float64(c.replay.skipped))
		c.wd.endReplay()
		c.replay = nil
	}
	return nil
}

// settle decides a replay that the body ended before it was verified. replayCut: the
// watchdog ended the body because the replay went quiet.
func (c *consumer) settle(ctx context.Context, replayCut bool) error {
	t, k, cur := c.t, c.replay, c.cur
	// A replay that ends short of the last line written proves nothing by its end: a
	// follow may have been cut, or the kubelet paused (busy, or slow to find sinceTime);
	// and a body without follow that ends cleanly may have been cut too, since the API
	// server ends its response cleanly when the kubelet's breaks (it ignores the error of
	// its copy). It is read again; only what the lines themselves prove settles it (see
	// skipper), or a read without follow that finds what the replay before it found.
	final := c.req.mode != readFollow && t.inst.quiet.same(k, cur)
	held, marker, ok := k.end(final)
	if !ok {
		t.inst.quiet = nil
		if replayCut || c.req.mode != readFollow {
			// The kubelet served these and then nothing: all it has, unless it was
			// merely slow or cut. A read without follow, which waits for the kubelet
			// however slow it is, settles it if it finds the same (see readRunning).
			t.inst.quiet = sigOf(k, cur)
		}
		// The kubelet serves the container's current instance: if it restarted and the
		// informer has not said so yet (a slow or broken watch), fresh status tells the
		// loop to read the previous instance. Not the request's context: the watchdog
		// may have cancelled it.
		_ = t.refreshPod(t.ctx)
		return errShortReplay
	}
	t.inst.quiet = nil
	if marker != "" {
		if err := t.checkReplayed(held, c.req.previous); err != nil {
			return err
		}
	}
	t.sm.m.skipped.Add(float64(k.skipped))
	if (replayCut || c.req.mode == readPoll) && k.found != nil {
		// The stream was quiet for replayIdle after the kubelet replayed fewer lines than
		// were written from the window, the last line written among them: it no longer
		// has the others (it rotated its file). Count the window as it has it, so that
		// the next resume's replay is verified by its count rather than cut again after
		// replayIdle, over and over while the container stays quiet.
		cur.Rebase(c.req.since, k.found)
	}
	if marker != "" && len(held) == 0 {
		// The kubelet has no line of the window at all: the cursor stays where it is, and
		// a replay from it would find this gap again (see instance.settled).
		pos := posOf(cur)
		t.inst.settled = &pos
	}
	return c.release(ctx, held, marker)
}

// release writes the lines a skipper let go of, after its gap marker if it has one.
func (c *consumer) release(ctx context.Context, held []heldLine, marker string) error {
	t := c.t
	if marker != "" {
		t.logger.Warn("gap in collected log", "reason", gapRotated, "detail", strings.TrimPrefix(marker, "gap: "))
		t.sm.m.gaps.WithLabelValues(gapRotated).Inc()
		t.marker(t.c.cfg.Now(), marker)
	}
	for _, h := range held {
		if err := t.write(ctx, h.ts, h.raw, h.text); err != nil {
			return err
		}
		c.progress = true
		if h.cut > 0 {
			t.gap(gapLineTooLong, fmt.Sprintf("the line above, stamped %s, is %d bytes long: its last %d bytes are not written (a replay holds at most %d bytes of a line while it is verified)",
				h.ts.UTC().Format(timeLayout), int64(len(h.text))+h.cut, h.cut, maxLineBytes))
		}
	}
	return nil
}

// replaySig identifies what an unverified replay held when it ended: so many lines, the
// last of them this one, replayed for the cursor at this many lines written.
type replaySig struct {
	n, written int64
	last       pendingLine
}

func sigOf(k *skipper, cur *sink.Cursor) *replaySig {
	sig := &replaySig{n: int64(len(k.held)), written: cur.Lines}
	if len(k.held) > 0 {
		h := k.held[len(k.held)-1]
		sig.last = pendingLine{ts: h.ts, hash: h.hash}
	}
	return sig
}

// same reports whether k holds what the replay of sig held, for the same cursor.
func (sig *replaySig) same(k *skipper, cur *sink.Cursor) bool {
	if sig == nil {
		return false
	}
	now := sigOf(k, cur)
	return *now == *sig
}

// pendingLine identifies a line by timestamp and hash.
type pendingLine struct {
	ts   time.Time
	hash uint64
}

// heldLine is a replayed line kept until the replay is verified.
type heldLine struct {
	ts        time.Time
	raw, text []byte
	hash      uint64 // of the whole line
	// cut is how many bytes of a line longer than maxLineBytes are not in text: a replay
	// holds no more of a line (see longLine).
	cut int64
}

// skipper consumes the lines a resumed stream replays. It holds them until it has seen as
// many as were written from the replay window, then checks that the last one is the line
// written last. If the count is off but the last line written is among them, what follows
// it is new; if it is not there at all (the kubelet rotated it away), every held line is
// new and a marker says that lines may be missing before them. Nothing is dropped without
// proof that it was written already.
type skipper struct {
	remaining int64
	lastTime  time.Time
	lastHash  uint64
	// byContent: the replay is the whole current file (see newContentSkipper).
	byContent bool
	// beyond is a time no written line's timestamp came near: a replayed line stamped at or
	// after it follows every written line in the kubelet's file (out-of-order timestamps
	// differ by less than the cursor's margin). Seen before the last line written, it
	// proves that line is gone. Zero: no such proof is taken.
	beyond  time.Time
	held    []heldLine
	done    bool
	skipped int64 // replayed lines found to be written already
	// found are the timestamps of the replayed lines up to the last line written, when end
	// found it before as many lines as were written from the window had come.
	found []time.Time
}

// newSkipper holds the first skip lines of a stream resumed from cur.
func newSkipper(cur *sink.Cursor, skip int64) *skipper {
	return &skipper{
		remaining: skip, lastTime: cur.LastTime, lastHash: cur.LastHash,
		beyond: time.Unix(cur.MaxSec+1+max(cur.MarginSec, 1), 0),
	}
}

// newContentSkipper holds the lines of a stream resumed by content (Cursor.ByContent) until
// the last line written comes: those up to it are skipped, the rest are new. No count of
// lines or timestamp proves anything here, since timestamps went back: only the last line
// written itself, or the end of a read that has all the kubelet has.
func newContentSkipper(cur *sink.Cursor) *skipper {
	return &skipper{remaining: math.MaxInt64, lastTime: cur.LastTime, lastHash: cur.LastHash, byContent: true}
}

// offer takes the next replayed line. The replay is settled, and held lines released,
// only on proof from the lines themselves: as many lines as were written from the window
// have come, or one stamped beyond every written line has. Timing proves nothing (a stream
// cut, a kubelet that pauses), so the end of a follow never settles it (see end). h is
// the skipper's to keep: its bytes must not be the reader's buffer.
func (k *skipper) offer(h heldLine) (release []heldLine, marker string) {
	ts := h.ts
	if k.byContent {
		if h.ts.Equal(k.lastTime) && h.hash == k.lastHash {
			k.done, k.skipped = true, int64(len(k.held)+1)
			k.held = nil
			return nil, ""
		}
		k.held = append(k.held, h)
		return nil, ""
	}
	k.held = append(k.held, h)
	k.remaining--
	if k.remaining > 0 {
		if k.beyond.IsZero() || ts.Before(k.beyond) {
			return nil, ""
		}
		// The kubelet's file has moved past where the last line written would be.
		return k.resync(true)
	}
	k.done = true
	if last := k.held[len(k.held)-1]; last.ts.Equal(k.lastTime) && last.hash == k.lastHash {
		k.skipped = int64(len(k.held))
		k.held = nil
		return nil, ""
	}
	return k.resync(true)
}

// end is called when the stream ends before the replay was verified. If the last line
// written is among the held lines, what follows it is new. If not, and the end is not
// final, the replay may just have been cut: ok is false and the caller retries. A final
// end (the same replay read twice without follow) releases every held line after a marker.
func (k *skipper) end(final bool) (release []heldLine, marker string, ok bool) {
	if i := k.find(); i >= 0 {
		rel := k.held[i+1:]
		k.found = make([]time.Time, i+1)
		for j, h := range k.held[:i+1] {
			k.found[j] = h.ts
		}
		k.held, k.done, k.skipped = nil, true, int64(i+1)
		return rel, "", true
	}
	if !final {
		return nil, "", false
	}
	rel, m := k.resync(false)
	return rel, m, true
}

// isLast reports whether a line, known by its timestamp and hash, is the line written
// last, while the replay is looking for it (k may be nil: no replay).
func (k *skipper) isLast(ts time.Time, hash uint64) bool {
	return k != nil && !k.done && ts.Equal(k.lastTime) && hash == k.lastHash
}

// find returns the index of the last held line that is the line written last, or -1.
func (k *skipper) find() int { return k.findIn(k.held) }

func (k *skipper) resync(counted bool) ([]heldLine, string) {
	k.done = true
	held := k.held
	k.held = nil
	if i := k.findIn(held); i >= 0 {
		k.skipped = int64(i + 1)
		return held[i+1:], ""
	}
	why := "the kubelet no longer has the last line written"
	if counted {
		why = "the replayed log does not contain the last line written"
	}
	// The kubelet serves only the current file of a rotated log, so how many lines went
	// with the rotated one cannot be known through the API; their time span can.
	return held, "gap: " + why + " (its log was probably rotated); " + k.missingSpan(held) + " may be missing"
}

// missingSpan names the time span of the lines that may be missing before held: after the
// last line written, and before the first held line stamped later than it. Held lines
// stamped earlier (stdout and stderr interleave) do not bound it: the span never ends
// before it starts.
func (k *skipper) missingSpan(held []heldLine) string {
	span := "lines logged after " + k.lastTime.UTC().Format(timeLayout)
	for _, h := range held {
		if h.ts.After(k.lastTime) {
			return span + " and before " + h.ts.UTC().Format(timeLayout)
		}
	}
	return span
}

func (k *skipper) findIn(held []heldLine) int {
	for i := len(held) - 1; i >= 0; i-- {
		if h := held[i]; h.ts.Equal(k.lastTime) && h.hash == k.lastHash {
			return i
		}
	}
	return -1
}
