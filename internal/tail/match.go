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
	// find locates need in a buffer.
	find finder
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
	} else if parsed, err := syntax.Parse(expr, syntax.Perl); err == nil {
		m.need = requiredLiteral(parsed.Simplify())
	}
	m.find = newFinder(m.need)
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

// finder searches for a needle the way grep-like tools do: it scans for the needle's
// rarest byte with the vectorised bytes.IndexByte and verifies the whole needle only
// there. bytes.Index scans for the first byte instead, and a needle's first byte is
// often a common letter ("req=…" makes it stop at every 'r'): on typical logs that is
// several times slower. If the rare byte turns out to be common in this data, it falls
// back to bytes.Index.
type finder struct {
	needle []byte
	// rare is the offset in needle of its rarest byte (by rarity), rare2 that of the
	// second rarest: a cheap check before comparing the whole needle.
	rare, rare2 int
}

func newFinder(needle []byte) finder {
	f := finder{needle: needle}
	for i := range needle {
		switch {
		case rarity(needle[i]) > rarity(needle[f.rare]):
			f.rare2, f.rare = f.rare, i
		case i != f.rare && (f.rare2 == f.rare || rarity(needle[i]) > rarity(needle[f.rare2])):
			f.rare2 = i
		}
	}
	return f
}

// index returns the offset of the first needle in s, or -1.
func (f *finder) index(s []byte) int {
	n := len(f.needle)
	if n <= 1 || len(s) < n {
		return bytes.Index(s, f.needle)
	}
	b, b2 := f.needle[f.rare], f.needle[f.rare2]
	last := len(s) - n // the last possible start
	misses := 0
	for i := 0; i <= last; {
		j := bytes.IndexByte(s[i+f.rare:last+f.rare+1], b)
		if j < 0 {
			return -1
		}
		start := i + j
		if s[start+f.rare2] == b2 && bytes.Equal(s[start:start+n], f.needle) {
			return start
		}
		i = start + 1
		// Candidates more often than every 32 bytes: this byte is not rare here.
		if misses++; misses > 8 && misses > i>>5 {
			if k := bytes.Index(s[i:], f.needle); k >= 0 {
				return i + k
			}
			return -1
		}
	}
	return -1
}

// commonBytes lists bytes roughly from most to least frequent in application logs
// (English text, logfmt and JSON keys, numbers, paths); bytes not listed are rarer
// than all of them.
const commonBytes = " etaoinsr0l1c2d3u4m5p6h7g8f9.=:-/\"_yvbwk,TESRAIONLCDPMxUHGFBj{}()[]qzWYKV'XJQZ"

// rarity ranks a byte: higher is rarer.
func rarity(c byte) int {
	if i := strings.IndexByte(commonBytes, c); i >= 0 {
		return i
	}
	return len(commonBytes)
}
