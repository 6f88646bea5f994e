package tail

import (
	"bytes"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/layout"
)

func TestParseTime(t *testing.T) {
	for _, s := range []string{
		"2026-11-27T03:04:05.123456789Z",
		"1970-01-01T00:00:00.000000000Z",
		"1969-12-31T23:59:59.999999999Z",
		"2024-02-29T23:59:59.000000001Z",
		"2000-03-01T00:00:00.000000000Z",
		"2100-02-28T12:00:00.500000000Z",
		"2026-11-27T05:04:05.123456789+02:00",
		"2026-11-27T03:04:05Z",
		"2026-11-27T03:04:05.1Z",
	} {
		t.Run(s, func(t *testing.T) {
			want, err := time.Parse(time.RFC3339Nano, s)
			mustf(t, err, "time.Parse")
			got, ok := parseTime([]byte(s))
			if !ok || got != want.UnixNano() {
				t.Errorf("parseTime = %d, %v; want %d", got, ok, want.UnixNano())
			}
		})
	}
	for _, s := range []string{"", "2026-11-27", "2026-13-27T03:04:05.123456789Z", "2026-02-30T03:04:05.123456789Z",
		"2026-11-27T24:04:05.123456789Z", "2026-11-27T03:04:05.12345678xZ", "garbage garbage garbage garbage"} {
		if _, ok := parseTime([]byte(s)); ok {
			t.Errorf("parseTime(%q) accepted", s)
		}
	}
}

// FuzzParseTime checks the fast path against time.Parse.
func FuzzParseTime(f *testing.F) {
	f.Add("2026-11-27T03:04:05.123456789Z")
	f.Add("2024-02-29T23:59:59.000000001Z")
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := parseTime([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok != (err == nil) && len(s) <= layout.MaxTimeLen {
			t.Fatalf("parseTime(%q) ok=%v, time.Parse err=%v", s, ok, err)
		}
		if ok && got != want.UnixNano() {
			t.Fatalf("parseTime(%q) = %d, want %d", s, got, want.UnixNano())
		}
	})
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name, line string
		format     layout.Format
		ts, msg    string
	}{
		{"kubelet time", "2026-11-27T03:04:05.123456789Z hello world", layout.FormatTimestamped, "2026-11-27T03:04:05.123456789Z", "hello world"},
		{"offset time", "2026-11-27T05:04:05.1+02:00 hi", layout.FormatTimestamped, "2026-11-27T05:04:05.1+02:00", "hi"},
		{"empty message", "2026-11-27T03:04:05.123456789Z ", layout.FormatTimestamped, "2026-11-27T03:04:05.123456789Z", ""},
		{"no time", "panic: something", layout.FormatTimestamped, "", "panic: something"},
		{"raw", "2026-11-27T03:04:05.123456789Z looks timed", layout.FormatRaw, "", "2026-11-27T03:04:05.123456789Z looks timed"},
		{"json", `{"time":"2026-11-27T03:04:05.123456789Z","namespace":"a","line":"x"}`, layout.FormatJSON, "2026-11-27T03:04:05.123456789Z", "x"},
		{"json escapes", `{"time":"t","line":"a\"b\\c\n\u00e9\ud83d\ude42\ud800"}`, layout.FormatJSON, "t", "a\"b\\c\né🙂\ufffd"},
		{"json keys in any order, spaces", `{ "line" : "x" , "part": 3, "time":"t" }`, layout.FormatJSON, "t", "kubelogd-continued: x"},
		{"json event", `{"time":"t","event":"gap"}`, layout.FormatJSON, "t", "kubelogd: gap"},
		{"json event part", `{"time":"t","event":"gap","part":2}`, layout.FormatJSON, "t", "kubelogd-continued: gap"},
		{"json base64", `{"time":"t","line_b64":"/w=="}`, layout.FormatJSON, "t", "\xff"},
		{"json broken", `{"time":"t","line":"unterminated`, layout.FormatJSON, "", `{"time":"t","line":"unterminated`},
		{"not json", `plain text`, layout.FormatJSON, "", "plain text"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dec := decoder{format: tt.format}
			var d decoded
			line := []byte(tt.line)
			dec.decode(line, &d)
			msg := line[d.msgStart:d.msgEnd]
			if d.inScratch {
				msg = dec.scratch[d.msgStart:d.msgEnd]
			}
			if ts := string(line[d.tsStart:d.tsEnd]); ts != tt.ts || string(msg) != tt.msg {
				t.Errorf("time %q message %q; want %q and %q", ts, msg, tt.ts, tt.msg)
			}
		})
	}
}

