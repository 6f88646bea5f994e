package collector

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubelogd/kubelogd/informer"
	"github.com/kubelogd/kubelogd/sink"
)

// readerTransport answers each log request with the next reader of bodies.
type readerTransport struct{ bodies chan io.Reader }

func (t readerTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Status: "200 OK", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"text/plain"}}, Body: io.NopCloser(<-t.bodies), ContentLength: -1, Request: req,
	}, nil
}

// hookReader calls hook once after at bytes were read.
type hookReader struct {
	r    io.Reader
	at   int
	hook func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.at > 0 {
		p = p[:min(len(p), h.at)]
	}
	n, err := h.r.Read(p)
	if h.at > 0 {
		if h.at -= n; h.at <= 0 {
			h.at = -1
			h.hook()
		}
	}
	return n, err
}

// lineStream is a stream writing to a real sink.File in dir, with parts of at most
// maxLine bytes, whose requests are answered with the readers sent to the channel.
func lineTarget(t *testing.T, dir string, maxLine int) (*target, chan io.Reader) {
	m, err := sink.NewManager(sink.Config{Dir: dir, Format: sink.FormatRaw, MaxLineBytes: maxLine, MaxBackups: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	bodies := make(chan io.Reader, 4)
	client, err := kubernetes.NewForConfigAndClient(&rest.Config{Host: "http://apiserver.invalid", QPS: -1},
		&http.Client{Transport: readerTransport{bodies}})
	if err != nil {
		t.Fatal(err)
	}
	c := New(Config{}, client.CoreV1(), m, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	// The lines (see stamp) were logged before this collector started, so their first
	// line needs no pod fetched (checkFirstLine): the transport serves only bodies.
	c.start = time.Unix(1_900_000_000, 0)
	p := informer.Pod{UID: "uid-1", Namespace: "default", Name: "web-0",
		Containers: []informer.Container{{Name: "app", ContainerID: "containerd://0123456789ab", Running: true}}}
	s := newTarget(c, p, "app")
	s.ctx = context.Background()
	if err := s.openFile(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.closeFile)
	s.file.Cursor().Reset("uid-1", "containerd://0123456789ab", 0)
	return s, bodies
}

// collected is what the raw file holds, split parts joined again.
func collected(t *testing.T, s *target) []string {
	t.Helper()
	s.flush(context.Background())
	b, err := os.ReadFile(filepath.Join(s.file.Path()))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l == "" {
			continue
		}
		l = strings.TrimSuffix(l, "\n")
		if c, ok := strings.CutPrefix(l, "kubelogd-continued: "); ok {
			out[len(out)-1] += c
			continue
		}
		out = append(out, l)
	}
	return out
}

func stamp(i int) string {
	return time.Unix(1_800_000_000, int64(i)*1000).UTC().Format(timeLayout)
}

// TestLongLineWrittenInParts: a line of 5 MiB, far above --max-line-bytes (64 KiB here),
// goes to the file part by part while it arrives (its first parts are on disk, and the
// cursor holds the line as partial, before its end is read); the stream breaks inside it;
// the resumed stream replays it from its start, and only its rest is written: every line
// once, the long one whole.
func TestLongLineWrittenInParts(t *testing.T) {
	s, bodies := lineTarget(t, t.TempDir(), 64<<10)
	long := strings.Repeat("0123456789abcdef", 5<<20/16)
	lines := []string{stamp(0) + " before", stamp(1) + " " + long, stamp(2) + " after"}
	full := strings.Join(lines, "\n") + "\n"

	// First stream: cut 3 MiB into the long line.
	cutAt := len(lines[0]) + 1 + 3<<20
	var partialSeen *sink.PartialLine
	bodies <- &hookReader{r: strings.NewReader(full[:cutAt]), at: len(lines[0]) + 1 + 2<<20, hook: func() {
		partialSeen = s.file.Cursor().Partial
	}}
	if _, err := s.readOnce(context.Background(), readFollow, false); !errors.Is(err, errTornLine) {
		t.Fatalf("first read = %v, want a torn line", err)
	}
	if partialSeen == nil || partialSeen.Bytes < 1<<20 {
		t.Fatalf("2 MiB into the line the cursor's partial line is %+v: the line was held, not written in parts", partialSeen)
	}
	p := s.file.Cursor().Partial
	if p == nil || p.Bytes > 3<<20 || p.Bytes < 3<<20-(64<<10)-readBufferSize*2 {
		t.Fatalf("after the cut the partial line is %+v, want about 3 MiB written", p)
	}
	// The resumed stream replays from the first line's second: "before" again, then the
	// long line from its start.
	bodies <- strings.NewReader(full)
	if _, err := s.readOnce(context.Background(), readToEnd, false); err != nil {
		t.Fatalf("resumed read: %v", err)
	}
	got := collected(t, s)
	if len(got) != 3 || got[0] != "before" || got[1] != long || got[2] != "after" {
		t.Fatalf("collected %d lines (lengths %v), want before, the 5 MiB line, after", len(got), lens(got))
	}
	if c := s.file.Cursor(); c.Lines != 3 || c.Partial != nil {
		t.Fatalf("cursor %+v, want 3 lines and no partial line", *c)
	}
}

// TestLongLineRestGone: the resumed stream no longer has the partial line (the kubelet
// rotated it away): a gap marker ends it, and the lines that follow are written.
func TestLongLineRestGone(t *testing.T) {
	s, bodies := lineTarget(t, t.TempDir(), 64<<10)
	long := strings.Repeat("x", 1<<20)
	full := stamp(0) + " before\n" + stamp(1) + " " + long + "\n"
	bodies <- strings.NewReader(full[:len(full)/2])
	if _, err := s.readOnce(context.Background(), readFollow, false); !errors.Is(err, errTornLine) {
		t.Fatalf("first read = %v, want a torn line", err)
	}
	bodies <- strings.NewReader(stamp(0) + " before\n" + stamp(3) + " new " + long + "\n" + stamp(4) + " short\n")
	if _, err := s.readOnce(context.Background(), readToEnd, false); err != nil {
		t.Fatalf("resumed read: %v", err)
	}
	got := collected(t, s)
	if len(got) != 5 || got[4] != "short" || got[0] != "before" || !strings.HasPrefix(got[1], "xxx") || len(got[1]) >= len(long) ||
		!strings.Contains(got[2], "gap: the rest of a line stamped "+stamp(1)) || got[3] != "new "+long {
		t.Fatalf("collected lengths %v, want before, part of the long line, a gap marker, the new line, short", lens(got))
	}
	if s.file.Cursor().Lines != 4 {
		t.Fatalf("cursor counts %d lines, want 4 (before, the cut line, new, short)", s.file.Cursor().Lines)
	}
}

func lens(ls []string) []string {
	var out []string
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%d:%.30q", len(l), l))
	}
	return out
}
