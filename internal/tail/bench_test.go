package tail

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// The grep benchmark and speed test run kubelogd tail --grep against grep -r (plus
// zgrep for compressed backups) on the same generated tree:
//
//	go test ./internal/tail -run '^$' -bench Grep -benchtime 3x     # in-process, MB/s
//	KUBELOGD_GREP_SPEED=1 go test ./internal/tail -run GrepSpeed -v  # both as processes, ratio
//
// KUBELOGD_BENCH_MB sets the size of the tree (default 200); KUBELOGD_BENCH_DIR keeps
// the generated trees there for later runs.

// Needles of the benchmark: one request ID occurring in a handful of lines (the
// on-call search), and a word in about 2% of them.
const (
	rareNeedle   = "req=00c0ffee00c0ffee"
	commonNeedle = "level=error"
)

// benchTree writes about mb MB of timestamped logs: 20 pods of 2 containers, each with
// a current file and a plain backup, plus, if gz, a compressed older backup holding a
// third of the lines. It returns the root and the uncompressed size.
func benchTree(tb testing.TB, root string, mb int, gz bool) int64 {
	tb.Helper()
	const pods, containers = 20, 2
	perContainer := int64(mb) << 20 / (pods * containers)
	rng := rand.New(rand.NewPCG(1, 2))
	var total int64
	start := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	for p := range pods {
		for c := range containers {
			dir := filepath.Join(root, fmt.Sprintf("ns-%d", p%4), fmt.Sprintf("app-%d", p))
			if err := os.MkdirAll(dir, 0o750); err != nil {
				tb.Fatal(err)
			}
			name := []string{"app", "proxy"}[c]
			t := start.Add(time.Duration(p*containers+c) * time.Millisecond)
			var parts []string
			if gz {
				parts = append(parts, backupName(name, start.Add(time.Hour))+".gz")
			}
			parts = append(parts, backupName(name, start.Add(2*time.Hour)), name+".log")
			for i, part := range parts {
				size := perContainer / int64(len(parts))
				n, next := writeBenchFile(tb, filepath.Join(dir, part), size, t, rng, i == 0 && gz)
				total += n
				t = next
			}
		}
	}
	return total
}

