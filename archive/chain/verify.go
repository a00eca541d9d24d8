package chain

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
)

// objects is what verification reads from the bucket.
type objects interface {
	List(ctx context.Context, prefix string) iter.Seq2[store.Object, error]
	Get(ctx context.Context, name string) (io.ReadCloser, error)
}

// Finding kinds. Each names what was found wrong; docs/CHAIN.md §4.
const (
	Missing      = "missing"       // a listed segment is not in the bucket (and its retention has not passed)
	Extra        = "extra"         // a segment no checkpoint lists
	Modified     = "modified"      // a segment's bytes differ from the SHA-256 its checkpoint lists
	BrokenLink   = "broken-link"   // a checkpoint missing from the sequence, or not linking to its predecessor
	OffsetGap    = "offset-gap"    // offsets not accounted for, or accounted for twice
	BadSignature = "bad-signature" // a checkpoint signed by an unknown key, or whose signature does not verify
	Unsigned     = "unsigned"      // a checkpoint without a signature
	Invalid      = "invalid"       // a checkpoint that does not parse or does not add up, or a misnamed object
)

// Finding is one thing wrong with the archive.
type Finding struct {
	Kind      string `json:"kind"`
	Object    string `json:"object,omitempty"`
	Topic     string `json:"topic,omitempty"`
	Partition int32  `json:"partition"`
	// Offsets, when the finding concerns some, as "first-last".
	Offsets string `json:"offsets,omitempty"`
	Detail  string `json:"detail"`
}

func (f Finding) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", f.Kind)
	if f.Topic != "" {
		fmt.Fprintf(&b, " %s/%d", f.Topic, f.Partition)
	}
	if f.Offsets != "" {
		fmt.Fprintf(&b, " offsets %s", f.Offsets)
	}
	if f.Object != "" {
		fmt.Fprintf(&b, " %s", f.Object)
	}
	fmt.Fprintf(&b, ": %s", f.Detail)
	return b.String()
}

// Options shape a verification.
type Options struct {
	Trusted   *keyring.PublicKeyring // the archivers' signing keys
	Retention archive.Retention      // the classes to list; a listed segment past its class's retention may be gone
	Now       time.Time
	// Grace: a segment no checkpoint lists is in flight, not extra, when
	// it is newer than its partition's newest checkpoint and younger than
	// Grace (the archiver's flush age and commit interval).
	Grace time.Duration
	// From and To, when set, restrict the segments checked against the
	// bucket to those of event hours in [From, To); the chains are always
	// read whole.
	From, To    time.Time
	Concurrency int
	// Deep, when set, decrypts every listed segment checked with these
	// keys and checks its events: as many as listed, each parsing, of the
	// segment's class, kind and hour, with an ID.
	Deep any // keyring.Set or another segment.Open key source
	// Anchors are hex SHA-256 hashes of root objects published outside
	// the system (custody verify roots): each must be in the bucket, and
	// the roots after it linked to it.
	Anchors []string
	// Shredded, when set, says whether retention's deletion of every
	// class's data through the end of day is on record (a verified shred
	// receipt, or a legal hold that keeps the period), nil if so. A chain
	// whose first checkpoints are gone is accepted only if a root shows
	// they were past retention and Shredded confirms it (docs/CHAIN.md §6);
	// without it such a chain is a finding.
	Shredded func(ctx context.Context, day time.Time) error
	// Commits, when set, are the archivers' consumer group's committed
	// positions, read from Kafka before the chains: each names (in its
	// metadata, Hint) the checkpoint written just before it, which must be
	// in the bucket with that hash and end at that offset. This finds the
	// newest checkpoints deleted before a daily root sealed them
	// (docs/CHAIN.md §4).
	Commits []Commit
}

// Commit is a consumer group's committed offset on a partition, with its
// metadata.
type Commit struct {
	Topic     string
	Partition int32
	Offset    int64
	Metadata  string
}

