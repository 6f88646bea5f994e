package tail

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// ParseFormat turns "timestamped", "raw", "json" or "auto" into a format: the formats
// the daemon writes (layout.ParseFormat), or layout.FormatAuto, which detects the format
// of each file from its first line.
func ParseFormat(s string) (layout.Format, error) {
	if s == "auto" {
		return layout.FormatAuto, nil
	}
	f, err := layout.ParseFormat(s)
	if err != nil {
		return 0, fmt.Errorf("unknown file format %q: use timestamped, raw, json or auto", s)
	}
	return f, nil
}

// detectFormat guesses a file's format from its first bytes: a JSON object, a line
// starting with a timestamp, or anything else (raw).
func detectFormat(head []byte) layout.Format {
	if bytes.HasPrefix(head, []byte(`{"`)) {
		return layout.FormatJSON
	}
	if end := timeTokenEnd(head); end > 0 {
		if _, ok := parseTime(head[:end]); ok {
			return layout.FormatTimestamped
		}
	}
	return layout.FormatRaw
}

// fastTimeLen is the length of the kubelet's timestamps: 2006-01-02T15:04:05.000000000Z.
const fastTimeLen = 30

// timeTokenEnd returns where the timestamp at the start of a timestamped line ends (the
// index of the space after it), or 0 if the line does not start with something shaped
// like one. Only the shape is checked, which is enough to split off the message.
func timeTokenEnd(line []byte) int {
	end := fastTimeLen
	if len(line) <= fastTimeLen || line[fastTimeLen] != ' ' || line[fastTimeLen-1] != 'Z' {
		// Not the common case, which is decided without a search.
		end = bytes.IndexByte(line[:min(len(line), layout.MaxTimeLen+1)], ' ')
		if end < 20 {
			return 0
		}
	}
	if line[4] != '-' || line[7] != '-' || line[10] != 'T' || line[13] != ':' || line[16] != ':' {
		return 0
	}
	return end
}

// parseTime parses an RFC 3339 timestamp into Unix nanoseconds. The kubelet's layout
// (UTC, nine fraction digits) is decoded digit by digit without allocating; any other
// offset or precision goes through time.Parse.
func parseTime(b []byte) (int64, bool) {
	if len(b) == fastTimeLen && b[29] == 'Z' && b[19] == '.' {
		if ns, ok := parseFastTime(b); ok {
			return ns, true
		}
	}
	if len(b) > layout.MaxTimeLen {
		return 0, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil {
		return 0, false
	}
	return t.UnixNano(), true
}

func parseFastTime(b []byte) (int64, bool) {
	if b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	num := func(i, n int) (int, bool) {
		v := 0
		for _, c := range b[i : i+n] {
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + int(c-'0')
		}
		return v, true
	}
	year, ok1 := num(0, 4)
	month, ok2 := num(5, 2)
	day, ok3 := num(8, 2)
	hour, ok4 := num(11, 2)
	minute, ok5 := num(14, 2)
	sec, ok6 := num(17, 2)
	frac, ok7 := num(20, 9)
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return 0, false // time.Parse has the last word (and accepts nothing else either)
	}
	days := daysFromCivil(year, month, day)
	return (days*86400+int64(hour*3600+minute*60+sec))*1e9 + int64(frac), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil returns the days since 1970-01-01 of a proleptic Gregorian date
// (Howard Hinnant's algorithm), for the years 0 to 9999 RFC 3339 can write.
func daysFromCivil(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399 // floor division: year 0 has y = -1 in January and February
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097 + doe - 719468)
}

// decoded locates the parts of one file line. Offsets are relative to the line.
type decoded struct {
	// tsStart:tsEnd is the timestamp text; empty when the line has none.
	tsStart, tsEnd int
	// msgStart:msgEnd is the message, as the timestamped format would show it; when
	// inScratch is set it is in the decoder's scratch instead of in the line.
	msgStart, msgEnd int
	inScratch        bool
	// key is the time in Unix nanoseconds, valid when hasKey is set.
	key    int64
	hasKey bool
}

// decoder splits lines of one format. It keeps a scratch buffer for messages that must
// be decoded (JSON escapes, base64), so decoding allocates nothing once it has grown.
type decoder struct {
	format layout.Format // never layout.FormatAuto
	// needTime asks for the time to be parsed; without it only the message is located.
	needTime bool
	scratch  []byte
}

// decode fills d for line (without its newline).
func (dec *decoder) decode(line []byte, d *decoded) {
	*d = decoded{msgEnd: len(line)}
	switch dec.format {
	case layout.FormatRaw:
		return
	case layout.FormatJSON:
		dec.decodeJSON(line, d)
		return
	}
	end := timeTokenEnd(line)
	if end == 0 {
		return
	}
	d.tsEnd, d.msgStart = end, end+1
	if dec.needTime {
		d.key, d.hasKey = parseTime(line[:end])
	}
}

