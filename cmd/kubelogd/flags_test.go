package main

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubelogd/kubelogd/internal/daemon"
)

// flagNames lists the daemon's long flags, help included.
func flagNames() []string {
	fs, _ := newFlagSet(new(daemon.Config), new(options))
	var names []string
	fs.VisitAll(func(f *pflag.Flag) { names = append(names, f.Name) })
	return names
}

// TestHelp: -h, --help and the old -help print the grouped help on stdout and exit 0; it
// shows every flag in pflag's --flag style, none in the single-dash style of Go's flag
// package.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run([]string{arg}, &stdout, &stderr); code != 0 || stderr.Len() > 0 {
				t.Fatalf("exit %d, stderr %q; want 0 and nothing", code, stderr.String())
			}
			if stdout.String() != helpText() {
				t.Fatalf("stdout is not the help text:\n%s", stdout.String())
			}
		})
	}
	help := helpText()
	for _, name := range flagNames() {
		if !regexp.MustCompile(`(?m)^ {2}(-., | {4})--` + regexp.QuoteMeta(name) + `\b`).MatchString(help) {
			t.Errorf("--help does not list --%s", name)
		}
	}
	if m := regexp.MustCompile(`(?m)(^|[\s(])-[a-z][a-z-]+`).FindAllString(help, -1); len(m) > 0 {
		t.Errorf("--help shows single-dash long flags %q", m)
	}
	for _, group := range []string{"Cluster", "Selection", "Files", "Rotation and retention", "Streams", "Metrics and logs"} {
		if !strings.Contains(help, "\n"+group+":\n") {
			t.Errorf("--help has no %q group", group)
		}
	}
}

// TestReadmeFlags: the README's flag table documents exactly the daemon's flags.
func TestReadmeFlags(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(readme), "\n## Flags\n")
	if !ok {
		t.Fatal("README.md has no ## Flags section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	var documented []string
	for _, line := range strings.Split(section, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range regexp.MustCompile("`--([a-z0-9-]+)`").FindAllStringSubmatch(cells[1], -1) {
			documented = append(documented, m[1])
		}
	}
	if len(documented) == 0 {
		t.Fatal("no flags found in README.md's flag table")
	}
	defined := flagNames()
	for _, name := range documented {
		if !slices.Contains(defined, name) {
			t.Errorf("README.md documents --%s, which kubelogd does not define", name)
		}
	}
	for _, name := range defined {
		if !slices.Contains(documented, name) {
			t.Errorf("--%s is not in README.md's flag table", name)
		}
	}
}

// TestFlagsAndEnv: flag values, the KUBELOGD_* variables and their precedence, and the
// single-dash long flags Go's flag package accepted.
func TestFlagsAndEnv(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(daemon.Config) bool
	}{
		{"defaults", nil, nil, func(c daemon.Config) bool {
			return c.Sink.Dir == "/var/log/kubelogd" && c.Sink.MaxSizeMB == 100 && c.Sink.MaxBackups == 5 &&
				c.QPS == 500 && c.Burst == 500 && c.Sink.RetainDeleted == 7*24*time.Hour &&
				c.Collector.MaxStreamLifetime == time.Hour && c.MetricsAddr == ":8080" && !c.Sink.Compress
		}},
		{"flags", []string{"--max-size-mb", "7", "--compress", "--output-dir=/x", "--max-stream-lifetime", "0"}, nil, func(c daemon.Config) bool {
			return c.Sink.MaxSizeMB == 7 && c.Sink.Compress && c.Sink.Dir == "/x" && c.Collector.MaxStreamLifetime == -1
		}},
		{"env", nil, map[string]string{"KUBELOGD_MAX_SIZE_MB": "9", "KUBELOGD_COMPRESS": "true", "KUBELOGD_KUBE_API_QPS": "2.5"}, func(c daemon.Config) bool {
			return c.Sink.MaxSizeMB == 9 && c.Sink.Compress && c.QPS == 2.5
		}},
		{"flag wins over env", []string{"--max-size-mb=7", "--compress=false"}, map[string]string{"KUBELOGD_MAX_SIZE_MB": "9", "KUBELOGD_COMPRESS": "true"}, func(c daemon.Config) bool {
			return c.Sink.MaxSizeMB == 7 && !c.Sink.Compress
		}},
		{"repeatable flags add to env", []string{"--namespace", "c", "--namespace=d,e"}, map[string]string{"KUBELOGD_NAMESPACE": "a, b"}, func(c daemon.Config) bool {
			return slices.Equal(c.Informer.Namespaces, []string{"a", "b", "c", "d", "e"})
		}},
		{"single-dash long flags", []string{"-max-size-mb", "7", "-compress", "-output-dir=/x", "-namespace", "a"}, nil, func(c daemon.Config) bool {
			return c.Sink.MaxSizeMB == 7 && c.Sink.Compress && c.Sink.Dir == "/x" && slices.Equal(c.Informer.Namespaces, []string{"a"})
		}},
		{"a value that looks like a flag", []string{"--kubeconfig", "-compress", "-output-dir", "-max-size-mb"}, nil, func(c daemon.Config) bool {
			return c.Kubeconfig == "-compress" && c.Sink.Dir == "-max-size-mb" && !c.Sink.Compress
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, _, err := parse(tt.args, io.Discard)
			if err != nil {
				t.Fatalf("parse(%q): %v", tt.args, err)
			}
			if !tt.check(cfg) {
				t.Fatalf("parse(%q) with env %v: unexpected config %+v", tt.args, tt.env, cfg)
			}
		})
	}
}

