package sink

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kubelogd/kubelogd/internal/layout"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// goldenRecords covers what the formats must get right: plain lines, empty lines,
// markers, control characters, invalid UTF-8, JavaScript line separators, a missing
// RawTime and a line split in parts.
func goldenRecords() []Record {
	withTime := func(r Record, raw string) Record { r.RawTime = []byte(raw); return r }
	return []Record{
		rec(0, "hello world"),
		rec(1, " "),
		{Time: time.Date(2024, 5, 6, 7, 8, 9, 7000000, time.UTC), RawTime: []byte("2024-05-06T07:08:09.007000000Z"), Line: []byte{}},
		withTime(rec(3, `quotes " and \ backslash`), "2024-05-06T09:08:09.021000000+02:00"),
		rec(4, "tab\there\rcr\x00nul\x1besc\x7fdel"),
		rec(5, "C1 \u0085 next line, \u2028 and \u2029 separators, ünïcödé, 日本語, 🙂"),
		rec(6, "invalid \xff\xfe utf-8"),
		{Time: time.Date(2024, 5, 6, 7, 8, 10, 0, time.UTC), Line: []byte("container restarted (restartCount 1)"), Marker: true},
		{Time: time.Date(2024, 5, 6, 7, 8, 10, 500, time.UTC), Line: []byte("no raw time")},
		rec(9, "this line is longer than max line bytes and is split into parts"),
		rec(10, "日本語日本語日本語日本語日本語"), // split without cutting a character
	}
}

func TestFormatsGolden(t *testing.T) {
	for _, format := range []Format{FormatTimestamped, FormatRaw, FormatJSON} {
		t.Run(format.String(), func(t *testing.T) {
			dir := t.TempDir()
			m := newTestManager(t, Config{Dir: dir, Format: format, MaxLineBytes: 24, Node: "node-1"})
			f := mustOpen(t, m, testKey)
			for _, r := range goldenRecords() {
				if err := f.Write(r); err != nil {
					t.Fatal(err)
				}
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(f.Path())
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", format.String()+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestFormatsGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s (run with -update if intended):\n got:\n%s\nwant:\n%s", f.Path(), golden, got, want)
			}
			if format == FormatJSON {
				for i, line := range bytes.Split(bytes.TrimSuffix(got, []byte("\n")), []byte("\n")) {
					if !json.Valid(line) {
						t.Errorf("line %d is not valid JSON: %s", i+1, line)
					}
				}
			}
		})
	}
}

func TestSplitAt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		line  string
		limit int
		want  int
	}{
		{"short", "abc", 5, 3},
		{"exact", "abcde", 5, 5},
		{"ascii", "abcdefgh", 5, 5},
		{"inside 3-byte char", "ab日本", 4, 2},
		{"before 3-byte char", "abc日本", 3, 3},
		{"inside 4-byte char", "a🙂b", 3, 1},
		{"invalid bytes", "ab\x80\x80\x80\x80\x80", 4, 4},
		{"limit 1 in a char", "日本", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := splitAt([]byte(tc.line), tc.limit); got != tc.want {
				t.Errorf("splitAt(%q, %d) = %d, want %d", tc.line, tc.limit, got, tc.want)
			}
		})
	}
}

// jsonLine is what a consumer decodes from the json format.
type jsonLine struct {
	Time      string  `json:"time"`
	Namespace string  `json:"namespace"`
	Pod       string  `json:"pod"`
	Container string  `json:"container"`
	Node      string  `json:"node"`
	Line      *string `json:"line"`
	LineB64   *string `json:"line_b64"`
	Event     *string `json:"event"`
	Part      int     `json:"part"`
}

// FuzzJSONRoundTrip proves that the json format is valid JSON for any line and that
// decoding gives back the line's exact bytes, through "line" or "line_b64".
func FuzzJSONRoundTrip(f *testing.F) {
	for _, s := range []string{
		"", "plain", `"quoted"`, `back\slash`, "\x00\x01\x1f\x7f", "\n\r\t\b\f",
		"\u0085\u2028\u2029", "ünï 日本 🙂", "\xff", "a\xc3", "\xed\xa0\x80", // surrogate half
		"\xef\xbf\xbd", // a real U+FFFD
		strings.Repeat("x", 1000),
	} {
		f.Add([]byte(s), "node-1")
	}
	f.Fuzz(func(t *testing.T, line []byte, node string) {
		key := Key{Namespace: "ns", Pod: "pod.a-1", Container: "c"}
		enc := newEncoder(FormatJSON, key, node)
		r := Record{Time: time.Unix(1700000000, 123456789).UTC(), Line: line}
		out := enc.appendPart(nil, &r, line, 1)
		if len(out) == 0 || out[len(out)-1] != '\n' || bytes.IndexByte(out[:len(out)-1], '\n') >= 0 {
			t.Fatalf("not exactly one line: %q", out)
		}
		if max := 6*len(line) + jsonFixedOverhead + len(layout.AppendJSONString(nil, []byte(node))); len(out) > max {
			t.Fatalf("encoded %d bytes to %d, above the bound %d", len(line), len(out), max)
		}
		var got jsonLine
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("invalid JSON %q: %v", out, err)
		}
		var decoded []byte
		switch {
		case got.Line != nil && got.LineB64 == nil:
			decoded = []byte(*got.Line)
		case got.LineB64 != nil && got.Line == nil:
			if utf8.Valid(line) {
				t.Errorf("valid UTF-8 %q went to line_b64", line)
			}
			var err error
			if decoded, err = base64.StdEncoding.DecodeString(*got.LineB64); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("want exactly one of line and line_b64 in %s", out)
		}
		if !bytes.Equal(decoded, line) {
			t.Errorf("round trip of %q gave %q", line, decoded)
		}
		if utf8.ValidString(node) && got.Node != node {
			t.Errorf("node %q came back as %q", node, got.Node)
		}
		if got.Namespace != key.Namespace || got.Pod != key.Pod || got.Container != key.Container || got.Time != "2023-11-14T22:13:20.123456789Z" {
			t.Errorf("metadata wrong: %+v", got)
		}
		// No raw control characters may survive, valid JSON or not: they reach terminals.
		for _, b := range out[:len(out)-1] {
			if b < 0x20 || b == 0x7f {
				t.Fatalf("raw control byte %#x in %q", b, out)
			}
		}
	})
}

func TestSetPodJSON(t *testing.T) {
	big := map[string]string{}
	for i := range 400 {
		big[fmt.Sprintf("example.com/label-%03d", i)] = strings.Repeat("v", 63)
	}
	tests := []struct {
		name       string
		jsonLabels bool
		labels     map[string]string
		want       string
	}{
		{"node only", false, map[string]string{"app": "web"}, `"node":"node-7","line":"hi"}`},
		{"node and labels", true, map[string]string{"tier": "db", "app": "web"}, `"node":"node-7","labels":{"app":"web","tier":"db"},"line":"hi"}`},
		{"labels too large are left out", true, big, `"node":"node-7","line":"hi"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			m, err := NewManager(Config{Dir: dir, Format: FormatJSON, JSONLabels: tt.jsonLabels})
			if err != nil {
				t.Fatal(err)
			}
			f, err := m.Open(Key{Namespace: "ns", Pod: "p", Container: "c"})
			if err != nil {
				t.Fatal(err)
			}
			f.SetPod("node-7", tt.labels)
			if err := f.Write(Record{Time: time.Unix(1, 0), Line: []byte("hi")}); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := m.Close(); err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join(dir, "ns", "p", "c.log"))
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasSuffix(strings.TrimSpace(string(data)), tt.want) {
				t.Fatalf("line %s, want it to end with %s", data, tt.want)
			}
			var v map[string]any
			if err := json.Unmarshal(data, &v); err != nil {
				t.Fatalf("not JSON: %v", err)
			}
		})
	}
}
