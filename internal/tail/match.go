package tail

import (
	"bytes"
	"fmt"
	"regexp"
	"regexp/syntax"
	"strings"
	"unicode/utf8"
)

// matcher is a compiled --grep or --grep-v. Most on-call searches are plain words (an
// error text, a request ID): those never touch the regexp engine, and any pattern that
// contains a literal every match must contain lets the reader skip whole stretches of a
// file with one bytes.Index instead of looking at each line (see chunkScanner).
type matcher struct {
	re *regexp.Regexp
	// literal is set when the pattern matches exactly the lines containing need.
	literal bool
	// need is a string every match contains (empty if there is none): the whole
	// pattern when literal, else the longest literal the pattern requires.
	need []byte
}

// compileMatcher compiles one or more patterns, which match a line if any of them does;
// no patterns give a nil matcher.
func compileMatcher(flag string, patterns []string) (*matcher, error) {
	if len(patterns) == 0 {
		return nil, nil
	}
	expr := patterns[0]
	if len(patterns) > 1 {
		parts := make([]string, len(patterns))
		for i, p := range patterns {
			if _, err := regexp.Compile(p); err != nil {
				return nil, fmt.Errorf("invalid %s %q: %w", flag, p, err)
			}
			parts[i] = "(?:" + p + ")"
		}
		expr = strings.Join(parts, "|")
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("invalid %s %q: %s", flag, expr, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
	m := &matcher{re: re}
	if prefix, complete := re.LiteralPrefix(); complete {
		m.literal, m.need = true, []byte(prefix)
		return m, nil
	}
	if parsed, err := syntax.Parse(expr, syntax.Perl); err == nil {
		m.need = requiredLiteral(parsed.Simplify())
	}
	return m, nil
}

// requiredLiteral returns the longest case-sensitive literal that every match of re
// contains, or nil. It looks through concatenations, groups and repetitions of at least
// one; alternations and optional parts guarantee nothing.
func requiredLiteral(re *syntax.Regexp) []byte {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil
		}
		var b []byte
		for _, r := range re.Rune {
			b = utf8.AppendRune(b, r)
		}
		return b
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiteral(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiteral(re.Sub[0])
		}
	case syntax.OpConcat:
		var best []byte
		for _, sub := range re.Sub {
			if l := requiredLiteral(sub); len(l) > len(best) {
				best = l
			}
		}
		return best
	}
	return nil
}

// match reports whether msg, a message without its newline, matches.
func (m *matcher) match(msg []byte) bool {
	if m.literal {
		return bytes.Contains(msg, m.need)
	}
	if len(m.need) > 0 && !bytes.Contains(msg, m.need) {
		return false
	}
	return m.re.Match(msg)
}
