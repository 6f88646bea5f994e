package oracle

import (
	"errors"
	"fmt"
	"os"
	"strings"
)

// Section is a run of application lines in a collected file together with the kubelogd
// marker line that starts it. The first section of a file has no marker; a marker followed
// directly by another starts a section without lines.
type Section struct {
	// Marker is the marker line with its "kubelogd: " prefix; "" for the first section.
	Marker string
	// Lines are the application lines up to the next marker, split lines joined.
	Lines []string
}

// ReadSections reads a current file and its lumberjack backups as ReadRotated does, but
// keeps each marker where it was written: the lines are returned in sections, so that a
// test can tell lines before a restart or gap marker from lines after it. There is always
// at least the first, unmarked section.
func ReadSections(current, format string) ([]Section, error) {
	paths, err := Backups(current)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(current); err == nil {
		paths = append(paths, current)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	secs := []Section{{}}
	for _, p := range paths {
		err := scanFile(p, format, func(rec record) {
			last := &secs[len(secs)-1]
			switch {
			case rec.marker:
				secs = append(secs, Section{Marker: MarkerPrefix + rec.text})
			case rec.part > 1 && len(last.Lines) > 0:
				last.Lines[len(last.Lines)-1] += rec.text
			case rec.part > 1:
				last.Lines = append(last.Lines, ContinuedPrefix+rec.text)
			default:
				last.Lines = append(last.Lines, rec.text)
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return secs, nil
}

// Want is one expected section of a file.
type Want struct {
	// Marker is text the section's marker line must contain; "" for the first section,
	// which has no marker.
	Marker string
	// Lines are the application lines expected in the section, in order.
	Lines []string
}

// CheckSections compares a file's sections with the expected ones: as many sections, each
// marker containing the expected text, and each section's lines exactly the expected lines
// (no line lost, duplicated, reordered or unexpected, as Compare judges). It reports whether
// they agree and, if not, what differs.
func CheckSections(got []Section, want []Want) (ok bool, detail string) {
	var b strings.Builder
	ok = len(got) == len(want)
	if !ok {
		fmt.Fprintf(&b, "%d sections, want %d", len(got), len(want))
	}
	for i := range max(len(got), len(want)) {
		var g Section
		var w Want
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		markerOK := i < len(got) && i < len(want) && (w.Marker == "") == (g.Marker == "") && strings.Contains(g.Marker, w.Marker)
		r := Compare(w.Lines, g.Lines)
		if markerOK && r.OK() {
			fmt.Fprintf(&b, "\nsection %d: %q: %d lines OK", i, g.Marker, len(g.Lines))
			continue
		}
		ok = false
		fmt.Fprintf(&b, "\nsection %d: marker %q, want one containing %q; lines: %s", i, g.Marker, w.Marker, indent(r.String()))
	}
	return ok, strings.TrimPrefix(b.String(), "\n")
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }
