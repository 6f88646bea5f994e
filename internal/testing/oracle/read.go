package oracle

import (
	"bufio"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Prefixes kubelogd's text formats put before a line's own bytes.
const (
	// MarkerPrefix starts a kubelogd event line (restart, gap, pod recreated).
	MarkerPrefix = "kubelogd: "
	// ContinuedPrefix starts every part but the first of a line kubelogd split.
	ContinuedPrefix = "kubelogd-continued: "
)

// backupTimeLayout is lumberjack's layout of the rotation time in backup names.
const backupTimeLayout = "2006-01-02T15-04-05.000"

// ReadFile reads the lines of one kubelogd file, gzip-compressed if its name ends in .gz.
// format is the file's layout:
//   - "timestamped": `<RFC3339 timestamp> <line>`; the timestamp is stripped.
//   - "raw": the line as it is.
//   - "json": one object per line with "line", "line_b64" or "event", and "part".
//
// Marker lines (text starting with "kubelogd: ", or a json "event") are returned apart,
// with their prefix, and parts of a split line ("kubelogd-continued: ", or json "part" > 1)
// are joined back to the line they continue. A last line without newline is returned as
// it is. A timestamped line whose timestamp does not parse is returned whole, so that it
// shows up as unexpected.
func ReadFile(path, format string) (lines, markers []string, err error) {
	err = scanFile(path, format, func(rec record) {
		switch {
		case rec.marker:
			markers = append(markers, MarkerPrefix+rec.text)
		case rec.part > 1 && len(lines) > 0:
			lines[len(lines)-1] += rec.text
		case rec.part > 1:
			lines = append(lines, ContinuedPrefix+rec.text) // a continuation of nothing
		default:
			lines = append(lines, rec.text)
		}
	})
	if err != nil {
		return nil, nil, err
	}
	return lines, markers, nil
}

// scanFile calls fn with every record of a file, in order.
func scanFile(path, format string, fn func(record)) error {
	parse, err := parser(format)
	if err != nil {
		return err
	}
	r, closeFn, err := open(path)
	if err != nil {
		return err
	}
	defer closeFn()
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		raw, rerr := br.ReadString('\n')
		if rerr != nil && rerr != io.EOF {
			return fmt.Errorf("reading %s: %w", path, rerr)
		}
		if rerr == io.EOF && raw == "" {
			return nil
		}
		raw = strings.TrimSuffix(raw, "\n")
		rec, err := parse(raw)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		fn(rec)
		if rerr == io.EOF {
			return nil
		}
	}
}

// ReadFiles reads several files of one container in the order given (oldest first) and
// concatenates their lines and markers.
func ReadFiles(format string, paths ...string) (lines, markers []string, err error) {
	for _, p := range paths {
		l, m, err := ReadFile(p, format)
		if err != nil {
			return nil, nil, err
		}
		lines = append(lines, l...)
		markers = append(markers, m...)
	}
	return lines, markers, nil
}

// ReadRotated reads a current file and its lumberjack backups, oldest first and the
// current file last. The current file may be missing (rotated away and not yet recreated).
func ReadRotated(current, format string) (lines, markers []string, err error) {
	paths, err := Backups(current)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(current); err == nil {
		paths = append(paths, current)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, err
	}
	return ReadFiles(format, paths...)
}

// Backups lists the lumberjack backups of a file, oldest first: for dir/name.ext they are
// dir/name-<2006-01-02T15-04-05.000>.ext, possibly with .gz appended.
func Backups(current string) ([]string, error) {
	dir, base := filepath.Split(current)
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext) + "-"
	entries, err := os.ReadDir(filepath.Clean(dir + "."))
	if err != nil {
		return nil, fmt.Errorf("listing backups of %s: %w", current, err)
	}
	type backup struct {
		path  string
		stamp time.Time
	}
	var found []backup
	for _, e := range entries {
		name := e.Name()
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok || e.IsDir() {
			continue
		}
		rest = strings.TrimSuffix(rest, ".gz")
		stamp, ok := strings.CutSuffix(rest, ext)
		if !ok || len(stamp) != len(backupTimeLayout) {
			continue
		}
		t, err := time.Parse(backupTimeLayout, stamp)
		if err != nil {
			continue
		}
		found = append(found, backup{filepath.Join(dir, name), t})
	}
	sort.SliceStable(found, func(i, j int) bool { return found[i].stamp.Before(found[j].stamp) })
	out := make([]string, len(found))
	for i, b := range found {
		out[i] = b.path
	}
	return out, nil
}

// open opens a file, decompressing it when its name ends in .gz.
func open(path string) (io.Reader, func(), error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	if !strings.HasSuffix(path, ".gz") {
		return f, func() { _ = f.Close() }, nil
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return zr, func() { _ = zr.Close(); _ = f.Close() }, nil
}

// record is one parsed file line.
type record struct {
	text   string // without marker or continuation prefix
	marker bool
	part   int // 0 or 1 for a whole line or a first part
}

func parser(format string) (func(string) (record, error), error) {
	switch format {
	case "raw":
		return func(s string) (record, error) { return textRecord(s), nil }, nil
	case "timestamped":
		return parseTimestamped, nil
	case "json":
		return parseJSON, nil
	}
	return nil, fmt.Errorf("unknown log format %q: use timestamped, raw or json", format)
}

func textRecord(s string) record {
	if rest, ok := strings.CutPrefix(s, MarkerPrefix); ok {
		return record{text: rest, marker: true}
	}
	if rest, ok := strings.CutPrefix(s, ContinuedPrefix); ok {
		return record{text: rest, part: 2}
	}
	return record{text: s}
}

func parseTimestamped(s string) (record, error) {
	stamp, rest, ok := strings.Cut(s, " ")
	if !ok {
		return record{text: s}, nil
	}
	if _, err := time.Parse(time.RFC3339Nano, stamp); err != nil {
		return record{text: s}, nil
	}
	return textRecord(rest), nil
}

// jsonLine is the json format's object, as far as the oracle needs it.
type jsonLine struct {
	Line    *string `json:"line"`
	LineB64 *string `json:"line_b64"`
	Event   *string `json:"event"`
	Part    int     `json:"part"`
}

func parseJSON(s string) (record, error) {
	var l jsonLine
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return record{text: s}, nil // a torn or corrupt object: unexpected, not fatal
	}
	switch {
	case l.Event != nil:
		return record{text: *l.Event, marker: true}, nil
	case l.Line != nil:
		return record{text: *l.Line, part: l.Part}, nil
	case l.LineB64 != nil:
		b, err := base64.StdEncoding.DecodeString(*l.LineB64)
		if err != nil {
			return record{}, fmt.Errorf("line_b64: %w", err)
		}
		return record{text: string(b), part: l.Part}, nil
	}
	return record{text: s}, nil
}
