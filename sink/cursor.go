package sink

import (
	"cmp"
	"slices"
	"time"
)

// Cursor records how far one container's file has got through the log of the container
// instance that is writing to it, in the terms the kubelet can resume from.
//
// The kubelet can only resume a stream at a whole second (sinceTime is sent with second
// precision) and then replays, in file order, every line stamped at or after it. Timestamps
// are not monotonic (stdout and stderr interleave), so the resume second is taken a margin
// before the newest timestamp written, and the replay is skipped by position: the cursor
// counts how many written lines fall in each recent second, so it knows exactly how many
// replayed lines were written already, and it keeps the last line's timestamp and hash so
// that the last skipped line can be checked.
//
// A Cursor is plain data: the owner of the File it belongs to is its only user.
type Cursor struct {
	// PodUID and ContainerID identify the container instance these positions refer to.
	// A cursor never carries over to another pod UID or container instance.
	PodUID      string `json:"podUID"`
	ContainerID string `json:"containerID"`
	// RestartCount is the restartCount of ContainerID's instance.
	RestartCount int32 `json:"restartCount"`
	// Lines counts the application lines written from this instance.
	Lines int64 `json:"lines"`
	// Done is set once the instance's log was read to its end: nothing more will come.
	Done bool `json:"done,omitempty"`
	// LastTime and LastHash identify the last line written (hash: FNV-1a 64 of its bytes).
	LastTime time.Time `json:"lastTime"`
	LastHash uint64    `json:"lastHash"`
	// MaxSec is the newest whole second (Unix) of any line written from this instance.
	MaxSec int64 `json:"maxSec"`
	// Seconds counts written lines per whole second, for the seconds from
	// MaxSec-MarginSec on; older seconds are pruned because no resume will start before them.
	Seconds []SecondCount `json:"seconds,omitempty"`
	// MarginSec is how far before MaxSec a resume starts. It must exceed the largest
	// out-of-order skew between timestamps in the file; the runtime's is milliseconds.
	MarginSec int64 `json:"marginSec"`
	// NotBefore is the sinceTime the instance was first read from (--since), if any: a
	// resume never starts before it, since lines before it were never written.
	NotBefore time.Time `json:"notBefore,omitzero"`
	// Unordered is set when the kubelet was found holding lines stamped before the resume
	// second, after the last line written (the node's clock stepped back): resuming from a
	// second would hide them. It is cleared when a line reaches MaxSec again.
	Unordered bool `json:"unordered,omitempty"`
	// Partial is the line being written part by part (File.WritePart): a line longer than
	// MaxLineBytes whose end has not been read yet. Lines counts it only once its end is
	// written. A resume finds it again as the first line after the replayed ones and writes
	// only its rest, once its first Bytes bytes prove to be the ones written.
	Partial *PartialLine `json:"partial,omitempty"`
}

// PartialLine is a line of which the first Bytes bytes are written.
type PartialLine struct {
	Time  time.Time `json:"time"`
	Bytes int64     `json:"bytes"`
	// Parts is how many parts they were written in (the json format numbers parts).
	Parts int `json:"parts"`
	// Hash is HashLine of the first Bytes bytes; HashMore continues it.
	Hash uint64 `json:"hash"`
}

// SecondCount is the number of lines written whose timestamp falls in one whole second.
type SecondCount struct {
	Sec int64 `json:"s"`
	N   int64 `json:"n"`
}

// DefaultResumeMarginSec is the default Cursor.MarginSec.
const DefaultResumeMarginSec = 2

// HashLine is the hash a Cursor keeps of a line: FNV-1a, 64 bits.
func HashLine(line []byte) uint64 { return HashMore(HashStart, line) }

// HashStart is the hash of no bytes; HashMore(HashStart, a+b) = HashMore(HashMore(HashStart, a), b).
const HashStart uint64 = 14695981039346656037

// HashMore continues h, the hash of a line's first bytes, with the next bytes p.
func HashMore(h uint64, p []byte) uint64 {
	const prime64 = 1099511628211
	for _, c := range p {
		h ^= uint64(c)
		h *= prime64
	}
	return h
}