// TestLongDashes: only kubelogd's own long flags get a second dash; values, shorthands,
// unknown names and everything after "--" are left for pflag.
func TestLongDashes(t *testing.T) {
	fs, _ := newFlagSet(new(daemon.Config), new(options))
	tests := []struct {
		in, want []string
	}{
		{[]string{"-compress", "-max-size-mb=3", "-since", "5m"}, []string{"--compress", "--max-size-mb=3", "--since", "5m"}},
		{[]string{"--selector", "-compress", "-h", "-x", "-nope"}, []string{"--selector", "-compress", "-h", "-x", "-nope"}},
		{[]string{"-selector=-compress", "-compress"}, []string{"--selector=-compress", "--compress"}},
		{[]string{"extra", "-node", "n", "--", "-compress"}, []string{"extra", "--node", "n", "--", "-compress"}},
		{[]string{"-kubeconfig"}, []string{"--kubeconfig"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.in, " "), func(t *testing.T) {
			if got := longDashes(fs, tt.in); !slices.Equal(got, tt.want) {
				t.Fatalf("longDashes(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestConfigFile: the precedence of the sources — command line, then environment, then
// the --config file, then defaults — and the file's errors at start, with file and line.
func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/config.yaml"
	if err := os.WriteFile(path, []byte("max-size-mb: 3\nmax-backups: 4\nnamespace: [f1, f2]\ncompress: true\nlog-level: debug\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(daemon.Config) bool
	}{
		{"file over defaults", []string{"--config", path}, nil, func(c daemon.Config) bool {
			return c.Sink.MaxSizeMB == 3 && c.Sink.MaxBackups == 4 && c.Sink.Compress && c.ConfigFile == path &&
				slices.Equal(c.Informer.Namespaces, []string{"f1", "f2"}) && c.LogLevel.Level() == -4 && c.Reload != nil
		}},
		{"env over file", []string{"--config=" + path}, map[string]string{"KUBELOGD_MAX_SIZE_MB": "9"}, func(c daemon.Config) bool {
			return c.Sink.MaxSizeMB == 9 && c.Sink.MaxBackups == 4
		}},
		{"flag over env over file", []string{"--config", path, "--max-size-mb", "7"}, map[string]string{"KUBELOGD_MAX_SIZE_MB": "9"}, func(c daemon.Config) bool {
			return c.Sink.MaxSizeMB == 7
		}},
		{"a repeatable flag replaces the file's list", []string{"--config", path, "--namespace", "c"}, map[string]string{"KUBELOGD_NAMESPACE": "e"}, func(c daemon.Config) bool {
			return slices.Equal(c.Informer.Namespaces, []string{"e", "c"})
		}},
		{"--config from the environment", nil, map[string]string{"KUBELOGD_CONFIG": path}, func(c daemon.Config) bool {
			return c.Sink.MaxSizeMB == 3
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, _, err := parse(tt.args, io.Discard)
			if err != nil {
				t.Fatalf("parse(%q): %v", tt.args, err)
			}
			if !tt.check(cfg) {
				t.Fatalf("parse(%q) with env %v: unexpected config %+v", tt.args, tt.env, cfg)
			}
		})
	}
	t.Run("reload reads the file again", func(t *testing.T) {
		cfg, _, err := parse([]string{"--config", path, "--max-backups", "1"}, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("max-size-mb: 8\nmax-backups: 2\nlog-level: error\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		next, err := cfg.Reload()
		if err != nil || next.Sink.MaxSizeMB != 8 || next.Sink.MaxBackups != 1 || next.LogLevel.Level() != 8 || len(next.Informer.Namespaces) != 0 {
			t.Fatalf("reload: %+v, %v", next, err)
		}
	})
}

func TestVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"--version"}, &stdout, &stderr); code != 0 || stdout.String() != "kubelogd dev\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0 and %q", code, stdout.String(), stderr.String(), "kubelogd dev\n")
	}
}
