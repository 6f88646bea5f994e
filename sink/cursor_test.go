package sink

import (
	"testing"
	"time"
)

func TestCursorResume(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(sec, nsec int) time.Time { return base.Add(time.Duration(sec)*time.Second + time.Duration(nsec)) }
	type line struct {
		t    time.Time
		text string
	}
	tests := []struct {
		name      string
		lines     []line
		notBefore time.Time
		wantSince time.Time
		wantSkip  int64
	}{
		{
			name:      "one line",
			lines:     []line{{at(0, 5), "a"}},
			wantSince: at(-2, 0), wantSkip: 1,
		},
		{
			name:      "old lines fall out of the window",
			lines:     []line{{at(0, 1), "a"}, {at(1, 0), "b"}, {at(5, 0), "c"}, {at(5, 9), "d"}, {at(6, 0), "e"}},
			wantSince: at(4, 0), wantSkip: 3,
		},
		{
			name: "out-of-order timestamps are counted in their own second",
			lines: []line{{at(10, 0), "a"}, {at(9, 999), "b (stderr, older)"}, {at(10, 5), "c"},
				{at(7, 0), "d (older than the window)"}, {at(8, 0), "e"}},
			wantSince: at(8, 0), wantSkip: 4,
		},
		{
			name:      "burst with equal timestamps",
			lines:     []line{{at(3, 7), "x"}, {at(3, 7), "x"}, {at(3, 7), "x"}},
			wantSince: at(1, 0), wantSkip: 3,
		},
		{
			name:      "never before notBefore",
			lines:     []line{{at(3, 0), "x"}, {at(3, 1), "y"}},
			notBefore: at(2, 0),
			wantSince: at(2, 0), wantSkip: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c Cursor
			c.Reset("uid", "cid", 0)
			c.NotBefore = tt.notBefore
			if _, _, ok := c.Resume(); ok {
				t.Fatal("Resume() ok on an empty cursor")
			}
			for _, l := range tt.lines {
				c.Observe(l.t, []byte(l.text))
			}
			since, skip, ok := c.Resume()
			if !ok || !since.Equal(tt.wantSince) || skip != tt.wantSkip {
				t.Fatalf("Resume() = %s, %d, %v; want %s, %d", since, skip, ok, tt.wantSince, tt.wantSkip)
			}
			last := tt.lines[len(tt.lines)-1]
			if !c.LastTime.Equal(last.t) || c.LastHash != HashLine([]byte(last.text)) || c.Lines != int64(len(tt.lines)) {
				t.Fatalf("last = %s %x (%d lines), want %s %x", c.LastTime, c.LastHash, c.Lines, last.t, HashLine([]byte(last.text)))
			}
		})
	}
}

func TestCursorResetKeepsMargin(t *testing.T) {
	c := Cursor{MarginSec: 7}
	c.Observe(time.Unix(100, 0), []byte("a"))
	c.Reset("u2", "c2", 3)
	if c.MarginSec != 7 || c.Lines != 0 || c.PodUID != "u2" || c.ContainerID != "c2" || c.RestartCount != 3 || len(c.Seconds) != 0 {
		t.Fatalf("after Reset: %+v", c)
	}
}

// TestCursorRebase: after a replay showed the kubelet holds fewer of the window's lines
// than were written, the next resume skips exactly as many as it holds, and lines written
// after the rebase count on top.
func TestCursorRebase(t *testing.T) {
	var c Cursor
	c.Reset("uid", "c1", 0)
	at := func(sec int64, ms int) time.Time { return time.Unix(sec, int64(ms)*1e6).UTC() }
	for i := range 10 {
		c.Observe(at(100+int64(i%3), i), []byte("line"))
	}
	since, skip, ok := c.Resume()
	if !ok || since.Unix() != 100 || skip != 10 {
		t.Fatalf("Resume = %v, %d, %v; want 100, 10, true", since.Unix(), skip, ok)
	}
	c.Rebase(since, []time.Time{at(102, 5), at(101, 7), at(102, 8)})
	if _, skip, _ := c.Resume(); skip != 3 {
		t.Errorf("after Rebase: skip %d, want 3 (the lines the kubelet still holds)", skip)
	}
	c.Observe(at(102, 900), []byte("new"))
	if _, skip, _ := c.Resume(); skip != 4 {
		t.Errorf("after a new line: skip %d, want 4", skip)
	}
	if c.Lines != 11 {
		t.Errorf("Lines = %d, want 11 (Rebase changes only the window)", c.Lines)
	}
}
