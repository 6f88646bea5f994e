package sink

import (
	"strings"
	"testing"
	"time"
)

// BenchmarkWriteLine is File.Write per line in each format for kinds of line the other
// benchmarks leave out: an application's own JSON log line (every quote escaped by the json
// format) and a 4 KiB line (a stack trace joined by the runtime). The owner flushes every
// 64 lines, as when its reader runs dry. hack/bench (make bench) reports ns/op as ns/line.
func BenchmarkWriteLine(b *testing.B) {
	lines := []struct{ name, text string }{
		{"plain", strings.Repeat("GET /api/v1/products 200 ", 5)[:100]},
		{"jsonlog", `{"level":"info","ts":"2026-11-27T03:04:05.123Z","msg":"request served","path":"/api/v1/products","status":200}`},
		{"4KiB", strings.Repeat("at com.example.Service.handle(Service.java:42)\t", 90)[:4096]},
	}
	for _, format := range []Format{FormatTimestamped, FormatJSON, FormatRaw} {
		for _, l := range lines {
			b.Run(format.String()+"/"+l.name, func(b *testing.B) {
				m := newTestManager(b, Config{Format: format, Node: "node-1", MaxBackups: 1})
				f := mustOpen(b, m, testKey)
				defer f.Close()
				ts := time.Date(2026, 11, 27, 3, 4, 5, 123456789, time.UTC)
				r := Record{Time: ts, RawTime: []byte(ts.Format(timeLayout)), Line: []byte(l.text)}
				b.SetBytes(int64(len(r.Line)))
				b.ReportAllocs()
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
			})
		}
	}
}
