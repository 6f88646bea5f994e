package collector

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/sink"
)

// replay feeds lines to a skipper the way the read loop does and returns the texts it releases
// and the marker, if any.
func replay(k *skipper, lines []string, ts func(i int) time.Time, endFinal *bool) (released []string, marker string, ok bool) {
	ok = true
	for i, l := range lines {
		if k.done {
			released = append(released, l)
			continue
		}
		held, m := offerLine(k, ts(i), nil, []byte(l))
		if m != "" {
			marker = m
		}
		for _, h := range held {
			released = append(released, string(h.text))
		}
	}
	if !k.done && endFinal != nil {
		var held []heldLine
		held, m, o := k.end(*endFinal)
		ok = o
		if m != "" {
			marker = m
		}
		for _, h := range held {
			released = append(released, string(h.text))
		}
	}
	return released, marker, ok
}

// offerLine offers a line to k as the read loop does (consumer.take).
func offerLine(k *skipper, ts time.Time, raw, text []byte) ([]heldLine, string) {
	return k.offer(heldLine{ts: ts, raw: bytes.Clone(raw), text: bytes.Clone(text), hash: sink.HashLine(text)})
}

func TestSkipper(t *testing.T) {
	t0 := time.Unix(1000, 0)
	same := func(int) time.Time { return t0 } // a burst: every line has the same timestamp
	f, tr := false, true
	tests := []struct {
		name       string
		skip       int64
		lastText   string
		replayed   []string
		end        *bool
		want       []string
		wantMarker bool
		wantOK     bool
	}{
		{name: "exact replay, repeated identical lines", skip: 3, lastText: "x",
			replayed: []string{"x", "x", "x", "x", "y"}, want: []string{"x", "y"}, wantOK: true},
		{name: "count too high but last line present", skip: 4, lastText: "b",
			replayed: []string{"a", "b", "c"}, end: &tr, want: []string{"c"}, wantOK: true},
		{name: "count off, last line found among held", skip: 3, lastText: "a",
			replayed: []string{"a", "b", "c", "d"}, want: []string{"b", "c", "d"}, wantOK: true},
		{name: "rotated away: every replayed line is new, with a marker", skip: 2, lastText: "old",
			replayed: []string{"n1", "n2", "n3"}, want: []string{"n1", "n2", "n3"}, wantMarker: true, wantOK: true},
		{name: "cut during replay while following: retry, release nothing", skip: 5, lastText: "z",
			replayed: []string{"a", "b"}, end: &f, want: nil, wantOK: false},
		{name: "short final replay without the last line", skip: 5, lastText: "z",
			replayed: []string{"a", "b"}, end: &tr, want: []string{"a", "b"}, wantMarker: true, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := &skipper{remaining: tt.skip, lastTime: t0, lastHash: sink.HashLine([]byte(tt.lastText))}
			got, marker, ok := replay(k, tt.replayed, same, tt.end)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) || (marker != "") != tt.wantMarker || ok != tt.wantOK {
				t.Fatalf("released %q marker %q ok %v; want %q marker %v ok %v", got, marker, ok, tt.want, tt.wantMarker, tt.wantOK)
			}
			if marker != "" && !strings.HasPrefix(marker, "gap: ") {
				t.Fatalf("marker %q does not start with gap:", marker)
			}
		})
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		in   string
		ok   bool
		text string
	}{
		{"2026-01-02T03:04:05.123456789Z hello world", true, "hello world"},
		{"2026-01-02T03:04:05.000000000Z ", true, ""},
		{"failed to create fsnotify watcher: too many open files", false, ""},
		{"not-a-time-at-all-xxxxxxxxx text", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			ts, raw, text, ok := parseLine([]byte(tt.in))
			if ok != tt.ok || (ok && (string(text) != tt.text || string(raw) != tt.in[:30] || ts.IsZero())) {
				t.Fatalf("parseLine = %s %q %q %v", ts, raw, text, ok)
			}
		})
	}
}

