package collector

import (
	"errors"
	"testing"
)

func TestUnparsed(t *testing.T) {
	for _, tc := range []struct {
		line     string
		complete bool
		want     error
	}{
		{"2026-11-27T07:", false, errTornLine},
		{"2026-11-27T07:25:22.123456789Z", false, errTornLine},
		{"2", false, errTornLine},
		// The same fragment with a newline after it is no timestamp at all.
		{"2026-11-27T07:", true, errBodyError},
		{"unable to retrieve container logs for containerd://abc", false, errBodyError},
		{"failed to get parse function: unsupported log format", false, errBodyError},
		{"2026-11-27T07:25:22.123456789Z0000000000000000", false, errBodyError}, // too long
	} {
		if got := unparsed([]byte(tc.line), tc.complete); !errors.Is(got, tc.want) {
			t.Errorf("unparsed(%q, complete=%v) = %v, want %v", tc.line, tc.complete, got, tc.want)
		}
	}
}
