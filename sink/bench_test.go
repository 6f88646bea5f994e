package sink

import (
	"strings"
	"testing"
	"time"
)

// benchmarkWrite measures Write plus the Flush the owner calls when its reader runs dry
// (every 64 lines here), with a 120-byte line.
func benchmarkWrite(b *testing.B, format Format) {
	m := newTestManager(b, Config{Format: format, Node: "node-1"})
	f := mustOpen(b, m, testKey)
	defer f.Close()
	ts := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	r := Record{Time: ts, RawTime: []byte(ts.Format(timeLayout)), Line: []byte(strings.Repeat("log line payload ", 8)[:120])}
	b.SetBytes(int64(len(r.Line)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := f.Write(r); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			if err := f.Flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func BenchmarkWriteTimestamped(b *testing.B) { benchmarkWrite(b, FormatTimestamped) }

func BenchmarkWriteJSON(b *testing.B) { benchmarkWrite(b, FormatJSON) }

func BenchmarkWriteRaw(b *testing.B) { benchmarkWrite(b, FormatRaw) }

// TestWriteTimestampedAllocs holds the timestamped path to zero allocations per line.
func TestWriteTimestampedAllocs(t *testing.T) {
	m := newTestManager(t, Config{})
	f := mustOpen(t, m, testKey)
	defer f.Close()
	r := rec(1, strings.Repeat("a", 100))
	for range 1000 { // grow the buffer and the cursor's window first
		if err := f.Write(r); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Flush(); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(1000, func() {
		if err := f.Write(r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%v allocations per timestamped Write, want 0", allocs)
	}
}

// benchmarkEncode measures the encoder alone, without I/O or the cursor.
func benchmarkEncode(b *testing.B, format Format) {
	enc := newEncoder(format, testKey, "node-1")
	r := rec(1, strings.Repeat("log line payload ", 8)[:120])
	buf := make([]byte, 0, 4096)
	b.SetBytes(int64(len(r.Line)))
	b.ReportAllocs()
	for b.Loop() {
		buf = enc.appendPart(buf[:0], &r, r.Line, 1)
	}
}

func BenchmarkEncodeTimestamped(b *testing.B) { benchmarkEncode(b, FormatTimestamped) }

func BenchmarkEncodeJSON(b *testing.B) { benchmarkEncode(b, FormatJSON) }