// Report is the outcome of a verification.
type Report struct {
	Partitions  int `json:"partitions"`
	Checkpoints int `json:"checkpoints"`
	Roots       int `json:"roots"`
	Segments    int `json:"segments"` // checked against the bucket
	Expired     int `json:"expired"`  // listed, gone, and past retention
	// ExpiredCheckpoints are the checkpoints before the first retained one
	// of each chain, gone after their retention (docs/CHAIN.md §6).
	ExpiredCheckpoints uint64    `json:"expired_checkpoints"`
	Events             int64     `json:"events"`  // decrypted and checked (Deep)
	Records            int64     `json:"records"` // offsets the chains account for
	Findings           []Finding `json:"findings"`
}

type partKey struct {
	topic     string
	partition int32
}

type partition struct {
	cps    []*Checkpoint
	newest time.Time // LastModified of the newest checkpoint object
	// start is the sequence number of the first checkpoint in the bucket,
	// and startPrev its prev hash ("" if it did not decode).
	start     uint64
	startPrev string
	// sealed are the heads the roots name for this partition, oldest
	// root first.
	sealed []sealedHead
}

// sealedHead is a root's leaf for one partition.
type sealedHead struct {
	day    time.Time
	seq    uint64
	sha256 string
}

type listed struct {
	Segment
	part partKey
	seq  uint64
}

// Verify checks the bucket's chains and segments against each other.
func Verify(ctx context.Context, src objects, opts Options) (*Report, error) {
	v := &verifier{src: src, opts: opts, rep: &Report{}, parts: map[partKey]*partition{}, listed: map[string]listed{}, objHash: map[partKey]map[uint64]string{}}
	if err := v.chains(ctx); err != nil {
		return nil, err
	}
	if err := v.roots(ctx); err != nil {
		return nil, err
	}
	v.starts(ctx)
	v.commits()
	if err := v.segments(ctx); err != nil {
		return nil, err
	}
	v.accounting()
	slices.SortStableFunc(v.rep.Findings, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Object, b.Object))
	})
	return v.rep, nil
}

type verifier struct {
	src    objects
	opts   Options
	rep    *Report
	mu     sync.Mutex
	parts  map[partKey]*partition
	listed map[string]listed
	// objHash is the SHA-256 of the object at each partition's sequence
	// numbers, whatever it holds: what roots are checked against.
	objHash map[partKey]map[uint64]string
}

func (v *verifier) find(f Finding) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rep.Findings = append(v.rep.Findings, f)
}

