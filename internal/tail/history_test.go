package tail

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// historyTree builds two namespaces with interleaved timestamps, rotated plain and
// gzipped backups, an equal-time tie, an offset timestamp, a marker line, an
// unterminated line being written, cursor files and pod metadata (but none for db-0).
func historyTree(t *testing.T) string {
	root := t.TempDir()
	writeMeta(t, root, "shop", "web-0", "node-1", map[string]string{"app": "web", "tier": "front"})
	writeLines(t, root, "shop/web-0/"+backupName("app", at(10_000))+".gz",
		tl(1_000, "app gz 1"),
		tl(5_000, "app gz 2"))
	writeLines(t, root, "shop/web-0/"+backupName("app", at(20_000)),
		tl(12_500, "app backup 1"),
		tl(15_000, "app backup 2 ERROR disk full"))
	p := writeLines(t, root, "shop/web-0/app.log",
		tl(21_000, "app current 1"),
		tl(30_000, "app current 2 ERROR timeout"))
	appendFile(t, p, tl(32_000, "app partial, still being written"))
	writeFile(t, root, "shop/web-0/.app.cursor", `{"version":1,"garbage":true}`)
	writeLines(t, root, "shop/web-0/proxy.log",
		tl(13_000, "proxy 1"),
		tl(21_000, "proxy 2, same time as app current 1"),
		tl(22_000, "proxy 3 ERROR upstream reset"))
	writeFile(t, root, "shop/web-0/.proxy.cursor", `{}`)

	writeMeta(t, root, "shop", "web-1", "node-2", map[string]string{"app": "web", "tier": "back"})
	writeLines(t, root, "shop/web-1/app.log",
		tl(14_000, "web-1 app 1"),
		tl(31_000, "kubelogd: container restarted (restartCount 1)"))

	writeLines(t, root, "infra/db-0/"+backupName("db", at(9_000)),
		tl(2_000, "db old"))
	writeLines(t, root, "infra/db-0/db.log",
		// The same instant as t0+11s, written with an offset.
		"2026-11-27T05:00:11.000000000+02:00 db 1",
		tl(25_000, "db 2 ERROR slow query"))
	// Leftovers of metadata saves a crash interrupted: never read, neither for the
	// selector (web-1 would be "front" here) nor with a warning (torn).
	writeFile(t, root, "shop/web-1/"+layout.MetaFileName+".tmp-123", `{"uid":"uid-web-1","labels":{"app":"web","tier":"front"}}`+"\n")
	writeFile(t, root, "shop/web-0/"+layout.MetaFileName+".tmp-9", `{"uid":`)
	// Not logs: a stray file and a lock at the root.
	writeFile(t, root, "infra/db-0/notes.txt", "not a log\n")
	writeFile(t, root, ".kubelogd.lock", "")
	return root
}

