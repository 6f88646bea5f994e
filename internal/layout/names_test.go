package layout

import (
	"path/filepath"
	"testing"
	"time"
)

func TestParseLogName(t *testing.T) {
	at := time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name    string
		want    LogName
		current bool
		ok      bool
	}{
		{"app.log", LogName{Container: "app"}, true, true},
		{"app-2026-11-27T03-04-05.000.log", LogName{Container: "app", Rotated: at}, false, true},
		{"app-2026-11-27T03-04-05.000.log.gz", LogName{Container: "app", Rotated: at, Gz: true}, false, true},
		{"a-b-2026-11-27T03-04-05.123.log", LogName{Container: "a-b", Rotated: at.Add(123 * time.Millisecond)}, false, true},
		{"a-b.log", LogName{Container: "a-b"}, true, true},
		// A time that does not parse exactly leaves the name to a current file (whose
		// container name is then invalid, which ValidName tells).
		{"app-2026-11-27T03-04-05.log", LogName{Container: "app-2026-11-27T03-04-05"}, true, true},
		{"app-2026-13-27T03-04-05.000.log", LogName{Container: "app-2026-13-27T03-04-05.000"}, true, true},
		{".app.cursor", LogName{}, false, false},
		{".pod.json", LogName{}, false, false},
		{".app.cursor.tmp-123", LogName{}, false, false},
		{".pod.json.tmp-123", LogName{}, false, false},
		{".app-2026-11-27T03-04-05.000.log.gz.tmp-1", LogName{}, false, false},
		{".kubelogd.lock", LogName{}, false, false},
		{"app.log.gz", LogName{}, false, false},
		{"notes.txt", LogName{}, false, false},
		{".log", LogName{}, false, false},
		{"", LogName{}, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseLogName(tt.name)
			if ok != tt.ok || got != tt.want || ok && got.Current() != tt.current {
				t.Errorf("ParseLogName(%q) = %+v (current %v), %v; want %+v (current %v), %v",
					tt.name, got, got.Current(), ok, tt.want, tt.current, tt.ok)
			}
		})
	}
}

// TestNamesRoundTrip checks that the names the writer makes are the names the reader
// recognises.
func TestNamesRoundTrip(t *testing.T) {
	rotated := time.Date(2026, 11, 27, 3, 4, 5, 678_000_000, time.FixedZone("CET", 3600))
	for _, c := range []string{"app", "a-b", "x1"} {
		if n, ok := ParseLogName(LogFileName(c)); !ok || !n.Current() || n.Container != c {
			t.Errorf("current file of %q parsed as %+v, %v", c, n, ok)
		}
		b := BackupName(c, rotated)
		if n, ok := ParseLogName(b); !ok || n.Current() || n.Gz || n.Container != c || !n.Rotated.Equal(rotated) {
			t.Errorf("backup %q of %q parsed as %+v, %v", b, c, n, ok)
		}
		if n, ok := ParseLogName(b + GzExt); !ok || !n.Gz || n.Container != c || !n.Rotated.Equal(rotated) {
			t.Errorf("compressed backup of %q parsed as %+v, %v", c, n, ok)
		}
		if _, ok := ParseLogName(CursorFileName(c)); ok {
			t.Errorf("cursor file %q taken for a log", CursorFileName(c))
		}
	}
	if got, want := BackupName("app", rotated), "app-2026-11-27T02-04-05.678.log"; got != want {
		t.Errorf("BackupName = %q, want %q (UTC)", got, want)
	}
	if got, want := MetaPath("/out", "shop", "web-0"), filepath.Join("/out", "shop", "web-0", ".pod.json"); got != want {
		t.Errorf("MetaPath = %q, want %q", got, want)
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		name      string
		subdomain bool
		ok        bool
	}{
		{"web-0", false, true},
		{"web-0.canary", true, true},
		{"web-0.canary", false, false},
		{"", false, false},
		{".", true, false},
		{"..", true, false},
		{"a/b", true, false},
		{`a\b`, true, false},
		{"a\x00b", true, false},
		{"Upper", false, false},
	}
	for _, tt := range tests {
		if err := ValidName(tt.name, tt.subdomain); (err == nil) != tt.ok {
			t.Errorf("ValidName(%q, %v) = %v, want ok %v", tt.name, tt.subdomain, err, tt.ok)
		}
	}
}
