// Package monitoring tests deploy/monitoring: the alerting rules with promtool (checks and
// the unit tests in rules_test.yaml), the metrics the rules and the dashboard select
// against the metrics kubelogd exports, the dashboard's PromQL, and the kustomize
// component. It needs bin/promtool (make testbin; under -short, the tests that need it
// are skipped without it); bin/kubectl (make testbin, or make kubectl) adds the rendering
// with kubectl kustomize.
package monitoring

import (
	"bytes"
	goflag "flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = goflag.Bool("update", false, "regenerate deploy/monitoring/prometheusrule.yaml from rules.yaml")

// repoRoot is the directory of kubelogd's go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		if data, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil &&
			strings.HasPrefix(string(data), "module github.com/kubelogd/kubelogd\n") {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("module root not found above %s", wd)
		}
	}
}

// monitoringDir is deploy/monitoring.
func monitoringDir(t *testing.T) string {
	return filepath.Join(repoRoot(t), "deploy", "monitoring")
}

// binary returns bin/<name> ($KUBELOGD_BIN_DIR/<name> when set), or "" if it is missing.
func binary(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("KUBELOGD_BIN_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot(t), "bin")
	}
	bin := filepath.Join(dir, name)
	if _, err := os.Stat(bin); err != nil {
		return ""
	}
	return bin
}

// promtool runs bin/promtool in dir and returns its combined output and error. Without
// bin/promtool the test fails, except under -short (make test-short builds no tools).
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	bin := binary(t, "promtool")
	switch {
	case bin == "" && testing.Short():
		t.Skip("bin/promtool missing (make testbin builds it)")
	case bin == "":
		t.Fatal("bin/promtool missing: run make testbin")
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// readFile reads a file under the repository root.
func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
