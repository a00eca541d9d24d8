package dataset

import (
	"bytes"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/custodylog/custody/event"
)

// The dataset is what issue 16 §1 specifies: the shares, sizes and
// reproducibility every benchmark relies on.
func TestDatasetShape(t *testing.T) {
	const n = 100000
	g := New(Options{Seed: 1, Total: n})
	kinds := map[event.Kind]int{}
	tenants := map[string]int{}
	ips := map[string]bool{}
	var v6, late, size int
	var all bytes.Buffer
	for i := 0; i < n; i++ {
		line := g.Line()
		all.Write(line)
		all.WriteByte('\n')
		size += len(line) + 1
		e, err := event.Parse(line)
		if err != nil {
			t.Fatalf("event %d does not parse: %v\n%s", i, err, line)
		}
		kinds[e.Kind]++
		tenants[e.Tenant]++
		ips[e.IP.String()] = true
		if e.IP.Is6() {
			v6++
		}
		if e.Received.Sub(e.Time) > 55*60e9 {
			late++
		}
	}
	pct := func(x int) float64 { return 100 * float64(x) / n }
	check := func(what string, got, lo, hi float64) {
		t.Helper()
		if got < lo || got > hi {
			t.Errorf("%s = %.1f; want %.1f-%.1f", what, got, lo, hi)
		}
	}
	check("connection %", pct(kinds[event.KindConnection]), 76, 80)
	check("login %", pct(kinds[event.KindLogin]), 12, 16)
	check("source_change %", pct(kinds[event.KindSourceChange]), 6.5, 9.5)
	check("IPv6 %", pct(v6), 12, 18)
	check("late %", pct(late), 0.7, 1.3)
	check("mean event bytes", float64(size)/n, 460, 530)
	check("tenants", float64(len(tenants)), 55, 60)
	check("distinct IPs", float64(len(ips)), 20000, 200000)
	// Zipf: the biggest tenant has many times the smallest one's events.
	most, least := 0, n
	for _, c := range tenants {
		most, least = max(most, c), min(least, c)
	}
	if most < 5*least {
		t.Errorf("tenant sizes %d..%d are too even for Zipf", least, most)
	}
	// Realistic data does not compress like repetitive data: zstd default
	// on this stream gives single-digit ratios, not 19x.
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	c := enc.EncodeAll(all.Bytes(), nil)
	check("zstd ratio", float64(all.Len())/float64(len(c)), 3, 10)
	// Seeded: the same seed, the same bytes.
	a, b := New(Options{Seed: 7, Total: 10}), New(Options{Seed: 7, Total: 10})
	for i := 0; i < 10; i++ {
		if x, y := a.Line(), b.Line(); !bytes.Equal(x, y) {
			t.Fatalf("seed 7 gave two streams:\n%s\n%s", x, y)
		}
	}
}
