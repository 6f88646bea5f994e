package sink

import (
	"encoding/base64"
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// The line layout, under the short names the sink uses; it is defined in internal/layout,
// which the reader (kubelogd tail) shares.
const (
	// markerPrefix starts a kubelogd event line (restart, gap, pod recreated).
	markerPrefix = layout.MarkerPrefix
	// contPrefix starts every part but the first of a line longer than MaxLineBytes.
	contPrefix = layout.ContPrefix
	// timeLayout is the kubelet's timestamp layout, used when a record carries no usable
	// RawTime.
	timeLayout = layout.TimeLayout
)

// encoder lays records out in one format for one container. It only appends to the
// caller's buffer, so encoding a line allocates nothing once the buffer has grown.
type encoder struct {
	format Format
	// jsonMeta is the pre-encoded `,"namespace":…,"node":…` segment, the same on every line.
	jsonMeta []byte
}

func newEncoder(format Format, key Key, node string) encoder {
	return newPodEncoder(format, key, node, nil)
}

// newPodEncoder is newEncoder with the pod's labels, written as a "labels" object.
func newPodEncoder(format Format, key Key, node string, labels map[string]string) encoder {
	e := encoder{format: format}
	if format == FormatJSON {
		m := []byte(`,"` + layout.KeyNamespace + `":`)
		m = layout.AppendJSONString(m, []byte(key.Namespace))
		m = append(m, `,"`+layout.KeyPod+`":`...)
		m = layout.AppendJSONString(m, []byte(key.Pod))
		m = append(m, `,"`+layout.KeyContainer+`":`...)
		m = layout.AppendJSONString(m, []byte(key.Container))
		m = append(m, `,"`+layout.KeyNode+`":`...)
		m = layout.AppendJSONString(m, []byte(node))
		if len(labels) > 0 {
			keys := make([]string, 0, len(labels))
			for k := range labels {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			m = append(m, `,"`+layout.KeyLabels+`":{`...)
			for i, k := range keys {
				if i > 0 {
					m = append(m, ',')
				}
				m = layout.AppendJSONString(m, []byte(k))
				m = append(m, ':')
				m = layout.AppendJSONString(m, []byte(labels[k]))
			}
			m = append(m, '}')
		}
		e.jsonMeta = m
	}
	return e
}

// appendPart appends part number partNo (1-based) of rec, whose bytes are part, as one
// complete line ending in '\n'.
func (e *encoder) appendPart(dst []byte, rec *Record, part []byte, partNo int) []byte {
	switch e.format {
	case FormatJSON:
		return e.appendJSON(dst, rec, part, partNo)
	case FormatTimestamped:
		dst = appendTime(dst, rec)
		dst = append(dst, ' ')
	}
	switch {
	case partNo > 1:
		dst = append(dst, contPrefix...)
	case rec.Marker:
		dst = append(dst, markerPrefix...)
	}
	dst = append(dst, part...)
	return append(dst, '\n')
}

// appendTime appends the kubelet's timestamp as sent, or rec.Time in the same layout if
// RawTime is missing or implausibly long (a bound the size checks rely on).
func appendTime(dst []byte, rec *Record) []byte {
	if n := len(rec.RawTime); n > 0 && n <= maxRawTimeLen {
		return append(dst, rec.RawTime...)
	}
	return rec.Time.UTC().AppendFormat(dst, timeLayout)
}

func (e *encoder) appendJSON(dst []byte, rec *Record, part []byte, partNo int) []byte {
	dst = append(dst, `{"`+layout.KeyTime+`":`...)
	if n := len(rec.RawTime); n > 0 && n <= maxRawTimeLen {
		// ASCII in every sane case, but escaped all the same: the output must be valid
		// JSON whatever the input.
		dst = layout.AppendJSONString(dst, rec.RawTime)
	} else {
		dst = append(dst, '"')
		dst = rec.Time.UTC().AppendFormat(dst, timeLayout)
		dst = append(dst, '"')
	}
	dst = append(dst, e.jsonMeta...)
	ascii := layout.JSONSafePrefix(part)
	switch {
	case ascii == len(part) && !rec.Marker:
		// Most lines: printable ASCII with nothing to escape, found in one pass.
		dst = append(dst, `,"`+layout.KeyLine+`":"`...)
		dst = append(dst, part...)
		dst = append(dst, '"')
	case rec.Marker:
		// Event texts are kubelogd's own; should one hold invalid UTF-8, U+FFFD will do.
		dst = append(dst, `,"`+layout.KeyEvent+`":`...)
		dst = layout.AppendJSONString(dst, part)
	case utf8.Valid(part[ascii:]):
		dst = append(dst, `,"`+layout.KeyLine+`":`...)
		dst = layout.AppendJSONString(dst, part)
	default:
		// JSON strings are Unicode: bytes that are not UTF-8 cannot be carried in one
		// without loss, so they go as base64 under another key.
		dst = append(dst, `,"`+layout.KeyLineB64+`":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, part)
		dst = append(dst, '"')
	}
	if partNo > 1 {
		dst = append(dst, `,"`+layout.KeyPart+`":`...)
		dst = strconv.AppendInt(dst, int64(partNo), 10)
	}
	return append(dst, '}', '\n')
}

// splitAt returns where the first part of a line longer than limit ends: at limit, or up
// to three bytes earlier so as not to cut a valid UTF-8 character in two (which would
// make both parts invalid UTF-8, and base64 in the json format).
func splitAt(line []byte, limit int) int {
	if len(line) <= limit {
		return len(line)
	}
	for k := 0; k < utf8.UTFMax && k < limit; k++ {
		i := limit - k
		if !utf8.RuneStart(line[i]) {
			continue
		}
		if k == 0 {
			return limit
		}
		if r, size := utf8.DecodeRune(line[i:]); (r != utf8.RuneError || size > 1) && size > k {
			return i // a valid character straddles the limit: leave it whole to the next part
		}
		return limit
	}
	return limit
}
