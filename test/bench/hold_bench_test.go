//go:build benchend

package bench

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/dataset"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// BenchmarkHoldPlace30d measures `custody hold place` over a 30-day range
// of 1,000,000 events a day (issue 10 §7): 30M events of the shared
// realistic dataset, cut into segments as the archiver cuts them (per
// event hour and one of 6 partitions, every kind in one, late events in
// their own hour's segments), sealed and signed as format v3 and stored in
// MinIO.
// Building that archive is not timed. Then it times two holds, each a
// separate process from start to exit (its CPU from getrusage):
//
//   - ip: one client address over the 30 days, the usual preservation
//     order; the index rules out most segments;
//   - tenant: the busiest tenant (events are keyed by tenant, so it lives
//     in one partition's segments);
//   - all: no filter, every segment in the range is put under legal hold
//     and its key escrowed (the worst case).
//
// make bench-hold; it needs about 3 GB in MinIO's data directory.
func BenchmarkHoldPlace30d(b *testing.B) {
	const days = monthDays
	st := stacktest.Get(b)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir := b.TempDir()
	bin := filepath.Join(dir, "custody")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "custody")).CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	m := buildMonth(b, st, "CUSTODY_BENCH_HOLD_PER_DAY")
	d0, segs, ip, tenant := m.d0, m.segs, m.ip, m.tenant
	crypto := m.kr.Save(b, dir)
	topic := stacktest.Topic(b, st, 1)

	cfg := filepath.Join(dir, "custody.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("kafka:\n  brokers: [%s]\n  topic: %s\ns3:\n  bucket: %s\n%sagent:\n  outbox_dir: %s/outbox\nretention:\n  mode: GOVERNANCE\n  classes: [{name: security, days: 400}]\n",
		strings.Join(st.KafkaBrokers, ","), topic, m.bucket, crypto, dir)), 0o600)
	from, to := d0.Format("2006-01-02"), d0.AddDate(0, 0, days-1).Format("2006-01-02")
	held := regexp.MustCompile(`(\d+) segments held \((\d+) new\), (\d+) data keys escrowed, (\d+) ruled out`)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, h := range []struct{ name, flag, value string }{{"ip", "--ip", ip}, {"tenant", "--tenant", tenant}, {"all", "", ""}} {
			args := []string{"hold", "place", "--config", cfg, "--case", fmt.Sprintf("BENCH-%s-%d", h.name, i), "--from", from, "--to", to, "--log-level", "warn"}
			if h.flag != "" {
				args = append(args, h.flag, h.value)
			}
			cmd := exec.Command(bin, args...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				b.Fatalf("hold place %s: %v\n%s", h.name, err, out.String())
			}
			wall := time.Since(t0)
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
			m := held.FindStringSubmatch(out.String())
			if m == nil {
				b.Fatalf("hold place %s printed:\n%s", h.name, out.String())
			}
			n, _ := strconv.Atoi(m[1])
			pruned, _ := strconv.Atoi(m[4])
			if n+pruned != segs {
				b.Fatalf("hold place %s: %d held + %d ruled out; the archive has %d segments", h.name, n, pruned, segs)
			}
			b.ReportMetric(wall.Seconds(), h.name+"-wall-s")
			b.ReportMetric(cpu, h.name+"-cpu-s")
			b.ReportMetric(float64(n), h.name+"-held")
			b.Logf("hold place %s %s over %d segments: %s wall, %.1f CPU-s, %d held, %d ruled out", h.flag, h.value, segs, wall.Round(time.Millisecond), cpu, n, pruned)
		}
	}
}

// segKey is one segment the archiver would cut: every kind of an hour
// and partition (format v3, docs/FORMAT.md v3.10).
type segKey struct {
	hour      time.Time
	partition int
}

type segBuf struct {
	body     bytes.Buffer
	ix       *segment.IndexBuilder
	n        int64
	kinds    map[string]int64
	min, max time.Time
}

