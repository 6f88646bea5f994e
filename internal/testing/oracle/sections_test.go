package oracle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadSections(t *testing.T) {
	dir := t.TempDir()
	current := filepath.Join(dir, "app.log")
	backup := filepath.Join(dir, "app-2026-11-27T03-04-05.000.log")
	ts := "2026-11-27T03:04:05.000000000Z "
	write := func(path string, lines ...string) {
		t.Helper()
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(ts + l + "\n")
		}
		if err := os.WriteFile(path, []byte(b.String()), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	write(backup, "a", "b", "kubelogd: container restarted (restartCount 1)")
	write(current, "c", "kubelogd-continued: c2", "kubelogd: gap: lost", "kubelogd: gap: more", "d")

	got, err := ReadSections(current, "timestamped")
	if err != nil {
		t.Fatal(err)
	}
	want := []Want{
		{Lines: []string{"a", "b"}},
		{Marker: "restarted (restartCount 1)", Lines: []string{"cc2"}},
		{Marker: "gap: lost"},
		{Marker: "gap: more", Lines: []string{"d"}},
	}
	if ok, detail := CheckSections(got, want); !ok {
		t.Fatalf("sections differ:\n%s", detail)
	}
}

func TestCheckSectionsReports(t *testing.T) {
	got := []Section{{Lines: []string{"a", "b"}}, {Marker: "kubelogd: gap: x", Lines: []string{"c"}}}
	tests := []struct {
		name string
		want []Want
		in   string // expected in the detail
	}{
		{name: "missing marker", want: []Want{{Lines: []string{"a", "b", "c"}}}, in: "2 sections, want 1"},
		{name: "wrong marker", want: []Want{{Lines: []string{"a", "b"}}, {Marker: "restarted", Lines: []string{"c"}}}, in: `want one containing "restarted"`},
		{name: "lost line", want: []Want{{Lines: []string{"a", "b", "b2"}}, {Marker: "gap", Lines: []string{"c"}}}, in: "1 lost"},
		{name: "unmarked section expected with a marker", want: []Want{{Marker: "gap", Lines: []string{"a", "b"}}, {Marker: "gap", Lines: []string{"c"}}}, in: "section 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, detail := CheckSections(got, tt.want)
			if ok || !strings.Contains(detail, tt.in) {
				t.Fatalf("CheckSections = %v, %q; want a failure mentioning %q", ok, detail, tt.in)
			}
		})
	}
	if ok, detail := CheckSections(got, []Want{{Lines: []string{"a", "b"}}, {Marker: "gap: x", Lines: []string{"c"}}}); !ok {
		t.Fatalf("matching sections reported as different:\n%s", detail)
	}
}
