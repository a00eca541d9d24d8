package query

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/bytesize"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/dataset"
	"github.com/custodylog/custody/internal/testkit/pipelinetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

var testRetention = archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}

// corpus makes events of every kind around hour and day boundaries, with
// IPv4 and IPv6 addresses at the edges of their prefixes, and a few events
// sent twice (same ID) as an agent resending after a crash would.
func corpus(base time.Time) []*event.Event {
	ips := []string{"198.51.100.0", "198.51.100.255", "198.51.101.0", "203.0.113.7", "203.0.113.8",
		"2001:db8:1::1", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", "2001:db8:2::1", "2001:db8::7", "10.0.0.1"}
	var out []*event.Event
	for i := 0; i < 1500; i++ {
		// Times: every 7 minutes over ~7 days, plus exact edges of hours.
		t := base.Add(time.Duration(i) * 7 * time.Minute)
		switch i % 10 {
		case 3:
			t = t.Truncate(time.Hour) // h:00:00.000000000
		case 4:
			t = t.Truncate(time.Hour).Add(-time.Nanosecond) // previous h:59:59.999999999
		}
		e := &event.Event{
			ID: fmt.Sprintf("q-%04d", i), Time: t, Kind: event.Kinds[i%len(event.Kinds)], Class: "security",
			Tenant: []string{"acme", "globex"}[i%2], App: []string{"shop", "blog", "api"}[i%3],
			IP: netip.MustParseAddr(ips[i%len(ips)]), Port: uint16(1000 + i), Login: fmt.Sprintf("user%d", i%7),
			Session: fmt.Sprintf("s%d", i%50), Repo: []string{"acme/shop", "acme/blog"}[i%2], Action: "x", Purpose: "p", Protocol: "ssh",
			Source: "test", Received: base,
		}
		out = append(out, e)
		if i%97 == 0 {
			out = append(out, e) // resent
		}
		if i%250 == 0 {
			// Another tenant's event with the same ID and time: senders
			// choose IDs, so only (tenant, ID) identifies an event.
			o := *e
			o.Tenant = map[string]string{"acme": "globex", "globex": "acme"}[e.Tenant]
			out = append(out, &o)
		}
	}
	return out
}

// reference is the obvious implementation the engine must agree with.
func reference(evs []*event.Event, f Filter) []string {
	seen := map[string]bool{}
	var hits []*event.Event
	for _, e := range evs {
		if seen[e.Tenant+"/"+e.ID] || e.Time.Before(f.From) || !e.Time.Before(f.To) {
			continue
		}
		if f.Kind != "" && string(e.Kind) != f.Kind || f.Login != "" && e.Login != f.Login || f.Tenant != "" && e.Tenant != f.Tenant ||
			f.App != "" && e.App != f.App || f.Repo != "" && e.Repo != f.Repo || f.Session != "" && e.Session != f.Session {
			continue
		}
		if f.IP != nil && !f.IP.Contains(e.IP) {
			continue
		}
		seen[e.Tenant+"/"+e.ID] = true
		hits = append(hits, e)
	}
	slices.SortFunc(hits, func(a, b *event.Event) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		if c := strings.Compare(a.Tenant, b.Tenant); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	var ids []string
	for _, e := range hits {
		ids = append(ids, e.Tenant+"/"+e.ID)
	}
	return ids
}

type fixture struct {
	evs   []*event.Event
	store *store.Store
	keys  keyring.Set
	base  time.Time
}

var (
	shared    *fixture
	sharedErr string
)

// archiveCorpus archives the corpus through the real archiver, once for
// all the tests of this package.
func archiveCorpus(t *testing.T) *fixture {
	t.Helper()
	// First, so that -short skips every caller instead of recording the
	// skip of the first one as a failure for the others.
	stacktest.Get(t)
	if shared == nil && sharedErr == "" {
		ok := false
		defer func() {
			if !ok {
				sharedErr = "the shared corpus could not be archived (see the first test's failure)"
			}
		}()
		shared = buildCorpus(t)
		ok = true
	}
	if sharedErr != "" {
		t.Fatal(sharedErr)
	}
	return shared
}

func buildCorpus(t *testing.T) *fixture {
	st := stacktest.Get(t)
	base := time.Now().UTC().Add(-8 * 24 * time.Hour).Truncate(24 * time.Hour).Add(23*time.Hour + 30*time.Minute)
	evs := corpus(base)
	var values [][]byte
	for _, e := range evs {
		l := event.AppendJSON(nil, e)
		values = append(values, l[:len(l)-1])
	}
	topic := stacktest.Topic(t, st, 3)
	archivetest.Produce(t, st, topic, values)
	s, _ := archivetest.NewStore(t, st, testRetention)
	kr := archivetest.Keyring(t)
	pipelinetest.Archive(t, st, topic, s, testRetention, kr.Write(), 40)
	return &fixture{evs: evs, store: s, keys: kr.Read(), base: base}
}

func run(t *testing.T, eng *Engine, f Filter, opts Options) ([]string, Stats, error) {
	t.Helper()
	var ids []string
	stats, err := eng.Run(context.Background(), f, opts, func(line []byte) error {
		e, err := event.Parse(line)
		if err != nil {
			return err
		}
		ids = append(ids, e.Tenant+"/"+e.ID)
		return nil
	})
	return ids, stats, err
}

func TestQueryAgainstReference(t *testing.T) {
	fx := archiveCorpus(t)
	// A tiny budget: every hour's matches spill to disk and merge back,
	// and each hour is read alone. The default: hours of few matches
	// are read together, up to a day at once (run's units).
	for _, budget := range []int64{1 << 10, int64(Defaults().MemoryBudget)} {
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
			cfg := Defaults()
			cfg.MemoryBudget = bytesize.Size(budget)
			eng := NewEngine(cfg, fx.store, fx.keys, []string{"security"})
			var mu sync.Mutex
			widest := 0
			eng.onUnit = func(n int) {
				mu.Lock()
				widest = max(widest, n)
				mu.Unlock()
			}
			queryAgainstReference(t, fx, eng)
			if widest != maxUnitHours {
				t.Errorf("the widest unit read was %d hours; want %d (hours of no match)", widest, maxUnitHours)
			}
			if budget < 1<<20 {
				// Every hour of a day inside the corpus holds more than
				// budget/16: each is read alone.
				widest = 0
				day := fx.base.Truncate(24 * time.Hour).Add(24 * time.Hour)
				run(t, eng, Filter{From: day, To: day.Add(24 * time.Hour)}, Options{})
				if widest != 1 {
					t.Errorf("a busy day under a tiny budget was read %d hours at a time; want 1", widest)
				}
			}
		})
	}
}

