package tail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// jsonLine is a line of the daemon's json format for ns/p/app at t0 + ms; rest holds the
// message members.
func jsonLine(ms int, rest string) string {
	return `{"time":"` + stamp(at(ms)) + `","namespace":"ns","pod":"p","container":"app","node":"n1",` + rest + `}`
}

func TestJSONFiles(t *testing.T) {
	root := t.TempDir()
	jsonLines := []string{
		jsonLine(1_000, `"line":"hello \"quoted\" \\ back\tslash"`),
		jsonLine(3_000, `"line_b64":"aW52YWxpZCD//iB1dGYtOA=="`),
		jsonLine(5_000, `"event":"container restarted (restartCount 1)"`),
		jsonLine(7_000, `"line":"a long line in parts, "`),
		jsonLine(7_000, `"line":"the second part","part":2`),
		jsonLine(9_000, `"line":"unicode \u2028 \ud83d\ude42 ü ERROR"`),
		jsonLine(11_000, `"line":""`),
	}
	writeLines(t, root, "ns/p/"+backupName("app", at(4_000))+".gz", jsonLines[:2]...)
	writeLines(t, root, "ns/p/app.log", jsonLines[2:]...)
	// A sidecar written in the timestamped format, for --format auto.
	writeLines(t, root, "ns/p/side.log", tl(2_000, "side 1"), tl(8_000, "side 2 ERROR"))

	decoded := lines(
		"ns/p/app hello \"quoted\" \\ back\tslash",
		"ns/p/app invalid \xff\xfe utf-8",
		"ns/p/app kubelogd: container restarted (restartCount 1)",
		"ns/p/app a long line in parts, ",
		"ns/p/app kubelogd-continued: the second part",
		"ns/p/app unicode \u2028 🙂 ü ERROR",
		"ns/p/app ",
	)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"decoded", Config{Format: layout.FormatJSON, Container: "app"}, decoded},
		{"output json passes lines through", Config{Format: layout.FormatJSON, Container: "app", Output: OutputJSON}, lines(jsonLines...)},
		{"grep sees decoded text", Config{Format: layout.FormatJSON, Grep: []string{`"quoted" \\`, "^invalid"}, Container: "app"}, lines(
			"ns/p/app hello \"quoted\" \\ back\tslash",
			"ns/p/app invalid \xff\xfe utf-8")},
		{"grep markers as in text files", Config{Format: layout.FormatJSON, Grep: []string{"^kubelogd"}, Container: "app"}, lines(
			"ns/p/app kubelogd: container restarted (restartCount 1)",
			"ns/p/app kubelogd-continued: the second part")},
		{"tail and timestamps", Config{Format: layout.FormatJSON, Container: "app", Tail: 4, Timestamps: true}, lines(
			"ns/p/app "+stamp(at(7_000))+" a long line in parts, ",
			"ns/p/app "+stamp(at(7_000))+" kubelogd-continued: the second part",
			"ns/p/app "+stamp(at(9_000))+" unicode \u2028 🙂 ü ERROR",
			"ns/p/app "+stamp(at(11_000))+" ")},
		{"since", Config{Format: layout.FormatJSON, Container: "app", Since: at(3_000), Until: at(5_000)}, lines(
			"ns/p/app invalid \xff\xfe utf-8",
			"ns/p/app kubelogd: container restarted (restartCount 1)")},
		{"auto detects each file", Config{Format: layout.FormatAuto, Grep: []string{"ERROR|side 1"}}, lines(
			"ns/p/side side 1",
			"ns/p/side side 2 ERROR",
			"ns/p/app unicode \u2028 🙂 ü ERROR")},
		{"auto to json output", Config{Format: layout.FormatAuto, Output: OutputJSON, Since: at(8_000), Until: at(9_000)}, lines(
			`{"time":"`+stamp(at(8_000))+`","namespace":"ns","pod":"p","container":"side","line":"side 2 ERROR"}`,
			jsonLines[5])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Dir = root
			if tt.cfg.Tail == 0 {
				tt.cfg.Tail = TailAll
			}
			got, warnings, err := run(t, tt.cfg)
			mustf(t, err, "run")
			if warnings != "" {
				t.Errorf("warnings: %s", warnings)
			}
			if got != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
}

