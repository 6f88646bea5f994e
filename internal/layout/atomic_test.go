package layout

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFileAtomic(t *testing.T) {
	tests := []struct {
		name string
		sync bool
	}{
		{"unsynced", false},
		{"synced", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, ".c.cursor")
			mustf(t, os.WriteFile(path, []byte("old"), 0o600), "seed")
			var events []string
			opt := WriteOptions{
				Sync:       tt.sync,
				BeforeSync: func(p string) { events = append(events, "sync "+filepath.Base(p)) },
				BeforeRename: func() {
					// The new content is complete, the old one still in place.
					data, err := os.ReadFile(path)
					mustf(t, err, "read before rename")
					events = append(events, "rename over "+string(data))
				},
			}
			mustf(t, WriteFileAtomic(path, []byte("new"), opt), "write")
			data, err := os.ReadFile(path)
			mustf(t, err, "read")
			if string(data) != "new" {
				t.Errorf("content %q, want new", data)
			}
			st, err := os.Stat(path)
			mustf(t, err, "stat")
			if st.Mode().Perm() != FileMode {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), os.FileMode(FileMode))
			}
			want := 1
			if tt.sync {
				want = 2
				if len(events) != 2 || !strings.HasPrefix(events[0], "sync .c.cursor"+TmpInfix) {
					t.Errorf("events %q, want the temporary file synced first", events)
				}
			}
			if len(events) != want || events[want-1] != "rename over old" {
				t.Errorf("events %q", events)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("directory holds %d entries, want 1", len(entries))
			}
		})
	}
}

func TestWriteFileAtomicDirectory(t *testing.T) {
	root := t.TempDir()
	path := filepath.Join(root, "ns", "pod", "f")
	if err := WriteFileAtomic(path, []byte("x"), WriteOptions{}); err == nil {
		t.Fatal("wrote into a missing directory without MakeDir")
	}
	mustf(t, WriteFileAtomic(path, []byte("x"), WriteOptions{MakeDir: true}), "write with MakeDir")
	for _, d := range []string{filepath.Join(root, "ns"), filepath.Join(root, "ns", "pod")} {
		st, err := os.Stat(d)
		mustf(t, err, "stat")
		if st.Mode().Perm() != DirMode {
			t.Errorf("%s has mode %v, want %v", d, st.Mode().Perm(), os.FileMode(DirMode))
		}
	}
	// A failed write leaves no temporary file: here the rename fails, onto a directory.
	target := filepath.Join(root, "ns", "pod")
	if err := WriteFileAtomic(target, []byte("x"), WriteOptions{}); err == nil {
		t.Fatal("renamed over a directory")
	}
	entries, err := os.ReadDir(filepath.Join(root, "ns"))
	mustf(t, err, "readdir")
	if len(entries) != 1 {
		t.Errorf("namespace directory holds %d entries, want only the pod's", len(entries))
	}
}
