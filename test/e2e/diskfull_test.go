package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestDiskFullPausesAndResumes: the output directory is a tiny tmpfs that fills up while
// lines flow. The stream pauses (counted as write errors, no busy loop), and once space
// returns collection resumes from the last line written: every line exactly once.
func TestDiskFullPausesAndResumes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })

	e := newEnv(t)
	e.pod("full", "p", nil, "app")
	e.start("full", "p", "app")
	d := startKubelogd(t, e.c.Kubeconfig, dir)
	d.waitReady()
	line := strings.Repeat("x", 200)
	for i := range 2000 { // ~450 KB: more than the tmpfs holds
		e.emitText("full", "p", "app", fmt.Sprintf("%d %s", i, line))
	}
	eventually(t, 60*time.Second, "write errors counted", func() (bool, string) {
		mfs, _ := d.scrape()
		v := value(mfs, "kubelogd_write_errors_total", map[string]string{"reason": "no_space"})
		return v >= 1, fmt.Sprint(v)
	})
	// Paused, not spinning: the kubelogd log names the path once, not per retry.
	time.Sleep(3 * time.Second)
	if n := strings.Count(d.Output(), "collection paused"); n != 1 {
		t.Errorf("%d 'collection paused' messages, want 1", n)
	}
	if out, err := exec.Command("mount", "-o", "remount,size=64m", dir).CombinedOutput(); err != nil {
		t.Fatalf("growing the tmpfs: %v: %s", err, out)
	}
	e.waitCollected(dir, "full", "p", "app")
}
