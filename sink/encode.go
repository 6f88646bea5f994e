package sink

import (
	"encoding/base64"
	"encoding/binary"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Prefixes the text formats put before a line's own bytes. They are not escapes: an
// application line may itself start with these words. The json format says the same
// thing with keys instead.
const (
	// markerPrefix starts a kubelogd event line (restart, gap, pod recreated).
	markerPrefix = "kubelogd: "
	// contPrefix starts every part but the first of a line longer than MaxLineBytes.
	contPrefix = "kubelogd-continued: "
)

// timeLayout is the kubelet's timestamp layout (RFC3339 with a fixed 9-digit fraction),
// used when a record carries no usable RawTime.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

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
		m := []byte(`,"namespace":`)
		m = AppendJSONString(m, []byte(key.Namespace))
		m = append(m, `,"pod":`...)
		m = AppendJSONString(m, []byte(key.Pod))
		m = append(m, `,"container":`...)
		m = AppendJSONString(m, []byte(key.Container))
		m = append(m, `,"node":`...)
		m = AppendJSONString(m, []byte(node))
		if len(labels) > 0 {
			keys := make([]string, 0, len(labels))
			for k := range labels {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			m = append(m, `,"labels":{`...)
			for i, k := range keys {
				if i > 0 {
					m = append(m, ',')
				}
				m = AppendJSONString(m, []byte(k))
				m = append(m, ':')
				m = AppendJSONString(m, []byte(labels[k]))
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
	dst = append(dst, `{"time":`...)
	if n := len(rec.RawTime); n > 0 && n <= maxRawTimeLen {
		// ASCII in every sane case, but escaped all the same: the output must be valid
		// JSON whatever the input.
		dst = AppendJSONString(dst, rec.RawTime)
	} else {
		dst = append(dst, '"')
		dst = rec.Time.UTC().AppendFormat(dst, timeLayout)
		dst = append(dst, '"')
	}
	dst = append(dst, e.jsonMeta...)
	ascii := jsonSafePrefix(part)
	switch {
	case ascii == len(part) && !rec.Marker:
		// Most lines: printable ASCII with nothing to escape, found in one pass.
		dst = append(dst, `,"line":"`...)
		dst = append(dst, part...)
		dst = append(dst, '"')
	case rec.Marker:
		// Event texts are kubelogd's own; should one hold invalid UTF-8, U+FFFD will do.
		dst = append(dst, `,"event":`...)
		dst = AppendJSONString(dst, part)
	case utf8.Valid(part[ascii:]):
		dst = append(dst, `,"line":`...)
		dst = AppendJSONString(dst, part)
	default:
		// JSON strings are Unicode: bytes that are not UTF-8 cannot be carried in one
		// without loss, so they go as base64 under another key.
		dst = append(dst, `,"line_b64":"`...)
		dst = base64.StdEncoding.AppendEncode(dst, part)
		dst = append(dst, '"')
	}
	if partNo > 1 {
		dst = append(dst, `,"part":`...)
		dst = strconv.AppendInt(dst, int64(partNo), 10)
	}
	return append(dst, '}', '\n')
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s to dst as a quoted JSON string, as the json format writes
// every string (kubelogd tail re-encodes with it too). Quotes, backslashes and control
// characters (C0, DEL and C1, which a terminal would interpret) are escaped, as are
// U+2028 and U+2029, which JavaScript treats as line ends; bytes that are not UTF-8
// become U+FFFD. No input byte grows beyond six output bytes (jsonEscapeFactor).
func AppendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied verbatim
	for i := 0; i < len(s); {
		// Most bytes of most lines are printable ASCII: skip over them in a tight loop.
		i += jsonSafePrefix(s[i:])
		if i == len(s) {
			break
		}
		b := s[i]
		if b < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r >= 0x80 && r <= 0x9f, r == '\u2028', r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', hexDigits[r>>12&0xf], hexDigits[r>>8&0xf], hexDigits[r>>4&0xf], hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// jsonSafePrefix returns how many leading bytes of s a JSON string holds as they are:
// printable ASCII other than '"' and '\\'. It tests eight bytes at a time.
func jsonSafePrefix(s []byte) int {
	i := 0
	for i+8 <= len(s) && jsonSafeWord(binary.LittleEndian.Uint64(s[i:])) {
		i += 8
	}
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' {
		i++
	}
	return i
}

// jsonSafeWord reports whether all eight bytes of x are ones jsonSafePrefix accepts.
func jsonSafeWord(x uint64) bool {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q, b := x^(ones*'"'), x^(ones*'\\')
	// Each term has the high bit of some byte set iff some byte is: below 0x20; '"';
	// '\\'; 0x7f or above (the bit tricks of "Bit Twiddling Hacks", exact for "any").
	return ((x-ones*0x20)&^x|(q-ones)&^q|(b-ones)&^b|(x+ones)|x)&highs == 0
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