func queryAgainstReference(t *testing.T, fx *fixture, eng *Engine) {
	pfx := func(s string) *netip.Prefix {
		p, err := ParseIP(s)
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	day := fx.base.Truncate(24 * time.Hour).Add(24 * time.Hour) // a midnight inside the corpus
	all := Filter{From: fx.base.Add(-time.Hour), To: fx.base.Add(8 * 24 * time.Hour)}
	cases := map[string]Filter{
		"everything":            all,
		"one day exactly":       {From: day, To: day.Add(24 * time.Hour)},
		"hour edges":            {From: day.Add(5 * time.Hour), To: day.Add(6 * time.Hour)},
		"ipv4 exact":            {From: all.From, To: all.To, IP: pfx("203.0.113.7")},
		"ipv4 mapped":           {From: all.From, To: all.To, IP: pfx("::ffff:203.0.113.7")},
		"ipv4 /24 edges":        {From: all.From, To: all.To, IP: pfx("198.51.100.0/24")},
		"ipv4 /23":              {From: all.From, To: all.To, IP: pfx("198.51.100.0/23")},
		"ipv4 /8":               {From: all.From, To: all.To, IP: pfx("10.0.0.0/8")},
		"ipv6 exact":            {From: all.From, To: all.To, IP: pfx("2001:db8::7")},
		"ipv6 /48 edge":         {From: all.From, To: all.To, IP: pfx("2001:db8:1::/48")},
		"ipv6 /32":              {From: all.From, To: all.To, IP: pfx("2001:db8::/32")},
		"login":                 {From: all.From, To: all.To, Login: "user3"},
		"kind login":            {From: all.From, To: all.To, Kind: "login"},
		"tenant and app":        {From: all.From, To: all.To, Tenant: "globex", App: "api"},
		"repo source changes":   {From: all.From, To: all.To, Repo: "acme/shop", Kind: "source_change"},
		"session":               {From: all.From, To: all.To, Session: "s17"},
		"absent login":          {From: all.From, To: all.To, Login: "nobody"},
		"login and ip and day":  {From: day, To: day.Add(24 * time.Hour), Login: "user1", IP: pfx("2001:db8::/32")},
		"instant at hour start": {From: day.Add(3 * time.Hour), To: day.Add(3*time.Hour + time.Nanosecond)},
		"instant before hour":   {From: day.Add(3*time.Hour - time.Nanosecond), To: day.Add(3 * time.Hour)},
	}
	for name, f := range cases {
		t.Run(name, func(t *testing.T) {
			got, stats, err := run(t, eng, f, Options{})
			if err != nil {
				t.Fatal(err)
			}
			want := reference(fx.evs, f)
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("got %d events, want %d:\n got %.10v\nwant %.10v", len(got), len(want), got, want)
			}
			if len(stats.Failed) > 0 {
				t.Fatalf("failed segments: %v", stats.Failed)
			}
			if name == "absent login" && stats.Scanned > stats.Total/10 {
				t.Errorf("absent login scanned %d of %d segments; the index should skip nearly all", stats.Scanned, stats.Total)
			}
		})
	}
	// Regression test: the merge deduplicated on (time, ID), so an event
	// of globex with the same ID and time as one of acme's vanished.
	got, _, err := run(t, eng, Filter{From: fx.base, To: fx.base.Add(time.Nanosecond)}, Options{})
	if err != nil || strings.Join(got, ",") != "acme/q-0000,globex/q-0000" {
		t.Errorf("two tenants, one ID: got %v, %v; want acme/q-0000 and globex/q-0000", got, err)
	}
	got, _, err = run(t, eng, all, Options{Limit: 10})
	if err != nil || strings.Join(got, ",") != strings.Join(reference(fx.evs, all)[:10], ",") {
		t.Errorf("--limit 10 = %v, %v", got, err)
	}
}

