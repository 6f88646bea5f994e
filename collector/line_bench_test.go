package collector

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// The benchmarks here measure the collector's line path per line: splitting the stream,
// parsing the kubelet's timestamp, skipping a replay, and the whole read loop (readOnce)
// into a real sink.File. hack/bench (make bench) reads their ns/line and allocs/line.

// benchLinesPerOp is how many lines one operation of the read-loop benchmarks reads.
const benchLinesPerOp = 10_000

// benchBody is a timestamps=true stream body of n lines of about 100 bytes, stamped a
// microsecond apart, as the kubelet sends it.
func benchBody(n int) []byte {
	t := time.Date(2026, 11, 27, 3, 4, 5, 0, time.UTC)
	var b bytes.Buffer
	for i := range n {
		b.WriteString(t.Add(time.Duration(i) * time.Microsecond).Format("2006-01-02T15:04:05.000000000Z07:00"))
		text := fmt.Sprintf("GET /api/v1/products/%06d 200 12ms request-id=%08x user-agent=", i, uint32(i)*2654435761)
		b.WriteByte(' ')
		b.WriteString(text)
		b.WriteString(strings.Repeat("x", 100-len(text)))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// reportPerLine reports ns/line and allocs/line of a loop that handled lines lines, from
// start and the allocation count before it.
func reportPerLine(b *testing.B, start time.Time, mallocs0 uint64, lines int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(lines), "ns/line")
	b.ReportMetric(float64(ms.Mallocs-mallocs0)/float64(lines), "allocs/line")
}

func mallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

// BenchmarkParseLine is parseLine alone: one op is one line.
func BenchmarkParseLine(b *testing.B) {
	body := benchBody(1)
	line := body[:len(body)-1]
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, _, ok := parseLine(line); !ok {
			b.Fatal("parseLine failed")
		}
	}
}

// BenchmarkSplitLines is the read loop's splitting alone (bufio.Reader.ReadSlice over a
// 64 KiB buffer, as readOnce reads): the floor under BenchmarkReadLoop.
func BenchmarkSplitLines(b *testing.B) {
	body := benchBody(benchLinesPerOp)
	br := bytes.NewReader(body)
	r := bufio.NewReaderSize(br, 64<<10)
	b.SetBytes(int64(len(body)))
	m0, lines := mallocs(), 0
	var start time.Time
	for i := 0; b.Loop(); i++ {
		if i == 0 {
			start = time.Now()
		}
		br.Reset(body)
		r.Reset(br)
		for {
			line, err := r.ReadSlice('\n')
			if len(line) > 0 {
				lines++
			}
			if err != nil {
				break
			}
		}
	}
	reportPerLine(b, start, m0, lines)
}

// BenchmarkSkipper is the replay skip of a resumed stream: every line offered is one
// written already. One op skips benchLinesPerOp lines.
func BenchmarkSkipper(b *testing.B) {
	body := benchBody(benchLinesPerOp)
	type parsed struct {
		ts        time.Time
		raw, text []byte
	}
	var lines []parsed
	for l := range bytes.Lines(body) {
		ts, raw, text, ok := parseLine(bytes.TrimSuffix(l, []byte("\n")))
		if !ok {
			b.Fatal("parseLine failed")
		}
		lines = append(lines, parsed{ts, raw, text})
	}
	last := lines[len(lines)-1]
	m0, n := mallocs(), 0
	var start time.Time
	for i := 0; b.Loop(); i++ {
		if i == 0 {
			start = time.Now()
		}
		k := &skipper{remaining: int64(len(lines)), lastTime: last.ts, lastHash: sink.HashLine(last.text)}
		for _, l := range lines {
			offerLine(k, l.ts, l.raw, l.text)
		}
		if !k.done || k.skipped != int64(len(lines)) {
			b.Fatalf("skipped %d of %d", k.skipped, len(lines))
		}
		n += len(lines)
	}
	reportPerLine(b, start, m0, n)
}

