package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/dataset"
	"github.com/custodylog/custody/internal/testkit/memstore"
)

// schemeKinds are the kinds records take in turn in the scheme tests.
var schemeKinds = []event.Kind{event.KindConnection, event.KindLogin, event.KindSourceChange}

// With format v3 a partition's hour of a class is one segment whatever the
// kinds, and its header counts each kind; with format 2, one per kind.
func TestEveryKindSegments(t *testing.T) {
	for _, format := range []int{2, 3} {
		t.Run(fmt.Sprintf("format %d", format), func(t *testing.T) {
			now := time.Date(2026, 11, 29, 6, 30, 0, 0, time.UTC)
			kr := archivetest.KeysAt(t, now)
			ms := memstore.New()
			a := schemeArchiver(t, format, ms, kr, now)
			w := &worker{a: a, gen: &kafka.Generation{MemberID: "m"}, buffers: map[key]*buffer{}, cov: coverage{}, next: -1, committed: -1, every: a.everyKind()}
			ctx := context.Background()
			if err := w.loadChain(ctx, ""); err != nil {
				t.Fatal(err)
			}
			for o := 0; o < 30; o++ {
				if err := w.handle(ctx, schemeMsg(now, o, 0)); err != nil {
					t.Fatal(err)
				}
			}
			for k := range w.buffers {
				if err := w.flush(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			segs := storedSegments(t, ms, kr)
			want := map[int]int{2: 3, 3: 1}[format]
			if len(segs) != want {
				t.Fatalf("%d segments (%v); want %d", len(segs), segs, want)
			}
			for name, h := range segs {
				switch {
				case format == 3 && (h.Kind != "" || len(h.Kinds) != 3 || h.Kinds["login"] != 10 || !strings.HasPrefix(name, "security/2026/11/29/06/")):
					t.Errorf("%s: kind %q kinds %v; want every kind, 10 each", name, h.Kind, h.Kinds)
				case format == 2 && (h.Kind == "" || h.Kinds != nil || h.Count != 10 || !strings.HasPrefix(name, "security/"+h.Kind+"/")):
					t.Errorf("%s: kind %q kinds %v count %d; want one kind, 10 events", name, h.Kind, h.Kinds, h.Count)
				}
			}
			checkStoredOnce(t, ms, kr, 30)
			checkChain(t, ms, kr, "custody.events", 0, 30)
		})
	}
}

// TestKeySchemeSwitch: the owner before stored segments past its last
// commit under one scheme (one kind per segment, or every kind) and
// crashed; the next owner is configured for the other. It must find what
// was stored, as the owner before would have, up to the high watermark of
// its first fetch, then switch: every record is stored exactly once, the
// chain accounts for every offset, and the commit metadata names the new
// scheme.
func TestKeySchemeSwitch(t *testing.T) {
	for _, tc := range []struct{ from, to int }{{2, 3}, {3, 2}} {
		t.Run(fmt.Sprintf("format %d to %d", tc.from, tc.to), func(t *testing.T) {
			now := time.Date(2026, 11, 29, 6, 30, 0, 0, time.UTC)
			kr := archivetest.KeysAt(t, now)
			ms := memstore.New()
			ctx := context.Background()
			group := &okCommitter{}

			// The owner before: one hour's records 0-11 in turn of three
			// kinds, and two later-hour records that hold the commit back.
			a1 := schemeArchiver(t, tc.from, ms, kr, now)
			a1.committer = group
			w1 := &worker{a: a1, gen: &kafka.Generation{MemberID: "one"}, buffers: map[key]*buffer{}, cov: coverage{}, next: -1, committed: -1, every: a1.everyKind()}
			if err := w1.loadChain(ctx, ""); err != nil {
				t.Fatal(err)
			}
			feedScheme(t, w1, now, 0, 2, time.Hour) // 0-1: an hour later; their buffer holds the commit at 0
			feedScheme(t, w1, now, 2, 14, 0)
			cut := key{class: "security", hour: now.Truncate(time.Hour).Unix()}
			if !w1.every {
				cut.kind = string(event.KindLogin)
			}
			if err := w1.flush(ctx, cut); err != nil { // stored past the commit (0): uncommitted coverage
				t.Fatal(err)
			}
			before := len(storedSegments(t, ms, kr))
			if before != 1 || group.offsets[len(group.offsets)-1] != 0 {
				t.Fatalf("owner one stored %d segments, committed %v; want 1, at 0", before, group.offsets)
			}
			// It crashes here: its other buffers are lost.

			a2 := schemeArchiver(t, tc.to, ms, kr, now)
			a2.committer = group
			cov, scheme, err := decodeCoverage(group.md)
			if err != nil {
				t.Fatal(err)
			}
			w2 := &worker{a: a2, gen: &kafka.Generation{MemberID: "two"}, buffers: map[key]*buffer{}, cov: cov, next: 0, committed: 0, commitMD: group.md, every: scheme == metadataEvery}
			if err := w2.loadChain(ctx, group.md); err != nil {
				t.Fatal(err)
			}
			if w2.every != (tc.from == 3) {
				t.Fatalf("owner two starts with every=%t from metadata %q", w2.every, group.md)
			}
			// The high watermark when owner two first fetches: 20.
			for o := 0; o < 30; o++ {
				delay := time.Duration(0)
				if o < 2 {
					delay = time.Hour
				}
				if err := w2.handle(ctx, schemeMsg(now.Add(delay), o, 20)); err != nil {
					t.Fatal(err)
				}
				if o == 18 && w2.every != (tc.from == 3) {
					t.Fatalf("the scheme changed at offset %d, before the high watermark", o)
				}
			}
			if w2.every != (tc.to == 3) || w2.switchAt != 0 {
				t.Fatalf("after the high watermark: every=%t switchAt=%d", w2.every, w2.switchAt)
			}
			for k := range w2.buffers {
				if err := w2.flush(ctx, k); err != nil {
					t.Fatal(err)
				}
			}
			if want := map[int]string{2: metadataKinds, 3: metadataEvery}[tc.to] + " "; !strings.HasPrefix(group.md, want) {
				t.Errorf("commit metadata %q; want it to start %q", group.md, want)
			}
			// The segments that start at or past the switch use the new
			// names, those before it the old.
			for name, h := range storedSegments(t, ms, kr) {
				newScheme := h.FirstOffset >= 20
				if every := h.Kind == ""; newScheme && every != (tc.to == 3) || !newScheme && every != (tc.from == 3) {
					t.Errorf("%s (offsets %d-%d): kind %q", name, h.FirstOffset, h.LastOffset, h.Kind)
				}
			}
			checkStoredOnce(t, ms, kr, 30)
			checkChain(t, ms, kr, "custody.events", 0, 30)
		})
	}
}

func schemeArchiver(t *testing.T, format int, ms *memstore.Store, kr archivetest.Keys, now time.Time) *Archiver {
	t.Helper()
	cfg := Defaults()
	cfg.SegmentFormat = format
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	a, err := New(cfg, kafkaconn.Defaults(), ret, ms, kr.Write(), zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	a.committer = &okCommitter{}
	a.now = func() time.Time { return now }
	return a
}

// schemeMsg is record o: kind in turn, at t, as fetched with high
// watermark hw.
func schemeMsg(t time.Time, o int, hw int64) kafka.Message {
	e := event.Event{ID: fmt.Sprintf("r-%d", o), Time: t.Add(-time.Duration(100-o) * time.Second), Kind: schemeKinds[o%3], Class: "security", Tenant: "t"}
	l := event.AppendJSON(nil, &e)
	return kafka.Message{Offset: int64(o), Value: l[:len(l)-1], HighWaterMark: hw}
}

func feedScheme(t *testing.T, w *worker, now time.Time, from, to int, later time.Duration) {
	t.Helper()
	for o := from; o < to; o++ {
		if err := w.handle(context.Background(), schemeMsg(now.Add(later), o, int64(to))); err != nil {
			t.Fatal(err)
		}
	}
}

// storedSegments returns the headers of the stored segments by name.
func storedSegments(t *testing.T, ms *memstore.Store, kr archivetest.Keys) map[string]*segment.Header {
	t.Helper()
	out := map[string]*segment.Header{}
	for name, b := range ms.Objects {
		if strings.HasPrefix(name, chain.Prefix) {
			continue
		}
		r, err := segment.Open(bytes.NewReader(b), name, kr.Read(), segment.ReaderOptions{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = r.Header()
		r.Close()
	}
	return out
}

// checkStoredOnce checks that records r-0 to r-(n-1) are each in exactly
// one stored segment.
func checkStoredOnce(t *testing.T, ms *memstore.Store, kr archivetest.Keys, n int) {
	t.Helper()
	seen := map[string]int{}
	for name, b := range ms.Objects {
		if strings.HasPrefix(name, chain.Prefix) {
			continue
		}
		ids, err := openHeader(b, name, kr)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, id := range ids {
			seen[id]++
		}
	}
	for o := 0; o < n; o++ {
		if c := seen[fmt.Sprintf("r-%d", o)]; c != 1 {
			t.Errorf("record %d is in %d segments; want exactly 1", o, c)
		}
	}
}

// A format v3 buffer holds its records encoded: for the same records of
// the shared dataset it counts (and holds) under half a format 2 buffer's
// memory, so the memory cap cuts less often.
func TestColumnarBufferSmaller(t *testing.T) {
	start := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	g := dataset.New(dataset.Options{Seed: 9, Total: 40000, Start: start, Span: time.Hour})
	k := key{class: "security", hour: start.Unix()}
	raw, col := newBuffer(k, 0, start, false), newBuffer(k, 0, start, true)
	var f fields
	for i := 0; i < 40000; i++ {
		e := g.Next()
		e.Time = start.Add(time.Duration(i) * 90 * time.Millisecond)
		l := event.AppendJSON(nil, e)
		if err := extract(l[:len(l)-1], map[string]bool{"security": true}, &f); err != nil {
			t.Fatal(err)
		}
		for _, b := range []*buffer{raw, col} {
			if err := b.add(int64(i), l[:len(l)-1], &f); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("40,000 events: format 2 buffer %d bytes, v3 %d (%.0f%%); index %d", raw.size(), col.size(), 100*float64(col.size())/float64(raw.size()), col.ix.Size())
	// Measured 42%: the index sets (~118 bytes an event here) are most
	// of what is left, then the open block.
	if col.size() > raw.size()/2 {
		t.Errorf("v3 buffer %d bytes, format 2 %d: want under half", col.size(), raw.size())
	}
	if col.bodyLen != raw.bodyLen || col.count != raw.count {
		t.Errorf("v3 buffer counts %d lines, %d bytes; format 2 %d, %d", col.count, col.bodyLen, raw.count, raw.bodyLen)
	}
	raw.release()
	col.release()
}
