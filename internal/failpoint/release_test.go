package failpoint

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestReleaseBinary builds kubelogd as make build and the Dockerfile do (no build tags) and
// checks that no failpoint is left in it: neither the package nor a failpoint's name nor
// the variable that arms them. The same build with the failpoint tag must contain all of
// them, which proves the search would find them. It runs in both builds of this package:
// the tags of the test binary do not reach the go build it runs.
func TestReleaseBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kubelogd twice")
	}
	const pkg = "github.com/kubelogd/kubelogd/internal/failpoint"
	needles := append([]string{pkg, EnvFailpoints, EnvLog}, Names...)
	dir := t.TempDir()
	for _, tt := range []struct {
		name    string
		tags    string
		present bool
	}{
		{name: "release", tags: "", present: false},
		{name: "failpoint", tags: "failpoint", present: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bin := filepath.Join(dir, "kubelogd-"+tt.name)
			// -tags on the command line replaces any in GOFLAGS: the release binary is the
			// one built without tags.
			build := exec.Command("go", "build", "-tags="+tt.tags, "-o", bin, "github.com/kubelogd/kubelogd/cmd/kubelogd")
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("%v: %v\n%s", build.Args, err, out)
			}
			data, err := os.ReadFile(bin)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range needles {
				if got := bytes.Contains(data, []byte(s)); got != tt.present {
					t.Errorf("kubelogd built with -tags=%q contains %q: %v, want %v", tt.tags, s, got, tt.present)
				}
			}
		})
	}
}
