package oracle

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if filepath.Ext(path) == ".gz" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		zw := gzip.NewWriter(f)
		if _, err := zw.Write([]byte(content)); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReadFile(t *testing.T) {
	tests := []struct {
		name        string
		format      string
		file        string // name; .gz is compressed
		content     string
		wantLines   []string
		wantMarkers []string
		wantErr     bool
	}{
		{
			name:   "timestamped",
			format: "timestamped",
			file:   "c.log",
			content: "2026-01-02T03:04:05.000000001Z first\n" +
				"2026-01-02T03:04:05.000000001Z kubelogd: container restarted (restartCount 1)\n" +
				"2026-01-02T03:04:06.100000000Z \n" +
				"2026-01-02T03:04:07.000000000Z has  two spaces\n",
			wantLines:   []string{"first", "", "has  two spaces"},
			wantMarkers: []string{"kubelogd: container restarted (restartCount 1)"},
		},
		{
			name:   "timestamped split line and torn tail",
			format: "timestamped",
			file:   "c.log",
			content: "2026-01-02T03:04:05.000000000Z aaaa\n" +
				"2026-01-02T03:04:05.000000000Z kubelogd-continued: bbbb\n" +
				"2026-01-02T03:04:05.000000000Z kubelogd-continued: cc\n" +
				"2026-01-02T03:04:06.000000000Z tor",
			wantLines: []string{"aaaabbbbcc", "tor"},
		},
		{
			name:      "timestamped with a broken timestamp",
			format:    "timestamped",
			file:      "c.log",
			content:   "2026-01-02T03:04:05.000000000Z ok\n2026-01-02T03:04 broken\nnospace\n",
			wantLines: []string{"ok", "2026-01-02T03:04 broken", "nospace"},
		},
		{
			name:        "raw",
			format:      "raw",
			file:        "c.log",
			content:     "one\nkubelogd: gap\ntwo\nkubelogd-continued: more\n",
			wantLines:   []string{"one", "twomore"},
			wantMarkers: []string{"kubelogd: gap"},
		},
		{
			name:   "json",
			format: "json",
			file:   "c.log",
			content: `{"time":"2026-01-02T03:04:05.000000000Z","namespace":"ns","pod":"p","container":"c","node":"n","line":"hello"}` + "\n" +
				`{"time":"2026-01-02T03:04:05.000000000Z","namespace":"ns","pod":"p","container":"c","node":"n","event":"gap"}` + "\n" +
				`{"time":"2026-01-02T03:04:05.000000000Z","line":"part one "}` + "\n" +
				`{"time":"2026-01-02T03:04:05.000000000Z","line":"part two","part":2}` + "\n" +
				`{"time":"2026-01-02T03:04:05.000000000Z","line_b64":"/w=="}` + "\n" +
				`{"time":"2026-01-02T03:04:05.0000`,
			wantLines:   []string{"hello", "part one part two", "\xff", `{"time":"2026-01-02T03:04:05.0000`},
			wantMarkers: []string{"kubelogd: gap"},
		},
		{
			name:      "gzip",
			format:    "timestamped",
			file:      "c-2026-01-02T03-04-05.000.log.gz",
			content:   "2026-01-02T03:04:05.000000000Z zipped\n",
			wantLines: []string{"zipped"},
		},
		{name: "empty", format: "raw", file: "c.log"},
		{name: "unknown format", format: "yaml", file: "c.log", content: "x\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), tt.file)
			writeFile(t, path, tt.content)
			lines, markers, err := ReadFile(path, tt.format)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(lines, tt.wantLines) || !slices.Equal(markers, tt.wantMarkers) {
				t.Errorf("got lines %q markers %q\nwant lines %q markers %q", lines, markers, tt.wantLines, tt.wantMarkers)
			}
		})
	}
	if _, _, err := ReadFile(filepath.Join(t.TempDir(), "missing.log"), "raw"); err == nil {
		t.Error("reading a missing file succeeded")
	}
}

func TestReadRotated(t *testing.T) {
	dir := t.TempDir()
	current := filepath.Join(dir, "app.log")
	writeFile(t, filepath.Join(dir, "app-2026-01-02T03-04-06.000.log"), "second\n")
	writeFile(t, filepath.Join(dir, "app-2026-01-02T03-04-05.500.log.gz"), "first\n")
	writeFile(t, filepath.Join(dir, "app-2026-01-02T10-00-00.000.log"), "third\n")
	writeFile(t, current, "current\n")
	// Files that are not backups of app.log.
	writeFile(t, filepath.Join(dir, "app-sidecar.log"), "other\n")
	writeFile(t, filepath.Join(dir, "app-sidecar-2026-01-02T03-04-05.000.log"), "other\n")
	writeFile(t, filepath.Join(dir, ".app.cursor"), "{}\n")

	backups, err := Backups(current)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		filepath.Join(dir, "app-2026-01-02T03-04-05.500.log.gz"),
		filepath.Join(dir, "app-2026-01-02T03-04-06.000.log"),
		filepath.Join(dir, "app-2026-01-02T10-00-00.000.log"),
	}
	if !slices.Equal(backups, want) {
		t.Errorf("backups %q, want %q", backups, want)
	}
	lines, _, err := ReadRotated(current, "raw")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"first", "second", "third", "current"}; !slices.Equal(lines, want) {
		t.Errorf("lines %q, want %q", lines, want)
	}

	// The current file may be missing right after a rotation.
	if err := os.Remove(current); err != nil {
		t.Fatal(err)
	}
	lines, _, err = ReadRotated(current, "raw")
	if err != nil || len(lines) != 3 {
		t.Errorf("without current file: %q, %v", lines, err)
	}
}
