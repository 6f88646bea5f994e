package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// memSink is a lineSink in memory. It advances its cursor as sink.File does (a line
// written in parts is counted once its rest is written; a marker ends a partial line as
// it is) and keeps what was written: application lines by their text, a line written in
// parts joined again, markers by theirs.
type memSink struct {
	cur       sink.Cursor
	partBytes int
	refuse    int      // Writes still to refuse, as a full disk does
	flushFail int      // Flushes still to fail, as a full disk does
	flushDue  bool     // FlushDue's answer: a flush is due after every line
	written   []string // lines and markers in the order written
	parts     int      // WritePart calls that wrote a part
	partial   []byte   // the parts written of the cursor's partial line
}

var _ lineSink = (*memSink)(nil)

func (m *memSink) Cursor() *sink.Cursor { return &m.cur }

func (m *memSink) Write(rec sink.Record) error {
	if m.refuse > 0 {
		m.refuse--
		return errors.New("write /var/log/kubelogd/x.log: no space left on device")
	}
	p := m.cur.Partial
	switch {
	case rec.Marker:
		if p != nil {
			m.cur.Partial = nil
			m.cur.ObserveHashed(p.Time, p.Hash)
			m.written = append(m.written, string(m.partial))
			m.partial = nil
		}
	case p != nil:
		m.cur.Partial = nil
		m.cur.ObserveHashed(p.Time, sink.HashMore(p.Hash, rec.Line))
		m.written = append(m.written, string(m.partial)+string(rec.Line))
		m.partial = nil
		return nil
	default:
		m.cur.Observe(rec.Time, rec.Line)
	}
	m.written = append(m.written, string(rec.Line))
	return nil
}

func (m *memSink) WritePart(rec sink.Record) (int, error) {
	n := 0
	for len(rec.Line)-n >= m.partBytes+utf8.UTFMax {
		n += m.partBytes
	}
	if n == 0 {
		return 0, nil
	}
	part := rec.Line[:n]
	if p := m.cur.Partial; p == nil {
		m.cur.Partial = &sink.PartialLine{Time: rec.Time, Bytes: int64(n), Parts: n / m.partBytes, Hash: sink.HashLine(part)}
	} else {
		m.cur.Partial = &sink.PartialLine{Time: p.Time, Bytes: p.Bytes + int64(n), Parts: p.Parts + n/m.partBytes, Hash: sink.HashMore(p.Hash, part)}
	}
	m.partial = append(m.partial, part...)
	m.parts++
	return n, nil
}

func (m *memSink) PartBytes() int { return m.partBytes }
func (m *memSink) Flush() error {
	if m.flushFail > 0 {
		m.flushFail--
		return errors.New("writing /var/log/kubelogd/x.log: no space left on device")
	}
	return nil
}
func (m *memSink) FlushDue(time.Time) bool   { return m.flushDue }
func (m *memSink) TakeOutsideChange() string { return "" }
func (m *memSink) TakeOutsideMarked() string { return "" }

