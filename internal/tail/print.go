package tail

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"hash/fnv"
	"io"
	"unicode/utf8"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// Output is how lines are printed.
type Output int

const (
	// OutputDefault prefixes each message with "namespace/pod/container ", as stern does.
	OutputDefault Output = iota
	// OutputRaw prints the message alone.
	OutputRaw
	// OutputJSON prints one JSON object per line in the daemon's json file format: time,
	// namespace, pod, container, node (when known), and line, line_b64 or event.
	OutputJSON
)

// ParseOutput turns "default", "raw" or "json" into an Output.
func ParseOutput(s string) (Output, error) {
	switch s {
	case "default", "":
		return OutputDefault, nil
	case "raw":
		return OutputRaw, nil
	case "json":
		return OutputJSON, nil
	}
	return 0, fmt.Errorf("unknown output %q: use default, raw or json", s)
}

// streamInfo is what the printer needs about a container, computed once.
type streamInfo struct {
	// prefix is "namespace/pod/container ", coloured if asked to.
	prefix []byte
	// jsonMeta is the `"namespace":…,"pod":…,"container":…[,"node":…]` members.
	jsonMeta []byte
}

// ANSI colours for prefixes: the pod and the container get one each, picked by a hash of
// the name, so a name keeps its colour from one run to the next.
var palette = []string{"\x1b[31m", "\x1b[32m", "\x1b[33m", "\x1b[34m", "\x1b[35m", "\x1b[36m",
	"\x1b[91m", "\x1b[92m", "\x1b[93m", "\x1b[94m", "\x1b[95m", "\x1b[96m"}

const colorReset = "\x1b[0m"

func colorOf(s string) string {
	h := fnv.New32a()
	_, _ = io.WriteString(h, s)
	return palette[h.Sum32()%uint32(len(palette))]
}

func newStreamInfo(c *container, color bool) *streamInfo {
	si := &streamInfo{}
	pod := c.Namespace + "/" + c.Pod
	if color {
		si.prefix = fmt.Appendf(nil, "%s%s/%s%s%s%s ", colorOf(pod), pod, colorReset, colorOf(c.Name), c.Name, colorReset)
	} else {
		si.prefix = fmt.Appendf(nil, "%s/%s ", pod, c.Name)
	}
	m := []byte(`"` + layout.KeyNamespace + `":`)
	m = layout.AppendJSONString(m, []byte(c.Namespace))
	m = append(m, `,"`+layout.KeyPod+`":`...)
	m = layout.AppendJSONString(m, []byte(c.Pod))
	m = append(m, `,"`+layout.KeyContainer+`":`...)
	m = layout.AppendJSONString(m, []byte(c.Name))
	if c.meta != nil && c.meta.Node != "" {
		m = append(m, `,"`+layout.KeyNode+`":`...)
		m = layout.AppendJSONString(m, []byte(c.meta.Node))
	}
	si.jsonMeta = m
	return si
}

// printer writes lines to the output through one buffer. It is used by one goroutine.
type printer struct {
	w          *bufio.Writer
	ew         *errWriter
	output     Output
	timestamps bool
	scratch    []byte
}

func newPrinter(w io.Writer, output Output, timestamps bool) *printer {
	ew := &errWriter{w: w}
	return &printer{w: bufio.NewWriterSize(ew, 256<<10), ew: ew, output: output, timestamps: timestamps}
}

var _ io.Writer = (*errWriter)(nil)

// errWriter remembers the first write error, which bufio.Writer keeps to itself until
// the next flush: the merger checks it between batches and stops printing to a closed
// pipe.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

// err returns the first error writing the output.
func (p *printer) err() error { return p.ew.err }

// line prints l of b. Write errors stick in the bufio.Writer and surface at flush.
func (p *printer) line(si *streamInfo, b *batch, l *lineRef) {
	if p.output == OutputJSON {
		p.jsonLine(si, b, l)
		return
	}
	if p.output == OutputDefault {
		_, _ = p.w.Write(si.prefix)
	}
	if p.timestamps && l.tsEnd > l.tsStart {
		_, _ = p.w.Write(b.data[l.tsStart:l.tsEnd])
		_ = p.w.WriteByte(' ')
	}
	_, _ = p.w.Write(b.data[l.msgStart:l.msgEnd])
	_ = p.w.WriteByte('\n')
}

// jsonLine prints a line of a json file as it is (it already carries everything), and
// builds the object for a line of a text format.
func (p *printer) jsonLine(si *streamInfo, b *batch, l *lineRef) {
	if b.format == layout.FormatJSON && l.end > l.start && b.data[l.start] == '{' {
		_, _ = p.w.Write(b.data[l.start:l.end])
		_ = p.w.WriteByte('\n')
		return
	}
	s := append(p.scratch[:0], '{')
	if l.tsEnd > l.tsStart {
		s = append(s, `"`+layout.KeyTime+`":`...)
		s = layout.AppendJSONString(s, b.data[l.tsStart:l.tsEnd])
		s = append(s, ',')
	}
	s = append(s, si.jsonMeta...)
	msg := b.data[l.msgStart:l.msgEnd]
	// In the text formats a marker is told by its prefix alone; an application line
	// that happens to start with "kubelogd: " is taken for one too.
	if ev, ok := bytes.CutPrefix(msg, []byte(layout.MarkerPrefix)); ok && utf8.Valid(ev) {
		s = append(s, `,"`+layout.KeyEvent+`":`...)
		s = layout.AppendJSONString(s, ev)
	} else if utf8.Valid(msg) {
		s = append(s, `,"`+layout.KeyLine+`":`...)
		s = layout.AppendJSONString(s, msg)
	} else {
		s = append(s, `,"`+layout.KeyLineB64+`":"`...)
		s = base64.StdEncoding.AppendEncode(s, msg)
		s = append(s, '"')
	}
	s = append(s, '}', '\n')
	p.scratch = s
	_, _ = p.w.Write(s)
}

func (p *printer) flush() error { return p.w.Flush() }