func TestHistory(t *testing.T) {
	root := historyTree(t)
	all := lines(
		"shop/web-0/app app gz 1",
		"infra/db-0/db db old",
		"shop/web-0/app app gz 2",
		"infra/db-0/db db 1",
		"shop/web-0/app app backup 1",
		"shop/web-0/proxy proxy 1",
		"shop/web-1/app web-1 app 1",
		"shop/web-0/app app backup 2 ERROR disk full",
		"shop/web-0/app app current 1",
		"shop/web-0/proxy proxy 2, same time as app current 1",
		"shop/web-0/proxy proxy 3 ERROR upstream reset",
		"infra/db-0/db db 2 ERROR slow query",
		"shop/web-0/app app current 2 ERROR timeout",
		"shop/web-1/app kubelogd: container restarted (restartCount 1)",
	)
	tests := []struct {
		name   string
		cfg    func(*Config)
		want   string
		golden string
		err    error
	}{
		{name: "everything merged by time", want: all},
		{name: "namespace", cfg: func(c *Config) { c.Namespaces = []string{"infra"} }, want: lines(
			"infra/db-0/db db old",
			"infra/db-0/db db 1",
			"infra/db-0/db db 2 ERROR slow query")},
		{name: "pod glob", cfg: func(c *Config) { c.Pod = "web-[1-9]" }, want: lines(
			"shop/web-1/app web-1 app 1",
			"shop/web-1/app kubelogd: container restarted (restartCount 1)")},
		{name: "pod regex matches anywhere", cfg: func(c *Config) { c.Pod = "eb-0" }, want: lines(
			"shop/web-0/app app gz 1", "shop/web-0/app app gz 2", "shop/web-0/app app backup 1",
			"shop/web-0/proxy proxy 1", "shop/web-0/app app backup 2 ERROR disk full",
			"shop/web-0/app app current 1", "shop/web-0/proxy proxy 2, same time as app current 1",
			"shop/web-0/proxy proxy 3 ERROR upstream reset", "shop/web-0/app app current 2 ERROR timeout")},
		{name: "anchored regex", cfg: func(c *Config) { c.Pod = "^db-.$" }, want: lines(
			"infra/db-0/db db old", "infra/db-0/db db 1", "infra/db-0/db db 2 ERROR slow query")},
		{name: "container", cfg: func(c *Config) { c.Container = "proxy" }, want: lines(
			"shop/web-0/proxy proxy 1",
			"shop/web-0/proxy proxy 2, same time as app current 1",
			"shop/web-0/proxy proxy 3 ERROR upstream reset")},
		{name: "container glob", cfg: func(c *Config) { c.Container = "d?"; c.Tail = 1 }, want: lines(
			"infra/db-0/db db 2 ERROR slow query")},
		{name: "selector", cfg: func(c *Config) { c.Selector = "app=web,tier!=front" }, want: lines(
			"shop/web-1/app web-1 app 1",
			"shop/web-1/app kubelogd: container restarted (restartCount 1)")},
		{name: "selector skips pods without metadata", cfg: func(c *Config) { c.Selector = "!app"; c.Pod = "db" }, err: ErrNoMatch},
		{name: "selector exists", cfg: func(c *Config) { c.Selector = "tier"; c.Container = "proxy"; c.Tail = 1 }, want: lines(
			"shop/web-0/proxy proxy 3 ERROR upstream reset")},
		{name: "nothing matches", cfg: func(c *Config) { c.Pod = "nope" }, err: ErrNoMatch},
		{name: "tail per container", cfg: func(c *Config) { c.Tail = 1 }, want: lines(
			"shop/web-0/proxy proxy 3 ERROR upstream reset",
			"infra/db-0/db db 2 ERROR slow query",
			"shop/web-0/app app current 2 ERROR timeout",
			"shop/web-1/app kubelogd: container restarted (restartCount 1)")},
		{name: "tail into the backups", cfg: func(c *Config) { c.Tail = 5; c.Container = "app"; c.Pod = "web-0" }, want: lines(
			"shop/web-0/app app gz 2",
			"shop/web-0/app app backup 1",
			"shop/web-0/app app backup 2 ERROR disk full",
			"shop/web-0/app app current 1",
			"shop/web-0/app app current 2 ERROR timeout")},
		{name: "tail zero", cfg: func(c *Config) { c.Tail = 0 }, want: ""},
		{name: "tail of grep", cfg: func(c *Config) { c.Tail = 2; c.Grep = []string{"ERROR"}; c.Pod = "web-0" }, want: lines(
			"shop/web-0/app app backup 2 ERROR disk full",
			"shop/web-0/proxy proxy 3 ERROR upstream reset",
			"shop/web-0/app app current 2 ERROR timeout")},
		{name: "grep literal", cfg: func(c *Config) { c.Grep = []string{"ERROR"} }, want: lines(
			"shop/web-0/app app backup 2 ERROR disk full",
			"shop/web-0/proxy proxy 3 ERROR upstream reset",
			"infra/db-0/db db 2 ERROR slow query",
			"shop/web-0/app app current 2 ERROR timeout")},
		{name: "grep regex", cfg: func(c *Config) { c.Grep = []string{`ERROR (disk|slow)`} }, want: lines(
			"shop/web-0/app app backup 2 ERROR disk full",
			"infra/db-0/db db 2 ERROR slow query")},
		{name: "grep is anchored at the message, not the timestamp", cfg: func(c *Config) { c.Grep = []string{`^db`} }, want: lines(
			"infra/db-0/db db old", "infra/db-0/db db 1", "infra/db-0/db db 2 ERROR slow query")},
		{name: "grep does not look at the timestamp", cfg: func(c *Config) { c.Grep = []string{"2026-11-27"} }, err: nil, want: ""},
		{name: "grep repeated is any", cfg: func(c *Config) { c.Grep = []string{"gz 1", "db old"} }, want: lines(
			"shop/web-0/app app gz 1", "infra/db-0/db db old")},
		{name: "grep-v", cfg: func(c *Config) { c.GrepV = []string{"ERROR", `^(app|proxy|db) `, "web-1"} }, want: lines(
			"shop/web-1/app kubelogd: container restarted (restartCount 1)")},
		{name: "grep and grep-v", cfg: func(c *Config) { c.Grep = []string{"ERROR"}; c.GrepV = []string{"(?i)error (disk|TIMEOUT)"} }, want: lines(
			"shop/web-0/proxy proxy 3 ERROR upstream reset",
			"infra/db-0/db db 2 ERROR slow query")},
		{name: "since into the gz backup", cfg: func(c *Config) { c.Since = at(4_000); c.Container = "app"; c.Pod = "web-0" }, want: lines(
			"shop/web-0/app app gz 2",
			"shop/web-0/app app backup 1",
			"shop/web-0/app app backup 2 ERROR disk full",
			"shop/web-0/app app current 1",
			"shop/web-0/app app current 2 ERROR timeout")},
		{name: "since into the rotated backup", cfg: func(c *Config) { c.Since = at(13_000); c.Namespaces = []string{"shop"} }, want: lines(
			"shop/web-0/proxy proxy 1",
			"shop/web-1/app web-1 app 1",
			"shop/web-0/app app backup 2 ERROR disk full",
			"shop/web-0/app app current 1",
			"shop/web-0/proxy proxy 2, same time as app current 1",
			"shop/web-0/proxy proxy 3 ERROR upstream reset",
			"shop/web-0/app app current 2 ERROR timeout",
			"shop/web-1/app kubelogd: container restarted (restartCount 1)")},
		{name: "since and until", cfg: func(c *Config) { c.Since = at(5_000); c.Until = at(12_500) }, want: lines(
			"shop/web-0/app app gz 2",
			"infra/db-0/db db 1",
			"shop/web-0/app app backup 1")},
		{name: "since with tail", cfg: func(c *Config) { c.Since = at(21_000); c.Tail = 1; c.Container = "db|proxy" }, want: lines(
			"shop/web-0/proxy proxy 3 ERROR upstream reset",
			"infra/db-0/db db 2 ERROR slow query")},
		{name: "timestamps as written", cfg: func(c *Config) { c.Timestamps = true; c.Namespaces = []string{"infra"} }, want: lines(
			"infra/db-0/db "+tl(2_000, "db old"),
			"infra/db-0/db 2026-11-27T05:00:11.000000000+02:00 db 1",
			"infra/db-0/db "+tl(25_000, "db 2 ERROR slow query"))},
		{name: "output raw", cfg: func(c *Config) { c.Output = OutputRaw; c.Pod = "web-1" }, want: lines(
			"web-1 app 1",
			"kubelogd: container restarted (restartCount 1)")},
		{name: "output json", cfg: func(c *Config) { c.Output = OutputJSON }, golden: "history.json.golden"},
		{name: "colour", cfg: func(c *Config) { c.Color = true; c.Tail = 1; c.Pod = "db" }, golden: "colour.golden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Dir: root, Tail: TailAll}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			got, warnings, err := run(t, cfg)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if warnings != "" {
				t.Errorf("unexpected warnings: %s", warnings)
			}
			if tt.golden != "" {
				checkGolden(t, tt.golden, got)
				return
			}
			if got != tt.want {
				t.Errorf("got:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestBufferBoundaries reads with buffers far smaller than the lines, forwards and
// backwards, so that lines straddle every possible boundary.
func TestBufferBoundaries(t *testing.T) {
	root := t.TempDir()
	var a, b []string
	var want []string
	for i := range 200 {
		long := strings.Repeat("x", i*7%300)
		a = append(a, tl(2*i, "a "+long+" ERROR"))
		b = append(b, tl(2*i+1, "b "+long))
		want = append(want, "ns/p/a a "+long+" ERROR", "ns/p/b b "+long)
	}
	writeLines(t, root, "ns/p/"+backupName("a", at(200)), a[:100]...)
	writeLines(t, root, "ns/p/a.log", a[100:]...)
	writeLines(t, root, "ns/p/"+backupName("b", at(150))+".gz", b[:75]...)
	writeLines(t, root, "ns/p/b.log", b[75:]...)
	// A line longer than a backwards block, to be found whole.
	huge := strings.Repeat("h", backBlock*2+17)
	appendFile(t, filepath.Join(root, "ns/p/b.log"), tl(1000, huge)+"\n")
	want = append(want, "ns/p/b "+huge)
	for _, size := range []int{16, 100, 4096} {
		t.Run("all", func(t *testing.T) {
			got, _, err := run(t, Config{Dir: root, Tail: TailAll, bufSize: size})
			mustf(t, err, "run")
			if got != lines(want...) {
				t.Errorf("buffer %d: output differs (%d bytes, want %d)", size, len(got), len(lines(want...)))
			}
		})
		t.Run("grep", func(t *testing.T) {
			got, _, err := run(t, Config{Dir: root, Tail: TailAll, bufSize: size, Grep: []string{"ERROR"}})
			mustf(t, err, "run")
			var w []string
			for _, l := range want {
				if strings.HasSuffix(l, "ERROR") {
					w = append(w, l)
				}
			}
			if got != lines(w...) {
				t.Errorf("buffer %d: grep output differs", size)
			}
		})
	}
	t.Run("tail", func(t *testing.T) {
		got, _, err := run(t, Config{Dir: root, Tail: 150})
		mustf(t, err, "run")
		var w []string
		for _, l := range want {
			if strings.HasPrefix(l, "ns/p/a") {
				w = append(w, l)
			}
		}
		w = w[50:]
		var bs []string
		for _, l := range want {
			if strings.HasPrefix(l, "ns/p/b") {
				bs = append(bs, l)
			}
		}
		bs = bs[len(bs)-150:]
		// Merge the two expectations by position in want, which is in time order.
		var m []string
		for _, l := range want {
			if len(w) > 0 && l == w[0] {
				m, w = append(m, l), w[1:]
			} else if len(bs) > 0 && l == bs[0] {
				m, bs = append(m, l), bs[1:]
			}
		}
		if got != lines(m...) {
			t.Errorf("tail 150 differs:\ngot %d lines, want %d", strings.Count(got, "\n"), len(m))
		}
	})
}

// TestSinceSkipsOldBackups proves whole backups that ended before --since are not
// even opened: a corrupt one would be reported.
func TestSinceSkipsOldBackups(t *testing.T) {
	root := t.TempDir()
	old := at(0)
	writeFile(t, root, "ns/p/x", "")
	mustf(t, os.WriteFile(filepath.Join(root, "ns/p", backupName("c", old)+".gz"), []byte("not gzip at all\n"), 0o640), "write")
	writeLines(t, root, "ns/p/c.log", tl(int(time.Hour/time.Millisecond), "new"))
	for _, tail := range []int{TailAll, 10} {
		got, warnings, err := run(t, Config{Dir: root, Tail: tail, Since: old.Add(clockSlack + time.Second)})
		mustf(t, err, "run")
		if got != "ns/p/c new\n" || warnings != "" {
			t.Errorf("tail %d: got %q, warnings %q", tail, got, warnings)
		}
	}
	// Without --since it is read, and the damage reported, not fatal.
	got, warnings, err := run(t, Config{Dir: root, Tail: TailAll})
	mustf(t, err, "run")
	if got != "ns/p/c new\n" || !strings.Contains(warnings, "cannot read log file") {
		t.Errorf("got %q, warnings %q", got, warnings)
	}
}

// TestCompressionInProgress: while the daemon compresses a backup both forms exist;
// the lines are printed once. If the plain form goes before it is opened, the .gz is
// read instead.
func TestCompressionInProgress(t *testing.T) {
	root := t.TempDir()
	name := backupName("c", at(5_000))
	writeLines(t, root, "ns/p/"+name, tl(1_000, "one"))
	writeLines(t, root, "ns/p/"+name+".gz", tl(1_000, "one"))
	writeLines(t, root, "ns/p/c.log", tl(6_000, "two"))
	got, _, err := run(t, Config{Dir: root, Tail: TailAll})
	mustf(t, err, "run")
	if got != lines("ns/p/c one", "ns/p/c two") {
		t.Errorf("got %q", got)
	}
	conts, err := scanTree(root, &selector{})
	mustf(t, err, "scan")
	if n := len(conts[0].files); n != 2 {
		t.Fatalf("%d files, want 2", n)
	}
	mustf(t, os.Remove(filepath.Join(root, "ns/p", name)), "remove")
	of, err := open(conts[0].files[0])
	mustf(t, err, "open after removal")
	of.f.Close()
}