// decodeJSON handles a line of the json format: the message is line, line_b64 (decoded)
// or event (with the marker prefix); a part after the first gets the continuation
// prefix. A line that is not such an object is taken whole as the message.
func (dec *decoder) decodeJSON(line []byte, d *decoded) {
	var f jsonFields
	if !f.scan(line) {
		return
	}
	if f.time.ok() {
		d.tsStart, d.tsEnd = f.time.start, f.time.end
		if dec.needTime {
			d.key, d.hasKey = parseTime(line[f.time.start:f.time.end])
		}
	}
	s := dec.scratch[:0]
	// A json line says with its keys what the text formats say with prefixes; it is shown
	// with the prefixes, so that every format reads, and greps, alike.
	if f.part > 1 {
		s = append(s, layout.ContPrefix...)
	}
	switch {
	case f.event.ok():
		if f.part <= 1 {
			s = append(s, layout.MarkerPrefix...)
		}
		s = appendUnescaped(s, line[f.event.start:f.event.end], f.event.esc)
	case f.lineB64.ok():
		var err error
		if s, err = base64.StdEncoding.AppendDecode(s, line[f.lineB64.start:f.lineB64.end]); err != nil {
			return // shown as it is in the file
		}
	case f.line.ok():
		if !f.line.esc && len(s) == 0 {
			d.msgStart, d.msgEnd = f.line.start, f.line.end // no copy in the common case
			return
		}
		s = appendUnescaped(s, line[f.line.start:f.line.end], f.line.esc)
	default:
		return
	}
	dec.scratch = s
	d.msgStart, d.msgEnd, d.inScratch = 0, len(s), true
}

// span is the raw text of a JSON string value (between the quotes) within a line.
type span struct {
	start, end int
	esc        bool // holds a backslash escape
}

// ok reports whether the value was present. Even an empty string ends after `{"k":"`,
// so end is positive for every value found.
func (s span) ok() bool { return s.end > 0 }

// jsonFields are the keys of the json format a reader needs.
type jsonFields struct {
	time, line, lineB64, event span
	part                       int
}

// scan walks one flat JSON object. It is no validator: it finds the string values of
// the known keys and skips everything else, without allocating.
func (f *jsonFields) scan(b []byte) bool {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return true
		}
		if b[i] == ',' {
			i++
			continue
		}
		key, next, ok := scanString(b, i)
		if !ok {
			return false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		if i >= len(b) {
			return false
		}
		if b[i] != '"' {
			// A number (part) or a literal: up to the next delimiter.
			j := i
			for j < len(b) && b[j] != ',' && b[j] != '}' {
				j++
			}
			if string(b[key.start:key.end]) == layout.KeyPart {
				n := 0
				for _, c := range bytes.TrimSpace(b[i:j]) {
					if c < '0' || c > '9' || n > 1<<20 {
						n = 0
						break
					}
					n = n*10 + int(c-'0')
				}
				f.part = n
			}
			i = j
			continue
		}
		val, next, ok := scanString(b, i)
		if !ok {
			return false
		}
		i = next
		switch string(b[key.start:key.end]) { // no allocation: compiled to a comparison
		case layout.KeyTime:
			f.time = val
		case layout.KeyLine:
			f.line = val
		case layout.KeyLineB64:
			f.lineB64 = val
		case layout.KeyEvent:
			f.event = val
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString reads the JSON string starting with the quote at b[i] and returns the
// span between its quotes and the index after the closing quote.
func scanString(b []byte, i int) (span, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return span{}, i, false
	}
	s := span{start: i + 1}
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			s.esc = true
			j++
		case '"':
			s.end = j
			return s, j + 1, true
		}
	}
	return span{}, i, false
}

// appendUnescaped appends the JSON string text s, decoding escapes if esc is set.
// Broken escapes and lone surrogates become U+FFFD.
func appendUnescaped(dst, s []byte, esc bool) []byte {
	if !esc {
		return append(dst, s...)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'u':
			r, n := hex4(s[i+1:])
			if n == 0 {
				dst = utf8.AppendRune(dst, utf8.RuneError)
				continue
			}
			i += n
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+2 < len(s) && s[i+1] == '\\' && s[i+2] == 'u' {
					if v, m := hex4(s[i+3:]); m > 0 {
						r2 = v
						if dr := utf16.DecodeRune(r, r2); dr != utf8.RuneError {
							i += 2 + m
							dst = utf8.AppendRune(dst, dr)
							continue
						}
					}
				}
				dst = utf8.AppendRune(dst, utf8.RuneError)
				continue
			}
			dst = utf8.AppendRune(dst, r)
		default: // \" \\ \/ and anything unexpected: the character itself
			dst = append(dst, s[i])
		}
	}
	return dst
}

// hex4 decodes four hex digits at the start of b, returning the value and 4, or 0, 0.
func hex4(b []byte) (rune, int) {
	if len(b) < 4 {
		return 0, 0
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, 0
		}
	}
	return r, 4
}
