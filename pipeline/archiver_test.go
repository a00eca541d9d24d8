package pipeline

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// testRetention keeps test segments under GOVERNANCE lock, long enough for
// the months-old events archivetest makes, on the stack's throwaway MinIO.
var testRetention = archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE",
	Classes: []archive.Class{{Name: "security", Days: 120}, {Name: "short", Days: 100}}}

func testConfig(t testing.TB) Config {
	c := Defaults()
	c.GroupID = stacktest.Name(t, "g")
	c.MetricsListen = "127.0.0.1:0"
	c.FlushEvents = 700
	c.FlushBytes = 4 << 20
	c.FlushAge = time.Second
	c.LateFlushAge = 2 * time.Second
	c.ShutdownTimeout = 30 * time.Second
	return c
}

// TestArchiveEndToEnd archives events of every kind, class and hour
// (late ones included) plus invalid records, and reads the archive back.
func TestArchiveEndToEnd(t *testing.T) {
	st := stacktest.Get(t)
	topic := stacktest.Topic(t, st, 4)
	dlqTopic := stacktest.Topic(t, st, 1)
	now := time.Now().UTC()
	values := archivetest.Events(6000, "e2e", []string{"security", "short"}, now)
	values = append(values,
		[]byte("not json at all"),
		[]byte(`{"v":1,"id":"x1","time":"2026-11-29T05:00:00.000000000Z","kind":"login","class":"forever","tenant":"t"}`),
		[]byte(`{"v":2,"id":"x2"}`),
		[]byte(`{"v":1,"id":"x4","time":"2026-11-29T05:00:00.000000000Z","kind":"login","tenant":"t"}`),
		[]byte(`{"v":1,"id":"x3","time":"`+now.AddDate(0, 0, -200).Format("2006-01-02T15:04:05.000000000Z")+`","kind":"login","class":"short","tenant":"t"}`),
	)
	want := archivetest.Produce(t, st, topic, values)
	delete(want, "x1") // parseable, but bound for the dead-letter topic
	delete(want, "x3")
	delete(want, "x4")

	s, _ := archivetest.NewStore(t, st, testRetention)
	kr := archivetest.Keyring(t)
	kc := st.Kafka()
	kc.Topic, kc.DLQTopic = topic, dlqTopic
	cfg := testConfig(t)
	a, err := New(cfg, kc, testRetention, s, kr.Write(), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCaughtUp(t, a, st, topic)

	got := archivetest.Read(t, s, kr)
	lost, doubled := archivetest.Compare(want, got)
	if len(lost) > 0 || len(doubled) > 0 {
		t.Fatalf("archive differs from what was sent: %d lost (%.5v), %d doubled (%.5v)", len(lost), lost, len(doubled), doubled)
	}
	// The archiver held public keys only: what it wrote, it cannot read.
	for o, err := range s.List(context.Background(), "") {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(o.Name, chain.Prefix) {
			continue // checkpoints: names, hashes and counts, no event byte (docs/CHAIN.md)
		}
		rc, err := s.Get(context.Background(), o.Name)
		if err != nil {
			t.Fatal(err)
		}
		_, err = segment.Open(rc, o.Name, kr.Write().Public, segment.ReaderOptions{})
		rc.Close()
		if !errors.Is(err, segment.ErrNeedsPrivateKey) {
			t.Fatalf("the archiver's own keys opened %s: %v", o.Name, err)
		}
	}
	if got.Segments < 20 {
		t.Errorf("%d segments; want many (small flushes, several kinds, hours and classes)", got.Segments)
	}
	dead := stacktest.ReadAll(t, st, dlqTopic, 5, 30*time.Second)
	var reasons []string
	for _, m := range dead {
		for _, h := range m.Headers {
			if h.Key == "custody-dlq-reason" {
				reasons = append(reasons, string(h.Value))
			}
		}
	}
	all := strings.Join(reasons, "\n")
	for _, r := range []string{"not a one-line JSON object", `class "forever" is not a configured retention class`, "v is 2; want 1", "is past the 100-day retention of class short",
		"class is missing (producers writing to the topic directly must set it"} {
		if !strings.Contains(all, r) {
			t.Errorf("dead letters lack reason %q; have:\n%s", r, all)
		}
	}
	t.Logf("%d events in %d segments (%d bytes), %d dead letters", got.Events, got.Segments, got.Bytes, len(dead))
}

// TestReplayReproducesCut crashes the archiver mid-way (its context is
// abandoned without flushing: ShutdownTimeout is tiny), restarts it, and
// checks that nothing is lost or stored twice.
func TestReplayReproducesCut(t *testing.T) {
	st := stacktest.Get(t)
	topic := stacktest.Topic(t, st, 2)
	now := time.Now().UTC()
	want := archivetest.Produce(t, st, topic, archivetest.Events(8000, "rp", []string{"security"}, now))
	s, _ := archivetest.NewStore(t, st, testRetention)
	kr := archivetest.Keyring(t)
	kc := st.Kafka()
	kc.Topic, kc.DLQTopic = topic, stacktest.Topic(t, st, 1)
	cfg := testConfig(t)
	var skipped float64
	for round := 0; round < 6; round++ {
		c := cfg
		c.ShutdownTimeout = time.Nanosecond // no flush, no commit: as a crash
		c.FlushEvents = 300 + 97*round      // every run cuts elsewhere
		a, err := New(c, kc, testRetention, s, kr.Write(), zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(1500+300*round)*time.Millisecond)
		if err := a.Run(ctx); err != nil {
			t.Fatal(err)
		}
		cancel()
		a.Close()
		skipped += testutil.ToFloat64(a.m.skipped)
	}
	a, err := New(cfg, kc, testRetention, s, kr.Write(), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCaughtUp(t, a, st, topic)
	if skipped+testutil.ToFloat64(a.m.skipped) == 0 {
		t.Fatal("no record was ever skipped as already stored: the runs did not overlap, so replay was not exercised")
	}
	got := archivetest.Read(t, s, kr)
	lost, doubled := archivetest.Compare(want, got)
	if len(lost) > 0 || len(doubled) > 0 {
		t.Fatalf("after 6 abandoned runs: %d lost (%.5v), %d doubled (%.5v)", len(lost), lost, len(doubled), doubled)
	}
	t.Logf("%d events in %d segments after 6 abandoned runs with different cuts; %.0f records skipped as already stored", got.Events, got.Segments, skipped+testutil.ToFloat64(a.m.skipped))
}

// testLogger logs through t, so a failing test shows what the archiver did.
func testLogger(t testing.TB) *zap.Logger { return zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)) }