// buildArchive writes the segments of days × perDay dataset events from
// d0 and returns how many segments fall in the range (the days from d0), how many
// events, an IP of the stream, its busiest tenant, and a rare IP (one of
// those with the fewest events, two at least: a needle).
// Segments are written in the current format (v3), as the archiver does.
func buildArchive(b *testing.B, s *store.Store, kr archivetest.Keys, d0 time.Time, days, perDay, partitions int) (int, int, string, string, string) {
	total := days * perDay
	g := dataset.New(dataset.Options{Seed: 7, Start: d0, Span: time.Duration(days) * 24 * time.Hour, Total: total})
	open := map[segKey]*segBuf{}
	offsets := make([]int64, partitions)
	tenants := map[string]int{}
	ips := map[netip.Addr]int{}
	var ip string
	type job struct {
		k   segKey
		buf *segBuf
		off int64
	}
	jobs := make(chan job, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	segs := 0
	for w := 0; w < runtime.NumCPU(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var seg bytes.Buffer
			for j := range jobs {
				m := segment.Meta{Class: "security", Kinds: j.buf.kinds, Hour: j.k.hour, Topic: "bench", Partition: int32(j.k.partition),
					FirstOffset: j.off, LastOffset: j.off + j.buf.n - 1, Count: j.buf.n, MinTime: j.buf.min, MaxTime: j.buf.max}
				err := func() error {
					pub, err := kr.Public.Current("security", j.k.hour)
					if err != nil {
						return err
					}
					seg.Reset()
					w, err := segment.NewWriterV3(&seg, m, j.buf.ix, pub, kr.Signer)
					if err != nil {
						return err
					}
					if _, err := w.Write(j.buf.body.Bytes()); err != nil {
						return err
					}
					if err := w.Close(); err != nil {
						return err
					}
					return s.Put(context.Background(), w.Name(), bytes.NewReader(seg.Bytes()), int64(seg.Len()), store.Lock{Mode: "GOVERNANCE", Until: time.Now().Add(24 * time.Hour)})
				}()
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				// Late events of the first hours fall before the range, and
				// the last events may spill a second past its end.
				if !j.k.hour.Before(d0) && j.k.hour.Before(d0.AddDate(0, 0, days)) {
					segs++
				}
				mu.Unlock()
			}
		}()
	}
	flush := func(before time.Time) {
		for k, buf := range open {
			if k.hour.Before(before) {
				jobs <- job{k, buf, offsets[k.partition]}
				offsets[k.partition] += buf.n
				delete(open, k)
			}
		}
	}
	h := fnv.New32a()
	var line []byte
	for i := 0; i < total; i++ {
		e := g.Next()
		if i == total/3 {
			ip = e.IP.String()
		}
		tenants[e.Tenant]++
		ips[e.IP]++
		h.Reset()
		h.Write([]byte(e.Tenant))
		k := segKey{e.Time.Truncate(time.Hour), int(h.Sum32() % uint32(partitions))}
		buf := open[k]
		if buf == nil {
			buf = &segBuf{ix: segment.NewIndexBuilder(), kinds: map[string]int64{}, min: e.Time, max: e.Time}
			open[k] = buf
		}
		buf.kinds[string(e.Kind)]++
		line = event.AppendJSON(line[:0], e)
		buf.body.Write(line)
		buf.n++
		buf.min, buf.max = minT(buf.min, e.Time), maxT(buf.max, e.Time)
		buf.ix.AddIP(e.IP.String())
		buf.ix.Add(segment.FieldLogin, e.Login)
		buf.ix.Add(segment.FieldSession, e.Session)
		buf.ix.Add(segment.FieldRepo, e.Repo)
		buf.ix.Add(segment.FieldTenant, e.Tenant)
		buf.ix.Add(segment.FieldApp, e.App)
		if i%100000 == 0 {
			// Late events are at most 3 hours late: older hours are done.
			flush(e.Received.Truncate(time.Hour).Add(-4 * time.Hour))
		}
	}
	flush(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC))
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	busiest, most := "", 0
	for t, n := range tenants {
		if n > most {
			busiest, most = t, n
		}
	}
	var rare netip.Addr
	for a, n := range ips {
		if m := ips[rare]; n >= 2 && (!rare.IsValid() || n < m || n == m && a.Less(rare)) {
			rare = a
		}
	}
	return segs, total, ip, busiest, rare.String()
}

func minT(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxT(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// month is the 30-day archive of the hold, console and needle figures:
// monthDays × perDay events of the shared dataset on 6 partitions
// (buildArchive), ending yesterday, in a bucket of its own whose class
// keeps 400 days.
type month struct {
	store            *store.Store
	bucket           string
	kr               archivetest.Keys
	d0               time.Time // the first day
	segs, events     int
	ip, tenant, rare string // buildArchive's
}

const monthDays = 30

// buildMonth builds the month; perDayEnv names the variable that may set
// fewer events a day, for a quick check of a benchmark's harness (figures
// come from the default, 1,000,000).
func buildMonth(b *testing.B, st stacktest.Stack, perDayEnv string) month {
	perDay := 1000000
	if v, err := strconv.Atoi(os.Getenv(perDayEnv)); err == nil && v > 0 {
		perDay = v
	}
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 400}}}
	s, sc := archivetest.NewStore(b, st, ret)
	m := month{store: s, bucket: sc.Bucket, d0: time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -monthDays-1)}
	m.kr = archivetest.KeysAt(b, m.d0.AddDate(0, 0, monthDays))
	start := time.Now()
	m.segs, m.events, m.ip, m.tenant, m.rare = buildArchive(b, s, m.kr, m.d0, monthDays, perDay, 6)
	b.Logf("archive of %d events in %d segments over %d days built in %s", m.events, m.segs, monthDays, time.Since(start).Round(time.Second))
	return m
}
