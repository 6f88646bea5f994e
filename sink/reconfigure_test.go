package sink

import (
	"testing"
)

// TestReconfigure: a reload's settings reach the sweep (the disk budget) and the files
// opened after it (format); a file open before keeps its own; an invalid combination
// changes nothing.
func TestReconfigure(t *testing.T) {
	m := newTestManager(t, Config{Format: FormatTimestamped, MaxSizeMB: 10})
	before := mustOpen(t, m, testKey)
	if err := m.Reconfigure(Config{Format: FormatJSON, MaxSizeMB: 20, MaxTotalSizeMB: 50, MaxBackups: 2}); err != nil {
		t.Fatal(err)
	}
	if got := m.BudgetBytes(); got != 50*megabyte {
		t.Fatalf("BudgetBytes %d after the reload, want %d", got, 50*megabyte)
	}
	after := mustOpen(t, m, Key{Namespace: "default", Pod: "web-1", Container: "app"})
	if before.cfg.Format != FormatTimestamped || after.cfg.Format != FormatJSON || after.cfg.MaxBackups != 2 {
		t.Fatalf("formats %v (open before) and %v (after), want timestamped and json", before.cfg.Format, after.cfg.Format)
	}
	if m.cfg.Dir != m.live.Load().Dir {
		t.Fatalf("the output directory changed: %s, %s", m.cfg.Dir, m.live.Load().Dir)
	}
	if err := m.Reconfigure(Config{Format: FormatJSON, MaxSizeMB: -1}); err == nil {
		t.Fatal("a negative max size was accepted")
	}
	if got := m.BudgetBytes(); got != 50*megabyte {
		t.Fatalf("an invalid reload changed the budget to %d", got)
	}
	for _, f := range []*File{before, after} {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
}
