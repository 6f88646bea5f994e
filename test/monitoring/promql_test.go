package monitoring

import (
	"fmt"
	"strings"
	"testing"
	"unicode"
)

// selector is one series selector of a PromQL expression: a metric name, its label
// matchers, and the function whose argument it is directly ("" at the top level or
// inside plain parentheses).
type selector struct {
	metric   string
	matchers []matcher
	fn       string
}

type matcher struct {
	label, op, value string
}

// promqlKeywords are the identifiers of PromQL that are neither functions nor metrics.
var promqlKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"inf": true, "nan": true,
}

// labelListKeywords are followed by a parenthesised list of label names, not an expression.
var labelListKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// aggregations may be followed by a by or without clause before their parentheses.
var aggregations = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true,
	"limitk": true, "limit_ratio": true,
}

// selectors lists the series selectors of expr. It is a lexer, not a parser: promtool
// proves the expressions parse (TestRulesCheck, TestDashboardPromQL); this finds which
// metrics and label values they select. Grafana's variables ($namespace,
// $__rate_interval) may stay in: they only occur in strings and ranges.
func selectors(expr string) ([]selector, error) {
	var sels []selector
	var fns []string // open parentheses: the function each belongs to, "" for grouping
	pending := ""    // an aggregation waiting for its parentheses after by/without
	s := []rune(expr)
	i := 0
	skipSpace := func() {
		for i < len(s) && unicode.IsSpace(s[i]) {
			i++
		}
	}
	// skipTo moves past the next close rune, past strings on the way.
	skipTo := func(close rune) error {
		for i < len(s) {
			switch s[i] {
			case '"', '\'', '`':
				if _, err := readString(s, &i); err != nil {
					return err
				}
				continue
			case close:
				i++
				return nil
			}
			i++
		}
		return fmt.Errorf("missing %q in %q", close, expr)
	}
	for {
		skipSpace()
		if i >= len(s) {
			break
		}
		c := s[i]
		switch {
		case c == '#':
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			if _, err := readString(s, &i); err != nil {
				return nil, err
			}
		case c == '[':
			if err := skipTo(']'); err != nil {
				return nil, err
			}
		case c == '(':
			fns = append(fns, pending)
			pending = ""
			i++
		case c == ')':
			if len(fns) == 0 {
				return nil, fmt.Errorf("unbalanced ) in %q", expr)
			}
			fns = fns[:len(fns)-1]
			i++
		case c == '{':
			// A selector without a metric name, e.g. {__name__=~"..."}.
			ms, err := readMatchers(s, &i)
			if err != nil {
				return nil, fmt.Errorf("%w in %q", err, expr)
			}
			sels = append(sels, selector{matchers: ms, fn: top(fns)})
		case unicode.IsDigit(c) || c == '.':
			// A number or a duration (offset 5m).
			for i < len(s) && (unicode.IsLetter(s[i]) || unicode.IsDigit(s[i]) || s[i] == '.') {
				i++
			}
		case c == '_' || c == ':' || unicode.IsLetter(c):
			start := i
			for i < len(s) && (s[i] == '_' || s[i] == ':' || unicode.IsLetter(s[i]) || unicode.IsDigit(s[i])) {
				i++
			}
			word := string(s[start:i])
			skipSpace()
			next := rune(0)
			if i < len(s) {
				next = s[i]
			}
			switch {
			case labelListKeywords[word]:
				if next == '(' {
					if err := skipTo(')'); err != nil {
						return nil, err
					}
				}
			case promqlKeywords[strings.ToLower(word)]:
			case aggregations[word] && next != '(':
				pending = word
			case next == '(':
				fns = append(fns, word)
				i++
			default:
				sel := selector{metric: word, fn: top(fns)}
				if next == '{' {
					ms, err := readMatchers(s, &i)
					if err != nil {
						return nil, fmt.Errorf("%w in %q", err, expr)
					}
					sel.matchers = ms
				}
				sels = append(sels, sel)
			}
		case c == '$':
			return nil, fmt.Errorf("variable outside a string or range at %d in %q", i, expr)
		default:
			i++
		}
	}
	if len(fns) != 0 {
		return nil, fmt.Errorf("unbalanced ( in %q", expr)
	}
	return sels, nil
}

func top(fns []string) string {
	if len(fns) == 0 {
		return ""
	}
	return fns[len(fns)-1]
}