// Reset points the cursor at the start of a new container instance.
func (c *Cursor) Reset(podUID, containerID string, restartCount int32) {
	margin := c.MarginSec
	if margin <= 0 {
		margin = DefaultResumeMarginSec
	}
	*c = Cursor{PodUID: podUID, ContainerID: containerID, RestartCount: restartCount, MarginSec: margin}
}

// Observe records that one application line, stamped t by the kubelet, was written.
func (c *Cursor) Observe(t time.Time, line []byte) {
	c.ObserveHashed(t, HashLine(line))
}

// ObserveHashed is Observe for a line whose hash is already known.
func (c *Cursor) ObserveHashed(t time.Time, hash uint64) {
	if c.MarginSec <= 0 {
		c.MarginSec = DefaultResumeMarginSec
	}
	c.Lines++
	c.LastTime = t
	c.LastHash = hash
	sec := t.Unix()
	if sec >= c.MaxSec {
		c.Unordered = false
	}
	if sec > c.MaxSec {
		c.MaxSec = sec
		c.prune()
	}
	if sec < c.MaxSec-c.MarginSec {
		// Older than any resume point: a replay never contains it, so it need not be counted.
		return
	}
	// Seconds stays sorted; new lines almost always land in the last bucket.
	i := len(c.Seconds)
	for i > 0 && c.Seconds[i-1].Sec > sec {
		i--
	}
	if i > 0 && c.Seconds[i-1].Sec == sec {
		c.Seconds[i-1].N++
		return
	}
	c.Seconds = append(c.Seconds, SecondCount{})
	copy(c.Seconds[i+1:], c.Seconds[i:])
	c.Seconds[i] = SecondCount{Sec: sec, N: 1}
}

func (c *Cursor) prune() {
	min := c.MaxSec - c.MarginSec
	i := 0
	for i < len(c.Seconds) && c.Seconds[i].Sec < min {
		i++
	}
	if i > 0 {
		c.Seconds = append(c.Seconds[:0], c.Seconds[i:]...)
	}
}

// Rebase replaces the line counts of the seconds from since on with the seconds of
// replayed: the timestamps of the lines the kubelet's log still holds from since up to the
// last line written, when a complete replay showed that it no longer holds all that was
// written (it rotated its file). A later resume from since then skips what it holds.
func (c *Cursor) Rebase(since time.Time, replayed []time.Time) {
	from := since.Unix()
	counts := map[int64]int64{}
	for _, t := range replayed {
		if sec := t.Unix(); sec >= from && sec >= c.MaxSec-c.MarginSec {
			counts[sec]++
		}
	}
	var out []SecondCount
	for _, sc := range c.Seconds {
		if sc.Sec < from {
			out = append(out, sc)
		}
	}
	for sec, n := range counts {
		out = append(out, SecondCount{Sec: sec, N: n})
	}
	slices.SortFunc(out, func(a, b SecondCount) int { return cmp.Compare(a.Sec, b.Sec) })
	c.Seconds = out
}

// ByContent reports whether the instance's stream must be resumed by content rather than
// from a second: the last line written is stamped more than the margin before the newest
// (the node's clock stepped back after stamping lines in its future), or the kubelet was
// seen holding lines stamped before the resume second. The kubelet drops lines stamped
// before sinceTime wherever they are in its file, so a resume from MaxSec-MarginSec would
// never see the lines logged after the step; instead the stream is read from NotBefore (or
// the start of the kubelet's current file) and every line up to the last line written is
// skipped.
func (c *Cursor) ByContent() bool {
	return c.Lines > 0 && (c.Unordered || c.LastTime.Unix() < c.MaxSec-c.MarginSec)
}

// Resume tells where to reopen the instance's stream: at sinceTime (whole seconds), after
// skipping the first skip lines the kubelet replays, the last of which must be the line
// identified by LastTime and LastHash. ok is false when nothing was written yet, in which
// case the stream starts wherever a new stream would.
func (c *Cursor) Resume() (since time.Time, skip int64, ok bool) {
	if c.Lines == 0 {
		return time.Time{}, 0, false
	}
	start := c.MaxSec - c.MarginSec
	if nb := c.NotBefore.Unix(); !c.NotBefore.IsZero() && nb > start {
		start = nb
	}
	for _, s := range c.Seconds {
		if s.Sec >= start {
			skip += s.N
		}
	}
	return time.Unix(start, 0).UTC(), skip, true
}
