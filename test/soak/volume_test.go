package soak

// The output volume: a small tmpfs of its own when the soak may mount one (root, as in
// CI), so that a disk-full step fills kubelogd's volume and nothing else; a plain
// temporary directory otherwise, where disk-full steps are skipped (the schedule stays
// the seed's, so a replay elsewhere draws the same steps).

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// volumeSize is the tmpfs's size: memory is taken only as files fill it. A 30-minute
// soak writes about 150 MiB (its copies of the directory are removed, see copyOutput).
const volumeSize = 1 << 30

// volume is where kubelogd's output directories live.
type volume struct {
	root  string
	tmpfs bool // mounted for the soak: disk-full steps can fill it
	why   string
}

func newVolume(t *testing.T) *volume {
	root := t.TempDir()
	if os.Geteuid() != 0 {
		return &volume{root: root, why: "not root"}
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0755", volumeSize), "tmpfs", root).CombinedOutput()
	if err != nil {
		return &volume{root: root, why: fmt.Sprintf("mount tmpfs: %v: %s", err, out)}
	}
	// Cleanups run last-in first-out: registered after TempDir's, this runs before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", root).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", root, err, out)
		}
	})
	return &volume{root: root, tmpfs: true}
}

// used returns the bytes in use on the volume.
func (v *volume) used() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(v.root, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}

// resize sets the tmpfs's size. tmpfs refuses a size below what it holds (EINVAL).
func (v *volume) resize(size int64) error {
	out, err := exec.Command("mount", "-o", fmt.Sprintf("remount,size=%d", size), v.root).CombinedOutput()
	if err != nil {
		return fmt.Errorf("remount %s size=%d: %v: %s", v.root, size, err, out)
	}
	return nil
}

// fill makes the volume full for d: it shrinks the tmpfs to a little more than it holds
// and fills the rest with a ballast file in dir, then takes both back. kubelogd writes
// meanwhile, so the shrink is retried with the size in use then.
func (v *volume) fill(dir string, d time.Duration) (string, error) {
	var err error
	for range 20 {
		var used int64
		if used, err = v.used(); err != nil {
			return "", err
		}
		if err = v.resize(used + 256<<10); err == nil {
			break
		}
	}
	if err != nil {
		return "", err
	}
	defer func() { _ = v.resize(volumeSize) }()
	ballast := filepath.Join(dir, ".soak-ballast")
	f, err := os.Create(ballast)
	if err != nil && !errors.Is(err, syscall.ENOSPC) {
		return "", err
	}
	written := 0
	if f != nil {
		buf := make([]byte, 4096)
		for {
			n, err := f.Write(buf)
			written += n
			if err != nil {
				break
			}
		}
		_ = f.Close()
	}
	time.Sleep(d)
	if err := os.Remove(ballast); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	if err := v.resize(volumeSize); err != nil {
		return "", err
	}
	return fmt.Sprintf("volume full for %s (%d KiB of ballast)", d, written>>10), nil
}
