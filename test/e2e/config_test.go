package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/configmap"
)

// configVolume is a directory laid out as a ConfigMap volume with one key, config.yaml;
// set updates it as the kubelet does (a new timestamped directory, ..data swapped).
type configVolume struct {
	t   *testing.T
	dir string
}

func newConfigVolume(t *testing.T, content string) *configVolume {
	v := &configVolume{t: t, dir: t.TempDir()}
	v.set(content)
	return v
}

func (v *configVolume) path() string { return filepath.Join(v.dir, "config.yaml") }

func (v *configVolume) set(content string) {
	v.t.Helper()
	if err := configmap.Write(v.dir, map[string]string{"config.yaml": content}); err != nil {
		v.t.Fatal(err)
	}
}

// within polls cond until it holds or the deadline passes.
func within(t *testing.T, deadline time.Time, what string, cond func() (bool, string)) {
	t.Helper()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached in time: %s", what, detail)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestConfigReloadNamespaces: the namespace list is changed by updating the ConfigMap
// volume. A namespace added is collected within 5 s of the swap (the bound); a
// namespace removed stops — no stream open, no new line written, the file and cursor
// kept as they were, no marker; added back, it resumes from its cursor, each line once.
func TestConfigReloadNamespaces(t *testing.T) {
	e := newEnv(t)
	for _, ns := range []string{"cfg-a", "cfg-b"} {
		e.pod(ns, "web", nil, "app")
		e.start(ns, "web", "app")
		e.emit(ns, "web", "app", 20)
	}
	vol := newConfigVolume(t, "# kubelogd\nnamespace: [cfg-a]\n")
	dir := t.TempDir()
	d := e.kubelogd(dir, "--config", vol.path())
	d.waitReady()
	e.waitCollected(dir, "cfg-a", "web", "app")
	if _, err := os.Stat(logPath(dir, "cfg-b", "web", "app")); !os.IsNotExist(err) {
		t.Fatalf("cfg-b collected before it was configured: %v", err)
	}

	// Added: collected within 5 s of the swap.
	swapped := time.Now()
	vol.set("# kubelogd\nnamespace: [cfg-a, cfg-b]\n")
	within(t, swapped.Add(5*time.Second), "cfg-b collected within 5s of the ConfigMap update", func() (bool, string) {
		r, _, err := e.collected(dir, "cfg-b", "web", "app")
		if err != nil {
			return false, err.Error()
		}
		return r.OK(), r.String()
	})
	t.Logf("namespace added: its pod's lines on disk %s after the swap", time.Since(swapped).Round(time.Millisecond))
	eventually(t, 10*time.Second, "the reload counted", func() (bool, string) {
		n := d.metric("kubelogd_config_reloads_total", "result=success")
		return n == 1, fmtFloat(n)
	})

	// Removed: cfg-a's stream stops, its file and cursor stay as they are.
	vol.set("namespace: [cfg-b]\n")
	eventually(t, 10*time.Second, "cfg-a's stream closed", func() (bool, string) {
		n := d.metric("kubelogd_streams_active")
		return n == 1, "kubelogd_streams_active " + fmtFloat(n)
	})
	file := logPath(dir, "cfg-a", "web", "app")
	before, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	linesA := d.metric("kubelogd_lines_written_total", "namespace=cfg-a")
	e.emit("cfg-a", "web", "app", 10)
	e.emit("cfg-b", "web", "app", 10)
	e.waitCollected(dir, "cfg-b", "web", "app")
	time.Sleep(time.Second) // more than --flush-interval: a line cfg-a still wrote would be on disk
	if got := d.metric("kubelogd_lines_written_total", "namespace=cfg-a"); got != linesA {
		t.Errorf("kubelogd_lines_written_total{namespace=\"cfg-a\"} went from %g to %g after cfg-a left the selection", linesA, got)
	}
	after, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("cfg-a's file changed after the namespace left the selection:\n%s", after[len(before):])
	}
	if bytes.Contains(after, []byte("kubelogd: ")) {
		t.Fatalf("cfg-a's file has a marker; a pod leaving the selection is not deleted:\n%s", after)
	}
	if _, err := os.Stat(filepath.Join(dir, "cfg-a", "web", ".app.cursor")); err != nil {
		t.Fatalf("cfg-a's cursor: %v", err)
	}

	// Back: it resumes from the cursor, the 10 lines logged meanwhile once each.
	vol.set("namespace: [cfg-a, cfg-b]\n")
	if markers := e.waitCollected(dir, "cfg-a", "web", "app"); len(markers) > 0 {
		t.Fatalf("cfg-a resumed with markers %q", markers)
	}
	if markers := e.waitCollected(dir, "cfg-b", "web", "app"); len(markers) > 0 {
		t.Fatalf("cfg-b has markers %q", markers)
	}
	d.stop()
}

func fmtFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

// TestConfigReloadInvalid: an invalid file (bad YAML, then an unknown key) keeps the last
// good configuration in force — collection goes on — and each is one ERROR naming the
// file and line, kubelogd_config_reloads_total{result="error"} and
// kubelogd_config_last_reload_success 0; a good file after them sets it back to 1, a
// setting that cannot change is a WARN naming it, and SIGHUP reloads.
func TestConfigReloadInvalid(t *testing.T) {
	e := newEnv(t)
	e.pod("cfg-c", "web", nil, "app")
	e.start("cfg-c", "web", "app")
	e.emit("cfg-c", "web", "app", 10)
	vol := newConfigVolume(t, "namespace: [cfg-c]\n")
	dir := t.TempDir()
	d := e.kubelogd(dir, "--config", vol.path())
	d.waitReady()
	e.waitCollected(dir, "cfg-c", "web", "app")
	if got := d.metric("kubelogd_config_last_reload_success"); got != 1 {
		t.Fatalf("kubelogd_config_last_reload_success = %g at start, want 1", got)
	}

	for i, bad := range []struct{ content, where string }{
		{"namespace: [cfg-c]\nselector: app: web\n", ":2: invalid YAML"},
		{"namespace: [cfg-c]\n\nmax-backup: 3\n", `:3: unknown key \"max-backup\"`},
	} {
		vol.set(bad.content)
		eventually(t, 10*time.Second, "the failed reload counted", func() (bool, string) {
			n := d.metric("kubelogd_config_reloads_total", "result=error")
			return n == float64(i+1), fmtFloat(n)
		})
		if got := d.metric("kubelogd_config_last_reload_success"); got != 0 {
			t.Fatalf("kubelogd_config_last_reload_success = %g after %q, want 0", got, bad.content)
		}
		errs := regexp.MustCompile(`(?m)^.*level=ERROR.*$`).FindAllString(d.Output(), -1)
		if len(errs) != i+1 || !strings.Contains(errs[i], vol.path()+bad.where) {
			t.Fatalf("ERROR lines %q; want %d, the last naming %s%s", errs, i+1, vol.path(), bad.where)
		}
		// The last good configuration still collects.
		e.emit("cfg-c", "web", "app", 5)
		e.waitCollected(dir, "cfg-c", "web", "app")
	}

	vol.set("namespace: [cfg-c]\nidle-close: 1m\n")
	eventually(t, 10*time.Second, "the good file applied", func() (bool, string) {
		n := d.metric("kubelogd_config_last_reload_success")
		return n == 1, fmtFloat(n)
	})
	if !regexp.MustCompile(`level=WARN msg="this setting does not change while kubelogd runs.*key=idle-close`).MatchString(d.Output()) {
		t.Errorf("no WARN naming idle-close, which a reload cannot change:\n%s", tail(d.Output(), 20))
	}
	if err := d.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "SIGHUP reloads", func() (bool, string) {
		n := d.metric("kubelogd_config_reloads_total", "result=success")
		return n == 2, fmtFloat(n)
	})
	e.emit("cfg-c", "web", "app", 5)
	e.waitCollected(dir, "cfg-c", "web", "app")
	d.stop()
}

// TestConfigInvalidAtStart: an invalid file at start is exit code 2 and one line naming
// the file, the line and the reason.
func TestConfigInvalidAtStart(t *testing.T) {
	e := newEnv(t)
	vol := newConfigVolume(t, "namespace: [a]\nmax-size-mb: ten\n")
	d := e.kubelogd(t.TempDir(), "--config", vol.path())
	select {
	case <-d.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("kubelogd still runs 30s after starting with an invalid configuration file")
	}
	want := vol.path() + `:2: invalid value "ten" for "max-size-mb"`
	if code := d.Cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(d.Output(), want) {
		t.Fatalf("exit %d, output %q; want 2 and %q", code, d.Output(), want)
	}
}
