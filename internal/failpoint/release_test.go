package failpoint

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
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

// TestReleaseDeps lists the packages the release build of kubelogd (no build tags) is
// made of and checks that none is a test rig (internal/testing/...) and that this package
// comes in as its stubs, without failpoint_on.go. The same listing of the failpoint build,
// and of hack/demo, which runs the test control plane, must find the implementation and
// the rigs, which proves the search would find them. Like TestReleaseBinary it runs in
// both builds of this package.
func TestReleaseDeps(t *testing.T) {
	const (
		kubelogd = "github.com/kubelogd/kubelogd/cmd/kubelogd"
		self     = "github.com/kubelogd/kubelogd/internal/failpoint"
		impl     = "failpoint_on.go" // the file behind the failpoint build tag
	)
	for _, tt := range []struct {
		name       string
		pkg        string
		tags       string
		rigs       bool // some dependency is under internal/testing/
		failpoints bool // this package is a dependency, with impl among its files
	}{
		{name: "release", pkg: kubelogd, tags: "", rigs: false, failpoints: false},
		{name: "failpoint", pkg: kubelogd, tags: "failpoint", rigs: false, failpoints: true},
		{name: "demo", pkg: "github.com/kubelogd/kubelogd/hack/demo", tags: "", rigs: true, failpoints: false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			// -tags on the command line replaces any in GOFLAGS, as in TestReleaseBinary.
			list := exec.Command("go", "list", "-deps", "-tags="+tt.tags, "-f", `{{.ImportPath}} {{join .GoFiles ","}}`, tt.pkg)
			var stderr bytes.Buffer
			list.Stderr = &stderr
			out, err := list.Output()
			if err != nil {
				t.Fatalf("%v: %v\n%s", list.Args, err, stderr.String())
			}
			var rigs []string
			var selfFiles []string
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				path, files, _ := strings.Cut(line, " ")
				if strings.Contains(path, "/internal/testing/") {
					rigs = append(rigs, path)
				}
				if path == self {
					selfFiles = strings.Split(files, ",")
				}
			}
			if got := len(rigs) > 0; got != tt.rigs {
				t.Errorf("%s built with -tags=%q imports test rigs %q: %v, want %v", tt.pkg, tt.tags, rigs, got, tt.rigs)
			}
			if tt.pkg == kubelogd && selfFiles == nil {
				t.Fatalf("%s built with -tags=%q does not import %s: the check of its files proves nothing", tt.pkg, tt.tags, self)
			}
			if got := slices.Contains(selfFiles, impl); got != tt.failpoints {
				t.Errorf("%s built with -tags=%q compiles %s (files %q): %v, want %v", tt.pkg, tt.tags, impl, selfFiles, got, tt.failpoints)
			}
		})
	}
}
