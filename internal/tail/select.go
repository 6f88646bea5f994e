package tail

import (
	"fmt"
	"log/slog"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/kubelogd/kubelogd/internal/layout"
)

// Pattern matches pod or container names the way on-call engineers type them: a glob
// ("web-*", "web-[0-9]") must match the whole name, anything else is a regular
// expression matched anywhere in the name as stern does ("web" matches "web-0" and
// "my-web"; "^web-[0-9]+$" is exact).
type Pattern struct {
	text string
	glob bool
	re   *regexp.Regexp
}

// regexOnly holds characters that mean something to regexp but nothing to a glob: a
// pattern with any of them (or ".*", ".+") is a regular expression.
const regexOnly = `^$+(){}|\`

// ParsePattern compiles a pod or container pattern; the empty pattern matches all.
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{text: s}
	if s == "" {
		return p, nil
	}
	isGlob := strings.ContainsAny(s, "*?[") && !strings.ContainsAny(s, regexOnly) &&
		!strings.Contains(s, ".*") && !strings.Contains(s, ".+") && !strings.Contains(s, ".?")
	if isGlob {
		if _, err := path.Match(s, ""); err == nil {
			p.glob = true
			return p, nil
		}
	}
	re, err := regexp.Compile(s)
	if err != nil {
		return p, fmt.Errorf("%q is neither a glob nor a regular expression: %w", s, err)
	}
	p.re = re
	return p, nil
}

// Match reports whether name matches; the zero Pattern matches every name.
func (p Pattern) Match(name string) bool {
	switch {
	case p.glob:
		ok, _ := path.Match(p.text, name)
		return ok
	case p.re != nil:
		return p.re.MatchString(name)
	}
	return true
}

// String returns the pattern as given.
func (p Pattern) String() string { return p.text }

// selector decides which namespaces, pods and containers are read. The same decisions
// are made when scanning the history and when new directories appear while following.
type selector struct {
	namespaces map[string]bool // nil: all
	pod        Pattern
	cont       Pattern
	labels     labels.Selector // nil: no label selection
	log        *slog.Logger
}

func (s *selector) namespace(ns string) bool { return s.namespaces == nil || s.namespaces[ns] }
func (s *selector) podName(pod string) bool  { return s.pod.Match(pod) }
func (s *selector) container(c string) bool  { return s.cont.Match(c) }

// podMeta loads the metadata of the pod in dir and reports whether the pod is selected
// by labels. Without a label selector every pod is, with or without metadata; with one,
// a pod without (readable) metadata is not: its labels are unknown.
func (s *selector) podMeta(dir string) (*layout.PodMeta, bool) {
	m, err := layout.ReadMetaFile(filepath.Join(dir, layout.MetaFileName))
	if err != nil {
		if !isNotExist(err) {
			s.warn("cannot read pod metadata", "path", filepath.Join(dir, layout.MetaFileName), "err", err)
		}
		return nil, s.labels == nil
	}
	if s.labels != nil && !s.labels.Matches(labels.Set(m.Labels)) {
		return &m, false
	}
	return &m, true
}

func (s *selector) warn(msg string, args ...any) { s.log.Warn(msg, args...) }
