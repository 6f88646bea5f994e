// Package configmap lays out files as the kubelet's atomic writer does in a ConfigMap
// volume, for tests of what watches such a volume.
package configmap

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Write sets the files of the volume at dir (created if needed) to files, name →
// content, as the kubelet's atomic writer (pkg/volume/util/atomic_writer.go) does: the
// content goes to a new timestamped directory ..2026_12_04_15_00_00.123456789, a
// symlink ..data_tmp to it is renamed over ..data, each name is a symlink through ..data
// (created once), and the old timestamped directory is removed.
func Write(dir string, files map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data := filepath.Join(dir, "..data")
	old, _ := os.Readlink(data)
	ts := fmt.Sprintf("..%s", time.Now().UTC().Format("2006_01_02_15_04_05.000000000"))
	if err := os.Mkdir(filepath.Join(dir, ts), 0o755); err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, ts, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, data); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" && old != ts {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}