// bodyTransport answers every request with the same log body, as the apiserver would a
// pods/log request.
type bodyTransport []byte

func (t bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"text/plain"}},
		Body:          io.NopCloser(bytes.NewReader(t)),
		ContentLength: int64(len(t)),
		Request:       req,
	}, nil
}

// benchStream is a stream whose log requests are answered with body through client-go's
// real request path, writing to a sink.File in dir.
func benchTarget(b *testing.B, format sink.Format, body []byte) *target {
	m, err := sink.NewManager(sink.Config{Dir: b.TempDir(), Format: format, MaxBackups: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = m.Close() })
	client, err := kubernetes.NewForConfigAndClient(&rest.Config{Host: "http://apiserver.invalid", QPS: -1},
		&http.Client{Transport: bodyTransport(body)})
	if err != nil {
		b.Fatal(err)
	}
	c := New(Config{}, client.CoreV1(), m, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	p := informer.Pod{UID: "uid-1", Namespace: "default", Name: "web-0",
		Containers: []informer.Container{{Name: "app", ContainerID: "containerd://0123456789ab", Running: true}}}
	s := newTarget(c, p, "app")
	if err := s.openFile(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.closeFile)
	s.file.Cursor().Reset("uid-1", "containerd://0123456789ab", 0)
	return s
}

// BenchmarkReadLoop is the whole in-process line path of a finished container's log
// (follow=false): client-go's body, splitting, timestamp parsing, metrics, the sink's
// encoding in each format and its buffered writes to a real file, flushed whenever the
// reader's buffer runs dry. One op reads benchLinesPerOp lines into a fresh cursor.
func BenchmarkReadLoop(b *testing.B) {
	for _, format := range []sink.Format{sink.FormatTimestamped, sink.FormatJSON, sink.FormatRaw} {
		b.Run(format.String(), func(b *testing.B) {
			body := benchBody(benchLinesPerOp)
			s := benchTarget(b, format, body)
			ctx := context.Background()
			b.SetBytes(int64(len(body)))
			m0, n := mallocs(), 0
			var start time.Time
			for i := 0; b.Loop(); i++ {
				if i == 0 {
					start = time.Now()
				}
				s.file.Cursor().Reset("uid-1", "containerd://0123456789ab", 0)
				if _, err := s.readOnce(ctx, readToEnd, false); err != nil {
					b.Fatal(err)
				}
				n += benchLinesPerOp
			}
			reportPerLine(b, start, m0, n)
		})
	}
}

// BenchmarkReadLoopReplay is a resumed read whose every line was written already: the
// skipper holds and verifies them, nothing is written. One op replays benchLinesPerOp lines.
func BenchmarkReadLoopReplay(b *testing.B) {
	body := benchBody(benchLinesPerOp)
	s := benchTarget(b, sink.FormatTimestamped, body)
	ctx := context.Background()
	if _, err := s.readOnce(ctx, readToEnd, false); err != nil {
		b.Fatal(err)
	}
	saved := *s.file.Cursor()
	saved.Seconds = slices.Clone(saved.Seconds)
	if _, skip, ok := saved.Resume(); !ok || skip != benchLinesPerOp {
		b.Fatalf("resume would skip %d lines, want %d", skip, benchLinesPerOp)
	}
	skipped0 := s.file.Stats().Lines
	b.SetBytes(int64(len(body)))
	m0, n := mallocs(), 0
	var start time.Time
	for i := 0; b.Loop(); i++ {
		if i == 0 {
			start = time.Now()
		}
		cur := s.file.Cursor()
		*cur = saved
		cur.Seconds = append(cur.Seconds[:0:0], saved.Seconds...)
		if _, err := s.readOnce(ctx, readToEnd, false); err != nil {
			b.Fatal(err)
		}
		n += benchLinesPerOp
	}
	reportPerLine(b, start, m0, n)
	if got := s.file.Stats().Lines; got != skipped0 {
		b.Fatalf("the replay wrote %d lines, want none", got-skipped0)
	}
}