// testTarget is the target of container app of pod default/web-0 (UID u1), reading
// instance c1 with a fresh cursor, writing to a memSink. The API server it asks before a
// replay is settled with a gap holds pod.
func testTarget(t *testing.T, pod *corev1.Pod) (*target, *memSink) {
	t.Helper()
	client := fake.NewClientset(pod)
	c := New(Config{MinRetryDelay: time.Millisecond, MaxRetryDelay: time.Millisecond},
		client.CoreV1(), nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	tg := newTarget(c, informer.Pod{UID: "u1", Namespace: "default", Name: "web-0",
		Containers: []informer.Container{{Name: "app", ContainerID: "c1", Running: true}}}, "app")
	tg.ctx = t.Context()
	out := &memSink{partBytes: 1024}
	tg.out = out
	out.cur.Reset("u1", "c1", 0)
	return tg, out
}

// failing is a body whose read fails with err after its bytes.
func failing(body string, err error) io.Reader {
	return io.MultiReader(strings.NewReader(body), errReader{err})
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

// Pods the fake API server answers with: the target's instance c1 running, or replaced.
func runningPod(id string, restarts int32, last string) *corev1.Pod {
	st := corev1.ContainerStatus{Name: "app", ContainerID: id, RestartCount: restarts,
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	if last != "" {
		st.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ContainerID: last, ExitCode: 1}}
	}
	return apiPod("u1", st)
}

// bodyRead is one request's body and what consume makes of it.
type bodyRead struct {
	mode     readMode
	previous bool
	body     io.Reader
	// cause, if set, is why the request's context was cancelled before the body was read
	// (the watchdog's cause; context.Canceled: the collector stops).
	cause  error
	want   error  // consume's error (errors.Is); nil: none
	reason string // the reconnect reason that error is counted under
	// inotify: the error says the node is out of inotify instances (readInstance then
	// polls the node's containers).
	inotify bool
}

func TestConsume(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 16, 53, 13, 0, time.UTC)
	stamp := func(d time.Duration) string { return t0.Add(d).Format(timeLayout) }
	// line is a line of a timestamps=true body, stamped d after t0.
	line := func(d time.Duration, text string) string { return stamp(d) + " " + text + "\n" }
	at0 := func(texts ...string) string {
		var b strings.Builder
		for _, s := range texts {
			b.WriteString(line(0, s))
		}
		return b.String()
	}
	long := strings.Repeat("0123456789abcdef", 20<<10/16) // 20 KiB: read in chunks, written in parts
	other := strings.Repeat("fedcba9876543210", 20<<10/16)
	untimestamped := strings.Repeat("rest of a CRI partial line ", 400) // longer than the read buffer
	const gapPrefix = "gap: "
	const partOf = "part of: "

	tests := []struct {
		name string
		// written are the lines written of the instance before, all stamped t0.
		written []string
		// notBefore is the cursor's NotBefore: the instance is read from that sinceTime.
		notBefore time.Time
		unordered bool // the cursor resumes by content
		pod       *corev1.Pod
		refuse    int // writes the sink refuses first, as a full disk does
		reads     []bodyRead
		// want is what was written, in order; an entry "gap: " matches any gap marker.
		want    []string
		gaps    map[string]float64 // kubelogd_gaps_total by reason
		skipped float64            // kubelogd_duplicate_lines_skipped_total
		check   func(t *testing.T, tg *target, out *memSink)
	}{
		// How a body ends, and the reconnect reason for it.
		{name: "follow ends cleanly",
			reads: []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a", "b")), reason: reasonEOF}},
			want:  []string{"a", "b"}},
		{name: "follow ends in the middle of a line",
			reads: []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a") + stamp(1) + " b"), want: errTornLine, reason: reasonTornLine}},
			want:  []string{"a"}},
		{name: "follow ends inside the timestamp of its last line",
			reads: []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a") + stamp(1)[:14]), want: errTornLine, reason: reasonTornLine}},
			want:  []string{"a"}},
		{name: "kubelet error text inside the body: inotify exhausted",
			reads: []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a") + "failed to create fsnotify watcher: too many open files"),
				want: errBodyError, reason: reasonBodyError, inotify: true}},
			want: []string{"a"}},
		{name: "kubelet error text inside the body: other",
			reads: []bodyRead{{mode: readToEnd, body: strings.NewReader(at0("a") + "unable to retrieve container logs for containerd://c1"), want: errBodyError, reason: reasonBodyError}},
			want:  []string{"a"}},
		{name: "untimestamped line outside a sinceTime stream is no line of the container",
			reads: []bodyRead{{mode: readFollow, body: strings.NewReader(" rest of a line\n" + at0("a")), want: errBodyError, reason: reasonBodyError}},
			want:  nil},
		{name: "body read error",
			reads: []bodyRead{{mode: readFollow, body: failing(at0("a"), io.ErrUnexpectedEOF), want: io.ErrUnexpectedEOF, reason: reasonAPIServer}},
			want:  []string{"a"}},
		{name: "read error while no replay is held is returned as it is",
			written: []string{"a"},
			reads: []bodyRead{{mode: readFollow, body: failing(at0("a", "b"), context.Canceled), cause: errShortReplay,
				want: context.Canceled, reason: reasonAPIServer}},
			want: []string{"b"}, skipped: 1},
		{name: "collector stops while the disk refuses a line",
			refuse: 1,
			reads:  []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a")), cause: context.Canceled, want: context.Canceled, reason: reasonAPIServer}},
			want:   nil},
		{name: "full disk: a refused line is offered again, once",
			refuse: 3,
			reads:  []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a", "b")), reason: reasonEOF}},
			want:   []string{"a", "b"}},

		// A stream read from a sinceTime.
		{name: "sinceTime: rest of a skipped line at the start",
			notBefore: t0,
			reads:     []bodyRead{{mode: readFollow, body: strings.NewReader(" rest of a line\n" + at0("a", "b")), reason: reasonEOF}},
			want:      []string{"a", "b"}},
		{name: "sinceTime: rest of a skipped line in the middle",
			notBefore: t0,
			reads:     []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a") + " rest of a line\n" + at0("b")), reason: reasonEOF}},
			want:      []string{"a", "b"}},
		{name: "sinceTime: long rest of a skipped line",
			notBefore: t0,
			reads:     []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a") + untimestamped + "\n" + at0("b")), reason: reasonEOF}},
			want:      []string{"a", "b"}},
		{name: "resumed: rest of a skipped line among the replayed ones",
			written: []string{"a"},
			reads:   []bodyRead{{mode: readFollow, body: strings.NewReader(" rest of a line\n" + at0("a", "b")), reason: reasonEOF}},
			want:    []string{"b"}, skipped: 1},

		// Reads without follow.
		{name: "poll leaves its unfinished last line to the next poll",
			reads: []bodyRead{{mode: readPoll, body: strings.NewReader(at0("a") + stamp(1) + " b"), reason: reasonEOF}},
			want:  []string{"a"},
			check: func(t *testing.T, tg *target, out *memSink) {
				if out.cur.Lines != 1 {
					t.Errorf("cursor counts %d lines, want 1", out.cur.Lines)
				}
			}},
		{name: "poll leaves an unfinished long last line to the next poll",
			reads: []bodyRead{
				{mode: readPoll, body: strings.NewReader(at0("a") + stamp(1) + " " + long), reason: reasonEOF},
				{mode: readPoll, body: strings.NewReader(at0("a") + line(1, long)), reason: reasonEOF},
			},
			want: []string{"a", long}, skipped: 1},
		{name: "finished instance: a last line without newline is written once a second read ends with it",
			reads: []bodyRead{
				{mode: readToEnd, body: strings.NewReader(at0("a") + stamp(1) + " b"), want: errTornLine, reason: reasonTornLine},
				{mode: readToEnd, body: strings.NewReader(at0("a") + stamp(1) + " b"), reason: reasonEOF},
			},
			want: []string{"a", "b"}, skipped: 1},
		{name: "finished instance: a different last line is torn again",
			reads: []bodyRead{
				{mode: readToEnd, body: strings.NewReader(at0("a") + stamp(1) + " b"), want: errTornLine, reason: reasonTornLine},
				{mode: readToEnd, body: strings.NewReader(at0("a") + stamp(1) + " c"), want: errTornLine, reason: reasonTornLine},
			},
			want: []string{"a"}, skipped: 1},
		{name: "finished instance: a long last line without newline is written once a second read ends with it",
			reads: []bodyRead{
				{mode: readToEnd, body: strings.NewReader(at0("a") + stamp(1) + " " + long), want: errTornLine, reason: reasonTornLine},
				{mode: readToEnd, body: strings.NewReader(at0("a") + stamp(1) + " " + long), reason: reasonEOF},
			},
			want: []string{"a", long}, skipped: 1},

		// Replays of a resumed stream.
		{name: "replay skipped by position, timestamps equal",
			written: []string{"x", "x", "x"},
			reads:   []bodyRead{{mode: readFollow, body: strings.NewReader(at0("x", "x", "x", "x", "y")), reason: reasonEOF}},
			want:    []string{"x", "y"}, skipped: 3},
		{name: "replay: its last line checked by hash is not the last line written",
			written: []string{"a", "b", "c"},
			reads:   []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a", "b", "Z", "d")), reason: reasonEOF}},
			want:    []string{gapPrefix, "a", "b", "Z", "d"}, gaps: map[string]float64{gapRotated: 1}},
		{name: "replay: count off, the last line written found among the replayed",
			written: []string{"a", "b", "c"},
			reads:   []bodyRead{{mode: readFollow, body: strings.NewReader(at0("b", "c", "d", "e")), reason: reasonEOF}},
			want:    []string{"d", "e"}, skipped: 2},
		{name: "replay: a line stamped beyond the margin proves the last line written gone",
			written: []string{"v", "w", "x", "y", "z"},
			reads: []bodyRead{{mode: readFollow, body: strings.NewReader(line(0, "a") + line(10*time.Second, "b") + line(11*time.Second, "c")),
				reason: reasonEOF}},
			want: []string{gapPrefix, "a", "b", "c"}, gaps: map[string]float64{gapRotated: 1},
			check: func(t *testing.T, tg *target, out *memSink) {
				if !strings.Contains(out.written[0], "lines logged after "+stamp(0)+" and before "+stamp(10*time.Second)) {
					t.Errorf("marker %q does not name the span that may be missing", out.written[0])
				}
			}},
		{name: "replay within the margin proves nothing",
			written: []string{"x", "y", "z"},
			reads:   []bodyRead{{mode: readFollow, body: strings.NewReader(line(0, "a") + line(2*time.Second, "b")), want: errShortReplay, reason: reasonShortReplay}},
			want:    nil},
		{name: "follow: replay cut short is read again",
			written: []string{"a", "b", "c"},
			reads:   []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a", "b")), want: errShortReplay, reason: reasonShortReplay}},
			want:    nil,
			check: func(t *testing.T, tg *target, out *memSink) {
				if tg.inst.quiet != nil {
					t.Error("a follow that merely ended short left a quiet replay for a poll to settle")
				}
			}},
		{name: "read to the end: a short replay without the last line written, read twice, is a rotation",
			written: []string{"a", "b", "c"},
			reads: []bodyRead{
				{mode: readToEnd, body: strings.NewReader(at0("x", "y")), want: errShortReplay, reason: reasonShortReplay},
				{mode: readToEnd, body: strings.NewReader(at0("x", "y")), reason: reasonEOF},
			},
			want: []string{gapPrefix, "x", "y"}, gaps: map[string]float64{gapRotated: 1}},
		// The API server ends its response cleanly when the kubelet's breaks: a body
		// without follow that ends short may have been cut (soak seed 495333016).
		{name: "read to the end: a replay cut cleanly is read again, nothing written twice",
			written: []string{"a", "b", "c"},
			reads: []bodyRead{
				{mode: readToEnd, previous: true, body: strings.NewReader(at0("a", "b")), want: errShortReplay, reason: reasonShortReplay},
				{mode: readToEnd, previous: true, body: strings.NewReader(at0("a", "b", "c", "d")), reason: reasonEOF},
			},
			pod:  runningPod("c2", 1, "c1"),
			want: []string{"d"}, skipped: 3},
		{name: "read to the end: two different short replays settle nothing",
			written: []string{"a", "b", "c"},
			reads: []bodyRead{
				{mode: readToEnd, body: strings.NewReader(at0("a")), want: errShortReplay, reason: reasonShortReplay},
				{mode: readToEnd, body: strings.NewReader(at0("a", "b")), want: errShortReplay, reason: reasonShortReplay},
			},
			want: nil},
		{name: "read to the end: short replay with the last line written",
			written: []string{"a", "b", "c"},
			reads:   []bodyRead{{mode: readToEnd, body: strings.NewReader(at0("b", "c")), reason: reasonEOF}},
			want:    nil, skipped: 2,
			check: func(t *testing.T, tg *target, out *memSink) {
				if _, skip, _ := out.cur.Resume(); skip != 3 {
					t.Errorf("the next resume skips %d lines, want 3: only a quiet replay recounts the window", skip)
				}
			}},
		{name: "watchdog cuts a quiet replay; a poll that finds the same settles it",
			written: []string{"a", "b", "c"},
			reads: []bodyRead{
				{mode: readFollow, body: failing(at0("x", "y"), context.Canceled), cause: errShortReplay, want: errShortReplay, reason: reasonShortReplay},
				{mode: readPoll, body: strings.NewReader(at0("x", "y")), reason: reasonEOF},
			},
			want: []string{gapPrefix, "x", "y"}, gaps: map[string]float64{gapRotated: 1}},
		{name: "poll: a short replay with the last line written counts the window as the kubelet has it",
			written: []string{"a", "b", "c"},
			reads:   []bodyRead{{mode: readPoll, body: strings.NewReader(at0("b", "c")), reason: reasonEOF}},
			want:    nil, skipped: 2,
			check: func(t *testing.T, tg *target, out *memSink) {
				if _, skip, _ := out.cur.Resume(); skip != 2 {
					t.Errorf("the next resume skips %d lines, want the 2 the kubelet still has", skip)
				}
			}},
		{name: "replay of a newer instance: the container restarted",
			written: []string{"a", "b", "c"},
			pod:     runningPod("c2", 1, "c1"),
			reads:   []bodyRead{{mode: readFollow, body: strings.NewReader(at0("x", "y", "z")), want: errInstanceReplaced, reason: reasonShortReplay}},
			want:    nil,
			check: func(t *testing.T, tg *target, out *memSink) {
				if p := tg.snapshot(); p.Container("app").ContainerID != "c2" {
					t.Errorf("target's state names %s, want the new instance c2", p.Container("app").ContainerID)
				}
			}},
		{name: "replay with previous=true: another instance terminated since",
			written: []string{"a", "b", "c"},
			pod:     runningPod("c3", 2, "c2"),
			reads:   []bodyRead{{mode: readToEnd, previous: true, body: strings.NewReader(at0("x", "y", "z")), want: errInstanceReplaced, reason: reasonShortReplay}},
			want:    nil},
		{name: "replay with previous=true of the cursor's instance, rotated",
			written: []string{"a", "b", "c"},
			pod:     runningPod("c2", 1, "c1"),
			reads:   []bodyRead{{mode: readToEnd, previous: true, body: strings.NewReader(at0("x", "y", "z")), reason: reasonEOF}},
			want:    []string{gapPrefix, "x", "y", "z"}, gaps: map[string]float64{gapRotated: 1}},
		{name: "read to the end: an empty replay is marked once, then every line is new",
			// Seed 690359248: a replay that settled with nothing held left the cursor as it
			// was, and every second read marked the same gap again.
			written: []string{"a", "b", "c"},
			reads: []bodyRead{
				{mode: readToEnd, body: strings.NewReader(""), want: errShortReplay, reason: reasonShortReplay},
				{mode: readToEnd, body: strings.NewReader(""), reason: reasonEOF},
				{mode: readToEnd, body: strings.NewReader(""), reason: reasonEOF},
				{mode: readToEnd, body: strings.NewReader(""), reason: reasonEOF},
				{mode: readToEnd, body: strings.NewReader(at0("d")), reason: reasonEOF},
			},
			want: []string{gapPrefix, "d"}, gaps: map[string]float64{gapRotated: 1}},
		{name: "replay by content: skipped up to the last line written",
			written: []string{"a", "b"}, unordered: true,
			reads: []bodyRead{{mode: readFollow, body: strings.NewReader(at0("p", "q", "a", "b", "n")), reason: reasonEOF}},
			want:  []string{"n"}, skipped: 4},

		// Lines longer than the read buffer.
		{name: "long line written in parts",
			reads: []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a") + line(1, long) + line(2, "b")), reason: reasonEOF}},
			want:  []string{"a", long, "b"},
			check: func(t *testing.T, tg *target, out *memSink) {
				if out.parts == 0 || out.cur.Lines != 3 || out.cur.Partial != nil {
					t.Errorf("%d parts written, cursor %d lines, partial %+v; want parts, 3 lines, none partial", out.parts, out.cur.Lines, out.cur.Partial)
				}
			}},
		{name: "long line torn while following, then only its rest written",
			reads: []bodyRead{
				{mode: readFollow, body: strings.NewReader((at0("a") + line(1, long))[:12<<10]), want: errTornLine, reason: reasonTornLine},
				{mode: readFollow, body: strings.NewReader(at0("a") + line(1, long) + line(2, "b")), reason: reasonEOF},
			},
			want: []string{"a", long, "b"}, skipped: 1},
		{name: "long line torn, its rest no longer served",
			reads: []bodyRead{
				{mode: readFollow, body: strings.NewReader((at0("a") + line(1, long))[:12<<10]), want: errTornLine, reason: reasonTornLine},
				{mode: readFollow, body: strings.NewReader(at0("a") + line(3, other) + line(4, "b")), reason: reasonEOF},
			},
			want: []string{"a", partOf + long, gapPrefix, other, "b"}, skipped: 1, gaps: map[string]float64{gapRotated: 1}},
		{name: "long line torn, then held in a replay: only its rest is written",
			reads: []bodyRead{
				{mode: readFollow, body: strings.NewReader((at0("x", "y", "z") + line(1, long))[:12<<10]), want: errTornLine, reason: reasonTornLine},
				// The replay holds the line: the count of lines written runs out on it.
				{mode: readFollow, body: strings.NewReader(at0("y", "z") + line(1, long) + line(2, "b")), reason: reasonEOF},
			},
			want: []string{"x", "y", "z", long, "b"}, skipped: 2},
		{name: "long line replayed whole and recognised by its hash",
			written: []string{"a", long},
			reads:   []bodyRead{{mode: readFollow, body: strings.NewReader(at0("a", long, "b")), reason: reasonEOF}},
			want:    []string{"b"}, skipped: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pod := tc.pod
			if pod == nil {
				pod = runningPod("c1", 0, "")
			}
			tg, out := testTarget(t, pod)
			for _, text := range tc.written {
				out.cur.Observe(t0, []byte(text))
			}
			out.cur.NotBefore = tc.notBefore
			out.cur.Unordered = tc.unordered
			out.refuse = tc.refuse
			for i, r := range tc.reads {
				ctx, cancel := context.WithCancelCause(t.Context())
				if r.cause != nil {
					cancel(r.cause)
				}
				_, err := tg.consume(ctx, r.body, tg.newRequest(r.mode, r.previous), nil)
				cancel(nil)
				if !errors.Is(err, r.want) || (err == nil) != (r.want == nil) {
					t.Fatalf("read %d: consume = %v, want %v", i, err, r.want)
				}
				if got := reasonFor(err); got != r.reason {
					t.Errorf("read %d: reconnect reason %s, want %s", i, got, r.reason)
				}
				if got := err != nil && isInotifyExhausted(err.Error()); got != r.inotify {
					t.Errorf("read %d: error %v says inotify exhausted: %v, want %v", i, err, got, r.inotify)
				}
			}
			if !matches(out.written, tc.want) {
				t.Errorf("written %s, want %s", short(out.written), short(tc.want))
			}
			for _, reason := range gapReasons {
				if got := testutil.ToFloat64(tg.sm.m.gaps.WithLabelValues(reason)); got != tc.gaps[reason] {
					t.Errorf("gaps{reason=%s} = %v, want %v", reason, got, tc.gaps[reason])
				}
			}
			if got := testutil.ToFloat64(tg.sm.m.skipped); got != tc.skipped {
				t.Errorf("skipped %v replayed lines, want %v", got, tc.skipped)
			}
			if tc.check != nil {
				tc.check(t, tg, out)
			}
		})
	}
}

