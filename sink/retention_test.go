package sink

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRetention(t *testing.T) {
	clock := newFakeClock()
	stamp := func(age time.Duration) string {
		return clock.Now().Add(-age).UTC().Format(backupTimeLayout)
	}
	for _, tc := range []struct {
		name       string
		cfg        Config
		existing   []string // files in the pod directory before Open, besides app.log
		wantBackup int      // backups of "app" left after Open and one rotation
		wantGz     bool
		wantGone   []string
		wantKept   []string
	}{
		{
			name:       "max backups",
			cfg:        Config{MaxBackups: 2},
			existing:   []string{"app-" + stamp(3*time.Hour) + ".log", "app-" + stamp(2*time.Hour) + ".log", "app-" + stamp(time.Hour) + ".log"},
			wantBackup: 2,
			wantGone:   []string{"app-" + stamp(3*time.Hour) + ".log", "app-" + stamp(2*time.Hour) + ".log"},
		},
		{
			name:       "max age",
			cfg:        Config{MaxAgeDays: 1},
			existing:   []string{"app-" + stamp(49*time.Hour) + ".log.gz", "app-" + stamp(25*time.Hour) + ".log", "app-" + stamp(23*time.Hour) + ".log"},
			wantBackup: 2,
			wantGone:   []string{"app-" + stamp(49*time.Hour) + ".log.gz", "app-" + stamp(25*time.Hour) + ".log"},
			wantKept:   []string{"app-" + stamp(23*time.Hour) + ".log"},
		},
		{
			name:       "compress, max backups counts a pair once",
			cfg:        Config{Compress: true, MaxBackups: 3},
			existing:   []string{"app-" + stamp(time.Hour) + ".log", "app-" + stamp(time.Hour) + ".log.gz", "app-" + stamp(2*time.Hour) + ".log"},
			wantBackup: 3,
			wantGz:     true,
			wantKept:   []string{"app-" + stamp(time.Hour) + ".log.gz", "app-" + stamp(2*time.Hour) + ".log.gz"},
			wantGone:   []string{"app-" + stamp(time.Hour) + ".log", "app-" + stamp(2*time.Hour) + ".log"},
		},
		{
			name: "other files are never touched",
			cfg:  Config{MaxBackups: 1, MaxAgeDays: 1, Compress: true},
			existing: []string{
				"app-b-" + stamp(100*time.Hour) + ".log", // container "app-b"
				"app-b.log", "app.log.bak", "app-notatime.log", "app-" + stamp(100*time.Hour) + ".txt", ".app-b.cursor",
				".app-b-" + stamp(100*time.Hour) + ".log.gz.tmp-123", // app-b's compression in flight
			},
			wantBackup: 1,
			wantGz:     true,
			wantKept: []string{
				"app-b-" + stamp(100*time.Hour) + ".log", "app-b.log", "app.log.bak", "app-notatime.log",
				"app-" + stamp(100*time.Hour) + ".txt", ".app-b.cursor", ".app-b-" + stamp(100*time.Hour) + ".log.gz.tmp-123",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			podDir := filepath.Join(dir, testKey.Namespace, testKey.Pod)
			if err := os.MkdirAll(podDir, 0o750); err != nil {
				t.Fatal(err)
			}
			for _, name := range tc.existing {
				if err := os.WriteFile(filepath.Join(podDir, name), []byte("old "+name+"\n"), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			cfg := tc.cfg
			cfg.Dir, cfg.Now, cfg.maxSizeBytes = dir, clock.Now, 2000
			m := newTestManager(t, cfg)
			f := mustOpen(t, m, testKey)
			var want []string
			for i := 0; f.Stats().Rotations == 0; i++ {
				r := rec(i, strings.Repeat("x", 100))
				if err := f.Write(r); err != nil {
					t.Fatal(err)
				}
				want = append(want, string(r.RawTime)+" "+string(r.Line))
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}

			files := fileSet(t, dir, testKey)
			if got := len(files) - 1; got != tc.wantBackup {
				t.Errorf("%d backups, want %d: %v", got, tc.wantBackup, files)
			}
			for _, path := range files[:len(files)-1] {
				if gz := filepath.Ext(path) == gzExt; gz != tc.wantGz {
					t.Errorf("backup %s compressed: %v, want %v", path, gz, tc.wantGz)
				}
			}
			// The newest backup and the current file hold what was written, in order.
			newest := string(readContent(t, files[len(files)-2])) + string(readContent(t, files[len(files)-1]))
			if got := strings.Split(strings.TrimSuffix(newest, "\n"), "\n"); !slices.Equal(got, want) {
				t.Errorf("newest backup and current file hold %d lines, want the %d written", len(got), len(want))
			}
			for _, name := range tc.wantGone {
				if _, err := os.Stat(filepath.Join(podDir, name)); err == nil {
					t.Errorf("%s should have been removed", name)
				}
			}
			for _, name := range tc.wantKept {
				if _, err := os.Stat(filepath.Join(podDir, name)); err != nil {
					t.Errorf("%s should have been kept: %v", name, err)
				}
			}
		})
	}
}

// TestRetentionNeverTouchesCurrent rotates many times with the tightest retention and
// checks that the current file keeps every line written since the last rotation.
func TestRetentionNeverTouchesCurrent(t *testing.T) {
	dir := t.TempDir()
	m := newTestManager(t, Config{Dir: dir, Format: FormatRaw, MaxBackups: 1, MaxAgeDays: 1, Compress: true, maxSizeBytes: 1000})
	f := mustOpen(t, m, testKey)
	var sinceRotation []string
	for i := range 200 {
		r := rec(i, strings.Repeat("c", i%90))
		before := f.Stats().Rotations
		if err := f.Write(r); err != nil {
			t.Fatal(err)
		}
		if f.Stats().Rotations != before {
			sinceRotation = sinceRotation[:0]
		}
		sinceRotation = append(sinceRotation, string(r.Line))
		if err := f.Flush(); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(f.Path())
		if err != nil {
			t.Fatalf("current file: %v", err)
		}
		if got := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n"); !slices.Equal(got, sinceRotation) {
			t.Fatalf("after line %d the current file holds %q, want %q", i, got, sinceRotation)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if files := fileSet(t, dir, testKey); len(files) != 2 || filepath.Ext(files[0]) != gzExt {
		t.Errorf("want one compressed backup and the current file, got %v", files)
	}
}

func TestParseBackup(t *testing.T) {
	for _, tc := range []struct {
		name, container string
		ok, gz          bool
	}{
		{"app-2024-05-06T07-08-09.123.log", "app", true, false},
		{"app-2024-05-06T07-08-09.123.log.gz", "app", true, true},
		{"app.log", "app", false, false},
		{"app-b-2024-05-06T07-08-09.123.log", "app", false, false},
		{"app-b-2024-05-06T07-08-09.123.log", "app-b", true, false},
		{"app-2024-05-06T07-08-09.log", "app", false, false},
		{"app-2024-13-06T07-08-09.123.log", "app", false, false},
		{".app-2024-05-06T07-08-09.123.log.gz.tmp-1", "app", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, gz, ok := parseBackup(tc.name, tc.container)
			if ok != tc.ok || gz != tc.gz {
				t.Errorf("parseBackup(%q, %q) = gz %v ok %v, want gz %v ok %v", tc.name, tc.container, gz, ok, tc.gz, tc.ok)
			}
		})
	}
}
