package e2e

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kubelogd/kubelogd/internal/testing/fakekubelet"
	"github.com/kubelogd/kubelogd/internal/testing/oracle"
)

// TestFaultSkewedStdoutStderr (scenario 8): stdout and stderr interleave with timestamps out
// of order by up to 500 ms either way, across several whole seconds, and the stream is cut
// ten times, between lines and in the middle of one. Resuming from a whole second and
// skipping by position still writes every line once, in file order.
func TestFaultSkewedStdoutStderr(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "skew", nil, "app")
	e.start("f", "skew", "app")
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 8))
	base := time.Now().UTC()
	n := 0
	for round := range 10 {
		lines := make([]fakekubelet.Line, 100)
		for i := range lines {
			nominal := base.Add(time.Duration(n) * 4 * time.Millisecond)
			skew := time.Duration(rng.IntN(1001)-500) * time.Millisecond
			stream := "stdout"
			if rng.IntN(2) == 0 {
				stream = "stderr"
			}
			lines[i] = fakekubelet.Line{Time: nominal.Add(skew), Stream: stream, Text: fmt.Sprintf("skewed %d on %s", n, stream)}
			n++
		}
		if err := e.k.Append("f", "skew", "app", lines...); err != nil {
			t.Fatal(err)
		}
		e.waitStreams("f", "skew", "app", 1)
		time.Sleep(100 * time.Millisecond)
		e.k.CutStreams("f", "skew", "app", round%2 == 0)
	}
	// A last batch fires the mid-line cut armed last, and then flows normally.
	e.emit("f", "skew", "app", 10)
	e.exact(dir, "f", "skew", "app")
}

// TestFaultOneMiBLine (scenario 9): a line of exactly 1 MiB, which the runtime wrote in
// 16 KiB partial records, is one line in the file (the default --max-line-bytes is 1 MiB);
// a 1.5 MiB line is written in two parts that the reader joins back; and a 1 MiB line whose
// stream is cut in its middle is written once, whole.
func TestFaultOneMiBLine(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "big", nil, "app")
	e.start("f", "big", "app")
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	long := func(tag string, size int) fakekubelet.Line {
		prefix := tag + ":"
		return fakekubelet.Line{Text: prefix + strings.Repeat(tag[len(tag)-1:], size-len(prefix))}
	}
	appendLong := func(l fakekubelet.Line) {
		t.Helper()
		if err := e.k.AppendPartial("f", "big", "app", l, 16<<10); err != nil {
			t.Fatal(err)
		}
	}
	e.emit("f", "big", "app", 1)
	appendLong(long("big1", 1<<20))
	e.emit("f", "big", "app", 1)
	appendLong(long("big2", 3<<19))
	e.emit("f", "big", "app", 1)
	e.exact(dir, "f", "big", "app")

	e.waitStreams("f", "big", "app", 1)
	e.k.CutStreams("f", "big", "app", true)
	appendLong(long("big3", 1<<20))
	e.emit("f", "big", "app", 1)
	e.exact(dir, "f", "big", "app")

	// On disk: the two 1 MiB lines are one record each, the 1.5 MiB line two.
	continued := 0
	for _, l := range readLines(t, logPath(dir, "f", "big", "app")) {
		if _, text, _ := strings.Cut(l, " "); strings.HasPrefix(text, oracle.ContinuedPrefix) {
			continued++
		}
	}
	if continued != 1 {
		t.Errorf("%d continuation records, want 1 (only the 1.5 MiB line is longer than --max-line-bytes)", continued)
	}
}

// TestFaultHugeLineCut (#14 item 8): a line of 70 MiB, above the 64 MiB a stream once held
// of a line (the middle was dropped without a marker), is written whole, part by part as
// it arrives, even though the stream breaks inside it: the next stream replays it from its
// start and only its rest is written. kubelogd's heap never grows near the line's size.
func TestFaultHugeLineCut(t *testing.T) {
	e := parallelEnv(t)
	e.pod("f", "huge", nil, "app")
	e.start("f", "huge", "app")
	dir := t.TempDir()
	d := e.kubelogd(dir)
	d.waitReady()
	e.emit("f", "huge", "app", 1)
	e.exact(dir, "f", "huge", "app")
	e.waitStreams("f", "huge", "app", 1)

	// The next stream replays the first line, then breaks 20 MiB into the huge one.
	e.k.ScriptNext("f", "huge", "app", fakekubelet.Script{CutAfterBytes: 20 << 20})
	e.k.CutStreams("f", "huge", "app", false)
	const size = 70 << 20
	huge := fakekubelet.Line{Text: "huge:" + strings.Repeat("0123456789abcdef", size/16)}
	if err := e.k.AppendPartial("f", "huge", "app", huge, 16<<10); err != nil {
		t.Fatal(err)
	}
	e.emit("f", "huge", "app", 1)
	e.exact(dir, "f", "huge", "app")
	if n := e.k.PendingScripts("f", "huge", "app"); n != 0 {
		t.Fatalf("%d scripted cut not taken: the test did not break the stream inside the line", n)
	}
	// HeapSys only grows: it bounds what the heap ever held.
	if heap := d.metric("go_memstats_heap_sys_bytes"); heap > 40<<20 {
		t.Errorf("kubelogd's heap reached %.1f MiB reading a %d MiB line: it held the line instead of writing it in parts", heap/(1<<20), size>>20)
	}
	if split := d.metric("kubelogd_lines_split_total"); split < 1 {
		t.Errorf("kubelogd_lines_split_total = %v, want the huge line counted", split)
	}
}