// matches reports whether got is want, where a want entry "gap: " stands for any gap
// marker, and "part of: " + l for a start of l, shorter than l.
func matches(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if want[i] == "gap: " && strings.HasPrefix(got[i], "gap: ") {
			continue
		}
		if l, ok := strings.CutPrefix(want[i], "part of: "); ok && got[i] != "" && len(got[i]) < len(l) && strings.HasPrefix(l, got[i]) {
			continue
		}
		if got[i] != want[i] {
			return false
		}
	}
	return true
}

// short quotes lines, long ones by their length.
func short(lines []string) string {
	var out []string
	for _, l := range lines {
		if len(l) > 80 {
			l = fmt.Sprintf("%.40s…(%d bytes)", l, len(l))
		}
		out = append(out, fmt.Sprintf("%q", l))
	}
	return "[" + strings.Join(out, " ") + "]"
}

// TestReasonFor: every way a read ends is counted under its reconnect reason.
func TestReasonFor(t *testing.T) {
	gr := schema.GroupResource{Resource: "pods"}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"clean end", nil, reasonEOF},
		{"stalled", errStalled, reasonStall},
		{"clock stepped back", errClockStep, reasonStall},
		{"lifetime", errLifetime, reasonLifetime},
		{"demoted", errDemoted, reasonDemoted},
		{"torn line", errTornLine, reasonTornLine},
		{"short replay", errShortReplay, reasonShortReplay},
		{"instance replaced", errInstanceReplaced, reasonShortReplay},
		{"kubelet error text", unparsed([]byte("unable to retrieve container logs"), false), reasonBodyError},
		{"forbidden", fmt.Errorf("opening log stream: %w", apierrors.NewForbidden(gr, "web-0", errors.New("no"))), reasonForbidden},
		{"HTTP error", fmt.Errorf("opening log stream: %w", apierrors.NewNotFound(gr, "web-0")), reasonHTTPError},
		{"no answer", fmt.Errorf("opening log stream: %w", errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")), reasonAPIServer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := reasonFor(tc.err); got != tc.want {
				t.Errorf("reasonFor(%v) = %s, want %s", tc.err, got, tc.want)
			}
		})
	}
}