// TestMemoryCapManyHours spreads events over ~200 event hours so that
// hundreds of buffers are open at once, with a memory cap far below what
// they would hold: the open buffers must never exceed the cap by more than
// one event per partition, and the archive must still be exact.
func TestMemoryCapManyHours(t *testing.T) {
	st := stacktest.Get(t)
	topic := stacktest.Topic(t, st, 2)
	now := time.Now().UTC()
	var values [][]byte
	for i, v := range archivetest.Events(6000, "mem", []string{"security"}, now) {
		if i%2 == 0 {
			// Rewrite half the events into one of 200 hours of the last 9 days.
			e, err := event.Parse(v)
			if err != nil {
				t.Fatal(err)
			}
			e.Time = now.Add(-time.Duration(1+i%200) * time.Hour)
			l := event.AppendJSON(nil, e)
			v = l[:len(l)-1]
		}
		values = append(values, v)
	}
	want := archivetest.Produce(t, st, topic, values)
	s, _ := archivetest.NewStore(t, st, testRetention)
	kr := archivetest.Keyring(t)
	kc := st.Kafka()
	kc.Topic, kc.DLQTopic = topic, stacktest.Topic(t, st, 1)
	cfg := testConfig(t)
	cfg.FlushEvents, cfg.FlushAge, cfg.LateFlushAge = 1<<30, time.Hour, time.Hour // only the cap cuts
	cfg.MemoryCap = 2 << 20                                                       // far below what 200+ open buffers would hold
	a, err := New(cfg, kc, testRetention, s, kr.Write(), testLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var peak int64
	deadline := time.Now().Add(2 * time.Minute)
	for testutil.ToFloat64(a.m.consumed) < float64(len(values)) {
		peak = max(peak, a.mem.Load())
		if time.Now().After(deadline) {
			t.Fatal("archiver did not consume everything")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	a.Close()
	// The last records may have been read but not stored when the run was
	// stopped (they are not committed either): a second run picks them up.
	cfg2 := cfg
	cfg2.FlushAge, cfg2.LateFlushAge = time.Second, time.Second
	a2, err := New(cfg2, kc, testRetention, s, kr.Write(), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	runUntilCaughtUp(t, a2, st, topic)
	// One event and its index entries may land before the cut, per partition.
	if limit := int64(cfg.MemoryCap) + 2*(firstChunk+64<<10); peak > limit {
		t.Errorf("open buffers peaked at %d bytes; the cap is %d", peak, cfg.MemoryCap)
	}
	got := archivetest.Read(t, s, kr)
	lost, doubled := archivetest.Compare(want, got)
	if len(lost) > 0 || len(doubled) > 0 {
		t.Fatalf("%d lost (%v), %d doubled", len(lost), lost, len(doubled))
	}
	t.Logf("peak open-buffer memory %d bytes under a %d cap; %d events in %d segments", peak, cfg.MemoryCap, got.Events, got.Segments)

}

// runUntilCaughtUp runs a until its group has committed every partition of
// topic (polling, within 2 minutes), then stops it as SIGTERM would:
// flush, commit, leave. It closes a.
func runUntilCaughtUp(t *testing.T, a *Archiver, st stacktest.Stack, topic string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	deadline := time.Now().Add(2 * time.Minute)
	for !stacktest.CaughtUp(st, a.cfg.GroupID, topic) {
		if time.Now().After(deadline) {
			cancel()
			<-done
			_, progress := stacktest.Progress(st, a.cfg.GroupID, topic)
			t.Fatalf("archiver did not commit every partition within 2 minutes:\n%s", progress)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	a.Close()
}
