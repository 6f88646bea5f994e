package layout

import "testing"

func TestParseFormat(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Format
		wantErr bool
	}{
		{"timestamped", FormatTimestamped, false},
		{"raw", FormatRaw, false},
		{"json", FormatJSON, false},
		{"JSON", 0, true},
		{"", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseFormat(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseFormat(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
			}
			if err == nil && got.String() != tc.in {
				t.Errorf("String() = %q, want %q", got.String(), tc.in)
			}
		})
	}
}

func TestFormatString(t *testing.T) {
	if got := FormatAuto.String(); got != "auto" {
		t.Errorf("FormatAuto.String() = %q", got)
	}
	if _, err := ParseFormat("auto"); err == nil {
		t.Error(`ParseFormat("auto") succeeded: auto is no format files are written in`)
	}
	if got := Format(7).String(); got != "Format(7)" {
		t.Errorf("Format(7).String() = %q", got)
	}
}