// countingHandler counts the records logged at each level.
type countingHandler struct {
	mu sync.Mutex
	n  map[slog.Level]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.n[r.Level]++
	return nil
}
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countingHandler) WithGroup(string) slog.Handler      { return h }

// TestFullDiskLoggedOnce: while the disk refuses data, the ERROR that says collection is
// paused is logged once, however many flushes fail: a stream cancelled meanwhile flushes
// after each of its buffered lines, and the soak (seed 982157956) logged it 50 times in 4
// ms. Writing resumed is logged once too.
func TestFullDiskLoggedOnce(t *testing.T) {
	tg, out := testTarget(t, runningPod("c1", 0, ""))
	h := &countingHandler{n: map[slog.Level]int{}}
	tg.logger = slog.New(h)
	out.flushFail, out.flushDue = 1000, true
	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the stream was cancelled: every flush gives up after one try
	var body strings.Builder
	for i := range 50 {
		fmt.Fprintf(&body, "2026-12-04T09:22:45.%09dZ line %d\n", i, i)
	}
	_, _ = tg.consume(ctx, strings.NewReader(body.String()), tg.newRequest(readFollow, false), nil)
	if got := h.n[slog.LevelError]; got != 1 {
		t.Errorf("%d ERROR records while the disk was full, want 1", got)
	}
	out.flushFail = 0
	tg.flush(t.Context())
	tg.flush(t.Context())
	if got := h.n[slog.LevelInfo]; got != 1 {
		t.Errorf("%d INFO records once writing resumed, want 1", got)
	}
}
