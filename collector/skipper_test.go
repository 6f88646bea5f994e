package collector

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/sink"
)

// replay feeds lines to a skipper the way readOnce does and returns the texts it releases
// and the marker, if any.
func replay(k *skipper, lines []string, ts func(i int) time.Time, endFollow *bool) (released []string, marker string, ok bool) {
	ok = true
	for i, l := range lines {
		if k.done {
			released = append(released, l)
			continue
		}
		held, m := k.offer(ts(i), nil, []byte(l))
		if m != "" {
			marker = m
		}
		for _, h := range held {
			released = append(released, string(h.text))
		}
	}
	if !k.done && endFollow != nil {
		var held []heldLine
		held, m, o := k.end(*endFollow)
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
			replayed: []string{"a", "b", "c"}, end: &f, want: []string{"c"}, wantOK: true},
		{name: "count off, last line found among held", skip: 3, lastText: "a",
			replayed: []string{"a", "b", "c", "d"}, want: []string{"b", "c", "d"}, wantOK: true},
		{name: "rotated away: every replayed line is new, with a marker", skip: 2, lastText: "old",
			replayed: []string{"n1", "n2", "n3"}, want: []string{"n1", "n2", "n3"}, wantMarker: true, wantOK: true},
		{name: "cut during replay while following: retry, release nothing", skip: 5, lastText: "z",
			replayed: []string{"a", "b"}, end: &tr, want: nil, wantOK: false},
		{name: "short final replay without the last line", skip: 5, lastText: "z",
			replayed: []string{"a", "b"}, end: &f, want: []string{"a", "b"}, wantMarker: true, wantOK: true},
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