// TestSkipperSettlesOnlyOnProof: a replay is settled by what its lines prove, never by how
// its body ended. A cut or paused replay is read again, however often; a replayed line
// stamped beyond every written line proves the last line written is gone.
func TestSkipperSettlesOnlyOnProof(t *testing.T) {
	t0 := time.Unix(1000, 0)
	cur := &sink.Cursor{MarginSec: 2}
	cur.Observe(t0, []byte("z"))
	newK := func(skip int64) *skipper { return newSkipper(cur, skip) }
	at := func(d time.Duration) func(int) time.Time { return func(int) time.Time { return t0.Add(d) } }
	notFinal := false
	for attempt := range 3 {
		k := newK(5)
		_, marker, ok := replay(k, []string{"a", "b"}, at(0), &notFinal)
		if ok || marker != "" {
			t.Fatalf("attempt %d: a cut replay was settled (ok %v, marker %q)", attempt, ok, marker)
		}
	}
	// Within the margin of the newest written second: may still precede the last line.
	k := newK(5)
	if got, marker, ok := replay(k, []string{"a", "b"}, at(2*time.Second), &notFinal); ok || marker != "" || got != nil {
		t.Fatalf("lines within the margin settled the replay: %q %q %v", got, marker, ok)
	}
	// Beyond it: the kubelet's file has gone past where the last line written would be.
	k = newK(5)
	lines := []string{"a", "b", "c"}
	ts := func(i int) time.Time { return t0.Add(time.Duration(i) * 2 * time.Second) }
	got, marker, ok := replay(k, lines, ts, &notFinal)
	if !ok || !strings.Contains(marker, "rotated") || fmt.Sprint(got) != fmt.Sprint(lines) {
		t.Fatalf("beyond the margin: released %q marker %q ok %v; want all lines with a rotated marker", got, marker, ok)
	}
	// The last line written among them: what follows it is new, without a marker.
	k = newK(5)
	got, marker, ok = replay(k, []string{"y", "z", "n1"}, func(i int) time.Time {
		if i < 2 {
			return t0
		}
		return t0.Add(10 * time.Second)
	}, &notFinal)
	if !ok || marker != "" || fmt.Sprint(got) != "[n1]" {
		t.Fatalf("last line found: released %q marker %q ok %v; want [n1] without marker", got, marker, ok)
	}
}

// TestGapMarkerSpanNeverInverted: the marker's span starts at the last line written and
// ends at the first held line stamped after it; held lines stamped earlier (stderr lines,
// an earlier part of the log) do not end it before it starts.
func TestGapMarkerSpanNeverInverted(t *testing.T) {
	last := time.Date(2026, 12, 3, 16, 53, 13, 364033282, time.UTC)
	final := true
	for _, tc := range []struct {
		name    string
		offsets []time.Duration // of the held lines, from the last line written
		want    string          // the span's end, or "" for none
	}{
		{"held after", []time.Duration{time.Second, 2 * time.Second}, last.Add(time.Second).Format(timeLayout)},
		{"held before, then after", []time.Duration{-2 * time.Second, -time.Second, 3 * time.Second}, last.Add(3 * time.Second).Format(timeLayout)},
		{"all held before", []time.Duration{-2 * time.Second, -time.Second}, ""},
		{"nothing held", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := &skipper{remaining: 100, lastTime: last, lastHash: sink.HashLine([]byte("gone"))}
			var lines []string
			for i := range tc.offsets {
				lines = append(lines, fmt.Sprint("held ", i))
			}
			_, marker, ok := replay(k, lines, func(i int) time.Time { return last.Add(tc.offsets[i]) }, &final)
			if !ok || marker == "" {
				t.Fatalf("final short replay: marker %q ok %v", marker, ok)
			}
			after, before, found := spanOf(t, marker)
			if after != last.Format(timeLayout) {
				t.Errorf("span starts at %s, want %s", after, last.Format(timeLayout))
			}
			if before != tc.want {
				t.Errorf("span ends at %q, want %q (marker %q)", before, tc.want, marker)
			}
			if found {
				a, _ := time.Parse(time.RFC3339Nano, after)
				b, _ := time.Parse(time.RFC3339Nano, before)
				if b.Before(a) {
					t.Errorf("inverted span: %s before %s", before, after)
				}
			}
		})
	}
}

// spanOf extracts the times of "lines logged after A[ and before B] may be missing".
func spanOf(t *testing.T, marker string) (after, before string, hasBefore bool) {
	t.Helper()
	_, rest, ok := strings.Cut(marker, "lines logged after ")
	if !ok {
		t.Fatalf("marker %q names no span", marker)
	}
	rest, _, _ = strings.Cut(rest, " may be missing")
	after, before, hasBefore = strings.Cut(rest, " and before ")
	return after, before, hasBefore
}

func TestTailOfSkippedLine(t *testing.T) {
	for _, tc := range []struct {
		line string
		want bool
	}{
		{" last part of a split line\n", true},
		{"a whole line without timestamp\n", true},
		{"2026-12-03T16:53:13.364033282Z a whole line\n", false},
		// Kubelet error texts come without a newline.
		{"failed to create fsnotify watcher: too many open files", false},
		{"2026-12-03T16:53", false},
	} {
		if got := tailOfSkippedLine([]byte(tc.line)); got != tc.want {
			t.Errorf("tailOfSkippedLine(%q) = %v, want %v", tc.line, got, tc.want)
		}
	}
}
