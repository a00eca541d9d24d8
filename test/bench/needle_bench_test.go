//go:build benchend

package bench

import (
	"context"
	"os"
	"runtime/pprof"
	"sort"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/query"
)

// BenchmarkNeedle30d measures issue 16's needle goal on the real MinIO:
// one rare client address (a few events: a needle, not one of the
// dataset's busy addresses) over 30 days × 1,000,000 events a day of the shared
// dataset (the archive of BenchmarkHoldPlace30d, cut as the archiver cuts
// it), against the full scan of the same range, both with the in-process
// engine and its default configuration. Besides wall and CPU time it
// reports the stored bytes the engine fetched (query.Stats.Bytes): a
// needle fetches segment heads and the bodies of the segments its index
// cannot rule out, a full scan everything.
//
// make bench-needle; it needs about 2 GB in MinIO's data directory.
func BenchmarkNeedle30d(b *testing.B) {
	m := buildMonth(b, stacktest.Get(b), "CUSTODY_BENCH_NEEDLE_PER_DAY")
	d0, days, events := m.d0, monthDays, m.events
	eng := query.NewEngine(query.Defaults(), m.store, m.kr.Read(), []string{"security"})
	// The head cache as custody serve keeps it (query.head_cache): the
	// first needle fills it, the next ones use it. CUSTODY_BENCH_NEEDLE_NO_CACHE=1:
	// without it, every run as the first.
	var heads *query.HeadCache
	if os.Getenv("CUSTODY_BENCH_NEEDLE_NO_CACHE") == "" {
		ret := archive.Retention{DefaultClass: "security", Classes: []archive.Class{{Name: "security", Days: 400}}}
		var err error
		heads, err = query.OpenHeadCache(query.HeadCacheConfig{Dir: b.TempDir(), MaxBytes: 2 << 30}, ret.SegmentRetainUntil)
		if err != nil {
			b.Fatal(err)
		}
		eng.UseHeadCache(heads)
	}
	p, err := query.ParseIP(m.rare)
	if err != nil {
		b.Fatal(err)
	}
	needle := query.Filter{From: d0, To: d0.AddDate(0, 0, days), IP: &p}
	full := query.Filter{From: d0, To: d0.AddDate(0, 0, days)}
	run := func(f query.Filter) (int64, query.Stats, time.Duration, time.Duration) {
		c0, t0 := selfCPU(b), time.Now()
		var n int64
		stats, err := eng.Run(context.Background(), f, query.Options{}, func([]byte) error { n++; return nil })
		if err != nil {
			b.Fatal(err)
		}
		return n, stats, time.Since(t0), selfCPU(b) - c0
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// The needle five times (its median), the full scan once: it
		// reads every body of the range, a minute or more.
		var walls []time.Duration
		var nn int64
		var ns query.Stats
		var ncpu time.Duration
		// The range's LISTs alone, as the engine sends them (a day's
		// prefix per kind and one of every kind), one at a time.
		l0 := time.Now()
		lists, listed := 0, 0
		for d := 0; d < days; d++ {
			for _, p := range segment.HourPrefixes("security", kindNames(), d0.AddDate(0, 0, d)) {
				for _, err := range m.store.List(context.Background(), p[:len(p)-3]) {
					if err != nil {
						b.Fatal(err)
					}
					listed++
				}
				lists++
			}
		}
		listWall := time.Since(l0)
		b.ReportMetric(listWall.Seconds(), "list-s")
		b.Logf("the range's %d LISTs one at a time: %s, %d objects", lists, listWall.Round(time.Millisecond), listed)
		// The first needle, with the head cache empty: every head from
		// the store.
		cn, cstats, cwall, ccpu := run(needle)
		// CUSTODY_BENCH_NEEDLE_PROFILE=FILE: a CPU profile of the five
		// needle runs after the first.
		if p := os.Getenv("CUSTODY_BENCH_NEEDLE_PROFILE"); p != "" {
			f, err := os.Create(p)
			if err != nil {
				b.Fatal(err)
			}
			pprof.StartCPUProfile(f)
		}
		for r := 0; r < 5; r++ {
			n, stats, wall, cpu := run(needle)
			if n != cn {
				b.Fatalf("needle: %d events with the head cache, %d filling it", n, cn)
			}
			walls = append(walls, wall)
			nn, ns, ncpu = n, stats, cpu
		}
		pprof.StopCPUProfile()
		sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
		nw := walls[len(walls)/2]
		fn, fs, fw, fcpu := run(full)
		if nn == 0 || fn < int64(events)*9/10 || fs.Scanned != fs.Total {
			b.Fatalf("needle %d events, full scan %d of %d (%d of %d segments read)", nn, fn, events, fs.Scanned, fs.Total)
		}
		b.ReportMetric(cwall.Seconds(), "needle-cold-s")
		b.ReportMetric(float64(cstats.Bytes)/1e6, "needle-cold-fetched-MB")
		b.ReportMetric(nw.Seconds(), "needle-s")
		b.ReportMetric(ncpu.Seconds(), "needle-cpu-s")
		b.ReportMetric(float64(ns.Bytes)/1e6, "needle-fetched-MB")
		b.ReportMetric(float64(ns.Scanned), "needle-bodies")
		b.ReportMetric(fw.Seconds(), "full-s")
		b.ReportMetric(fcpu.Seconds(), "full-cpu-s")
		b.ReportMetric(float64(fs.Bytes)/1e6, "full-fetched-MB")
		b.ReportMetric(fw.Seconds()/nw.Seconds(), "speedup")
		if heads != nil {
			hs := heads.Stats()
			b.ReportMetric(float64(hs.Bytes)/1e6, "head-cache-MB")
			b.Logf("head cache: %d heads, %.1f MB; first needle (cache empty) %s (%s CPU), %.1f MB fetched",
				hs.Heads, float64(hs.Bytes)/1e6, cwall.Round(time.Millisecond), ccpu.Round(time.Millisecond), float64(cstats.Bytes)/1e6)
		}
		b.Logf("needle (one IP, 30 days): %d events in %s median of 5 (%s CPU), %d of %d segments' bodies read, %.1f MB fetched; full scan: %d events in %s (%s CPU), %.1f MB fetched: %.0f× faster",
			nn, nw.Round(time.Millisecond), ncpu.Round(time.Millisecond), ns.Scanned, ns.Total, float64(ns.Bytes)/1e6,
			fn, fw.Round(time.Millisecond), fcpu.Round(time.Millisecond), float64(fs.Bytes)/1e6, fw.Seconds()/nw.Seconds())
	}
}

func kindNames() []string {
	var out []string
	for _, k := range event.Kinds {
		out = append(out, string(k))
	}
	return out
}