// tamper serves one segment with a flipped byte, as a damaged copy would be.
type tamper struct {
	*store.Store
	victim string
	at     int // bytes from the end: 30 is in the signature, 100 in the body
}

func (t *tamper) flip(n int) int { return n - t.at }

func (t *tamper) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if name != t.victim {
		return t.Store.GetRange(ctx, name, off, n)
	}
	rc, err := t.Store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, err
	}
	b[t.flip(len(b))] ^= 1
	return io.NopCloser(bytes.NewReader(b[off : off+n])), nil
}

func TestQueryBadSegments(t *testing.T) {
	fx := archiveCorpus(t)
	var victim string
	for o, err := range fx.store.List(context.Background(), "security/") {
		if err != nil {
			t.Fatal(err)
		}
		victim = o.Name
		break
	}
	all := Filter{From: fx.base.Add(-time.Hour), To: fx.base.Add(8 * 24 * time.Hour)}
	// A byte of the signature, then of the body: either way that segment
	// alone fails, named, with the reason.
	for at, why := range map[int]error{30: segment.ErrSignature, 100: segment.ErrAuth} {
		eng := NewEngine(Defaults(), &tamper{Store: fx.store, victim: victim, at: at}, fx.keys, []string{"security"})
		_, stats, err := run(t, eng, all, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(stats.Failed) != 1 || stats.Failed[0].Name != victim || !errors.Is(stats.Failed[0].Err, why) || !strings.Contains(stats.Failed[0].Err.Error(), victim) {
			t.Fatalf("byte %d from the end flipped: failed = %v; want only %s, %v", at, stats.Failed, victim, why)
		}
	}
	eng := NewEngine(Defaults(), &tamper{Store: fx.store, victim: victim, at: 100}, fx.keys, []string{"security"})
	got, stats, err := run(t, eng, all, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) == 0 || len(got) >= len(reference(fx.evs, all)) {
		t.Errorf("got %d events; want the others, without the victim's", len(got))
	}
	_, _, err = run(t, eng, all, Options{Strict: true})
	if !errors.Is(err, ErrStrict) {
		t.Errorf("--strict: %v; want ErrStrict", err)
	}
	// A keyring without the segments' keys: every segment fails, named.
	other := archivetest.Keyring(t)
	eng = NewEngine(Defaults(), fx.store, other.Read(), []string{"security"})
	_, stats, _ = run(t, eng, all, Options{})
	if len(stats.Failed) == 0 || !strings.Contains(stats.Failed[0].Err.Error(), "authentication failed") {
		t.Errorf("foreign keyring: failed = %.2v", stats.Failed)
	}
	if _, _, err := run(t, eng, Filter{From: all.To, To: all.From}, Options{}); err == nil || !strings.Contains(err.Error(), "is not before") {
		t.Errorf("reversed range: %v", err)
	}
}

// gate serves the fixture's store, holding back the segments of one hour:
// entered is closed when the first of them is asked for, and with block
// set a read waits for its context to end.
type gate struct {
	*store.Store
	hour     []string // the hour's prefixes: each kind's, and every kind's
	block    bool
	once     sync.Once
	entered  chan struct{}
	inflight atomic.Int32
}

func newGate(s *store.Store, h time.Time, block bool) *gate {
	g := &gate{Store: s, block: block, entered: make(chan struct{})}
	var kinds []string
	for _, k := range event.Kinds {
		kinds = append(kinds, string(k))
	}
	g.hour = segment.HourPrefixes("security", kinds, h)
	return g
}

func (g *gate) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	if !slices.ContainsFunc(g.hour, func(p string) bool { return strings.HasPrefix(name, p) }) {
		return g.Store.GetRange(ctx, name, off, n)
	}
	g.inflight.Add(1)
	defer g.inflight.Add(-1)
	g.once.Do(func() { close(g.entered) })
	if g.block {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return g.Store.GetRange(ctx, name, off, n)
}

// The next hour's segments are read while the current hour is emitted, so
// a slow consumer and the reads overlap.
func TestQueryReadsNextHourWhileEmitting(t *testing.T) {
	fx := archiveCorpus(t)
	h0 := fx.base.Truncate(time.Hour).Add(time.Hour)
	g := newGate(fx.store, h0.Add(time.Hour), false)
	eng := NewEngine(Defaults(), g, fx.keys, []string{"security"})
	var n int
	_, err := eng.Run(context.Background(), Filter{From: h0, To: h0.Add(2 * time.Hour)}, Options{}, func(line []byte) error {
		if n++; n == 1 {
			select {
			case <-g.entered:
			case <-time.After(30 * time.Second):
				return errors.New("the next hour was not read while the first was emitted")
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := reference(fx.evs, Filter{From: h0, To: h0.Add(2 * time.Hour)})
	if n != len(want) || len(want) < 2 {
		t.Fatalf("%d events; want %d (and at least 2)", n, len(want))
	}
}

// A query that stops early (the consumer fails, or the limit is reached)
// cancels the hour being read ahead and waits for it before returning.
func TestQueryStopCancelsReadAhead(t *testing.T) {
	fx := archiveCorpus(t)
	h0 := fx.base.Truncate(time.Hour).Add(time.Hour)
	f := Filter{From: h0, To: h0.Add(3 * time.Hour)}
	errStop := errors.New("consumer gone")
	for _, tc := range []struct {
		name    string
		opts    Options
		emitErr error
	}{{"consumer error", Options{}, errStop}, {"limit", Options{Limit: 1}, nil}} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(fx.store, h0.Add(time.Hour), true)
			eng := NewEngine(Defaults(), g, fx.keys, []string{"security"})
			done := make(chan error, 1)
			var n int
			go func() {
				_, err := eng.Run(context.Background(), f, tc.opts, func(line []byte) error {
					n++
					<-g.entered // the read-ahead is blocked in a segment read
					return tc.emitErr
				})
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, tc.emitErr) {
					t.Fatalf("Run = %v; want %v", err, tc.emitErr)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return: the read-ahead was not cancelled")
			}
			if in := g.inflight.Load(); in != 0 {
				t.Errorf("%d segment reads still running after Run returned", in)
			}
			if n != 1 {
				t.Errorf("%d events emitted; want 1", n)
			}
		})
	}
}

// Contributed names every segment that held matches, with how many: each
// segment of the bucket is opened and counted independently.
func TestQueryContributed(t *testing.T) {
	fx := archiveCorpus(t)
	ctx := context.Background()
	tenant := fx.evs[0].Tenant
	f := Filter{From: fx.base.Add(-48 * time.Hour), To: fx.base.Add(72 * time.Hour), Tenant: tenant}
	var mu sync.Mutex
	got := map[string]int{}
	eng := NewEngine(Defaults(), fx.store, fx.keys, []string{"security"})
	ids, st, err := run(t, eng, f, Options{Contributed: func(seg string, n int) {
		mu.Lock()
		defer mu.Unlock()
		if _, dup := got[seg]; dup {
			t.Errorf("segment %s reported twice", seg)
		}
		got[seg] = n
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{}
	for o, err := range fx.store.List(ctx, "security/") {
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range archivetest.Lines(t, fx.store, fx.keys, o.Name) {
			if e, err := event.Parse(l); err == nil && e.Tenant == tenant && !e.Time.Before(f.From) && e.Time.Before(f.To) {
				want[o.Name]++
			}
		}
	}
	if len(want) == 0 || !maps.Equal(got, want) {
		t.Fatalf("contributed %v; the segments hold %v", got, want)
	}
	sum := 0
	for _, n := range got {
		sum += n
	}
	if int64(sum) != int64(len(ids))+st.Dupes {
		t.Errorf("contributed %d events; %d returned and %d duplicates dropped", sum, len(ids), st.Dupes)
	}
}

// The same events stored as v2 (lines) and v3 (columns) answer every
// filter with the same lines in the same order: the columnar scan reads
// members from columns and rebuilds only the lines that match.
func TestColumnarMatchesLines(t *testing.T) {
	hour := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	priv, pub, sk, pk := writerKeys(t, hour)
	const n = 30000
	g := dataset.New(dataset.Options{Seed: 4, Total: n, Start: hour, Span: time.Hour})
	var lines [][]byte
	var ips, logins []string
	var evs []*event.Event
	for i := 0; i < n; i++ {
		e := g.Next()
		e.Time = hour.Add(time.Duration(i) * time.Hour / n)
		if e.Kind != event.KindConnection {
			continue
		}
		if i%1000 == 0 {
			e.Path = `/a "quoted" path`     // an escape: the row goes the way of a line
			e.Login = `o"brien@example.org` // and its login too
		}
		lines = append(lines, event.AppendJSON(nil, e))
		evs = append(evs, e)
		if i%5000 == 0 {
			ips, logins = append(ips, e.IP.String()), append(logins, e.Login)
		}
	}
	build := func(v int) *memObjects {
		m := &memObjects{data: map[string][]byte{}}
		for start := 0; start < len(lines); start += 7000 {
			cnt := min(7000, len(lines)-start)
			meta := segment.Meta{Class: "security", Kind: "connection", Hour: hour, Topic: "t", FirstOffset: int64(start), LastOffset: int64(start + cnt - 1),
				Count: int64(cnt), MinTime: hour, MaxTime: hour.Add(time.Hour - 1)}
			ix := segment.NewIndexBuilder()
			for _, e := range evs[start : start+cnt] {
				ix.AddIP(e.IP.String())
				ix.Add(segment.FieldLogin, e.Login)
				ix.Add(segment.FieldTenant, e.Tenant)
			}
			newWriter := segment.NewWriterV2
			if v == 3 {
				newWriter = segment.NewWriterV3
			}
			var seg bytes.Buffer
			w, err := newWriter(&seg, meta, ix, pk, sk)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range lines[start : start+cnt] {
				w.Write(l)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			m.names = append(m.names, w.Name())
			m.data[w.Name()] = seg.Bytes()
		}
		return m
	}
	v2, v3 := build(2), build(3)
	run := func(m *memObjects, f Filter) []string {
		eng := NewEngine(Defaults(), m, keyring.Set{Private: priv, Public: pub}, []string{"security"})
		var out []string
		st, err := eng.Run(context.Background(), f, Options{}, func(l []byte) error { out = append(out, string(l)); return nil })
		if err != nil {
			t.Fatal(err)
		}
		if st.Scanned == 0 {
			t.Fatal("nothing scanned")
		}
		return out
	}
	day := Filter{From: hour, To: hour.Add(time.Hour)}
	filters := map[string]Filter{"all": day}
	for i, ip := range ips {
		f := day
		f.IP = ptr(netip.PrefixFrom(netip.MustParseAddr(ip), netip.MustParseAddr(ip).BitLen()))
		filters[fmt.Sprintf("ip %d", i)] = f
		f = day
		f.Login = logins[i]
		filters[fmt.Sprintf("login %d", i)] = f
	}
	f := day
	f.IP = ptr(netip.MustParsePrefix("100.0.0.0/8"))
	f.Tenants = []string{"acme-0", "globex-1"}
	filters["prefix and tenant scope"] = f
	f = day
	f.Login = `o"brien@example.org`
	filters["escaped login"] = f
	f = day
	f.From = hour.Add(20 * time.Minute)
	f.To = hour.Add(21 * time.Minute)
	filters["one minute"] = f
	for name, f := range filters {
		a, b := run(v2, f), run(v3, f)
		if len(a) == 0 && name != "prefix and tenant scope" {
			t.Errorf("%s: no match at all: the test checks nothing", name)
		}
		if !slices.Equal(a, b) {
			t.Errorf("%s: v2 %d lines, v3 %d lines, or not the same", name, len(a), len(b))
		}
	}
}

// Segments of every kind (format v3's archiver) answer as segments of one
// kind each do, and their headers' kinds rule them out for a kind they do
// not hold without reading their bodies.
func TestEveryKindMatchesOneKind(t *testing.T) {
	hour := time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	priv, pub, sk, pk := writerKeys(t, hour)
	const n = 20000
	g := dataset.New(dataset.Options{Seed: 7, Total: n, Start: hour, Span: time.Hour})
	var evs []*event.Event
	for i := 0; i < n; i++ {
		e := g.Next()
		e.Time = hour.Add(time.Duration(i) * time.Hour / n)
		e.Class = "security"
		evs = append(evs, e)
	}
	// write stores evs[from:to] of the kinds wanted as one segment: of
	// one kind, or (kind "") of every kind it holds.
	write := func(m *memObjects, kind string, from, to int, keep func(*event.Event) bool) {
		meta := segment.Meta{Class: "security", Kind: kind, Hour: hour, Topic: "t", FirstOffset: int64(from), MinTime: hour, MaxTime: hour.Add(time.Hour - 1)}
		ix := segment.NewIndexBuilder()
		var body [][]byte
		kinds := map[string]int64{}
		for _, e := range evs[from:to] {
			if !keep(e) {
				continue
			}
			ix.AddIP(e.IP.String())
			ix.Add(segment.FieldLogin, e.Login)
			ix.Add(segment.FieldTenant, e.Tenant)
			body = append(body, event.AppendJSON(nil, e))
			kinds[string(e.Kind)]++
		}
		meta.Count, meta.LastOffset = int64(len(body)), int64(to-1)
		if kind == "" {
			meta.Kinds = kinds
		}
		var seg bytes.Buffer
		w, err := segment.NewWriterV3(&seg, meta, ix, pk, sk)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range body {
			w.Write(l)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		m.names = append(m.names, w.Name())
		m.data[w.Name()] = seg.Bytes()
	}
	one, every := &memObjects{data: map[string][]byte{}}, &memObjects{data: map[string][]byte{}}
	for start := 0; start < n; start += 5000 {
		for _, k := range []event.Kind{event.KindConnection, event.KindLogin, event.KindSourceChange} {
			write(one, string(k), start, start+5000, func(e *event.Event) bool { return e.Kind == k })
		}
		write(every, "", start, start+5000, func(*event.Event) bool { return true })
	}
	run := func(m *memObjects, f Filter) ([]string, Stats) {
		eng := NewEngine(Defaults(), m, keyring.Set{Private: priv, Public: pub}, []string{"security"})
		var out []string
		st, err := eng.Run(context.Background(), f, Options{}, func(l []byte) error { out = append(out, string(l)); return nil })
		if err != nil {
			t.Fatal(err)
		}
		return out, st
	}
	day := Filter{From: hour, To: hour.Add(time.Hour)}
	filters := map[string]Filter{"all": day}
	for _, k := range []string{"connection", "login", "source_change"} {
		f := day
		f.Kind = k
		filters["kind "+k] = f
		f = day
		f.NotKinds = []string{k}
		filters["not kind "+k] = f
	}
	f := day
	f.IP = ptr(netip.PrefixFrom(evs[1234].IP, evs[1234].IP.BitLen()))
	filters["ip"] = f
	f = day
	f.Login, f.Kind = evs[4321].Login, string(evs[4321].Kind)
	filters["login and kind"] = f
	for name, f := range filters {
		a, _ := run(one, f)
		b, st := run(every, f)
		if len(a) == 0 {
			t.Errorf("%s: no match at all: the test checks nothing", name)
		}
		if !slices.Equal(a, b) {
			t.Errorf("%s: one kind per segment %d lines, every kind %d lines, or not the same", name, len(a), len(b))
		}
		if st.Total != 4 {
			t.Errorf("%s: %d segments listed; want the 4 of every kind", name, st.Total)
		}
	}

	// A segment of every kind without source changes is ruled out by its
	// header for them, and for everything but them.
	partial := &memObjects{data: map[string][]byte{}}
	write(partial, "", 0, 5000, func(e *event.Event) bool { return e.Kind != event.KindSourceChange })
	for name, f := range map[string]Filter{"kind source_change": {From: hour, To: hour.Add(time.Hour), Kind: "source_change"},
		"not connection or login": {From: hour, To: hour.Add(time.Hour), NotKinds: []string{"connection", "login"}}} {
		if out, st := run(partial, f); len(out) != 0 || st.Total != 1 || st.Pruned != 1 || st.Scanned != 0 {
			t.Errorf("%s: %d lines, stats %+v; want the one segment pruned by its header", name, len(out), st)
		}
	}
	if out, st := run(partial, Filter{From: hour, To: hour.Add(time.Hour), Kind: "login"}); len(out) == 0 || st.Pruned != 0 {
		t.Errorf("kind login: %d lines, stats %+v; want matches from the one segment", len(out), st)
	}
}

// writerKeys are a class "security" key pair for hour's day and a signer
// the public keyring trusts: what a test needs to write segments.
func writerKeys(t testing.TB, hour time.Time) (*keyring.PrivateKeyring, *keyring.PublicKeyring, keyring.SigningKey, keyring.PublicKey) {
	t.Helper()
	priv, pub := keyring.NewPrivate(), keyring.NewPublic()
	if _, err := keyring.GeneratePairs(pub, priv, hour, []string{"security"}, keyring.PeriodDay, hour, hour); err != nil {
		t.Fatal(err)
	}
	sk, err := keyring.NewSigningKey("test", hour)
	if err != nil {
		t.Fatal(err)
	}
	pub.AddSigner(sk.Public())
	pk, err := pub.Current("security", hour)
	if err != nil {
		t.Fatal(err)
	}
	return priv, pub, sk, pk
}

// countingLists counts the LIST requests a query makes.
type countingLists struct {
	*memObjects
	lists atomic.Int64
}

func (c *countingLists) List(ctx context.Context, prefix string) iter.Seq2[store.Object, error] {
	c.lists.Add(1)
	return c.memObjects.List(ctx, prefix)
}

// Days that ended before the present's flush windows are listed once per
// prefix (each kind's, every kind's), not once per hour; today's hours
// still one at a time. Every segment is found either way.
func TestDaysListedOnce(t *testing.T) {
	d0 := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2) // the day before yesterday
	priv, pub, sk, _ := writerKeys(t, d0)
	if _, err := keyring.GeneratePairs(pub, priv, d0, []string{"security"}, keyring.PeriodDay, d0, d0.AddDate(0, 0, 3)); err != nil {
		t.Fatal(err)
	}
	m := &countingLists{memObjects: &memObjects{data: map[string][]byte{}}}
	// One segment of every kind in hours 1, 7 and 23 of the two past
	// days and of today, those of today's that have begun.
	want := 0
	for d := 0; d < 3; d++ {
		for _, hh := range []int{1, 7, 23} {
			h := d0.AddDate(0, 0, d).Add(time.Duration(hh) * time.Hour)
			if h.After(time.Now()) {
				continue
			}
			putLogin(t, m.memObjects, pub, sk, "e-"+h.Format("2006010215"), h, "")
			want++
		}
	}
	eng := NewEngine(Defaults(), m, keyring.Set{Private: priv, Public: pub}, []string{"security"})
	to := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	var n int
	st, err := eng.Run(context.Background(), Filter{From: d0, To: to}, Options{}, func([]byte) error { n++; return nil })
	if err != nil || len(st.Failed) > 0 {
		t.Fatalf("run: %v, failed %v", err, st.Failed)
	}
	if n != want || int(st.Total) != want {
		t.Errorf("%d events from %d segments listed; want %d", n, st.Total, want)
	}
	// Per prefix family (each kind's and every kind's): a day that ended
	// more than dayListAfter ago once, others hour by hour (today's, and
	// yesterday's just after midnight).
	var perFamily int64
	for d := d0; d.Before(to); d = d.AddDate(0, 0, 1) {
		if d.Add(24*time.Hour + dayListAfter).Before(time.Now()) {
			perFamily++
		} else {
			perFamily += int64(min(to.Sub(d), 24*time.Hour) / time.Hour)
		}
	}
	if perFamily >= 24+24 {
		t.Fatalf("%d listings per family: no day was listed whole", perFamily)
	}
	if got, wantLists := m.lists.Load(), int64(len(event.Kinds)+1)*perFamily; got != wantLists {
		t.Errorf("%d LIST requests; want %d", got, wantLists)
	}

	// A store that lists directories: a class with no kind directory (an
	// archive of every-kind segments) has no kind's prefix listed for its
	// closed days; open hours are listed as before.
	var closedDays, openHours int64
	for d := d0; d.Before(to); d = d.AddDate(0, 0, 1) {
		if d.Add(24*time.Hour + dayListAfter).Before(time.Now()) {
			closedDays++
		} else {
			openHours += int64(min(to.Sub(d), 24*time.Hour) / time.Hour)
		}
	}
	withDirs := &dirObjects{countingLists: &countingLists{memObjects: m.memObjects}}
	count := func() (int, Stats) {
		t.Helper()
		withDirs.lists.Store(0)
		n := 0
		st, err := NewEngine(Defaults(), withDirs, keyring.Set{Private: priv, Public: pub}, []string{"security"}).
			Run(context.Background(), Filter{From: d0, To: to}, Options{}, func([]byte) error { n++; return nil })
		if err != nil || len(st.Failed) > 0 {
			t.Fatalf("run: %v, failed %v", err, st.Failed)
		}
		return n, st
	}
	if n, _ := count(); n != want || withDirs.lists.Load() != closedDays+int64(len(event.Kinds)+1)*openHours || withDirs.dirs.Load() != 1 {
		t.Errorf("no kind directory: %d events, %d LISTs, %d directory listings; want %d, %d, 1", n, withDirs.lists.Load(), withDirs.dirs.Load(),
			want, closedDays+int64(len(event.Kinds)+1)*openHours)
	}
	// A login segment of one kind (format 2) in the first closed day: its
	// kind's prefix is listed for the closed days, and it is found.
	putLogin(t, m.memObjects, pub, sk, "one-kind", d0.Add(5*time.Hour), "login")
	if n, _ := count(); n != want+1 || withDirs.lists.Load() != 2*closedDays+int64(len(event.Kinds)+1)*openHours {
		t.Errorf("with a login directory: %d events, %d LISTs; want %d, %d", n, withDirs.lists.Load(), want+1, 2*closedDays+int64(len(event.Kinds)+1)*openHours)
	}
}

// putLogin stores a segment of one login event at h: of every kind
// (kind ""), or of that one kind.
func putLogin(t *testing.T, m *memObjects, pub *keyring.PublicKeyring, sk keyring.SigningKey, id string, h time.Time, kind string) {
	t.Helper()
	pk, err := pub.Current("security", h)
	if err != nil {
		t.Fatal(err)
	}
	e := event.Event{ID: id, Time: h, Kind: event.KindLogin, Class: "security", Tenant: "t"}
	meta := segment.Meta{Class: "security", Kind: kind, Hour: h, Topic: "t", Count: 1, MinTime: h, MaxTime: h}
	if kind == "" {
		meta.Kinds = map[string]int64{"login": 1}
	}
	var seg bytes.Buffer
	w, err := segment.NewWriterV3(&seg, meta, segment.NewIndexBuilder(), pk, sk)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(event.AppendJSON(nil, &e))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	m.names = append(m.names, w.Name())
	m.data[w.Name()] = seg.Bytes()
}

// dirObjects is a store that lists directories, and counts it.
type dirObjects struct {
	*countingLists
	dirs atomic.Int64
}

func (d *dirObjects) Dirs(_ context.Context, prefix string) ([]string, error) {
	d.dirs.Add(1)
	seen := map[string]bool{}
	var out []string
	for _, n := range d.names {
		if rest, ok := strings.CutPrefix(n, prefix); ok {
			if i := strings.IndexByte(rest, '/'); i >= 0 && !seen[rest[:i]] {
				seen[rest[:i]] = true
				out = append(out, prefix+rest[:i+1])
			}
		}
	}
	return out, nil
}
