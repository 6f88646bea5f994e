package layout

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestWriteMeta(t *testing.T) {
	root := t.TempDir()
	m := PodMeta{
		UID: "0b4a", Namespace: "shop", Pod: "web-0.canary",
		Labels:    map[string]string{"app": "web", "app.kubernetes.io/part-of": "shop"},
		OwnerKind: "StatefulSet", OwnerName: "web", Node: "node-1",
		FirstSeen: time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC),
		LastSeen:  time.Date(2026, 11, 27, 4, 0, 0, 123, time.UTC),
	}
	mustf(t, WriteMeta(root, m), "write")
	path := MetaPath(root, "shop", "web-0.canary")
	if path != filepath.Join(root, "shop", "web-0.canary", ".pod.json") {
		t.Fatalf("MetaPath = %s", path)
	}
	st, err := os.Stat(path)
	mustf(t, err, "stat")
	if st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", st.Mode().Perm())
	}
	dst, err := os.Stat(filepath.Dir(path))
	mustf(t, err, "stat dir")
	if dst.Mode().Perm() != 0o750 {
		t.Errorf("dir mode %v, want 0750", dst.Mode().Perm())
	}
	got, err := ReadMeta(root, "shop", "web-0.canary")
	mustf(t, err, "read")
	if !reflect.DeepEqual(got, m) {
		t.Errorf("read back %+v, want %+v", got, m)
	}
	data, err := os.ReadFile(path)
	mustf(t, err, "read file")
	for _, key := range []string{`"uid":`, `"namespace":`, `"pod":`, `"labels":`, `"ownerKind":`, `"ownerName":`, `"node":`, `"firstSeen":"2026-11-27T03:04:05Z"`, `"lastSeen":`} {
		if !strings.Contains(string(data), key) {
			t.Errorf("file lacks %s: %s", key, data)
		}
	}

	// Replaced whole, and no temporary file is left behind.
	m.Labels = map[string]string{"app": "web2"}
	mustf(t, WriteMeta(root, m), "rewrite")
	got, err = ReadMeta(root, "shop", "web-0.canary")
	mustf(t, err, "read")
	if got.Labels["app"] != "web2" || len(got.Labels) != 1 {
		t.Errorf("labels after rewrite: %v", got.Labels)
	}
	entries, err := os.ReadDir(filepath.Dir(path))
	mustf(t, err, "readdir")
	if len(entries) != 1 {
		t.Errorf("pod directory holds %d entries, want only .pod.json", len(entries))
	}

	if _, err := ReadMeta(root, "shop", "gone"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing metadata: err = %v, want fs.ErrNotExist", err)
	}
}

func TestWriteMetaRefusesBadNames(t *testing.T) {
	root := t.TempDir()
	for _, m := range []PodMeta{
		{Namespace: "", Pod: "p"},
		{Namespace: "ns", Pod: ""},
		{Namespace: "..", Pod: "p"},
		{Namespace: "ns", Pod: ".."},
		{Namespace: "ns", Pod: "a/b"},
		{Namespace: "Upper", Pod: "p"},
		{Namespace: "ns.dot", Pod: "p"}, // namespaces are labels, not subdomains
	} {
		if err := WriteMeta(root, m); err == nil {
			t.Errorf("WriteMeta(%q, %q) succeeded", m.Namespace, m.Pod)
		}
	}
	entries, _ := os.ReadDir(root)
	if len(entries) != 0 {
		t.Errorf("refused writes created %d entries", len(entries))
	}
}

func mustf(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
