package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/dataset"
)

// memObjects holds segments in memory, so the benchmarks measure the
// query's own work (decrypt, decompress, filter, merge), not the network.
type memObjects struct {
	names  []string
	data   map[string][]byte
	served atomic.Int64 // bytes handed out, as a store would send them
}

func (m *memObjects) List(_ context.Context, prefix string) iter.Seq2[store.Object, error] {
	return func(yield func(store.Object, error) bool) {
		for _, n := range m.names {
			if strings.HasPrefix(n, prefix) && !yield(store.Object{Name: n, Size: int64(len(m.data[n]))}, nil) {
				return
			}
		}
	}
}

func (m *memObjects) GetRange(_ context.Context, name string, off, n int64) (io.ReadCloser, error) {
	b := m.data[name]
	m.served.Add(min(n, int64(len(b))-off))
	return io.NopCloser(bytes.NewReader(b[off:min(off+n, int64(len(b)))])), nil
}

// benchArchive builds one day of n connection events (~400 bytes each) as
// segments of 50,000 events, spread over the 24 hours.
func benchArchive(b testing.TB, n int) (*memObjects, *keyring.Keyring, time.Time) {
	kr := keyring.New()
	day := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	kr.Generate(time.Now(), "2026-11", "2026-11")
	kek, _ := kr.Current(day)
	m := &memObjects{data: map[string][]byte{}}
	perHour := n / 24
	const perSeg = 50000
	off := int64(0)
	for h := 0; h < 24; h++ {
		hour := day.Add(time.Duration(h) * time.Hour)
		for start := 0; start < perHour; start += perSeg {
			cnt := min(perSeg, perHour-start)
			ix := segment.NewIndexBuilder()
			var body bytes.Buffer
			var first, last time.Time
			for i := 0; i < cnt; i++ {
				k := h*perHour + start + i
				t := hour.Add(time.Duration(i) * time.Hour / time.Duration(cnt+1))
				if i == 0 {
					first = t
				}
				last = t
				e := event.Event{ID: fmt.Sprintf("b-%08d", k), Time: t, Kind: event.KindConnection, Class: "security", Tenant: fmt.Sprintf("t%d", k%10),
					App: "shop", IP: netip.AddrFrom4([4]byte{10, byte(k >> 16), byte(k >> 8), byte(k)}), Port: uint16(1024 + k%60000),
					Session: fmt.Sprintf("s%07d", k%400000), Login: fmt.Sprintf("user%d", k%5000), Method: "GET", Path: fmt.Sprintf("/p/%d", k%9000),
					Status: 200, UserAgent: "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36", Source: "web", Received: t}
				body.Write(event.AppendJSON(nil, &e))
				ix.AddIP(e.IP.String())
				ix.Add(segment.FieldLogin, e.Login)
				ix.Add(segment.FieldSession, e.Session)
				ix.Add(segment.FieldTenant, e.Tenant)
				ix.Add(segment.FieldApp, e.App)
			}
			meta := segment.Meta{Class: "security", Kind: "connection", Hour: hour, Topic: "bench", Partition: 0,
				FirstOffset: off, LastOffset: off + int64(cnt) - 1, Count: int64(cnt), MinTime: first, MaxTime: last}
			off += int64(cnt)
			var seg bytes.Buffer
			w, err := segment.NewWriter(&seg, meta, ix, kek, segment.WriterOptions{})
			if err != nil {
				b.Fatal(err)
			}
			w.Write(body.Bytes())
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			m.names = append(m.names, w.Name())
			m.data[w.Name()] = seg.Bytes()
		}
	}
	return m, kr, day
}

