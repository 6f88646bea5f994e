package tail

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestMain_ExitCodes(t *testing.T) {
	root := historyTree(t)
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stdout string // a substring; "" checks nothing
		stderr string // a substring; "" wants stderr empty
	}{
		{"help", []string{"--help"}, nil, 0, "Usage: kubelogd tail [POD]", ""},
		{"help mentions raw limits", []string{"-h"}, nil, 0, "select whole files by modification", ""},
		{"no such output dir", []string{"--output-dir", root + "/nope"}, nil, 2, "", "output directory " + root + "/nope does not exist"},
		{"output dir is a file", []string{"--output-dir", root + "/.kubelogd.lock"}, nil, 2, "", "is not a directory"},
		{"bad regex", []string{"--output-dir", root, "--grep", "a(b"}, nil, 2, "", `invalid --grep "a(b": missing closing )`},
		{"bad grep-v", []string{"--output-dir", root, "--grep-v", "[z-a]"}, nil, 2, "", "invalid --grep-v"},
		{"bad duration", []string{"--output-dir", root, "--since", "5 minutes"}, nil, 2, "", `invalid --since "5 minutes"`},
		{"negative duration", []string{"--output-dir", root, "--since", "-5m"}, nil, 2, "", "must not be negative"},
		{"bad until", []string{"--output-dir", root, "--until", "yesterday"}, nil, 2, "", `invalid --until "yesterday"`},
		{"until before since", []string{"--output-dir", root, "--since", "1h", "--until", "2h"}, nil, 2, "", "is before --since"},
		{"until with follow", []string{"--output-dir", root, "-f", "--until", "1h"}, nil, 2, "", "--until cannot be combined with --follow"},
		{"bad selector", []string{"--output-dir", root, "-l", "a in (("}, nil, 2, "", "invalid --selector"},
		{"bad pod pattern", []string{"--output-dir", root, "web-(("}, nil, 2, "", "invalid pod pattern"},
		{"two pods", []string{"--output-dir", root, "a", "b"}, nil, 2, "", "one pod pattern at most"},
		{"unknown flag", []string{"--output-dir", root, "--bogus"}, nil, 2, "", "unknown flag: --bogus"},
		{"bad format", []string{"--output-dir", root, "--format", "xml"}, nil, 2, "", "invalid --format"},
		{"bad output", []string{"--output-dir", root, "-o", "yaml"}, nil, 2, "", "invalid --output"},
		{"bad color", []string{"--output-dir", root, "--color", "pink"}, nil, 2, "", "invalid --color"},
		{"no match", []string{"--output-dir", root, "nope"}, nil, 1, "", "no matching container logs under " + root},
		{"flags after the pod, kubectl style", []string{"web-1", "--output-dir", root, "-c", "app", "--tail", "1"}, nil, 0,
			"shop/web-1/app kubelogd: container restarted (restartCount 1)\n", ""},
		{"all namespaces", []string{"--output-dir", root, "-n", "infra", "-A", "--tail=1", "-c", "proxy"}, nil, 0, "shop/web-0/proxy proxy 3", ""},
		{"short flags", []string{"--output-dir", root, "-n", "infra", "-o", "raw", "--tail=1"}, nil, 0, "db 2 ERROR slow query\n", ""},
		{"selector", []string{"--output-dir", root, "-l", "tier=back", "--grep", "web-1"}, nil, 0, "shop/web-1/app web-1 app 1\n", ""},
		{"since as a time", []string{"--output-dir", root, "--since", stamp(at(30_000)), "-o", "raw"}, nil, 0,
			lines("app current 2 ERROR timeout", "kubelogd: container restarted (restartCount 1)"), ""},
		{"since as days", []string{"--output-dir", root, "--since", "36500d", "-n", "infra", "--tail", "1"}, nil, 0, "db 2 ERROR", ""},
		{"output dir from the environment", []string{"-n", "infra", "--tail", "1"}, map[string]string{"KUBELOGD_OUTPUT_DIR": root}, 0, "db 2 ERROR", ""},
		{"format from the environment", []string{"-n", "infra", "--tail", "1", "-o", "raw"},
			map[string]string{"KUBELOGD_OUTPUT_DIR": root, "KUBELOGD_FORMAT": "raw"}, 0, tl(25_000, "db 2 ERROR slow query") + "\n", ""},
		{"the flag wins over the environment", []string{"--output-dir", root, "-n", "infra", "--tail", "1"}, map[string]string{"KUBELOGD_OUTPUT_DIR": "/nope"}, 0, "db 2 ERROR", ""},
		{"colour always", []string{"--output-dir", root, "--color", "always", "-n", "infra", "--tail", "1"}, nil, 0, "\x1b[", ""},
		{"no colour when piped", []string{"--output-dir", root, "-n", "infra", "--tail", "1"}, nil, 0, "infra/db-0/db db 2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok }
			var stdout, stderr bytes.Buffer
			code := Main(t.Context(), tt.args, env, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d; stderr %q", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout %q lacks %q", stdout.String(), tt.stdout)
			}
			if tt.stderr == "" && stderr.Len() > 0 || !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr %q, want %q", stderr.String(), tt.stderr)
			}
			if s := strings.TrimSuffix(stderr.String(), "\n"); strings.Contains(s, "\n") {
				t.Errorf("error is more than one line: %q", s)
			}
		})
	}
}

// TestMain_FollowStopsOnCancel: Ctrl-C (a cancelled context) ends a follow with 0.
func TestMain_FollowStopsOnCancel(t *testing.T) {
	root := historyTree(t)
	ctx, cancel := context.WithCancel(t.Context())
	out := &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		var stderr bytes.Buffer
		done <- Main(ctx, []string{"--output-dir", root, "-f", "-c", "proxy"}, func(string) (string, bool) { return "", false }, out, &stderr)
	}()
	waitFor(t, out, "proxy 3 ERROR upstream reset")
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d, want 0", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not stop")
	}
}

func TestParseTimeFlag(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                            {},
		"90m":                         now.Add(-90 * time.Minute),
		"1h30m":                       now.Add(-90 * time.Minute),
		"2d":                          now.Add(-48 * time.Hour),
		"0.5d":                        now.Add(-12 * time.Hour),
		"2026-11-27T03:04:05Z":        time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC),
		"2026-11-27T05:04:05.5+02:00": time.Date(2026, 11, 27, 3, 4, 5, 5e8, time.UTC),
	} {
		got, err := parseTimeFlag("--since", in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseTimeFlag(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
}
