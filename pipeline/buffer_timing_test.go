package pipeline

import (
	"testing"
	"time"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/dataset"
)

// BenchmarkBufferAdd is the archiver's work per record without Kafka or
// S3: extract the routing members, key by (class, hour) with every kind
// in one buffer (format 3), encode into the buffer's columnar blocks and
// index, account its memory; 100,000 events of the shared realistic
// dataset an iteration, into fresh buffers, as worker.handle does.
func BenchmarkBufferAdd(b *testing.B) {
	const n = 100000
	g := dataset.New(dataset.Options{Seed: 1, Total: n, Start: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)})
	lines := make([][]byte, n)
	for i := range lines {
		l := event.AppendJSON(nil, g.Next())
		lines[i] = l[:len(l)-1]
	}
	classes := map[string]bool{"security": true}
	b.ReportAllocs()
	b.ResetTimer()
	var f fields
	var mem int64
	for i := 0; i < b.N; i++ {
		buffers := map[key]*buffer{}
		for off, l := range lines {
			if err := extract(l, classes, &f); err != nil {
				b.Fatal(err)
			}
			k := key{class: f.Class, hour: f.t.Truncate(time.Hour).Unix()}
			buf := buffers[k]
			if buf == nil {
				buf = newBuffer(k, int64(off), time.Now(), true)
				buffers[k] = buf
			}
			before := buf.size()
			if err := buf.add(int64(off), l, &f); err != nil {
				b.Fatal(err)
			}
			mem += buf.size() - before
		}
		for _, buf := range buffers {
			buf.release()
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64(mem)/float64(n*b.N), "held-B/event") // what the memory cap counted
}
