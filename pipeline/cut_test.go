package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/netip"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/memstore"
)

// okCommitter takes every commit; it keeps the offsets and the last
// metadata, as the group coordinator would.
type okCommitter struct {
	offsets []int64
	md      string
}

func (c *okCommitter) OffsetCommit(_ context.Context, req *kafka.OffsetCommitRequest) (*kafka.OffsetCommitResponse, error) {
	for _, ps := range req.Topics {
		for _, p := range ps {
			c.offsets = append(c.offsets, p.Offset)
			c.md = p.Metadata
		}
	}
	return &kafka.OffsetCommitResponse{}, nil
}

// clockWorker is a partition-0 worker of an archiver with cfg, a 30-day
// class, store ms and keys kr, on the clock now, committing to the
// returned committer.
func clockWorker(t *testing.T, cfg Config, ms *memstore.Store, kr archivetest.Keys, now func() time.Time) (*worker, *okCommitter) {
	t.Helper()
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	a, err := New(cfg, kafkaconn.Defaults(), ret, ms, kr.Write(), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &okCommitter{}
	a.committer = c
	a.now = now
	return &worker{a: a, gen: &kafka.Generation{}, partition: 0, buffers: map[key]*buffer{}, cov: coverage{}, every: a.everyKind()}, c
}

// TestSteadyStreamSegmentPerHour runs the default clock cuts (no
// flush_age; each hour cut hour_close_delay after it ends) over ten
// simulated hours of steady traffic, one event every 20 seconds, each
// arriving 0 to 4 minutes after its time (within the 5-minute close
// delay), plus one event in a hundred 20 minutes late (after the close).
// Steady traffic must get one segment per hour and partition, the late
// events one per late_flush_age, and every event must be stored once.
func TestSteadyStreamSegmentPerHour(t *testing.T) {
	start := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	kr := archivetest.KeysAt(t, start)
	ms := memstore.New()
	cfg := Defaults()
	if cfg.FlushAge != 0 || cfg.HourCloseDelay != 5*time.Minute {
		t.Fatalf("defaults changed: flush_age %s, hour_close_delay %s", cfg.FlushAge, cfg.HourCloseDelay)
	}
	now := start
	w, c := clockWorker(t, cfg, ms, kr, func() time.Time { return now })
	ctx := context.Background()
	const steps = 10 * 180 // ten hours of 20-second steps
	off := int64(0)
	for i := 0; i < steps; i++ {
		now = start.Add(time.Duration(i) * 20 * time.Second)
		delay := time.Duration(i%13) * 20 * time.Second // 0 to 4 minutes
		if i%100 == 99 {
			delay = 20 * time.Minute
		}
		e := event.Event{ID: fmt.Sprintf("e-%d", off), Time: now.Add(-delay), Kind: event.KindConnection, Class: "security", Tenant: "t", IP: netip.MustParseAddr("192.0.2.1")}
		l := event.AppendJSON(nil, &e)
		if err := w.handle(ctx, kafka.Message{Offset: off, Value: l[:len(l)-1]}); err != nil {
			t.Fatal(err)
		}
		off++
		if err := w.tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Two more hours without traffic: every buffer is due by then.
	for m := 0; m <= 120; m++ {
		now = start.Add(10*time.Hour + time.Duration(m)*time.Minute)
		if err := w.tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.buffers) != 0 {
		t.Fatalf("%d buffers still open two idle hours after the last event", len(w.buffers))
	}
	if len(c.offsets) == 0 || c.offsets[len(c.offsets)-1] != off {
		t.Fatalf("commits %v; want the last at %d, every record stored", c.offsets, off)
	}
	perHour := map[string]int{}
	stored := map[string]int{}
	for name, obj := range ms.Objects {
		if strings.HasPrefix(name, chain.Prefix) {
			continue
		}
		perHour[path.Dir(name)]++
		ids, err := openHeader(obj, name, kr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, id := range ids {
			stored[id]++
		}
	}
	for o := int64(0); o < off; o++ {
		if n := stored[fmt.Sprintf("e-%d", o)]; n != 1 {
			t.Fatalf("event e-%d is stored %d times", o, n)
		}
	}
	// Ten hours, one segment each from its steady traffic; an hour whose
	// late events (every hundredth) came after its close has one more
	// for them, cut late_flush_age after the first of them.
	segs := 0
	for h, n := range perHour {
		segs += n
		if n > 2 {
			t.Errorf("hour %s has %d segments; want one, and one more for its late events", h, n)
		}
	}
	if len(perHour) != 10 || segs > 20 {
		t.Errorf("%d segments over %d hours; want one an hour plus at most one of late events: %v", segs, len(perHour), perHour)
	}
	t.Logf("%d events in %d segments over %d hours", off, segs, len(perHour))
}

// TestLateStreamSegmentsBounded feeds one event a minute for ten hours of
// a steady late stream (events three days old, all for one old hour) mixed
// with current events, on a simulated clock. The old hour must get one
// segment per late_flush_age (an hour), not one per flush_age.
func TestLateStreamSegmentsBounded(t *testing.T) {
	start := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	kr := archivetest.KeysAt(t, start)
	ms := memstore.New()
	cfg := Defaults()
	cfg.FlushAge, cfg.LateFlushAge = 5*time.Minute, time.Hour
	now := start
	w, c := clockWorker(t, cfg, ms, kr, func() time.Time { return now })
	lateHour := start.Add(-72 * time.Hour)
	ctx := context.Background()
	const minutes = 600
	for m := 0; m < minutes; m++ {
		now = start.Add(time.Duration(m) * time.Minute)
		for j, ts := range []time.Time{lateHour.Add(time.Duration(m%60) * time.Second), now} {
			e := event.Event{ID: fmt.Sprintf("e-%d-%d", m, j), Time: ts, Kind: event.KindLogin, Class: "security", Tenant: "t", Login: "u"}
			l := event.AppendJSON(nil, &e)
			if err := w.handle(ctx, kafka.Message{Offset: int64(2*m + j), Value: l[:len(l)-1]}); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.tick(ctx); err != nil {
			t.Fatal(err)
		}
	}
	late, current := 0, 0
	for name := range ms.Objects {
		if strings.HasPrefix(name, chain.Prefix) {
			continue
		}
		if strings.Contains(name, lateHour.Format("2006/01/02/15")+"/") {
			late++
		} else {
			current++
		}
	}
	// 600 minutes of late events, cut every hour: 10 (plus the open one).
	if late < 9 || late > 11 {
		t.Errorf("the late hour has %d segments after %d minutes of a steady late stream; want about %d (one per late_flush_age)", late, minutes, minutes/60)
	}
	// Current events are cut every flush_age (the next event, a minute
	// later, opens the next buffer): one segment per 6 simulated minutes.
	if current < minutes/6-5 || current > minutes/5+5 {
		t.Errorf("current hours have %d segments; want about %d (one per flush_age)", current, minutes/6)
	}
	if len(c.offsets) == 0 || c.offsets[len(c.offsets)-1] <= 0 {
		t.Errorf("no progress committed: %v", c.offsets)
	}
	t.Logf("late hour: %d segments; current hours: %d segments; %d commits", late, current, len(c.offsets))
	// Every commit followed a checkpoint of what it covers.
	checkChain(t, ms, kr, kafkaconn.Defaults().Topic, 0, c.offsets[len(c.offsets)-1])
}

// TestStaleWriterFenced plays a stale member and the partition's new
// owner over one store: each cuts the same records at different points,
// uploads race under If-None-Match, and the loser adopts the winner's cut.
// Every record must end up in exactly one segment.
func TestStaleWriterFenced(t *testing.T) {
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	kr := archivetest.KeysAt(t, now)
	ms := memstore.New()
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	newWorker := func(member string) *worker {
		a, err := New(Defaults(), kafkaconn.Defaults(), ret, ms, kr.Write(), zap.NewNop(), nil)
		if err != nil {
			t.Fatal(err)
		}
		a.committer = &okCommitter{}
		a.now = func() time.Time { return now }
		return &worker{a: a, gen: &kafka.Generation{MemberID: member}, buffers: map[key]*buffer{}, cov: coverage{}, every: a.everyKind()}
	}
	msg := func(off int) kafka.Message {
		e := event.Event{ID: fmt.Sprintf("r-%d", off), Time: now.Add(-time.Duration(30-off) * time.Second), Kind: event.KindLogin, Class: "security", Tenant: "t"}
		l := event.AppendJSON(nil, &e)
		return kafka.Message{Offset: int64(off), Value: l[:len(l)-1]}
	}
	ctx := context.Background()
	feed := func(w *worker, from, to int) {
		for o := from; o < to; o++ {
			if err := w.handle(ctx, msg(o)); err != nil {
				t.Fatal(err)
			}
		}
	}
	flushAll := func(w *worker) {
		for k := range w.buffers {
			if err := w.flush(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	stale, owner := newWorker("stale"), newWorker("owner")
	// One group: the coordinator holds one commit for the partition.
	group := &okCommitter{}
	stale.a.committer, owner.a.committer = group, group
	// restart is what runPartition does after errChainMoved: a fresh
	// worker from the group's commit, and the chain's head.
	restart := func(w *worker) *worker {
		t.Helper()
		cov, scheme, err := decodeCoverage(group.md)
		if err != nil {
			t.Fatal(err)
		}
		c := group.offsets[len(group.offsets)-1]
		nw := &worker{a: w.a, gen: w.gen, buffers: map[key]*buffer{}, cov: cov, next: c, committed: c, commitMD: group.md, every: scheme == metadataEvery}
		if err := nw.loadChain(ctx, group.md); err != nil {
			t.Fatal(err)
		}
		return nw
	}
	flushMoved := func(w *worker) {
		t.Helper()
		for k := range w.buffers {
			if err := w.flush(ctx, k); !errors.Is(err, errChainMoved) {
				t.Fatalf("flush = %v; want the chain to have moved", err)
			}
			return
		}
	}
	feed(stale, 0, 10) // the stale member holds 0-9, unflushed
	feed(owner, 0, 15)
	flushAll(owner)   // the owner stores +0 = [0, 14], checkpoint 0, commit 15
	flushMoved(stale) // refused: adopts [0, 14], drops its 0-9; checkpoint 0 is taken
	stale = restart(stale)
	feed(stale, 15, 20)
	feed(owner, 15, 20)
	flushAll(stale)   // stores +15 = [15, 19], checkpoint 1
	flushMoved(owner) // refused at +15: adopts the stale member's cut; checkpoint 1 is taken
	seen := map[string]int{}
	segs := 0
	for name, b := range ms.Objects {
		if strings.HasPrefix(name, chain.Prefix) {
			continue
		}
		segs++
		h, err := openHeader(b, name, kr)
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range h {
			seen[id]++
		}
	}
	for o := 0; o < 20; o++ {
		if n := seen[fmt.Sprintf("r-%d", o)]; n != 1 {
			t.Errorf("record %d is in %d segments; want exactly 1", o, n)
		}
	}
	if segs != 2 {
		t.Errorf("%d segments; want 2 (+0 and +15)", segs)
	}
	// Both refused uploads were adopted: the stale member dropped 0-9,
	// the owner dropped 15-19.
	if s, o := testutil.ToFloat64(stale.a.m.skipped), testutil.ToFloat64(owner.a.m.skipped); s != 10 || o != 5 {
		t.Errorf("skipped: stale %v, owner %v; want 10 and 5", s, o)
	}
	// One linear chain, each segment listed once, every offset counted.
	checkChain(t, ms, kr, "custody.events", 0, 20)
}

// openHeader returns the IDs a stored segment holds.
func openHeader(b []byte, name string, kr archivetest.Keys) ([]string, error) {
	r, err := segment.Open(bytes.NewReader(b), name, kr.Read(), segment.ReaderOptions{})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	body, err := r.Body()
	if err != nil {
		return nil, err
	}
	data, err := io.ReadAll(body)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, l := range bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
		e, err := event.Parse(l)
		if err != nil {
			return nil, err
		}
		ids = append(ids, e.ID)
	}
	return ids, nil
}

// TestPlantedSegmentNeverTrusted: anyone with the public keyring can write
// a validly encrypted segment, so a planted object at the name the
// archiver would use could claim to cover records and make them vanish on
// replay. Its signature is not a trusted archiver's: the archiver reports
// it (readiness) and keeps its records, never skipping them.
func TestPlantedSegmentNeverTrusted(t *testing.T) {
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	kr := archivetest.KeysAt(t, now)
	ms := memstore.New()
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	a, err := New(Defaults(), kafkaconn.Defaults(), ret, ms, kr.Write(), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.committer = &okCommitter{}
	a.now = func() time.Time { return now }
	w := &worker{a: a, gen: &kafka.Generation{}, buffers: map[key]*buffer{}, cov: coverage{}, every: a.everyKind()}
	e := event.Event{ID: "planted", Time: now.Add(-time.Minute), Kind: event.KindLogin, Class: "security", Tenant: "t"}
	hour := e.Time.Truncate(time.Hour)
	line := event.AppendJSON(nil, &e)
	// The planted object claims offsets 0-100 of partition 0.
	rogue, err := keyring.NewSigningKey("test-archiver", now) // the trusted name, not the trusted key
	if err != nil {
		t.Fatal(err)
	}
	pk, err := kr.Public.Current("security", hour)
	if err != nil {
		t.Fatal(err)
	}
	m := segment.Meta{Class: "security", Kinds: map[string]int64{"login": 1}, Hour: hour, Topic: a.kafka.Topic, Partition: 0, FirstOffset: 0, LastOffset: 100, Count: 1, MinTime: e.Time, MaxTime: e.Time}
	var seg bytes.Buffer
	sw, err := segment.NewWriterV3(&seg, m, nil, pk, rogue)
	if err != nil {
		t.Fatal(err)
	}
	sw.Write(line)
	if err := sw.Close(); err != nil {
		t.Fatal(err)
	}
	ms.Objects[sw.Name()] = seg.Bytes()
	// Record 0 would open a buffer at the planted object's name: the
	// existence check finds it, cannot trust it, and retries (reporting
	// it) rather than skip records 0-100.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ev := event.Event{ID: "r-0", Time: now.Add(-30 * time.Second), Kind: event.KindLogin, Class: "security", Tenant: "t"}
	l := event.AppendJSON(nil, &ev)
	if err := w.handle(ctx, kafka.Message{Offset: 0, Value: l[:len(l)-1]}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("handle of record 0 = %v; want it held (retrying) until the context ends", err)
	}
	if w.next != 0 {
		t.Errorf("the commit point moved to %d past a record the planted object claims", w.next)
	}
	err = a.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot be trusted") || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("readiness = %v; want the planted segment reported", err)
	}
	for k, c := range w.cov {
		if c >= 0 {
			t.Errorf("coverage of %v moved to %d: the planted object was trusted", k, c)
		}
	}
}

// checkChain verifies ms's chains and segments (archive/chain.Verify),
// deeply (each segment's events against its header and checkpoint), and
// wants no finding, and the partition's chain to account for [0, upTo)
// (upTo < 0: anything).
func checkChain(t *testing.T, ms *memstore.Store, kr archivetest.Keys, topic string, partition int32, upTo int64) {
	t.Helper()
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	rep, err := chain.Verify(context.Background(), ms, chain.Options{Trusted: kr.Read().Public, Deep: kr.Read(), Retention: ret, Now: time.Now(), Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rep.Findings {
		t.Errorf("verify: %s", f)
	}
	if (upTo >= 0 && rep.Records != upTo) || rep.Partitions != 1 {
		t.Errorf("the chains account for %d records in %d partitions; want %d in 1", rep.Records, rep.Partitions, upTo)
	}
}

// TestChainGoesOnPastAMissingHead: the checkpoint the last commit names has
// been deleted. The worker does not start a new chain (which would hide
// the deletion): its next checkpoint follows the missing one, linked by
// the hash the commit recorded, so verify names the gap.
func TestChainGoesOnPastAMissingHead(t *testing.T) {
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	kr := archivetest.KeysAt(t, now)
	ms := memstore.New()
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	a, err := New(Defaults(), kafkaconn.Defaults(), ret, ms, kr.Write(), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.committer = &okCommitter{}
	a.now = func() time.Time { return now }
	ctx := context.Background()
	gone := strings.Repeat("ab", 32) // the SHA-256 of checkpoint 4, which is not in the bucket
	md := "v1 chain=4:" + gone
	w := &worker{a: a, gen: &kafka.Generation{MemberID: "m"}, buffers: map[key]*buffer{}, cov: coverage{}, next: 50, committed: 50, commitMD: md, every: a.everyKind()}
	if err := w.loadChain(ctx, md); err != nil {
		t.Fatal(err)
	}
	for o := 50; o < 55; o++ {
		e := event.Event{ID: fmt.Sprintf("r-%d", o), Time: now.Add(-time.Minute), Kind: event.KindLogin, Class: "security", Tenant: "t"}
		l := event.AppendJSON(nil, &e)
		if err := w.handle(ctx, kafka.Message{Offset: int64(o), Value: l[:len(l)-1]}); err != nil {
			t.Fatal(err)
		}
	}
	for k := range w.buffers {
		if err := w.flush(ctx, k); err != nil {
			t.Fatal(err)
		}
	}
	b, ok := ms.Objects[chain.Name(a.kafka.Topic, 0, 5)]
	if !ok {
		t.Fatalf("no checkpoint 5; objects: %v", slices.Collect(maps.Keys(ms.Objects)))
	}
	c, _, err := chain.Decode(b, kr.Public)
	if err != nil {
		t.Fatal(err)
	}
	if c.Prev != gone || c.From != 50 || c.Offset != 55 {
		t.Errorf("checkpoint 5: prev %s, [%d, %d); want prev %s, [50, 55)", c.Prev, c.From, c.Offset, gone)
	}
	if _, ok := ms.Objects[chain.Name(a.kafka.Topic, 0, 0)]; ok {
		t.Error("the worker started a new chain at seq 0")
	}
}

// lostAnswer stores the first checkpoint it is given and answers with an
// error, as a PUT whose response the network lost.
type lostAnswer struct {
	*memstore.Store
	lost int
}

func (l *lostAnswer) Put(ctx context.Context, name string, r io.Reader, size int64, lock store.Lock) error {
	if err := l.Store.Put(ctx, name, r, size, lock); err != nil || !strings.HasPrefix(name, chain.Prefix) || l.lost > 0 {
		return err
	}
	l.lost++
	return errors.New("connection reset by peer")
}

// TestCheckpointRetryAndRefusal: a checkpoint stored whose answer was lost
// is found on the retry with the same bytes, and the worker goes on (not
// taking it for another writer's); and a checkpoint whose accounting does
// not add up is never written, nor the commit after it made.
func TestCheckpointRetryAndRefusal(t *testing.T) {
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	kr := archivetest.KeysAt(t, now)
	ls := &lostAnswer{Store: memstore.New()}
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	a, err := New(Defaults(), kafkaconn.Defaults(), ret, ls, kr.Write(), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cm := &okCommitter{}
	a.committer = cm
	a.now = func() time.Time { return now }
	ctx := context.Background()
	w := &worker{a: a, gen: &kafka.Generation{MemberID: "m"}, buffers: map[key]*buffer{}, cov: coverage{}, every: a.everyKind()}
	if err := w.loadChain(ctx, ""); err != nil {
		t.Fatal(err)
	}
	feed := func(from, to int) error {
		for o := from; o < to; o++ {
			e := event.Event{ID: fmt.Sprintf("r-%d", o), Time: now.Add(-time.Minute), Kind: event.KindLogin, Class: "security", Tenant: "t"}
			l := event.AppendJSON(nil, &e)
			if err := w.handle(ctx, kafka.Message{Offset: int64(o), Value: l[:len(l)-1]}); err != nil {
				return err
			}
		}
		for k := range w.buffers {
			if err := w.flush(ctx, k); err != nil {
				return err
			}
		}
		return nil
	}
	if err := feed(0, 5); err != nil {
		t.Fatalf("after a lost answer: %v", err)
	}
	if ls.lost != 1 || !w.ch.have || w.ch.seq != 0 || len(cm.offsets) == 0 || cm.offsets[len(cm.offsets)-1] != 5 {
		t.Fatalf("lost answers %d, chain head %d (have %t), commits %v; want checkpoint 0 written once and offset 5 committed", ls.lost, w.ch.seq, w.ch.have, cm.offsets)
	}
	if seq, sha, ok := chain.ParseHint(cm.md); !ok || seq != 0 || sha != chain.Hash(ls.Objects[chain.Name(a.kafka.Topic, 0, 0)]) {
		t.Errorf("commit metadata %q does not name checkpoint 0", cm.md)
	}

	// A dead-letter range over records also counted as stored: the
	// accounting would exceed the interval.
	w.ch.dlq = append(w.ch.dlq, chain.Range{First: 6, Last: 7})
	commits := len(cm.offsets)
	if err := feed(5, 10); err == nil || !strings.Contains(err.Error(), "refusing to write a checkpoint that does not add up") {
		t.Fatalf("flush with an accounting that does not add up = %v", err)
	}
	if _, ok := ls.Objects[chain.Name(a.kafka.Topic, 0, 1)]; ok {
		t.Error("checkpoint 1 was written")
	}
	if len(cm.offsets) != commits {
		t.Errorf("commits after the refusal: %v", cm.offsets[commits:])
	}
}

// failingCommitter refuses every commit, as a group coordinator that is
// away (a broker restart) would.
type failingCommitter struct{ n int }

func (c *failingCommitter) OffsetCommit(context.Context, *kafka.OffsetCommitRequest) (*kafka.OffsetCommitResponse, error) {
	c.n++
	return nil, errors.New("coordinator not available")
}

// TestReplayAfterUncommittedCheckpoints: the partition's first
// checkpoints are stored but their commits fail (Kafka restarting), so the
// next owner finds no chain position in the commit and replays from the
// log's start. The segments those checkpoints list are found stored again,
// below the head's offset, or past it (a later hour's buffer cut while an
// older hour's held the commit back, listed by the head or by an older
// checkpoint); none may be listed a second time.
func TestReplayAfterUncommittedCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		name string
		// hour of each offset: 0 = the current hour, 3 = three hours ago
		hours []int
		// owner 1 reads up to cut[i] and flushes the buffer holding
		// offset cutAt[i], each time failing to commit
		upTo, cutAt []int
		head        uint64
		from        int64
	}{
		// [0-3] cut (checkpoint 0 = [0,4)), then [4-7] while 8 holds the
		// commit back (checkpoint 1 = [4,8)): both below the head.
		{name: "below the head", hours: []int{3, 3, 3, 3, 0, 0, 0, 0, 3, 3, 3, 3}, upTo: []int{4, 9}, cutAt: []int{0, 4}, head: 1, from: 8},
		// 0 holds the commit back while [1-4] (checkpoint 0 = [0,0)) and
		// [5-8] (checkpoint 1 = [0,0)) are cut: both past the head, one
		// listed by it, one by the checkpoint before.
		{name: "past the head", hours: []int{3, 0, 0, 0, 0, 1, 1, 1, 1, 3, 3, 3}, upTo: []int{5, 9}, cutAt: []int{1, 5}, head: 1, from: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Date(2026, 11, 29, 6, 30, 0, 0, time.UTC)
			kr := archivetest.KeysAt(t, now)
			ms := memstore.New()
			ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
			a, err := New(Defaults(), kafkaconn.Defaults(), ret, ms, kr.Write(), zap.NewNop(), nil)
			if err != nil {
				t.Fatal(err)
			}
			a.now = func() time.Time { return now }
			ctx := context.Background()
			newWorker := func() *worker {
				w := &worker{a: a, gen: &kafka.Generation{MemberID: "m"}, buffers: map[key]*buffer{}, cov: coverage{}, next: -1, committed: -1, every: a.everyKind()}
				if err := w.loadChain(ctx, ""); err != nil {
					t.Fatal(err)
				}
				return w
			}
			feed := func(w *worker, from, to int) {
				t.Helper()
				for o := from; o < to; o++ {
					e := event.Event{ID: fmt.Sprintf("r-%d", o), Time: now.Add(-time.Duration(tc.hours[o]) * time.Hour), Kind: event.KindLogin, Class: "security", Tenant: "t"}
					l := event.AppendJSON(nil, &e)
					if err := w.handle(ctx, kafka.Message{Offset: int64(o), Value: l[:len(l)-1]}); err != nil {
						t.Fatal(err)
					}
				}
			}
			keyOf := func(w *worker, o int) key {
				for k, b := range w.buffers {
					if b.first <= int64(o) && int64(o) <= b.last {
						return k
					}
				}
				t.Fatalf("no buffer holds offset %d", o)
				return key{}
			}

			fc := &failingCommitter{}
			a.committer = fc
			w := newWorker()
			read := 0
			for i, up := range tc.upTo {
				feed(w, read, up)
				read = up
				if err := w.flush(ctx, keyOf(w, tc.cutAt[i])); err == nil {
					t.Fatalf("the commit after checkpoint %d did not fail", i)
				}
			}
			if fc.n != len(tc.upTo) || !w.ch.have || w.ch.seq != tc.head {
				t.Fatalf("commits tried %d, head %d (have %t); want %d and checkpoint %d", fc.n, w.ch.seq, w.ch.have, len(tc.upTo), tc.head)
			}

			listed := map[string]bool{}
			for seq := range tc.head + 1 {
				c, _, err := chain.Decode(ms.Objects[chain.Name(a.kafka.Topic, 0, seq)], kr.Public)
				if err != nil {
					t.Fatal(err)
				}
				for _, s := range c.Segments {
					listed[s.Name] = true
				}
			}

			// Owner 2: no commit at all, so replay from offset 0.
			a.committer = &okCommitter{}
			w = newWorker()
			if w.ch.from != tc.from || w.ch.seq != tc.head {
				t.Fatalf("owner 2 starts the chain after checkpoint %d at %d; want after %d at %d", w.ch.seq, w.ch.from, tc.head, tc.from)
			}
			feed(w, 0, len(tc.hours))
			for len(w.buffers) > 0 {
				if err := w.flush(ctx, w.oldest()); err != nil {
					t.Fatal(err)
				}
			}
			checkChain(t, ms, kr, a.kafka.Topic, 0, int64(len(tc.hours)))
			b, ok := ms.Objects[chain.Name(a.kafka.Topic, 0, tc.head+1)]
			if !ok {
				t.Fatalf("no checkpoint %d", tc.head+1)
			}
			c, _, err := chain.Decode(b, kr.Public)
			if err != nil {
				t.Fatal(err)
			}
			if len(c.Segments) == 0 {
				t.Errorf("checkpoint %d lists no segment; owner 2 cut at least one", c.Seq)
			}
			for _, s := range c.Segments {
				if listed[s.Name] {
					t.Errorf("checkpoint %d lists %s again", c.Seq, s.Name)
				}
			}
		})
	}
}