// readString reads the string literal at s[*i] and returns its value (escapes kept).
func readString(s []rune, i *int) (string, error) {
	q := s[*i]
	if q != '"' && q != '\'' && q != '`' {
		return "", fmt.Errorf("string expected at %q", string(s[*i:]))
	}
	start := *i + 1
	for j := start; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			*i = j + 1
			return string(s[start:j]), nil
		}
	}
	return "", fmt.Errorf("unterminated string %s", string(s[*i:]))
}

// readMatchers reads {label op "value", ...} at s[*i].
func readMatchers(s []rune, i *int) ([]matcher, error) {
	*i++ // {
	var ms []matcher
	for {
		for *i < len(s) && (unicode.IsSpace(s[*i]) || s[*i] == ',') {
			*i++
		}
		if *i >= len(s) {
			return nil, fmt.Errorf("unterminated matchers")
		}
		if s[*i] == '}' {
			*i++
			return ms, nil
		}
		start := *i
		for *i < len(s) && (s[*i] == '_' || unicode.IsLetter(s[*i]) || unicode.IsDigit(s[*i])) {
			*i++
		}
		label := string(s[start:*i])
		for *i < len(s) && unicode.IsSpace(s[*i]) {
			*i++
		}
		start = *i
		for *i < len(s) && strings.ContainsRune("=!~", s[*i]) {
			*i++
		}
		op := string(s[start:*i])
		for *i < len(s) && unicode.IsSpace(s[*i]) {
			*i++
		}
		if label == "" || (op != "=" && op != "!=" && op != "=~" && op != "!~") || *i >= len(s) {
			return nil, fmt.Errorf("cannot read label matcher at %q", string(s[start:]))
		}
		value, err := readString(s, i)
		if err != nil {
			return nil, err
		}
		ms = append(ms, matcher{label, op, value})
	}
}

// value returns the value the selector requires for label with =, and whether it has one.
func (s selector) value(label string) (string, bool) {
	for _, m := range s.matchers {
		if m.label == label && m.op == "=" {
			return m.value, true
		}
	}
	return "", false
}

// TestSelectors tests the lexer on the shapes the rules and the dashboard use.
func TestSelectors(t *testing.T) {
	for _, tc := range []struct {
		name, expr string
		want       []string // metric|fn|label op value...
	}{
		{"plain", `up{job="kubelogd"} == 0`, []string{`up||job="kubelogd"`}},
		{"absent", `absent(up{job="kubelogd"})`, []string{`up|absent|job="kubelogd"`}},
		{"aggregation with by and range", `sum by (job, namespace, reason) (increase(kubelogd_gaps_total{job="kubelogd"}[15m])) > 0`,
			[]string{`kubelogd_gaps_total|increase|job="kubelogd"`}},
		{"vector matching", `sum by (job) (rate(a_total{reason!~"x|y"}[10m])) > on (job, namespace) group_left () (clamp_min(sum by (job) (b), 10) / 600)`,
			[]string{`a_total|rate|reason!~"x|y"`, `b|sum`}},
		{"histogram", `histogram_quantile(0.99, sum by (le) (rate(h_bucket{namespace="$namespace"}[$__rate_interval])))`,
			[]string{`h_bucket|rate|namespace="$namespace"`}},
		{"grouping parentheses", `(a - b) / c offset 5m`, []string{"a|", "b|", "c|"}},
		{"and, or, unless", `a > b and c or d unless e`, []string{"a|", "b|", "c|", "d|", "e|"}},
		{"strings with braces", `label_replace(a, "x", "{}", "y", "(.*)")`, []string{"a|label_replace"}},
		{"time", `time() - process_start_time_seconds{job="k"}`, []string{`process_start_time_seconds||job="k"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sels, err := selectors(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, s := range sels {
				g := s.metric + "|" + s.fn
				for _, m := range s.matchers {
					g += fmt.Sprintf("|%s%s%q", m.label, m.op, m.value)
				}
				got = append(got, g)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("selectors(%s)\n got %q\nwant %q", tc.expr, got, tc.want)
			}
		})
	}
	for _, bad := range []string{`sum(a`, `a{b="c"`, `a{b=c}`, `rate(a[5m)`, `a > $threshold`} {
		if _, err := selectors(bad); err == nil {
			t.Errorf("selectors(%s): no error", bad)
		}
	}
}
