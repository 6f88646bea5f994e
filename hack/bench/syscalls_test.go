package main

import (
	"os"
	"path/filepath"
	"testing"
)

// TestReadStraceSummary: the calls of strace -c's table are read by syscall, with or
// without an errors column, and a table cut before its total line is refused.
func TestReadStraceSummary(t *testing.T) {
	const table = `% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 44.13    0.001307          38        34        13 openat
 11.34    0.000336          11        30           epoll_pwait
  0.71    0.000021          10         2         2 fdatasync
------ ----------- ----------- --------- --------- ----------------
100.00    0.001664          25        66        15 total
`
	dir := t.TempDir()
	path := filepath.Join(dir, "summary")
	if err := os.WriteFile(path, []byte(table), 0o640); err != nil {
		t.Fatal(err)
	}
	calls, err := readStraceSummary(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(calls) != 3 || calls["openat"] != 34 || calls["epoll_pwait"] != 30 || calls["fdatasync"] != 2 {
		t.Errorf("calls %v", calls)
	}
	if f := figuresOf(calls); f.Total != 36 || f.Openat != 34 || f.syncs() != 2 {
		t.Errorf("figures %+v", f)
	}
	cut := filepath.Join(dir, "cut")
	if err := os.WriteFile(cut, []byte(table[:len(table)-60]), 0o640); err != nil {
		t.Fatal(err)
	}
	if _, err := readStraceSummary(cut); err == nil {
		t.Error("a table without its total line was read")
	}
}

// TestParseSyscallsCases: cases are PODSxCONTAINERS, within the default follow budget.
func TestParseSyscallsCases(t *testing.T) {
	got, err := parseSyscallsCases("200x1, 50x4")
	if err != nil || len(got) != 2 || got[1] != (syscallsCase{50, 4}) {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range []string{"200", "0x1", "2x51", "1001x2", "ax1"} {
		if _, err := parseSyscallsCases(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
