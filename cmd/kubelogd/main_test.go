package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	// A kubeconfig pointing at a port nobody listens on.
	kc := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kc, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: x}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	badConfig := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(badConfig, []byte("max-size-mb: 10\nnamespace: [a]\nmax-backup: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badSelector := filepath.Join(dir, "selector.yaml")
	if err := os.WriteFile(badSelector, []byte("# the selector\n\nselector: a in ((\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		msg  string
	}{
		{"unknown flag", []string{"--no-such-flag"}, nil, 2, "unknown flag: --no-such-flag (see kubelogd --help)"},
		{"unknown single-dash flag", []string{"-no-such-flag"}, nil, 2, "unknown shorthand flag: 'n' in -no-such-flag"},
		{"bad flag value", []string{"--max-size-mb", "ten"}, nil, 2, `invalid argument "ten" for "--max-size-mb" flag`},
		{"missing flag value", []string{"--kubeconfig"}, nil, 2, "flag needs an argument: --kubeconfig"},
		{"bad format", []string{"--format", "xml"}, nil, 2, "invalid --format"},
		{"bad selector", []string{"--selector", "a in (("}, nil, 2, "invalid --selector"},
		{"bad log level", []string{"--log-level", "loud"}, nil, 2, "invalid --log-level"},
		{"bad env", nil, map[string]string{"KUBELOGD_MAX_SIZE_MB": "ten"}, 2, "invalid KUBELOGD_MAX_SIZE_MB"},
		{"stray argument", []string{"extra"}, nil, 2, "unexpected argument"},
		{"unreachable API server", []string{"--kubeconfig", kc, "--output-dir", dir, "--metrics-addr", ""}, nil, 2, "cannot reach the Kubernetes API server at https://127.0.0.1:1"},
		{"version", []string{"--version"}, nil, 0, ""},
		{"config file with an unknown key", []string{"--config", badConfig}, nil, 2, badConfig + `:3: unknown key "max-backup"`},
		{"config file with an invalid value", []string{"--config", badSelector}, nil, 2, badSelector + `:3: invalid --selector`},
		{"missing config file", []string{"--config", dir + "/none.yaml"}, nil, 2, dir + "/none.yaml: cannot read the configuration file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var stderr bytes.Buffer
			code := run(tt.args, io.Discard, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.msg) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tt.code, tt.msg)
			}
			if tt.code == 2 && strings.Count(strings.TrimSpace(stderr.String()), "\n") > 0 {
				t.Fatalf("error is more than one line: %q", stderr.String())
			}
		})
	}
}
