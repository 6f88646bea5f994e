package config

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/spf13/pflag"
	"go.uber.org/goleak"

	"github.com/kubelogd/kubelogd/internal/testing/configmap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// flags is a small flag set of the kinds the daemon has.
func flags() (*pflag.FlagSet, *int, *[]string, *time.Duration) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	size := fs.Int("max-size-mb", 100, "")
	ns := fs.StringSlice("namespace", nil, "")
	d := fs.Duration("idle-close", time.Minute, "")
	fs.Bool("help", false, "")
	return fs, size, ns, d
}

// TestErrors: every problem names the file and the line to blame.
func TestErrors(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"bad YAML", "max-size-mb: 1\nnamespace: a: b\n", "c.yaml:2: invalid YAML"},
		{"tab indentation", "max-size-mb: 1\n\tnamespace: a\n", "c.yaml:2: invalid YAML"},
		{"unknown key", "max-size-mb: 1\n\nnamespce: [a]\n", `c.yaml:3: unknown key "namespce"`},
		{"not in the file", "help: true\n", `c.yaml:1: unknown key "help"`},
		{"list for a scalar", "# c\nmax-size-mb: [1, 2]\n", `c.yaml:2: wrong type for "max-size-mb"`},
		{"mapping", "namespace:\n  a: b\n", `c.yaml:2: wrong type for "namespace"`},
		{"wrong type", "idle-close: 5m\nmax-size-mb: ten\n", `c.yaml:2: invalid value "ten" for "max-size-mb"`},
		{"invalid duration", "idle-close: 5 minutes\n", `c.yaml:1: invalid value "5 minutes" for "idle-close"`},
		{"duplicate", "max-size-mb: 1\nmax-size-mb: 2\n", `c.yaml:2: key "max-size-mb" given twice (first on line 1)`},
		{"not a mapping", "- a\n- b\n", "c.yaml:1: the configuration must be a mapping"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, _, _, _ := flags()
			f, err := Parse("c.yaml", []byte(tt.text))
			if err == nil {
				err = f.Apply(fs, nil)
			}
			var ce *Error
			if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("error %v, want an *Error starting %q", err, tt.want)
			}
		})
	}
}

// TestApply: values and lists set their flags; the keys skip names (given on the
// command line or in the environment) keep those values; empty keys set nothing.
func TestApply(t *testing.T) {
	fs, size, ns, idle := flags()
	if err := fs.Parse([]string{"--namespace", "cli"}); err != nil {
		t.Fatal(err)
	}
	f, err := Parse("c.yaml", []byte("# defaults otherwise\nmax-size-mb: 7\nnamespace: [a, b]\nidle-close:\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Apply(fs, fs.Changed); err != nil {
		t.Fatal(err)
	}
	if *size != 7 || strings.Join(*ns, ",") != "cli" || *idle != time.Minute {
		t.Fatalf("max-size-mb %d, namespace %q, idle-close %s; want 7, [cli] (the command line wins), 1m", *size, *ns, *idle)
	}
	fs, size, ns, _ = flags()
	if err := f.Apply(fs, nil); err != nil {
		t.Fatal(err)
	}
	if *size != 7 || strings.Join(*ns, ",") != "a,b" {
		t.Fatalf("max-size-mb %d, namespace %q; want 7, [a b]", *size, *ns)
	}
	if err := f.Locate(errors.New("invalid --namespace x")); !strings.HasPrefix(err.Error(), "c.yaml:3: ") {
		t.Fatalf("Locate: %v, want it at c.yaml:3", err)
	}
	if empty, err := Parse("c.yaml", []byte("# nothing\n")); err != nil || len(empty.Entries) != 0 {
		t.Fatalf("comments only: %v, %v", empty, err)
	}
}

// watched runs a Watcher of dir/config.yaml whose apply records the content it finds
// and fails when it contains "bad".
type watched struct {
	w       *Watcher
	reg     *prometheus.Registry
	applied atomic.Value // string: the content last applied
	calls   atomic.Int32
	hup     chan os.Signal
}

func watch(t *testing.T, path string) *watched {
	t.Helper()
	x := &watched{reg: prometheus.NewRegistry(), hup: make(chan os.Signal, 1)}
	x.applied.Store("")
	apply := func(context.Context) error {
		x.calls.Add(1)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), "bad") {
			return &Error{Path: path, Line: 1, Reason: "bad"}
		}
		x.applied.Store(string(data))
		return nil
	}
	x.w = NewWatcher(path, apply, x.hup, NewMetrics(x.reg), slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- x.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	time.Sleep(50 * time.Millisecond) // the watch is set up
	return x
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestWatcherConfigMapSwap: an update of a ConfigMap volume (a new timestamped
// directory, ..data swapped through ..data_tmp, the old directory removed) is seen
// through the file's symlink, each time, once; a bad content counts an error and
// leaves the success gauge at 0 until a good one.
func TestWatcherConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := configmap.Write(dir, map[string]string{"config.yaml": "max-size-mb: 1\n"}); err != nil {
		t.Fatal(err)
	}
	x := watch(t, path)
	for i, content := range []string{"max-size-mb: 2\n", "max-size-mb: 3\n"} {
		if err := configmap.Write(dir, map[string]string{"config.yaml": content}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "update "+content, func() bool { return x.applied.Load() == content })
		if got := testutil.ToFloat64(x.w.reloads.WithLabelValues("success")); got != float64(i+1) {
			t.Fatalf("success reloads %g, want %d", got, i+1)
		}
	}
	if err := configmap.Write(dir, map[string]string{"config.yaml": "bad: 1\n"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the error counted", func() bool { return testutil.ToFloat64(x.w.reloads.WithLabelValues("error")) == 1 })
	if g := testutil.ToFloat64(x.w.success); g != 0 {
		t.Fatalf("kubelogd_config_last_reload_success %g after a bad file, want 0", g)
	}
	if err := configmap.Write(dir, map[string]string{"config.yaml": "max-size-mb: 4\n"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the good file again", func() bool { return testutil.ToFloat64(x.w.success) == 1 })
	time.Sleep(3 * settle)
	if n := x.calls.Load(); n != 4 {
		t.Fatalf("apply called %d times for 4 updates", n)
	}
}

// TestWatcherSIGHUP: SIGHUP reloads even an unchanged file; a plain file edited in
// place is seen too.
func TestWatcherSIGHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte("max-size-mb: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	x := watch(t, path)
	x.hup <- os.Interrupt // any signal on the channel: the daemon sends SIGHUP there
	waitFor(t, "the reload on SIGHUP", func() bool { return x.calls.Load() == 1 })
	if err := os.WriteFile(path, []byte("max-size-mb: 5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the edit", func() bool { return x.applied.Load() == "max-size-mb: 5\n" })
	if got := testutil.ToFloat64(x.w.reloads.WithLabelValues("success")); got != 2 {
		t.Fatalf("success reloads %g, want 2", got)
	}
}