func TestDetectFormat(t *testing.T) {
	for in, want := range map[string]layout.Format{
		"2026-11-27T03:04:05.123456789Z hello":     layout.FormatTimestamped,
		`{"time":"2026-11-27T03:04:05.123456789Z"`: layout.FormatJSON,
		"hello":                 layout.FormatRaw,
		"2026-11-27 not a time": layout.FormatRaw,
		"":                      layout.FormatRaw,
	} {
		if got := detectFormat([]byte(in)); got != want {
			t.Errorf("detectFormat(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestPattern(t *testing.T) {
	tests := []struct {
		pattern string
		match   []string
		nomatch []string
	}{
		{"", []string{"anything"}, nil},
		{"web", []string{"web", "web-0", "my-web"}, []string{"api"}},
		{"web-*", []string{"web-0", "web-abc"}, []string{"my-web-0", "web"}},
		{"web-[0-9]", []string{"web-1"}, []string{"web-10", "web-a"}},
		{"web-?", []string{"web-1"}, []string{"web-10"}},
		{"^web-[0-9]+$", []string{"web-10"}, []string{"web-1a", "aweb-1"}},
		{"web-.*-x", []string{"web-abc-x", "a-web--xy"}, []string{"web-x"}},
		{"api|web", []string{"web-0", "api-1"}, []string{"db"}},
	}
	for _, tt := range tests {
		p, err := ParsePattern(tt.pattern)
		mustf(t, err, "ParsePattern(%q)", tt.pattern)
		for _, n := range tt.match {
			if !p.Match(n) {
				t.Errorf("%q does not match %q", tt.pattern, n)
			}
		}
		for _, n := range tt.nomatch {
			if p.Match(n) {
				t.Errorf("%q matches %q", tt.pattern, n)
			}
		}
	}
	if _, err := ParsePattern("web-(("); err == nil {
		t.Error("bad pattern accepted")
	}
}

func TestMatcher(t *testing.T) {
	tests := []struct {
		patterns []string
		literal  bool
		need     string
		match    []string
		nomatch  []string
	}{
		{[]string{"ERROR"}, true, "ERROR", []string{"an ERROR here"}, []string{"error"}},
		{[]string{`req=42\.`}, true, "req=42.", []string{"req=42."}, []string{"req=42x"}},
		{[]string{"(?i)error"}, false, "", []string{"Error"}, []string{"err"}},
		{[]string{"^GET /api/.* 5[0-9][0-9]"}, false, "GET /api/", []string{"GET /api/x 503"}, []string{"x GET /api/x 503", "GET /api/x 200"}},
		{[]string{".*timeout after [0-9]+s"}, false, "timeout after ", []string{"db timeout after 5s"}, []string{"timeout after s"}},
		{[]string{"(conn)+ refused"}, false, " refused", []string{"connconn refused"}, []string{"con refused"}},
		{[]string{"a|b"}, false, "", []string{"xbx"}, []string{"c"}},
		{[]string{"x?y"}, false, "y", []string{"y"}, []string{"x"}},
		{[]string{"foo", "bar"}, false, "", []string{"a bar"}, []string{"baz"}},
	}
	for _, tt := range tests {
		m, err := compileMatcher("--grep", tt.patterns)
		mustf(t, err, "compile %q", tt.patterns)
		if m.literal != tt.literal || string(m.need) != tt.need {
			t.Errorf("%q: literal=%v need=%q; want %v %q", tt.patterns, m.literal, m.need, tt.literal, tt.need)
		}
		for _, s := range tt.match {
			if !m.match([]byte(s)) {
				t.Errorf("%q does not match %q", tt.patterns, s)
			}
		}
		for _, s := range tt.nomatch {
			if m.match([]byte(s)) {
				t.Errorf("%q matches %q", tt.patterns, s)
			}
		}
	}
	if m, err := compileMatcher("--grep", nil); m != nil || err != nil {
		t.Errorf("no patterns: %v %v", m, err)
	}
	for _, bad := range [][]string{{"("}, {"ok", "[z-a]"}} {
		if _, err := compileMatcher("--grep", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFinder(t *testing.T) {
	hay := []byte("level=info req=1234 user=u-1 level=error req=00c0ffee done qq")
	for _, needle := range []string{"req=00c0ffee", "level=error", "q", "qq", "done qq", "level=info", "nope", "e", "req=1234 user=u-2", "eq"} {
		f := newFinder([]byte(needle))
		if got, want := f.index(hay), bytes.Index(hay, []byte(needle)); got != want {
			t.Errorf("index(%q) = %d, want %d", needle, got, want)
		}
	}
	// Fall back when the "rare" byte is everywhere.
	hay = bytes.Repeat([]byte("qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq"), 100)
	hay = append(hay, "qqxq"...)
	if f := newFinder([]byte("qqxq")); f.index(hay) != len(hay)-4 {
		t.Errorf("dense: %d, want %d", f.index(hay), len(hay)-4)
	}
}

func FuzzFinder(f *testing.F) {
	f.Add([]byte("level=info req=1 x"), []byte("req=1"))
	f.Fuzz(func(t *testing.T, hay, needle []byte) {
		fi := newFinder(needle)
		if got, want := fi.index(hay), bytes.Index(hay, needle); got != want {
			t.Fatalf("index(%q, %q) = %d, want %d", hay, needle, got, want)
		}
	})
}