func readAll(ctx context.Context, src objects, name string) ([]byte, error) {
	rc, err := src.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// chains reads every checkpoint, partition by partition in sequence order,
// checking names, signatures, links and intervals.
func (v *verifier) chains(ctx context.Context) error {
	names := map[partKey][]string{}
	times := map[string]time.Time{}
	for o, err := range v.src.List(ctx, Prefix) {
		if err != nil {
			return err
		}
		topic, p, _, err := ParseName(o.Name)
		if err != nil {
			v.find(Finding{Kind: Invalid, Object: o.Name, Detail: err.Error()})
			continue
		}
		k := partKey{topic, p}
		names[k] = append(names[k], o.Name)
		times[o.Name] = o.LastModified
	}
	for k, ns := range names {
		slices.Sort(ns) // 20-digit sequence numbers: lexical is numeric
		v.rep.Partitions++
		_, _, first, _ := ParseName(ns[0])
		pt := &partition{start: first}
		v.parts[k] = pt
		var prev *Checkpoint
		var prevHash string
		for _, name := range ns {
			if t := times[name]; t.After(pt.newest) {
				pt.newest = t
			}
			b, err := readAll(ctx, v.src, name)
			if err != nil {
				return fmt.Errorf("cannot read checkpoint %s: %w", name, err)
			}
			v.rep.Checkpoints++
			_, _, seq, _ := ParseName(name)
			if v.objHash[k] == nil {
				v.objHash[k] = map[uint64]string{}
			}
			v.objHash[k][seq] = Hash(b)
			c, _, err := Decode(b, v.opts.Trusted)
			if err != nil {
				kind := Invalid
				switch {
				case bytes.Count(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) == 0:
					kind = Unsigned
				case errors.Is(err, ErrSignature):
					kind = BadSignature
				}
				v.find(Finding{Kind: kind, Object: name, Topic: k.topic, Partition: k.partition, Detail: err.Error()})
				// The chain goes on from the next checkpoint, which will
				// not link: one finding each, not a cascade.
				prev, prevHash = nil, Hash(b)
				continue
			}
			if c.Topic != k.topic || c.Partition != k.partition || c.Seq != seq {
				v.find(Finding{Kind: BrokenLink, Object: name, Topic: k.topic, Partition: k.partition,
					Detail: fmt.Sprintf("the checkpoint inside is %s/%d seq %d: moved or swapped", c.Topic, c.Partition, c.Seq)})
			}
			switch {
			case prev == nil && prevHash == "" && seq != 0:
				pt.startPrev = c.Prev // a missing start: starts decides, once the roots are read
			case prev != nil && seq != prev.Seq+1:
				v.find(Finding{Kind: BrokenLink, Object: name, Topic: k.topic, Partition: k.partition,
					Detail: fmt.Sprintf("checkpoints %d to %d are missing", prev.Seq+1, seq-1)})
			case prevHash != "" && c.Prev != prevHash:
				v.find(Finding{Kind: BrokenLink, Object: name, Topic: k.topic, Partition: k.partition,
					Detail: "its prev hash is not the SHA-256 of the checkpoint before it"})
			}
			if prev != nil && c.From != prev.Offset {
				v.find(Finding{Kind: OffsetGap, Object: name, Topic: k.topic, Partition: k.partition, Offsets: rangeText(min(prev.Offset, c.From), max(prev.Offset, c.From)-1),
					Detail: fmt.Sprintf("the previous checkpoint ends at offset %d, this one starts at %d", prev.Offset, c.From)})
			}
			for _, s := range c.Segments {
				if s.First < c.From {
					v.find(Finding{Kind: OffsetGap, Object: s.Name, Topic: k.topic, Partition: k.partition, Offsets: rangeText(s.First, s.Last),
						Detail: fmt.Sprintf("listed by checkpoint %d, whose interval starts at %d: its first offset was accounted for before", c.Seq, c.From)})
				}
				if l, ok := v.listed[s.Name]; ok && l.SHA256 != s.SHA256 {
					v.find(Finding{Kind: Modified, Object: s.Name, Topic: k.topic, Partition: k.partition,
						Detail: fmt.Sprintf("listed by checkpoints %d and %d with different SHA-256", l.seq, c.Seq)})
					continue
				} else if ok {
					continue // listed again after a crash or by a stale member: the same object
				}
				v.listed[s.Name] = listed{Segment: s, part: k, seq: c.Seq}
			}
			v.rep.Records += c.Offset - c.From
			pt.cps = append(pt.cps, c)
			prev, prevHash = c, Hash(b)
		}
	}
	return nil
}

// roots checks the daily roots: signatures, links, consecutive days, and
// that every chain head a root names is still there, byte for byte (a
// chain cut short or rewritten after its day was sealed shows here); and
// that every published anchor is one of them.
func (v *verifier) roots(ctx context.Context) error {
	var names []string
	for o, err := range v.src.List(ctx, RootPrefix) {
		if err != nil {
			return err
		}
		names = append(names, o.Name)
	}
	slices.Sort(names)
	hashes := map[string]bool{}
	var prevDate time.Time
	prevHash := ""
	for _, name := range names {
		b, err := readAll(ctx, v.src, name)
		if err != nil {
			return fmt.Errorf("cannot read root %s: %w", name, err)
		}
		v.rep.Roots++
		h := Hash(b)
		hashes[h] = true
		r, err := DecodeRoot(b, v.opts.Trusted)
		if err != nil {
			kind := Invalid
			if errors.Is(err, ErrSignature) {
				kind = BadSignature
			}
			v.find(Finding{Kind: kind, Object: name, Detail: err.Error()})
			prevDate, prevHash = time.Time{}, h
			continue
		}
		day, _ := time.Parse("2006-01-02", r.Date)
		switch {
		case RootName(day) != name:
			v.find(Finding{Kind: BrokenLink, Object: name, Detail: fmt.Sprintf("the root inside is of %s: moved or swapped", r.Date)})
		case !prevDate.IsZero() && !day.Equal(prevDate.AddDate(0, 0, 1)):
			v.find(Finding{Kind: BrokenLink, Object: name, Detail: fmt.Sprintf("the roots of %s to %s are missing", prevDate.AddDate(0, 0, 1).Format("2006-01-02"), day.AddDate(0, 0, -1).Format("2006-01-02"))})
		case prevHash != "" && r.Prev != prevHash:
			v.find(Finding{Kind: BrokenLink, Object: name, Detail: "its prev hash is not the SHA-256 of the root before it"})
		case prevHash == "" && r.Prev != "" && name == names[0]:
			v.find(Finding{Kind: BrokenLink, Object: name, Detail: "the first root in the bucket names a previous one: earlier roots are missing"})
		}
		for _, l := range r.Leaves {
			k := partKey{l.Topic, l.Partition}
			pt := v.parts[k]
			if pt == nil {
				pt = &partition{start: math.MaxUint64} // every checkpoint gone
				v.parts[k] = pt
			}
			pt.sealed = append(pt.sealed, sealedHead{day, l.Seq, l.SHA256})
			got, ok := v.objHash[k][l.Seq]
			switch {
			case !ok && l.Seq < pt.start && v.expired(day):
				// Before the chain's retained start, and past the time
				// lifecycle may remove it: starts checks the rest.
			case !ok:
				v.find(Finding{Kind: BrokenLink, Object: Name(l.Topic, l.Partition, l.Seq), Topic: l.Topic, Partition: l.Partition,
					Detail: fmt.Sprintf("the root of %s seals this checkpoint as its chain's head that day, and it is missing", r.Date)})
			case got != l.SHA256:
				v.find(Finding{Kind: BrokenLink, Object: Name(l.Topic, l.Partition, l.Seq), Topic: l.Topic, Partition: l.Partition,
					Detail: fmt.Sprintf("the root of %s seals this checkpoint with SHA-256 %s; the object's is %s", r.Date, l.SHA256, got)})
			}
		}
		prevDate, prevHash = day, h
	}
	for _, a := range v.opts.Anchors {
		if !hashes[strings.ToLower(a)] {
			v.find(Finding{Kind: BrokenLink, Object: RootPrefix, Detail: fmt.Sprintf("the published root %s is not in the bucket: roots were replaced or deleted", a)})
		}
	}
	return nil
}

func rangeText(first, last int64) string { return fmt.Sprintf("%d-%d", first, last) }

// segments lists the bucket's segments and checks them against the chains:
// every listed one present with its SHA-256, none unlisted.
func (v *verifier) segments(ctx context.Context) error {
	present := map[string]bool{}
	type job struct {
		name string
		l    listed
	}
	jobs := make(chan job)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range max(v.opts.Concurrency, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				raw, err := readAll(ctx, v.src, j.name)
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("cannot read segment %s: %w", j.name, err); cancel() })
					continue
				}
				sum := sha256.Sum256(raw)
				if hex.EncodeToString(sum[:]) != j.l.SHA256 {
					v.find(Finding{Kind: Modified, Object: j.name, Topic: j.l.part.topic, Partition: j.l.part.partition, Offsets: rangeText(j.l.First, j.l.Last),
						Detail: fmt.Sprintf("SHA-256 %x; checkpoint %d lists %s", sum, j.l.seq, j.l.SHA256)})
					continue
				}
				if v.opts.Deep != nil {
					v.deep(j.name, j.l, raw)
				}
			}
		}()
	}
	listErr := func() error {
		defer close(jobs)
		for _, c := range v.opts.Retention.Classes {
			for o, err := range v.src.List(ctx, c.Name+"/") {
				if err != nil {
					return err
				}
				m, err := segment.ParseName(o.Name)
				if err != nil {
					v.find(Finding{Kind: Extra, Object: o.Name, Detail: "not a segment name: " + err.Error()})
					continue
				}
				present[o.Name] = true
				if !v.inRange(m.Hour) {
					continue
				}
				v.rep.Segments++
				l, ok := v.listed[o.Name]
				if !ok {
					k := partKey{m.Topic, m.Partition}
					if pt := v.parts[k]; (pt == nil || !o.LastModified.Before(pt.newest)) && v.opts.Now.Sub(o.LastModified) < v.opts.Grace {
						// Stored after its partition's newest checkpoint (or in
						// its second: S3 times are coarse; or before the first),
						// within the flush window: in flight.
						continue
					}
					v.find(Finding{Kind: Extra, Object: o.Name, Topic: m.Topic, Partition: m.Partition,
						Detail: "no checkpoint lists this segment"})
					continue
				}
				select {
				case jobs <- job{o.Name, l}:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		}
		return nil
	}()
	wg.Wait()
	if listErr != nil {
		return listErr
	}
	if firstErr != nil {
		return firstErr
	}
	for name, l := range v.listed {
		if present[name] {
			continue
		}
		m, err := segment.ParseName(name)
		if err != nil {
			v.find(Finding{Kind: Invalid, Object: name, Topic: l.part.topic, Partition: l.part.partition, Detail: fmt.Sprintf("checkpoint %d lists a name that is not a segment's: %v", l.seq, err)})
			continue
		}
		if !v.inRange(m.Hour) {
			continue
		}
		if c, ok := v.opts.Retention.Class(m.Class); ok && !c.RetainUntil(m.Hour).After(v.opts.Now) {
			v.rep.Expired++ // lifecycle's to delete
			continue
		}
		v.find(Finding{Kind: Missing, Object: name, Topic: l.part.topic, Partition: l.part.partition, Offsets: rangeText(l.First, l.Last),
			Detail: fmt.Sprintf("listed by checkpoint %d (%d events) and not in the bucket", l.seq, l.Count)})
	}
	return nil
}

func (v *verifier) inRange(hour time.Time) bool {
	return (v.opts.From.IsZero() || !hour.Before(v.opts.From.Truncate(time.Hour))) && (v.opts.To.IsZero() || hour.Before(v.opts.To))
}

// deep decrypts one segment (whose bytes match its checkpoint) and checks
// its events against the checkpoint and its name.
func (v *verifier) deep(name string, l listed, raw []byte) {
	bad := func(format string, args ...any) {
		v.find(Finding{Kind: Invalid, Object: name, Topic: l.part.topic, Partition: l.part.partition, Offsets: rangeText(l.First, l.Last), Detail: fmt.Sprintf(format, args...)})
	}
	r, err := segment.Open(bytes.NewReader(raw), name, v.opts.Deep, segment.ReaderOptions{})
	if err != nil {
		// The bytes are the archiver's (the SHA-256 matched): a key
		// missing or shredded, most likely.
		bad("cannot be decrypted: %v", err)
		return
	}
	defer r.Close()
	h := r.Header()
	if h.FirstOffset != l.First || h.LastOffset != l.Last || h.Count != l.Count {
		bad("its header says offsets %d-%d, %d events; its checkpoint %d-%d, %d", h.FirstOffset, h.LastOffset, h.Count, l.First, l.Last, l.Count)
	}
	body, err := r.Body()
	if err == nil {
		var data []byte
		if data, err = io.ReadAll(body); err == nil {
			var n int64
			kinds := map[string]int64{}
			for line := range bytes.Lines(data) {
				n++
				e, perr := event.Parse(bytes.TrimSuffix(line, []byte("\n")))
				switch {
				case perr != nil:
					bad("event %d does not parse: %v", n, perr)
					return
				case e.ID == "":
					bad("event %d has no ID", n)
					return
				case e.Time.Before(h.Hour) || !e.Time.Before(h.Hour.Add(time.Hour)) || !h.Has(string(e.Kind)) || e.Class != h.Class:
					bad("event %s (%s, %s, %s) is not of the segment's class, kind and hour", e.ID, e.Class, e.Kind, e.Time.Format(time.RFC3339))
					return
				}
				kinds[string(e.Kind)]++
			}
			if n != l.Count {
				bad("holds %d events; its checkpoint lists %d", n, l.Count)
			}
			if h.Kind == "" && !maps.Equal(kinds, h.Kinds) {
				bad("holds %v events by kind; its header says %v", kinds, h.Kinds)
			}
			v.mu.Lock()
			v.rep.Events += n
			v.mu.Unlock()
		}
	}
	if err != nil {
		bad("body: %v", err)
	}
}

// accounting checks, per partition and key, that the listed segments do not
// overlap and hold as many records below each checkpoint's offset as the
// checkpoints count: a segment left out of the chain (or a record stored
// twice) shows as a difference.
func (v *verifier) accounting() {
	type keyed struct {
		part partKey
		key  string
	}
	segs := map[keyed][]Segment{}
	for name, l := range v.listed {
		m, err := segment.ParseName(name)
		if err != nil {
			continue // reported by segments
		}
		k := keyed{l.part, m.Key()}
		segs[k] = append(segs[k], l.Segment)
	}
	for k, ss := range segs {
		slices.SortFunc(ss, func(a, b Segment) int { return cmp.Compare(a.First, b.First) })
		for i := 1; i < len(ss); i++ {
			if ss[i].First <= ss[i-1].Last {
				v.find(Finding{Kind: OffsetGap, Object: ss[i].Name, Topic: k.part.topic, Partition: k.part.partition, Offsets: rangeText(ss[i].First, ss[i-1].Last),
					Detail: fmt.Sprintf("overlaps %s: offsets stored twice", ss[i-1].Name)})
			}
		}
	}
	for pk, pt := range v.parts {
		cum := map[string]int64{}
		keys := map[string]bool{}
		reported := map[string]bool{}
		for _, c := range pt.cps {
			for key, n := range c.Counts {
				cum[key] += n
				keys[key] = true
			}
			for key := range keys {
				if reported[key] {
					continue
				}
				ss := segs[keyed{pk, key}]
				var below, reaching int64 // records surely below c.Offset, and possibly
				for _, s := range ss {
					if s.Last < c.Offset {
						below += s.Count
					}
					if s.First < c.Offset {
						reaching += s.Count
					}
				}
				if cum[key] < below || cum[key] > reaching {
					v.find(Finding{Kind: OffsetGap, Topic: pk.topic, Partition: pk.partition, Offsets: rangeText(pt.cps[0].From, c.Offset-1),
						Detail: fmt.Sprintf("key %s: checkpoints up to %d count %d records below offset %d; the listed segments hold %d to %d of them", key, c.Seq, cum[key], c.Offset, below, reaching)})
					reported[key] = true // one finding per key
				}
			}
		}
	}
}

// expired reports whether the lifecycle of checkpoints may have removed a
// checkpoint that the root of day first sealed: such a checkpoint was
// written that day or later, and lives at least Retention.CheckpointDays
// days after it was written.
func (v *verifier) expired(day time.Time) bool {
	return !v.opts.Now.Before(day.AddDate(0, 0, v.opts.Retention.CheckpointDays()))
}

// starts decides each chain whose first checkpoints are gone. The start
// is accepted only if a root shows that the last missing checkpoint
// existed on a day whose checkpoints lifecycle may have removed by now
// (so every segment they listed is past every class's retention), and
// retention's shredding of that day is on record (docs/CHAIN.md §6).
func (v *verifier) starts(ctx context.Context) {
	for k, pt := range v.parts {
		if pt.start == 0 || pt.start == math.MaxUint64 {
			continue
		}
		lost := fmt.Sprintf("the chain starts at seq %d: checkpoints 0 to %d are missing", pt.start, pt.start-1)
		bad := func(format string, args ...any) {
			v.find(Finding{Kind: BrokenLink, Object: Name(k.topic, k.partition, pt.start), Topic: k.topic, Partition: k.partition,
				Detail: lost + ", and " + fmt.Sprintf(format, args...)})
		}
		i := slices.IndexFunc(pt.sealed, func(h sealedHead) bool { return h.seq >= pt.start-1 })
		if i < 0 {
			bad("no daily root names any of them (their lifecycle removes checkpoints only long after a root sealed them)")
			continue
		}
		h := pt.sealed[i]
		date := h.day.Format("2006-01-02")
		switch {
		case h.seq == pt.start-1 && pt.startPrev != "" && h.sha256 != pt.startPrev:
			bad("its prev hash is not the SHA-256 the root of %s seals for checkpoint %d", date, h.seq)
		case !v.expired(h.day):
			bad("the root of %s shows the last of them existed that day: lifecycle keeps them until at least %s", date,
				h.day.AddDate(0, 0, v.opts.Retention.CheckpointDays()).Format("2006-01-02"))
		case v.opts.Shredded == nil:
			bad("they are past retention (root of %s), but no shred receipts were consulted", date)
		default:
			if err := v.opts.Shredded(ctx, h.day); err != nil {
				bad("they are past retention (root of %s), but their deletion is not on record: %v", date, err)
				continue
			}
			v.rep.ExpiredCheckpoints += pt.start
		}
	}
}

// commits checks each committed position against the chain: the checkpoint
// its metadata names is there, byte for byte, and ends at the committed
// offset; without a name (a commit from before the chain), the newest
// checkpoint reaches the offset. A checkpoint before the chain's retained
// start may be gone (starts judged that).
func (v *verifier) commits() {
	for _, cm := range v.opts.Commits {
		k := partKey{cm.Topic, cm.Partition}
		pt := v.parts[k]
		if pt == nil {
			pt = &partition{start: math.MaxUint64}
		}
		bad := func(object, format string, args ...any) {
			v.find(Finding{Kind: BrokenLink, Object: object, Topic: k.topic, Partition: k.partition,
				Detail: fmt.Sprintf("Kafka's committed offset %d ", cm.Offset) + fmt.Sprintf(format, args...)})
		}
		seq, sha, ok := ParseHint(cm.Metadata)
		if !ok {
			switch {
			case len(pt.cps) == 0 && cm.Offset > 0:
				bad(Prefix+k.topic+"/", "has no checkpoint in the bucket")
			case len(pt.cps) > 0 && pt.cps[len(pt.cps)-1].Offset < cm.Offset:
				last := pt.cps[len(pt.cps)-1]
				bad(Name(k.topic, k.partition, last.Seq), "is past the newest checkpoint, %d, which ends at %d: later ones are gone", last.Seq, last.Offset)
			}
			continue
		}
		name := Name(k.topic, k.partition, seq)
		got, present := v.objHash[k][seq]
		switch {
		case !present && seq < pt.start && pt.start != math.MaxUint64:
			// Before the retained start.
		case !present && pt.start == math.MaxUint64 && v.sealedExpired(pt, seq):
			// The whole chain expired, this head with it.
		case !present:
			bad(name, "names this checkpoint, and it is not in the bucket: the chain's newest checkpoints were deleted")
		case got != sha:
			bad(name, "names this checkpoint with SHA-256 %s; the object's is %s", sha, got)
		default:
			i := slices.IndexFunc(pt.cps, func(c *Checkpoint) bool { return c.Seq == seq })
			if i >= 0 && pt.cps[i].Offset != cm.Offset {
				bad(name, "names this checkpoint, which ends at %d", pt.cps[i].Offset)
			}
		}
	}
}

// sealedExpired reports whether a root sealed checkpoint seq (or a later
// one) on a day whose checkpoints lifecycle may have removed.
func (v *verifier) sealedExpired(pt *partition, seq uint64) bool {
	i := slices.IndexFunc(pt.sealed, func(h sealedHead) bool { return h.seq >= seq })
	return i >= 0 && v.expired(pt.sealed[i].day)
}