func benchRun(b *testing.B, eng *Engine, f Filter, n int) Stats {
	var st Stats
	for b.Loop() {
		var err error
		st, err = eng.Run(context.Background(), f, Options{}, func([]byte) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	return st
}

// BenchmarkFullScan reads every event of a day of 1,000,000 (a filter that
// the index cannot prune and nothing matches), on one core.
func BenchmarkFullScan(b *testing.B) {
	const n = 1000000
	m, kr, day := benchArchive(b, n)
	cfg := Defaults()
	cfg.Concurrency = 1
	eng := NewEngine(cfg, m, keyring.Set{V1: kr}, []string{"security"})
	b.ReportAllocs()
	st := benchRun(b, eng, Filter{From: day, To: day.Add(24 * time.Hour), Kind: "connection", IP: ptr(netip.MustParsePrefix("192.168.0.0/16"))}, n)
	if st.Scanned != st.Total || st.Matched != 0 {
		b.Fatalf("scanned %d of %d, matched %d: the benchmark did not scan everything", st.Scanned, st.Total, st.Matched)
	}
}

// BenchmarkNeedle looks for one IP in the same day, with the index
// pruning segments and without (the ratio is the index's worth).
func BenchmarkNeedle(b *testing.B) {
	const n = 1000000
	m, kr, day := benchArchive(b, n)
	cfg := Defaults()
	cfg.Concurrency = 1
	f := Filter{From: day, To: day.Add(24 * time.Hour), IP: ptr(netip.MustParsePrefix("10.7.161.32/32"))}
	for _, prune := range []bool{true, false} {
		b.Run(fmt.Sprintf("index=%v", prune), func(b *testing.B) {
			eng := NewEngine(cfg, m, keyring.Set{V1: kr}, []string{"security"})
			eng.noPrune = !prune
			st := benchRun(b, eng, f, n)
			if st.Matched != 1 {
				b.Fatalf("matched %d; want the one event with that IP", st.Matched)
			}
			b.ReportMetric(float64(st.Scanned), "segments-read")
			b.ReportMetric(float64(st.Bytes), "bytes-fetched")
			b.ReportMetric(float64(m.total()), "bytes-stored")
		})
	}
}

func ptr[T any](v T) *T { return &v }

func (m *memObjects) total() int64 {
	var n int64
	for _, b := range m.data {
		n += int64(len(b))
	}
	return n
}

// Regression test: the query opened every segment with one unranged GET,
// so a real S3 sent every byte of every segment, pruned or not (a needle
// query over 120 segments fetched 100% of 8.7 MB). Now a pruned segment
// costs its head, and only the bodies of segments that are read are
// fetched. memObjects counts what it hands out, as a store would send it.
func TestNeedleFetchesHeadsAndReadBodiesOnly(t *testing.T) {
	m, kr, day := benchArchive(t, 240000) // 24 segments of 10,000 events
	var heads int64
	bodies := map[string]int64{}
	for name, b := range m.data {
		h, ok := segment.HeadLen(b)
		if !ok {
			t.Fatalf("%s: head length not found", name)
		}
		heads += int64(min(max(h, headProbe), len(b))) // the first request asks for 64 KiB
		bodies[name] = int64(len(b))
	}
	cfg := Defaults()
	eng := NewEngine(cfg, m, keyring.Set{V1: kr}, []string{"security"})
	f := Filter{From: day, To: day.Add(24 * time.Hour), IP: ptr(netip.MustParsePrefix("10.0.39.16/32"))}
	var got []string
	st, err := eng.Run(context.Background(), f, Options{}, func(l []byte) error { got = append(got, string(l)); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || st.Scanned < 1 || st.Scanned > 3 || st.Pruned < 20 {
		t.Fatalf("needle: %d matches, %d scanned, %d pruned of %d; want 1 match from 1-3 segments", len(got), st.Scanned, st.Pruned, st.Total)
	}
	largest := int64(0)
	for _, n := range bodies {
		largest = max(largest, n)
	}
	limit := heads + int64(st.Scanned)*largest
	if served := m.served.Load(); served > limit || served != st.Bytes {
		t.Errorf("served %d bytes (stats say %d); want at most the heads (%d) plus %d bodies (%d in all), of %d stored", served, st.Bytes, heads, st.Scanned, limit, m.total())
	}
	t.Logf("needle: %d of %d stored bytes fetched, %d of %d segments read", m.served.Load(), m.total(), st.Scanned, st.Total)
}

// TestDecompressBombBounded: a segment whose body inflates past
// query.max_segment_bytes fails alone, named, without being read to the end.
func TestDecompressBombBounded(t *testing.T) {
	kr := keyring.New()
	kr.Generate(time.Now(), "2026-11", "2026-11")
	kek, _ := kr.Get("2026-11.v1")
	hour := time.Date(2026, 11, 28, 5, 0, 0, 0, time.UTC)
	line := fmt.Sprintf(`{"v":1,"id":"bomb","time":"%s","kind":"login","class":"security","tenant":"t","attrs":{"pad":"%s"}}`+"\n",
		event.FormatTime(hour), strings.Repeat("A", 8000))
	const n = 4000 // 32 MB of plaintext, a few KB compressed
	m := segment.Meta{Class: "security", Kind: "login", Hour: hour, Topic: "b", FirstOffset: 0, LastOffset: n - 1, Count: n, MinTime: hour, MaxTime: hour}
	var seg bytes.Buffer
	w, err := segment.NewWriter(&seg, m, nil, kek, segment.WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		w.Write([]byte(line))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if seg.Len() > 1<<20 {
		t.Fatalf("bomb segment is %d bytes; the test needs a small one", seg.Len())
	}
	objs := &memObjects{names: []string{w.Name()}, data: map[string][]byte{w.Name(): seg.Bytes()}}
	cfg := Defaults()
	cfg.MaxSegmentBytes = 1 << 20
	eng := NewEngine(cfg, objs, keyring.Set{V1: kr}, []string{"security"})
	stats, err := eng.Run(context.Background(), Filter{From: hour, To: hour.Add(time.Hour)}, Options{}, func([]byte) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(stats.Failed) != 1 || !errors.Is(stats.Failed[0].Err, segment.ErrTooLarge) || !strings.Contains(stats.Failed[0].Err.Error(), w.Name()) {
		t.Fatalf("failed = %v; want the segment, exceeding the size cap", stats.Failed)
	}
}

type brokenStore struct{ memObjects }

func (b *brokenStore) List(context.Context, string) iter.Seq2[store.Object, error] {
	return func(yield func(store.Object, error) bool) {
		yield(store.Object{}, errors.New("cannot list custody-archive/security/: dial tcp 127.0.0.1:9000: connection refused"))
	}
}

func TestUnreachableStore(t *testing.T) {
	eng := NewEngine(Defaults(), &brokenStore{}, keyring.Set{}, []string{"security"})
	day := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	_, err := eng.Run(context.Background(), Filter{From: day, To: day.Add(time.Hour)}, Options{}, func([]byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("Run with an unreachable store: %v; want the listing error", err)
	}
}

// BenchmarkFullScanFormats scans 1,000,000 events of the shared realistic
// dataset (one hour of segments of up to 50,000 events each) written as
// v2 (zstd of JSON lines) and as v3 (columnar), with a filter the index
// cannot prune and nothing matches, on one core: the price of rebuilding
// lines from columns.
func BenchmarkFullScanFormats(b *testing.B) {
	const n = 1000000
	hour := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	priv, pub, sk, pk := writerKeys(b, hour)
	g := dataset.New(dataset.Options{Seed: 1, Total: n, Start: hour, Span: time.Hour})
	lines := make([][]byte, n)
	for i := range lines {
		e := g.Next()
		e.Time = hour.Add(time.Duration(i) * time.Hour / n) // all in the hour: one segment key
		lines[i] = event.AppendJSON(nil, e)
	}
	// The dataset's IPv4 addresses start with 1 to 223: nothing matches.
	none := ptr(netip.MustParsePrefix("240.0.0.0/4"))
	for _, v := range []int{2, 3} {
		b.Run(fmt.Sprintf("v%d", v), func(b *testing.B) {
			m := &memObjects{data: map[string][]byte{}}
			for start := 0; start < n; start += 50000 {
				cnt := min(50000, n-start)
				meta := segment.Meta{Class: "security", Kind: "connection", Hour: hour, Topic: "bench", Partition: 0,
					FirstOffset: int64(start), LastOffset: int64(start + cnt - 1), Count: int64(cnt),
					MinTime: hour.Add(time.Duration(start) * time.Hour / n), MaxTime: hour.Add(time.Duration(start+cnt-1) * time.Hour / n)}
				newWriter := segment.NewWriterV2
				if v == 3 {
					newWriter = segment.NewWriterV3
				}
				var seg bytes.Buffer
				w, err := newWriter(&seg, meta, nil, pk, sk)
				if err != nil {
					b.Fatal(err)
				}
				for _, l := range lines[start : start+cnt] {
					w.Write(l)
				}
				if err := w.Close(); err != nil {
					b.Fatal(err)
				}
				m.names = append(m.names, w.Name())
				m.data[w.Name()] = seg.Bytes()
			}
			cfg := Defaults()
			cfg.Concurrency = 1
			eng := NewEngine(cfg, m, keyring.Set{Private: priv, Public: pub}, []string{"security"})
			b.Run("none-match", func(b *testing.B) {
				b.ReportAllocs()
				st := benchRun(b, eng, Filter{From: hour, To: hour.Add(time.Hour), IP: none}, n)
				if st.Scanned != st.Total || st.Matched != 0 {
					b.Fatalf("scanned %d of %d, matched %d: the benchmark did not scan everything", st.Scanned, st.Total, st.Matched)
				}
				b.ReportMetric(float64(m.total())/n, "stored-B/event")
			})
			// Every event matches and is returned: each line rebuilt.
			b.Run("all-match", func(b *testing.B) {
				st := benchRun(b, eng, Filter{From: hour, To: hour.Add(time.Hour)}, n)
				if st.Matched != n {
					b.Fatalf("matched %d of %d", st.Matched, n)
				}
			})
		})
	}
}
