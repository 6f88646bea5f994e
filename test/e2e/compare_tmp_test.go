package e2e

import (
	"fmt"
	"os"
	"strings"
)

// TEMPORARY until internal/oracle lands.
type report struct{ diff string }

func (r report) OK() bool       { return r.diff == "" }
func (r report) String() string { return r.diff }

func readCollected(path string) (lines, markers []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if l == "" {
			continue
		}
		_, text, _ := strings.Cut(l, " ")
		if strings.HasPrefix(text, "kubelogd: ") {
			markers = append(markers, text)
			continue
		}
		lines = append(lines, text)
	}
	return lines, markers, nil
}

func compare(emitted, collected []string) report {
	for i := range max(len(emitted), len(collected)) {
		var e, c string
		if i < len(emitted) {
			e = emitted[i]
		}
		if i < len(collected) {
			c = collected[i]
		}
		if e != c {
			return report{fmt.Sprintf("first difference at line %d: emitted %q, collected %q (%d emitted, %d collected)", i, e, c, len(emitted), len(collected))}
		}
	}
	return report{}
}
