package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeTimestamped writes lines as kubelogd's timestamped format lays them out.
func writeTimestamped(t *testing.T, path string, lines ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	ts := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	for i, l := range lines {
		fmt.Fprintf(&b, "%s %s\n", ts.Add(time.Duration(i)*time.Millisecond).Format("2006-01-02T15:04:05.000000000Z"), l)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestCheckContainerFile: the scale scenario's exactness check fails a file that lost,
// repeated or reordered a line, or holds a marker, and passes only the exact one.
func TestCheckContainerFile(t *testing.T) {
	emitted := []string{"a 0", "a 1", "a 2", "a 3"}
	tests := []struct {
		name  string
		file  []string // nil: no file
		exact bool
		check func(scaleCheck) bool
	}{
		{name: "exact", file: emitted, exact: true, check: func(c scaleCheck) bool { return c.Collected == 4 }},
		{name: "one line dropped", file: []string{"a 0", "a 1", "a 3"}, check: func(c scaleCheck) bool { return c.Lost == 1 }},
		{name: "one line twice", file: []string{"a 0", "a 1", "a 1", "a 2", "a 3"}, check: func(c scaleCheck) bool { return c.Duplicated == 1 }},
		{name: "two lines swapped", file: []string{"a 0", "a 2", "a 1", "a 3"}, check: func(c scaleCheck) bool { return c.Reordered == 1 }},
		{name: "a line never emitted", file: []string{"a 0", "a 1", "a 2", "a 3", "b 0"}, check: func(c scaleCheck) bool { return c.Unexpected == 1 }},
		{name: "a gap marker", file: []string{"a 0", "a 1", "kubelogd: gap: lines may be missing here", "a 2", "a 3"},
			check: func(c scaleCheck) bool { return c.Markers == 1 && c.Lost == 0 }},
		{name: "no file", check: func(c scaleCheck) bool { return c.Unreadable == 1 && c.Lost == 4 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "scale", "p-00000", "c0.log")
			if tt.file != nil {
				writeTimestamped(t, path, tt.file...)
			}
			got := checkContainerFile("scale/p-00000/c0", emitted, path)
			if (got.Exact == 1) != tt.exact || !tt.check(got) || got.Lines != len(emitted) {
				t.Errorf("got %+v", got)
			}
			if !tt.exact && (len(got.Failures) != 1 || !strings.HasPrefix(got.Failures[0], "scale/p-00000/c0: ")) {
				t.Errorf("failures %q", got.Failures)
			}
		})
	}
}

// TestFileScanner: scans count what files gained, lines apart from markers, including a
// line written in two pieces, and wait reports what is missing when it gives up.
func TestFileScanner(t *testing.T) {
	dir := t.TempDir()
	s := newFileScanner(dir, "scale", [][]int{{0}, {1}}, 2)
	if len(s.files) != 4 || s.files[2].name != "scale/p-00001/c0" {
		t.Fatalf("files %+v", s.files)
	}
	want := func(int) int { return 2 }
	if behind, missing := s.scan(want, true); behind != 4 || missing != 8 {
		t.Fatalf("no files: behind %d, missing %d", behind, missing)
	}
	for _, f := range s.files {
		writeTimestamped(t, f.path, "x 0", "kubelogd: restart")
	}
	if behind, missing := s.scan(want, true); behind != 4 || missing != 4 {
		t.Fatalf("one line each: behind %d, missing %d", behind, missing)
	}
	// The rest of the first file comes in two writes, the second line split across them.
	f, err := os.OpenFile(s.files[0].path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	line := "2026-12-04T10:00:01.000000000Z x 1\n"
	if _, err := f.WriteString(line[:20]); err != nil {
		t.Fatal(err)
	}
	if behind, _ := s.scan(want, true); behind != 4 || s.files[0].lines != 1 {
		t.Fatalf("half a line: behind %d, lines %d", behind, s.files[0].lines)
	}
	if _, err := f.WriteString(line[20:]); err != nil {
		t.Fatal(err)
	}
	if behind, _ := s.scan(want, true); behind != 3 || s.files[0].lines != 2 || s.files[0].markers != 1 || s.files[0].at.IsZero() {
		t.Fatalf("the whole line: behind %d, %+v", behind, s.files[0])
	}
	if got := len(s.coveredTimes(time.Now().Add(-time.Minute))); got != 1 {
		t.Errorf("%d covered, want 1", got)
	}
	err = s.wait(t.Context(), func() error { return nil }, want, false, 0, time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "3 of 4 containers miss 3 lines") || !strings.Contains(err.Error(), "scale/p-00000/c1 has 1 of 2 lines") {
		t.Errorf("wait: %v", err)
	}
}

func TestHistQuantile(t *testing.T) {
	inf := math.Inf(1)
	tests := []struct {
		name string
		cum  map[float64]float64
		q    float64
		want float64
	}{
		{name: "empty", cum: map[float64]float64{1: 0, inf: 0}, q: 0.5, want: 0},
		{name: "within the first bucket", cum: map[float64]float64{1: 10, 2: 10, inf: 10}, q: 0.5, want: 0.5},
		{name: "interpolated", cum: map[float64]float64{30: 0, 45: 50, 60: 100, inf: 100}, q: 0.5, want: 45},
		{name: "p99 between bounds", cum: map[float64]float64{30: 0, 60: 100, inf: 100}, q: 0.99, want: 59.7},
		{name: "in the +Inf bucket", cum: map[float64]float64{300: 1, inf: 10}, q: 0.99, want: 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := histQuantile(tt.cum, tt.q); math.Abs(got-tt.want) > 1e-9 {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseMetricsSeries(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP kubelogd_targets Collected containers by state.
kubelogd_targets{state="polling"} 350
kubelogd_targets{state="streaming"} 50
kubelogd_poll_interval_seconds_bucket{le="1"} 3
kubelogd_poll_interval_seconds_bucket{le="+Inf"} 7
kubelogd_polls_total 42
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := m["kubelogd_targets"]; got != 400 {
		t.Errorf("family = %v", got)
	}
	if got := labelled(m, "kubelogd_targets", "state"); got["polling"] != 350 || got["streaming"] != 50 {
		t.Errorf("labelled = %v", got)
	}
	if got := buckets(m, "kubelogd_poll_interval_seconds"); got[1] != 3 || got[math.Inf(1)] != 7 {
		t.Errorf("buckets = %v", got)
	}
	if got := m["kubelogd_polls_total"]; got != 42 {
		t.Errorf("polls = %v", got)
	}
}