func writeBenchFile(tb testing.TB, path string, size int64, t time.Time, rng *rand.Rand, gz bool) (int64, time.Time) {
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	var w io.Writer = f
	var zw *gzip.Writer
	if gz {
		zw, _ = gzip.NewWriterLevel(f, gzip.DefaultCompression)
		w = zw
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var n int64
	line := make([]byte, 0, 512)
	for n < size {
		t = t.Add(time.Duration(rng.IntN(2_000_000)) * time.Nanosecond)
		line = t.AppendFormat(line[:0], "2006-01-02T15:04:05.000000000Z07:00")
		line = append(line, ' ')
		switch k := rng.IntN(100); {
		case k < 60:
			line = append(line, `10.0.`...)
			line = strconv.AppendInt(line, int64(rng.IntN(256)), 10)
			line = append(line, `.`...)
			line = strconv.AppendInt(line, int64(rng.IntN(256)), 10)
			line = append(line, ` - - "GET /api/v1/products/`...)
			line = strconv.AppendInt(line, int64(rng.IntN(100000)), 10)
			line = append(line, ` HTTP/1.1" 200 `...)
			line = strconv.AppendInt(line, int64(rng.IntN(5000)), 10)
			line = append(line, ` "-" "Mozilla/5.0 (X11; Linux x86_64)" rt=0.0`...)
			line = strconv.AppendInt(line, int64(rng.IntN(100)), 10)
		case k < 98:
			line = append(line, `level=info caller=orders/handler.go:`...)
			line = strconv.AppendInt(line, int64(rng.IntN(400)), 10)
			line = append(line, ` msg="order placed" order=`...)
			line = strconv.AppendInt(line, int64(rng.IntN(1e6)), 10)
			line = append(line, ` user=u-`...)
			line = strconv.AppendInt(line, int64(rng.IntN(1e4)), 10)
			line = append(line, ` latency_ms=`...)
			line = strconv.AppendInt(line, int64(rng.IntN(300)), 10)
		default:
			line = append(line, commonNeedle...)
			line = append(line, ` caller=db/pool.go:88 msg="query failed" err="context deadline exceeded" attempt=`...)
			line = strconv.AppendInt(line, int64(rng.IntN(5)), 10)
		}
		line = append(line, ` req=`...)
		if rng.IntN(200_000) == 0 {
			line = append(line, rareNeedle[4:]...)
		} else {
			line = strconv.AppendUint(line, rng.Uint64()|1<<63, 16)
		}
		line = append(line, '\n')
		_, _ = bw.Write(line)
		n += int64(len(line))
	}
	if err := bw.Flush(); err != nil {
		tb.Fatal(err)
	}
	if zw != nil {
		if err := zw.Close(); err != nil {
			tb.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return n, t
}

// benchRoot returns a generated tree and its uncompressed size: in a temporary
// directory, or under $KUBELOGD_BENCH_DIR, where it is kept and reused by later runs
// (handy to time the binary by hand against grep -r).
func benchRoot(tb testing.TB, gz bool) (string, int64) {
	tb.Helper()
	keep := os.Getenv("KUBELOGD_BENCH_DIR")
	if keep == "" {
		root := tb.TempDir()
		return root, benchTree(tb, root, benchMB(), gz)
	}
	root := filepath.Join(keep, fmt.Sprintf("%dMB-gz-%v", benchMB(), gz))
	sizeFile := filepath.Join(keep, fmt.Sprintf(".%dMB-gz-%v.size", benchMB(), gz))
	if data, err := os.ReadFile(sizeFile); err == nil {
		if size, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			return root, size
		}
	}
	_ = os.RemoveAll(root)
	size := benchTree(tb, root, benchMB(), gz)
	if err := os.WriteFile(sizeFile, []byte(strconv.FormatInt(size, 10)), 0o644); err != nil {
		tb.Fatal(err)
	}
	return root, size
}

func benchMB() int {
	if v, err := strconv.Atoi(os.Getenv("KUBELOGD_BENCH_MB")); err == nil && v > 0 {
		return v
	}
	return 200
}

// BenchmarkGrep measures Run with --grep over the generated tree, in process, writing
// to io.Discard; MB/s are of uncompressed log bytes.
func BenchmarkGrep(b *testing.B) {
	for _, gz := range []bool{false, true} {
		root, size := benchRoot(b, gz)
		for _, bc := range []struct {
			name string
			cfg  Config
		}{
			{"literal-rare", Config{Grep: []string{rareNeedle}}},
			{"literal-common", Config{Grep: []string{commonNeedle}}},
			{"regex", Config{Grep: []string{`latency_ms=29[0-9] `}}},
			{"literal-since", Config{Grep: []string{rareNeedle}, Since: time.Date(2026, 11, 27, 0, 0, 30, 0, time.UTC)}},
			{"tail-100", Config{Tail: 100}},
		} {
			b.Run(fmt.Sprintf("%s/gz=%v", bc.name, gz), func(b *testing.B) {
				cfg := bc.cfg
				cfg.Dir = root
				if cfg.Tail == 0 {
					cfg.Tail = TailAll
				}
				b.SetBytes(size)
				for b.Loop() {
					if err := Run(context.Background(), cfg, io.Discard); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestGrepSpeed compares the kubelogd binary with grep -r (and zgrep for the .gz
// backups), both as processes writing to a pipe, on warm page cache: the requirement
// is at most 1.5 times grep's time for a literal pattern. It only runs when
// KUBELOGD_GREP_SPEED is set: it builds the binary and writes hundreds of MB.
func TestGrepSpeed(t *testing.T) {
	if os.Getenv("KUBELOGD_GREP_SPEED") == "" {
		t.Skip("set KUBELOGD_GREP_SPEED=1 to compare with grep -r (KUBELOGD_BENCH_MB sets the size)")
	}
	for _, tool := range []string{"grep", "zgrep", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not found", tool)
		}
	}
	bin := filepath.Join(t.TempDir(), "kubelogd")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/kubelogd/kubelogd/cmd/kubelogd").CombinedOutput(); err != nil {
		t.Fatalf("building kubelogd: %v\n%s", err, out)
	}
	for _, gz := range []bool{false, true} {
		root, size := benchRoot(t, gz)
		for _, needle := range []string{rareNeedle, commonNeedle} {
			ours := []string{bin, "tail", "--output-dir", root, "--grep", needle}
			// What an engineer would type without kubelogd: grep the plain files, zgrep
			// the compressed ones.
			theirs := []string{"sh", "-c", `grep -r --include='*.log' -e "$1" "$2"; find "$2" -name '*.gz' -exec zgrep -H -e "$1" {} +`, "sh", needle, root}
			if !gz {
				theirs = []string{"grep", "-r", "-e", needle, root}
			}
			// Alternated, so that both see the same load from whatever else runs.
			var ourRuns, theirRuns []timedRun
			for i := range 6 {
				ourRuns = append(ourRuns, runTimed(t, ours))
				theirRuns = append(theirRuns, runTimed(t, theirs))
				if i == 0 { // warm-up
					ourRuns, theirRuns = nil, nil
				}
			}
			o, th := best(ourRuns), best(theirRuns)
			tOurs, nOurs, tTheirs, nTheirs := o.wall, o.lines, th.wall, th.lines
			mb := float64(size) / (1 << 20)
			t.Logf("gz=%v %-20s %6.0f MB: kubelogd tail %6.3fs (%5.0f MB/s, CPU %5.3fs, %d lines)  grep %6.3fs (%5.0f MB/s, CPU %5.3fs, %d lines)  ratio %.2f",
				gz, needle, mb, tOurs.Seconds(), mb/tOurs.Seconds(), o.cpu.Seconds(), nOurs,
				tTheirs.Seconds(), mb/tTheirs.Seconds(), th.cpu.Seconds(), nTheirs, tOurs.Seconds()/tTheirs.Seconds())
			if nOurs != nTheirs {
				t.Errorf("kubelogd printed %d lines, grep %d", nOurs, nTheirs)
			}
			if r := tOurs.Seconds() / tTheirs.Seconds(); r > 1.5 {
				t.Errorf("kubelogd tail --grep %s takes %.2f times grep's time, want at most 1.5", needle, r)
			}
		}
	}
}

// timedRun is one timed run of a command.
type timedRun struct {
	wall, cpu time.Duration // elapsed; user plus system time
	lines     int
}

func best(runs []timedRun) timedRun {
	b := runs[0]
	for _, r := range runs[1:] {
		if r.wall < b.wall {
			b = r
		}
	}
	return b
}

// runTimed runs argv, counting the lines it prints.
func runTimed(t *testing.T, argv []string) timedRun {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	// A pipe, not /dev/null: GNU grep stops at the first match when its output is
	// /dev/null.
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := countLines(out)
	if err := cmd.Wait(); err != nil && cmd.ProcessState.ExitCode() != 1 { // grep: no match
		t.Fatalf("%v: %v", argv, err)
	}
	return timedRun{wall: time.Since(start), cpu: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), lines: n}
}

func countLines(r io.Reader) int {
	buf := make([]byte, 1<<20)
	n := 0
	for {
		m, err := r.Read(buf)
		for _, c := range buf[:m] {
			if c == '\n' {
				n++
			}
		}
		if err != nil {
			return n
		}
	}
}
