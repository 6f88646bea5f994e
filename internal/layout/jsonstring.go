package layout

import (
	"encoding/binary"
	"unicode/utf8"
)

// JSONEscapeFactor is the most bytes AppendJSONString writes for one input byte
// ("\u00XX"); base64 (4/3) stays below it. The sink's size bounds rest on it.
const JSONEscapeFactor = 6

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s to dst as a quoted JSON string, as the json format writes
// every string (kubelogd tail re-encodes with it too). Quotes, backslashes and control
// characters (C0, DEL and C1, which a terminal would interpret) are escaped, as are
// U+2028 and U+2029, which JavaScript treats as line ends; bytes that are not UTF-8
// become U+FFFD. No input byte grows beyond JSONEscapeFactor output bytes.
func AppendJSONString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied verbatim
	for i := 0; i < len(s); {
		// Most bytes of most lines are printable ASCII: skip over them in a tight loop.
		i += JSONSafePrefix(s[i:])
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

// JSONSafePrefix returns how many leading bytes of s a JSON string holds as they are:
// printable ASCII other than '"' and '\\'. It tests eight bytes at a time.
func JSONSafePrefix(s []byte) int {
	i := 0
	for i+8 <= len(s) && jsonSafeWord(binary.LittleEndian.Uint64(s[i:])) {
		i += 8
	}
	for i < len(s) && s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' && s[i] != '\\' {
		i++
	}
	return i
}

// jsonSafeWord reports whether all eight bytes of x are ones JSONSafePrefix accepts.
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
