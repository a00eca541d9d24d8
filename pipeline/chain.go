package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/store"
)

// chainState is a partition worker's position in the partition's chain of
// checkpoints (docs/CHAIN.md). The worker goroutine owns it; nothing else
// touches it.
//
// Accounting: cum counts, per key, the records read at or above from;
// each open buffer holds a copy of cum as it was just before its first
// record, so the counts below any commit offset C (the smallest first
// offset of the open buffers, or the next offset to read) are at hand
// when the checkpoint for [from, C) is written. After the checkpoint, cum
// and the copies are rebased to the new from.
type chainState struct {
	have    bool   // a head exists (false: the next checkpoint is seq 0)
	seq     uint64 // the head's
	hash    string // of the head's object bytes
	from    int64  // the head's Offset: where the next interval starts; -1 until known
	known   map[string]bool
	pending []chain.Segment
	cum     map[key]int64
	dlq     []chain.Range
	absent  []chain.Range
}

// errChainMoved: the partition's chain has a checkpoint this worker did not
// write where it meant to write its own (a stale member, or an owner that
// overlapped). The worker restarts the partition from the committed
// offset, which rebuilds its view of the chain.
var errChainMoved = errors.New("the partition's chain moved under this worker")

// loadChain finds the head of the partition's chain: the checkpoint the
// commit metadata names, then any written after it whose commit did not
// happen (a crash between the checkpoint and the commit). Without a hint
// (the first start, or a group reset) the newest checkpoint listed is the
// head. The segments listed after the committed checkpoint are remembered,
// so that finding them stored again on replay does not list them twice.
func (w *worker) loadChain(ctx context.Context, md string) error {
	a := w.a
	topic, part := a.kafka.Topic, int32(w.partition)
	w.ch = chainState{from: -1, known: map[string]bool{}, cum: map[key]int64{}}
	seq, hash, ok := chain.ParseHint(md)
	if ok {
		w.ch.have, w.ch.seq, w.ch.hash, w.ch.from = true, seq, hash, w.committed
		b, err := w.getObject(ctx, chain.Name(topic, part, seq))
		switch {
		case errors.Is(err, store.ErrNotFound):
			// The committed head is gone (deleted, or a drive lost): the
			// chain goes on from the hash the commit recorded, so the
			// gap stays visible to `custody verify`.
			a.log.Error("the checkpoint the last commit names is missing; continuing the chain after it", zap.String("checkpoint", chain.Name(topic, part, seq)))
		case err != nil:
			return err
		case chain.Hash(b) != hash:
			a.log.Error("the checkpoint the last commit names has changed since; continuing the chain after the committed one", zap.String("checkpoint", chain.Name(topic, part, seq)))
		default:
			c, _, err := chain.Decode(b, a.public.Load())
			if err != nil {
				return fmt.Errorf("checkpoint %s: %w", chain.Name(topic, part, seq), err)
			}
			w.ch.from = c.Offset
		}
	} else {
		var names []string
		err := w.retry(ctx, "list checkpoints", func() error {
			names = names[:0]
			for o, err := range a.store.List(ctx, chain.PartitionPrefix(topic, part)) {
				if err != nil {
					return err
				}
				names = append(names, o.Name)
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.Sort(names)
		if n := len(names); n > 0 {
			newest := names[n-1]
			b, err := w.getObject(ctx, newest)
			if err != nil {
				return err
			}
			c, _, err := chain.Decode(b, a.public.Load())
			if err != nil {
				return fmt.Errorf("checkpoint %s: %w", newest, err)
			}
			w.ch.have, w.ch.seq, w.ch.hash, w.ch.from = true, c.Seq, chain.Hash(b), c.Offset
			a.log.Warn("no chain position in the commit metadata; continuing after the newest checkpoint",
				zap.String("checkpoint", newest), zap.Int64("its_offset", c.Offset), zap.Int64("committed", w.committed))
			if err := w.learnListed(ctx, names, c); err != nil {
				return err
			}
		} else if w.committed >= 0 {
			w.ch.from = w.committed
		}
	}
	// Checkpoints written after the committed one (their commit never
	// happened): they are the chain, and their segments are listed.
	for w.ch.have {
		name := chain.Name(topic, part, w.ch.seq+1)
		b, err := w.getObject(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			break
		}
		if err != nil {
			return err
		}
		c, _, err := chain.Decode(b, a.public.Load())
		if err != nil {
			return fmt.Errorf("checkpoint %s cannot be trusted, and the chain cannot go on past it: %w", name, err)
		}
		if c.Prev != w.ch.hash {
			return fmt.Errorf("checkpoint %s does not link to checkpoint %d; the chain cannot go on past it", name, w.ch.seq)
		}
		for _, s := range c.Segments {
			w.ch.known[s.Name] = true
		}
		w.ch.seq, w.ch.hash, w.ch.from = c.Seq, chain.Hash(b), c.Offset
	}
	return nil
}

// learnListed remembers the segments that the checkpoints up to the head
// list at or past the head's offset, when no commit records how far the
// segments past it reach (the first commit never happened, or the group's
// offsets expired and replay starts from the log's beginning). Replay finds
// those segments stored again, and without this the next checkpoint would
// list them a second time. Segments below the head's offset need no
// memory: listSegment knows them listed (docs/CHAIN.md §2, rule 2). A
// segment with a first offset past the head's can be listed by any older
// checkpoint (a buffer of a late hour holds the commit back while others
// are cut), so every checkpoint is read: a rare recovery path, one GET per
// checkpoint of the partition.
func (w *worker) learnListed(ctx context.Context, names []string, head *chain.Checkpoint) error {
	keep := func(c *chain.Checkpoint) {
		for _, s := range c.Segments {
			if s.First >= head.Offset {
				w.ch.known[s.Name] = true
			}
		}
	}
	keep(head)
	for _, name := range names[:len(names)-1] {
		b, err := w.getObject(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			continue // expired since the listing
		}
		if err != nil {
			return err
		}
		c, _, err := chain.Decode(b, w.a.public.Load())
		if err != nil {
			// custody verify reports it; what it lists cannot be trusted
			// here either.
			w.a.log.Error("cannot read an older checkpoint of the partition; segments it lists may be listed again", zap.String("checkpoint", name), zap.Error(err))
			continue
		}
		keep(c)
	}
	if len(names) > 1 {
		w.a.log.Info("read the partition's checkpoints for the segments they list", zap.Int("checkpoints", len(names)), zap.Int("segments_past_head", len(w.ch.known)))
	}
	return nil
}

// getObject reads a whole (small) object, retrying transient errors;
// store.ErrNotFound is returned as is.
func (w *worker) getObject(ctx context.Context, name string) ([]byte, error) {
	var out []byte
	err := w.retry(ctx, "read "+name, func() error {
		rc, err := w.a.store.Get(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return permanent{err}
		}
		if err != nil {
			return err
		}
		defer rc.Close()
		out, err = io.ReadAll(rc)
		return err
	})
	return out, err
}

// count records what became of the record at offset o (a key's record, or
// a dead letter when dead is set) for the chain's accounting, and any
// offsets Kafka skipped before it.
func (w *worker) count(o int64, k key, dead bool) {
	ch := &w.ch
	if ch.from < 0 {
		// The partition's first record ever read: the chain starts here.
		ch.from = o
	}
	if o < ch.from {
		return // accounted for by a checkpoint already (replay)
	}
	if gapFrom := max(w.next, ch.from); o > gapFrom && w.next >= 0 {
		ch.absent = addRange(ch.absent, gapFrom, o-1)
	}
	if dead {
		ch.dlq = addRange(ch.dlq, o, o)
		return
	}
	if ch.cum == nil {
		ch.cum = map[key]int64{}
	}
	ch.cum[k]++
}

func addRange(rs []chain.Range, first, last int64) []chain.Range {
	if n := len(rs); n > 0 && rs[n-1].Last+1 == first {
		rs[n-1].Last = last
		return rs
	}
	return append(rs, chain.Range{First: first, Last: last})
}

// splitRanges returns the parts of rs below c, and the rest.
func splitRanges(rs []chain.Range, c int64) (below, rest []chain.Range) {
	for _, r := range rs {
		switch {
		case r.Last < c:
			below = append(below, r)
		case r.First >= c:
			rest = append(rest, r)
		default:
			below = append(below, chain.Range{First: r.First, Last: c - 1})
			rest = append(rest, chain.Range{First: c, Last: r.Last})
		}
	}
	return below, rest
}

// listSegment adds a segment stored (or found stored) since the head to
// the next checkpoint, unless a checkpoint lists it already.
func (w *worker) listSegment(s chain.Segment) {
	if w.ch.known[s.Name] || (w.ch.from >= 0 && s.First < w.ch.from) {
		// Listed already: by a checkpoint after the head (known), or,
		// starting below the head's offset, by one at or before it
		// (docs/CHAIN.md §2, rule 2).
		return
	}
	if w.ch.known == nil {
		w.ch.known = map[string]bool{}
	}
	w.ch.known[s.Name] = true
	w.ch.pending = append(w.ch.pending, s)
}

// checkpoint writes the checkpoint for [from, c) and the segments pending,
// before the commit of c. It reports false when it cannot yet account for
// c: the commit then waits.
func (w *worker) checkpoint(ctx context.Context, c int64) (bool, error) {
	a, ch := w.a, &w.ch
	if ch.from < 0 || c < ch.from {
		// Replaying below the head: nothing new to account for yet.
		return len(ch.pending) == 0, nil
	}
	var at map[key]int64
	if c == w.next {
		at = ch.cum
	} else {
		for _, b := range w.buffers {
			if b.first == c {
				at = b.cum
			}
		}
		if at == nil {
			// The oldest buffer lost its first records to another
			// writer's segment: its copy of the counts is unknown until
			// it is cut.
			return false, nil
		}
	}
	counts := map[string]int64{}
	for k, n := range at {
		if n > 0 {
			counts[k.String()] = n
		}
	}
	dlq, dlqRest := splitRanges(ch.dlq, c)
	absent, absentRest := splitRanges(ch.absent, c)
	cp := &chain.Checkpoint{V: 1, Topic: a.kafka.Topic, Partition: int32(w.partition), From: ch.from, Offset: c,
		Counts: counts, DeadLetters: dlq, Absent: absent, Segments: ch.pending,
		Archiver: a.cfg.GroupID + "/" + w.gen.MemberID, Generation: w.gen.ID, Time: a.now().UTC()}
	if ch.have {
		cp.Seq, cp.Prev = ch.seq+1, ch.hash
	}
	if err := cp.Validate(); err != nil {
		// A bug in the accounting: better no commit than a false record.
		return false, fmt.Errorf("partition %d: refusing to write a checkpoint that does not add up: %w", w.partition, err)
	}
	b, err := chain.Encode(cp, a.keys.Signer)
	if err != nil {
		return false, err
	}
	name := chain.Name(cp.Topic, cp.Partition, cp.Seq)
	lock := store.Lock{Mode: a.ret.Mode, Until: cp.Time.Add(time.Duration(a.ret.MaxDays()+1) * 24 * time.Hour)}
	err = w.retry(ctx, "store checkpoint "+name, func() error {
		err := a.store.Put(ctx, name, bytes.NewReader(b), int64(len(b)), lock)
		if errors.Is(err, store.ErrExists) {
			// Ours, if a retry follows a PUT whose answer was lost.
			got, gerr := w.getObject(ctx, name)
			if gerr == nil && bytes.Equal(got, b) {
				return nil
			}
			return permanent{fmt.Errorf("checkpoint %s: %w", name, errChainMoved)}
		}
		return err
	})
	if err != nil {
		return false, err
	}
	a.m.checkpoints.Inc()
	a.crash("after-checkpoint")
	ch.have, ch.seq, ch.hash = true, cp.Seq, chain.Hash(b)
	ch.from, ch.dlq, ch.absent, ch.pending = c, dlqRest, absentRest, nil
	// Rebase the counts on the new from, dropping keys that reach zero.
	base := maps.Clone(at)
	rebase := func(m map[key]int64) {
		for k, n := range base {
			if m[k] -= n; m[k] <= 0 {
				delete(m, k)
			}
		}
	}
	rebase(ch.cum)
	for _, b := range w.buffers {
		if b.cum != nil {
			rebase(b.cum)
		}
	}
	return true, nil
}

// hint is the chain position the commit records.
func (w *worker) hint() string {
	if !w.ch.have {
		return ""
	}
	return " " + chain.Hint(w.ch.seq, w.ch.hash)
}
