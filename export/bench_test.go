package export

import (
	"runtime"
	"testing"
)

// BenchmarkWriter: realistic events (the shared dataset, ~400 bytes each)
// through the package writer: canonical parse, JSON Lines and CSV into a
// deflated zip, the CSV through its sealed spill, then summary and
// signature. Reports events/s and the heap in use at the end, which must
// not grow with the events.
func BenchmarkWriter(b *testing.B) {
	lines := realistic(100_000)
	var bytesIn int64
	for _, l := range lines {
		bytesIn += int64(len(l)) + 1
	}
	sk := signer(b)
	b.SetBytes(bytesIn)
	b.ResetTimer()
	var heap uint64
	var size countWriter
	for range b.N {
		size = 0
		w, err := NewWriter(&size, b.TempDir(), produced)
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range lines {
			if err := w.Add(l); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := w.Close(testManifest(), sk); err != nil {
			b.Fatal(err)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		heap = max(heap, ms.HeapInuse)
	}
	b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
	b.ReportMetric(float64(bytesIn)/float64(size), "jsonl/zip")
}