func TestRawFiles(t *testing.T) {
	root := t.TempDir()
	// Two containers written alternately; raw files carry no times, so their lines
	// cannot be interleaved and come file by file.
	rotA, rotB := at(10_000), at(20_000)
	writeLines(t, root, "ns/p/"+backupName("a", rotA)+".gz", "a 1", "a 2")
	writeLines(t, root, "ns/p/"+backupName("a", rotB), "a 3")
	writeLines(t, root, "ns/p/a.log", "a 4", "a 5 ERROR")
	writeLines(t, root, "ns/p/b.log", "b 1", "kubelogd: container restarted", "b\xff 2")
	writeLines(t, root, "ms/q/c.log", "c 1")
	for _, name := range []string{"ns/p/a.log", "ns/p/b.log", "ms/q/c.log"} {
		mustf(t, os.Chtimes(filepath.Join(root, name), at(30_000), at(30_000)), "chtimes")
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"file by file in name order", Config{}, lines(
			"ms/q/c c 1",
			"ns/p/a a 1", "ns/p/a a 2", "ns/p/a a 3", "ns/p/a a 4", "ns/p/a a 5 ERROR",
			"ns/p/b b 1", "ns/p/b kubelogd: container restarted", "ns/p/b b\xff 2")},
		{"tail", Config{Tail: 2, Pod: "p"}, lines(
			"ns/p/a a 4", "ns/p/a a 5 ERROR",
			"ns/p/b kubelogd: container restarted", "ns/p/b b\xff 2")},
		{"tail into a gz backup", Config{Tail: 4, Container: "a"}, lines("ns/p/a a 2", "ns/p/a a 3", "ns/p/a a 4", "ns/p/a a 5 ERROR")},
		{"grep", Config{Grep: []string{"ERROR|^b"}}, lines("ns/p/a a 5 ERROR", "ns/p/b b 1", "ns/p/b b\xff 2")},
		// A backup counts as written until its rotation time, the current file until
		// its modification time; a file began when the one before it ended.
		{"since selects files", Config{Since: at(15_000), Container: "a"}, lines("ns/p/a a 3", "ns/p/a a 4", "ns/p/a a 5 ERROR")},
		{"since after every file", Config{Since: at(30_001), Container: "a"}, ""},
		{"until selects files", Config{Until: at(15_000), Container: "a"}, lines("ns/p/a a 1", "ns/p/a a 2", "ns/p/a a 3")},
		{"until before the second file", Config{Until: at(5_000), Container: "a"}, lines("ns/p/a a 1", "ns/p/a a 2")},
		{"tail with since", Config{Tail: 10, Since: at(20_001), Container: "a"}, lines("ns/p/a a 4", "ns/p/a a 5 ERROR")},
		{"timestamps have none to show", Config{Timestamps: true, Container: "b", Output: OutputRaw}, lines(
			"b 1", "kubelogd: container restarted", "b\xff 2")},
		{"json output has no time", Config{Output: OutputJSON, Container: "b"}, lines(
			`{"namespace":"ns","pod":"p","container":"b","line":"b 1"}`,
			`{"namespace":"ns","pod":"p","container":"b","event":"container restarted"}`,
			`{"namespace":"ns","pod":"p","container":"b","line_b64":"Yv8gMg=="}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Dir, tt.cfg.Format = root, layout.FormatRaw
			if tt.cfg.Tail == 0 {
				tt.cfg.Tail = TailAll
			}
			got, warnings, err := run(t, tt.cfg)
			mustf(t, err, "run")
			if warnings != "" {
				t.Errorf("warnings: %s", warnings)
			}
			if got != tt.want {
				t.Errorf("got:\n%q\nwant:\n%q", got, tt.want)
			}
		})
	}
	// Detected as raw, the same files behave the same.
	got, _, err := run(t, Config{Dir: root, Format: layout.FormatAuto, Tail: TailAll, Since: at(15_000), Container: "a"})
	mustf(t, err, "run")
	if want := lines("ns/p/a a 3", "ns/p/a a 4", "ns/p/a a 5 ERROR"); got != want {
		t.Errorf("auto: got %q, want %q", got, want)
	}
}

// TestEmptyLines: empty lines (and an empty last line) in every format and mode.
func TestEmptyLines(t *testing.T) {
	root := t.TempDir()
	writeLines(t, root, "ns/p/j.log", jsonLine(1_000, `"line":"x"`), "", "")
	writeLines(t, root, "ns/p/r.log", "", "y", "")
	for _, tail := range []int{TailAll, 2} {
		for _, out := range []Output{OutputDefault, OutputRaw, OutputJSON} {
			got, _, err := run(t, Config{Dir: root, Format: layout.FormatAuto, Tail: tail, Output: out})
			mustf(t, err, "run")
			if n := strings.Count(got, "\n"); n != 6 && tail == TailAll || n != 4 && tail == 2 {
				t.Errorf("tail %d output %d: %d lines:\n%s", tail, out, n, got)
			}
		}
	}
}
