//go:build !failpoint

package failpoint

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain runs the child half of TestReleaseIgnoresEnv when the parent re-executes the
// test binary with failpointChild set: a process started with every failpoint armed, as
// the real implementation would read it in its init.
func TestMain(m *testing.M) {
	if os.Getenv("failpointChild") != "" {
		for range 3 {
			for _, name := range Names {
				Hit(name)
				if Reached(name) {
					os.Stdout.WriteString("reached " + name + "\n")
					Kill(name)
				}
			}
		}
		os.Stdout.WriteString("survived\n")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestReleaseIgnoresEnv: without the failpoint build tag, a process started with every
// failpoint armed at its first hit reaches none of them, logs nothing and runs on.
func TestReleaseIgnoresEnv(t *testing.T) {
	if Enabled {
		t.Fatal("Enabled is true in a build without the failpoint tag")
	}
	var spec []string
	for _, name := range Names {
		spec = append(spec, name+"=1")
	}
	logPath := filepath.Join(t.TempDir(), "failpoints.log")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "failpointChild=1", EnvFailpoints+"="+strings.Join(spec, ","), EnvLog+"="+logPath)
	out, err := cmd.Output()
	if err != nil || string(out) != "survived\n" {
		t.Fatalf("child with %s=%s: err %v, output %q; want a normal exit and %q", EnvFailpoints, strings.Join(spec, ","), err, out, "survived\n")
	}
	if _, err := os.Stat(logPath); !os.IsNotExist(err) {
		t.Fatalf("failpoint log %s exists (stat: %v); want none", logPath, err)
	}
}
