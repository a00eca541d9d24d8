package query

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/custodylog/custody/archive/columnar"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/retention"
)

// objects is what a query needs from the store.
type objects interface {
	List(ctx context.Context, prefix string) iter.Seq2[store.Object, error]
	GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
}

// Engine runs queries over one archive. Safe for concurrent use.
type Engine struct {
	cfg     Config
	src     objects
	keys    keyring.Set
	escrow  escrow
	heads   *HeadCache // nil: none
	deks    *dekMemo
	classes []string
	noPrune bool            // benchmarks only: read every segment to measure the index
	onUnit  func(hours int) // tests only: each unit of reading, as read
}

// NewEngine returns an engine over the retention classes' prefixes.
func NewEngine(cfg Config, src objects, keys keyring.Set, classes []string) *Engine {
	return &Engine{cfg: cfg, src: src, keys: keys, deks: newDEKMemo(dekMemoSize), classes: classes}
}

// Stats is a query's progress and outcome.
type Stats struct {
	Total   int64 // segments listed in the hours of the range
	Pruned  int64 // skipped on header and index alone
	Scanned int64 // decrypted and read
	Matched int64 // events output (after de-duplication)
	Dupes   int64 // events dropped as a repeated ID
	Bytes   int64 // stored bytes fetched
	Failed  []SegmentError
}

// SegmentError is a segment that could not be read; the query goes on.
type SegmentError struct {
	Name string
	Err  error
}

func (e SegmentError) Error() string { return e.Err.Error() }

// ErrStrict stops a --strict query at its first unreadable segment.
var ErrStrict = errors.New("stopped at an unreadable segment (--strict)")

// Options shape one run.
type Options struct {
	Limit  int  // 0: no limit
	Strict bool // stop at the first unreadable segment
	// Progress, if set, is called with a snapshot about five times a second.
	Progress func(Stats)
	// SpillDir holds sorted runs when an hour's matches exceed the memory
	// budget; "" means the system temporary directory.
	SpillDir string
	// MemoryBudget, if set, replaces query.memory_budget for this run (a
	// background export trades speed for a smaller footprint).
	MemoryBudget int64
	// Contributed, if set, is called once for each segment that held
	// matching events, with how many (before de-duplication): an export's
	// provenance. It is called from the engine's workers, concurrently.
	Contributed func(segment string, events int)
}

// hit is one matched event. key is its identity: tenant, a zero byte, ID.
// Senders choose IDs, so an ID is unique only within its tenant: deduping
// on the ID alone let one tenant's token hide another tenant's event from
// a cross-tenant query by reusing its ID.
type hit struct {
	t    time.Time
	key  string
	line []byte
}

func hitKey(tenant, id string) string { return tenant + "\x00" + id }

func compareHits(a, b hit) int {
	if c := a.t.Compare(b.t); c != 0 {
		return c
	}
	return cmp.Compare(a.key, b.key)
}

// Run streams the events matching f to emit in event-time order (ties by
// tenant, then ID), each (tenant, ID) once. Hours are read one at a time,
// the next while the current one is emitted; within an hour the segments
// are fetched and read in parallel (Config.Concurrency) and their matches
// merged, spilling sorted runs to disk past Config.MemoryBudget (shared by
// the hour being emitted and the hour being read), so memory stays bounded
// whatever the range. Unreadable segments are reported in Stats.Failed and
// skipped unless opts.Strict. emit is called from the caller's goroutine.
func (q *Engine) Run(ctx context.Context, f Filter, opts Options, emit func(line []byte) error) (Stats, error) {
	if err := f.Validate(); err != nil {
		return Stats{}, err
	}
	var st counters
	stop := make(chan struct{})
	var pw sync.WaitGroup
	if opts.Progress != nil {
		pw.Add(1)
		go func() {
			defer pw.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					opts.Progress(st.snapshot())
				}
			}
		}()
	}
	err := q.run(ctx, f, opts, emit, &st)
	close(stop)
	pw.Wait()
	s := st.snapshot()
	if opts.Progress != nil {
		opts.Progress(s)
	}
	return s, err
}

type counters struct {
	total, pruned, scanned, matched, dupes, bytes atomic.Int64
	mu                                            sync.Mutex
	failed                                        []SegmentError
}

func (c *counters) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Total: c.total.Load(), Pruned: c.pruned.Load(), Scanned: c.scanned.Load(), Matched: c.matched.Load(),
		Dupes: c.dupes.Load(), Bytes: c.bytes.Load(), Failed: append([]SegmentError(nil), c.failed...)}
}

var errLimit = errors.New("limit reached")

func (q *Engine) run(ctx context.Context, f Filter, opts Options, emit func([]byte) error, st *counters) error {
	kinds := []string{f.Kind}
	if f.Kind == "" {
		kinds = kinds[:0]
		for _, k := range event.Kinds {
			if !slices.Contains(f.NotKinds, string(k)) {
				kinds = append(kinds, string(k))
			}
		}
	}
	var hours []time.Time
	for h := f.From.Truncate(time.Hour); h.Before(f.To); h = h.Add(time.Hour) {
		hours = append(hours, h)
	}
	if len(hours) == 0 {
		return nil
	}
	budget := int64(q.cfg.MemoryBudget)
	if opts.MemoryBudget > 0 {
		budget = int64(opts.MemoryBudget)
	}
	// The range is read in units of whole hours, in order. A unit's
	// matches are merged alone (an hour's segments hold exactly that
	// hour's events, so units in order are events in order, and an
	// event sent twice has one time, so one unit). A unit is one hour
	// while hours are busy; after a unit whose matches held little memory
	// the next is twice as long, up to a day: a needle's hours, a few
	// segments each and almost all ruled out on their heads, are read
	// many at once across query.concurrency instead of one hour at a
	// time.
	span := 1
	grow := func(u hourResult) {
		if u.hits != nil && len(u.hits.files) == 0 && (budget <= 0 || u.hits.memBytes() <= budget/16) {
			span = min(2*span, maxUnitHours)
		} else {
			span = 1
		}
	}
	unit := func(i int) []time.Time { return hours[i:min(i+span, len(hours))] }
	// The next unit is read while this one is emitted, so a slow consumer
	// (a network client, a file) and the segment reads overlap instead of
	// taking turns; and while units are sparse (span > 1), two are read
	// at once, so that one's listing and the other's heads overlap. The
	// reads are owned here: every path out of the loop cancels them and
	// waits for their results, and closes what they return.
	type unitRead struct {
		end time.Time // of its last hour
		ch  chan hourResult
	}
	var queue []unitRead
	pctx, pcancel := context.WithCancel(ctx)
	defer func() {
		pcancel()
		for _, u := range queue {
			if r := <-u.ch; r.hits != nil {
				r.hits.close()
			}
		}
	}()
	days := &dayLister{now: time.Now()}
	next := 0 // the first hour no read has taken
	start := func(budget int64) {
		hs := unit(next)
		next += len(hs)
		ch := make(chan hourResult, 1)
		go func() { ch <- q.readHours(pctx, f, opts, kinds, hs, budget, st, days) }()
		queue = append(queue, unitRead{end: hs[len(hs)-1].Add(time.Hour), ch: ch})
	}
	start(budget)
	emitted := 0
	for len(queue) > 0 {
		u := queue[0]
		cur := <-u.ch
		queue = queue[1:]
		if cur.err != nil {
			return cur.err
		}
		days.forget(u.end)
		grow(cur)
		// The matches one query holds in memory stay within
		// memory_budget. Busy units: the next is read only while the
		// unit being emitted holds at most half the budget, and gets
		// what is left. Sparse units: two reads at a time, each with a
		// quarter.
		held := cur.hits.memBytes()
		switch {
		case span > 1:
			quarter := budget / 4
			if budget > 0 {
				quarter = max(quarter, 1) // 0 would be no bound
			}
			for len(queue) < 2 && next < len(hours) {
				start(quarter)
			}
		case len(queue) == 0 && next < len(hours) && (budget <= 0 || held <= budget/2):
			start(max(budget-held, 0))
		}
		err := cur.hits.each(func(x hit) error {
			if opts.Limit > 0 && emitted >= opts.Limit {
				return errLimit
			}
			emitted++
			st.matched.Add(1)
			return emit(x.line)
		}, st)
		cur.hits.close()
		if err != nil {
			if errors.Is(err, errLimit) {
				return nil
			}
			return err
		}
		if len(queue) == 0 && next < len(hours) {
			start(budget)
		}
	}
	return nil
}

// maxUnitHours bounds a unit of reading (run): a day, the span one
// listing covers (dayLister).
const maxUnitHours = 24

// hourResult is one hour read: its matches, or why it could not be read.
type hourResult struct {
	hits *hourHits
	err  error
}

// readHours lists the hours' segments (including held versions that
// lifecycle hid) and scans them together.
func (q *Engine) readHours(ctx context.Context, f Filter, opts Options, kinds []string, hours []time.Time, budget int64, st *counters, days *dayLister) hourResult {
	if q.onUnit != nil {
		q.onUnit(len(hours))
	}
	var objs []store.Object
	for _, h := range hours {
		got, err := q.listHour(ctx, kinds, h, days)
		if err != nil {
			return hourResult{err: err}
		}
		objs = append(objs, got...)
	}
	st.total.Add(int64(len(objs)))
	hits, err := q.scanHour(ctx, f, opts, objs, budget, st)
	return hourResult{hits: hits, err: err}
}

// listHour lists one hour's segments, held versions that lifecycle hid
// included.
func (q *Engine) listHour(ctx context.Context, kinds []string, h time.Time, days *dayLister) ([]store.Object, error) {
	var objs []store.Object
	for _, c := range q.classes {
		// Each kind's own segments, then those of every kind (their
		// headers rule out the kinds they do not hold).
		for _, prefix := range segment.HourPrefixes(c, kinds, h) {
			listed := map[string]bool{}
			got, err := days.list(ctx, q.src, prefix, h)
			if err != nil {
				return nil, err
			}
			for _, o := range got {
				objs = append(objs, o)
				listed[o.Name] = true
			}
			if q.escrow == nil {
				continue
			}
			// Held segments that lifecycle hid (a delete marker over
			// the held version) are read by version.
			held, err := q.escrow.Held(ctx, prefix, h, func(name string) bool { return listed[name] })
			if err != nil {
				return nil, err
			}
			for _, o := range held {
				if !listed[o.Name] {
					objs = append(objs, o)
					listed[o.Name] = true
				}
			}
		}
	}
	return objs, nil
}

// dayLister lists a query's hour prefixes. A day that ended before the
// present's flush windows (dayListAfter) is listed once per prefix family
// (each kind's, every kind's) and its hours taken from that listing: one
// LIST instead of 24, most of a needle query's time over many days once
// segments are few per hour. Hours of more recent days are listed one at
// a time, when they are reached, so segments stored while the query runs
// are seen as before. Units of a query read at once (run) share the
// listings: mu guards the cache, and each day prefix is listed once
// (dayListing) while others wait for it.
type dayLister struct {
	now   time.Time
	mu    sync.Mutex
	cache map[string]*dayListing     // day prefix -> its listing
	dirs  map[string]map[string]bool // class -> its directories ("<class>/<name>/")
}

// dayListing is one day prefix listed once: done closes when objs and
// err are set. Units read at once (run) may want the same day.
type dayListing struct {
	done chan struct{}
	day  time.Time
	objs []store.Object
	err  error
}

// dayListAfter is how long after a day ends its listing is taken to be
// complete: the archiver's flush windows for the day's last hours.
const dayListAfter = 2 * time.Hour

func (l *dayLister) list(ctx context.Context, src objects, prefix string, h time.Time) ([]store.Object, error) {
	day := h.UTC().Truncate(24 * time.Hour)
	if !day.Add(24*time.Hour + dayListAfter).Before(l.now) {
		return collect(src.List(ctx, prefix))
	}
	if none, err := l.noSuchDir(ctx, src, prefix); none || err != nil {
		return nil, err
	}
	// HourPrefix ends ".../<yyyy>/<mm>/<dd>/<hh>/": the day's prefix
	// drops "<hh>/".
	dp := prefix[:len(prefix)-3]
	l.mu.Lock()
	if l.cache == nil {
		l.cache = map[string]*dayListing{}
	}
	e, ok := l.cache[dp]
	if !ok {
		e = &dayListing{done: make(chan struct{}), day: day}
		l.cache[dp] = e
	}
	l.mu.Unlock()
	if !ok {
		e.objs, e.err = collect(src.List(ctx, dp))
		close(e.done)
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	var out []store.Object
	for _, o := range e.objs {
		if strings.HasPrefix(o.Name, prefix) {
			out = append(out, o)
		}
	}
	return out, nil
}

// dirLister is what a store may offer to list a prefix's directories
// (*store.Store does).
type dirLister interface {
	Dirs(ctx context.Context, prefix string) ([]string, error)
}

// noSuchDir reports whether prefix is a kind's hour prefix,
// "<class>/<kind>/<yyyy>/...", under a class that has no such kind
// directory at all: an archive written in every-kind segments (format 3)
// has none, and each closed day would cost one empty LIST per kind. The
// class's directories are listed once per query; a store that cannot
// list directories has every prefix listed.
func (l *dayLister) noSuchDir(ctx context.Context, src objects, prefix string) (bool, error) {
	dl, ok := src.(dirLister)
	if !ok {
		return false, nil
	}
	class, rest, _ := strings.Cut(prefix, "/")
	kind, _, _ := strings.Cut(rest, "/")
	if kind == "" || kind[0] >= '0' && kind[0] <= '9' { // a year: every kind's
		return false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	dirs, ok := l.dirs[class]
	if !ok {
		got, err := dl.Dirs(ctx, class+"/")
		if err != nil {
			return false, err
		}
		dirs = map[string]bool{}
		for _, d := range got {
			dirs[d] = true
		}
		if l.dirs == nil {
			l.dirs = map[string]map[string]bool{}
		}
		l.dirs[class] = dirs
	}
	return !dirs[class+"/"+kind+"/"], nil
}

// forget drops the listings of days that end at or before t: the query
// has read past them.
func (l *dayLister) forget(t time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for dp, e := range l.cache {
		if !e.day.Add(24 * time.Hour).After(t) {
			select {
			case <-e.done:
				delete(l.cache, dp)
			default: // still being listed by a unit that wants it
			}
		}
	}
}

func collect(seq iter.Seq2[store.Object, error]) ([]store.Object, error) {
	var out []store.Object
	for o, err := range seq {
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

// scanHour reads the hour's segments in parallel and collects matches.
func (q *Engine) scanHour(ctx context.Context, f Filter, opts Options, objs []store.Object, budget int64, st *counters) (*hourHits, error) {
	hh := &hourHits{budget: budget, dir: opts.SpillDir}
	// What each worker may hold of one segment's matches before staging
	// them on disk (scanSegment).
	chunk := max(budget/int64(2*q.cfg.Concurrency), 4<<10)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan store.Object)
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; cancel() })
	}
	for i := 0; i < q.cfg.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for obj := range work {
				name := obj.Name
				n, err := q.scanSegment(ctx, f, obj, st, chunk, hh)
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					err = q.explainShredded(ctx, err)
					st.mu.Lock()
					st.failed = append(st.failed, SegmentError{Name: name, Err: err})
					st.mu.Unlock()
					if opts.Strict {
						fail(fmt.Errorf("%w: %v", ErrStrict, err))
						return
					}
					continue
				}
				if n > 0 && opts.Contributed != nil {
					opts.Contributed(name, n)
				}
			}
		}()
	}
feed:
	for _, o := range objs {
		select {
		case work <- o:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		hh.close()
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		hh.close()
		return nil, err
	}
	return hh, nil
}

// headProbe is the first ranged GET of a segment: enough for the head
// (header and index) of most segments, so that one small request decides
// whether the body is needed at all.
const headProbe = 64 << 10

// scanSegment gathers the matches of one segment and, once the whole
// segment has been read and verified, hands them to hh, returning how
// many there were; a segment that fails adds nothing. Its matches wait in
// a staging hourHits of its own whose budget is chunk: past it they are
// spilled, sealed, so a segment of many matches (the archiver cuts up to
// flush_events) holds at most chunk bytes in memory beyond the hour's
// budget. It fetches the
// head with ranged GETs and the body only if the head does not rule the
// segment out: a pruned segment costs its head's bytes, not the object's
// (an unranged GET would have the server stream the rest into the socket
// whether read or not).
func (q *Engine) scanSegment(ctx context.Context, f Filter, obj store.Object, st *counters, chunk int64, hh *hourHits) (int, error) {
	name := obj.Name
	mk := memoKeys{Set: q.keys, memo: q.deks}
	ks := any(mk)
	if q.escrow != nil {
		ks = escrowKeys{memoKeys: mk, lookup: func() ([]byte, bool, error) { return q.escrow.DataKey(ctx, name) }}
	}
	var src ranger = q.src
	if obj.Version != "" {
		src = versionRanger{q.escrow, obj.Version}
	}
	heads := q.heads
	if obj.Version != "" {
		heads = nil // a held version, read through the escrow
	}
	r, fetched, err := openStored(ctx, src, obj, ks, segment.ReaderOptions{MaxPlaintext: int64(q.cfg.MaxSegmentBytes)}, heads)
	if err != nil {
		st.bytes.Add(fetched)
		return 0, err
	}
	defer func() { st.bytes.Add(r.Fetched()) }()
	defer r.Close()
	if !q.noPrune && f.RulesOut(r.Header(), r.Index()) {
		st.pruned.Add(1)
		return 0, nil
	}
	st.scanned.Add(1)
	stage := &hourHits{budget: chunk, dir: hh.dir}
	ok := false
	defer func() {
		if !ok {
			stage.close()
		}
	}()
	var hits []hit
	var held int64 // bytes of hits, as hourHits counts them
	n := 0
	// flush sorts what is held (events reach Kafka roughly in time order:
	// a nearly sorted slice sorts cheaply) and stages it as one run.
	flush := func() error {
		slices.SortFunc(hits, compareHits)
		err := stage.add(hits)
		hits, held = nil, 0
		return err
	}
	// keep adds a matching line (without its newline) and its row.
	keep := func(t time.Time, l []byte, rw *row) error {
		// Copies: l and rw's strings live in the reader's buffer.
		x := hit{t: t, key: hitKey(rw.Tenant, rw.ID), line: bytes.Clone(l)}
		hits = append(hits, x)
		n++
		if held += int64(len(x.line) + len(x.key) + hitOverhead); held >= chunk/4 {
			return flush()
		}
		return nil
	}
	var rw row
	if r.Header().Version == segment.Version3 {
		if err := q.scanColumns(r, f, keep); err != nil {
			return 0, err
		}
		if err := flush(); err != nil {
			return 0, err
		}
		ok = true
		return n, hh.adopt(stage)
	}
	body, err := r.Body()
	if err != nil {
		return 0, err
	}
	br := bufio.NewReaderSize(body, 256<<10)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 1 {
			l := line[:len(line)-1]
			t, match, merr := f.match(l, &rw)
			if merr != nil {
				return 0, fmt.Errorf("segment %s: %v", name, merr)
			}
			if match {
				if err := keep(t, l, &rw); err != nil {
					return 0, err
				}
			}
		}
		if err == io.EOF {
			break
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, fmt.Errorf("segment %s: event longer than 256 KiB", name)
		}
		if err != nil {
			return 0, err // names the segment already
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	// The body read to its end has verified: the segment's matches join
	// the hour.
	ok = true
	return n, hh.adopt(stage)
}

// scanColumns is scanSegment's reading of a v3 (columnar) body: the
// filter's members are read from their columns, and only the lines that
// match are rebuilt (docs/QUERY.md). A value that is not a plain string
// (an escape, another JSON type) makes the row go the way of a v2 line.
func (q *Engine) scanColumns(r *Stored, f Filter, keep func(time.Time, []byte, *row) error) error {
	cols := f.columns()
	keys := make([]string, len(cols))
	for i, c := range cols {
		keys[i] = c.key
	}
	var line []byte
	var rw row
	return r.Blocks(func(b *columnar.Block, d *columnar.Decoder) error {
		rows, err := d.Rows(b, keys)
		if err != nil {
			return err
		}
		for rows.Next() {
			rw = row{}
			plain := rows.Verbatim() == nil
			for k, c := range cols {
				if plain = plain && c.set(&rw, rows.Value(k)); !plain {
					break
				}
			}
			if plain {
				_, match, err := f.matchRow(&rw)
				if err != nil {
					return fmt.Errorf("segment %s: %v", r.Name(), err)
				}
				if !match {
					continue
				}
			}
			if line, err = rows.AppendLine(line[:0]); err != nil {
				return err
			}
			l := line[:len(line)-1]
			// The whole line: for the ID of a match (and everything of a
			// row the columns could not give).
			t, match, err := f.match(l, &rw)
			if err != nil {
				return fmt.Errorf("segment %s: %v", r.Name(), err)
			}
			if match {
				if err := keep(t, l, &rw); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// ranger is what OpenStored needs from the store.
type ranger interface {
	GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
}

// Stored is a segment opened from the store: its header and index are
// read; the body is fetched when Body is first read.
type Stored struct {
	*segment.Reader
	head int64
	tail *lazyRange
	cr   *countingReader
}

// Fetched is the number of stored bytes fetched so far.
func (s *Stored) Fetched() int64 { return s.head + s.cr.n }

// Close closes the reader and the body's stream, if one was opened.
func (s *Stored) Close() error {
	s.Reader.Close()
	return s.tail.Close()
}

// OpenStored opens a stored segment with ranged GETs: the head (header and
// index) first, and the body only if the caller reads it. So a segment
// ruled out on its index costs its head's bytes, not the object's (an
// unranged GET would have the server stream the rest into the socket
// whether read or not). ks is what segment.Open takes. On error it still
// reports the bytes it fetched.
func OpenStored(ctx context.Context, src ranger, obj store.Object, ks any, opts segment.ReaderOptions) (*Stored, int64, error) {
	return openStored(ctx, src, obj, ks, opts, nil)
}

// openStored is OpenStored taking the head from heads when it holds it,
// and keeping it there once it has opened. A cached head that does not
// open is dropped and the segment opened again from the store, so the
// cache can never make a segment unreadable.
func openStored(ctx context.Context, src ranger, obj store.Object, ks any, opts segment.ReaderOptions, heads *HeadCache) (*Stored, int64, error) {
	name := obj.Name
	var fetched int64
	get := func(off, n int64) ([]byte, error) {
		if n <= 0 {
			return nil, nil
		}
		rc, err := src.GetRange(ctx, name, off, n)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		// One allocation of the range's size (io.ReadAll grows from 512
		// bytes, a dozen allocations per head); a shorter answer is what
		// the object holds.
		b := make([]byte, n)
		m, err := io.ReadFull(rc, b)
		fetched += int64(m)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("cannot read segment %s: %w", name, err)
		}
		return b[:m], nil
	}
	var head []byte
	if heads != nil {
		head = heads.get(name, obj.Size)
	}
	cached := head != nil
	if !cached {
		var err error
		if head, err = get(0, min(headProbe, obj.Size)); err != nil {
			return nil, fetched, err
		}
	}
	// At most two more requests: one to learn the index length when the
	// header is long, one for the rest of the index.
	for i := 0; i < 2; i++ {
		need, ok := segment.HeadLen(head)
		if ok || int64(need) > obj.Size || need <= len(head) {
			break
		}
		// 64 bytes more: a v2 reader withholds the object's last 64 bytes
		// (its signature) and so reads that far ahead of what it returns.
		more, err := get(int64(len(head)), min(int64(need-len(head))+64, obj.Size-int64(len(head))))
		if err != nil {
			return nil, fetched, err
		}
		head = append(head, more...)
	}
	tail := &lazyRange{open: func() (io.ReadCloser, error) {
		return src.GetRange(ctx, name, int64(len(head)), obj.Size-int64(len(head)))
	}, empty: int64(len(head)) >= obj.Size}
	cr := &countingReader{r: tail}
	in := io.MultiReader(bytes.NewReader(head), &lazyBuffer{r: cr})
	r, err := segment.Open(in, name, ks, opts)
	if err != nil {
		tail.Close()
		if cached { // dropped, so the retry fetches it (and keeps it if it opens)
			heads.drop(name)
			r, more, err := openStored(ctx, src, obj, ks, opts, heads)
			return r, fetched + cr.n + more, err
		}
		return nil, fetched + cr.n, err
	}
	if heads != nil && !cached && cr.n == 0 {
		// What Open read, and no more: the head, and the 64 bytes a v2
		// reader looks ahead.
		if n, ok := segment.HeadLen(head); ok {
			heads.put(name, obj.Size, head[:min(len(head), n+64)])
		}
	}
	return &Stored{Reader: r, head: fetched, tail: tail, cr: cr}, fetched, nil
}

// UseHeadCache has the engine keep segments' heads in c (docs/QUERY.md
// §6). Call it before the first query.
func (q *Engine) UseHeadCache(c *HeadCache) { q.heads = c }

// escrow is what legal holds keep (docs/HOLDS.md): the data keys of held
// segments whose period key was shredded, and held segments that
// lifecycle hid behind a delete marker, read by version.
type escrow interface {
	DataKey(ctx context.Context, name string) (dek []byte, ok bool, err error)
	Held(ctx context.Context, prefix string, hour time.Time, listed func(name string) bool) ([]store.Object, error)
	GetVersionRange(ctx context.Context, name, version string, off, length int64) (io.ReadCloser, error)
}

// versionRanger reads one version of a held segment.
type versionRanger struct {
	e       escrow
	version string
}

func (v versionRanger) GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error) {
	return v.e.GetVersionRange(ctx, name, v.version, off, length)
}

// UseEscrow makes the engine read held segments whose period keys were
// shredded with their escrowed data keys. Call before the first Run.
func (q *Engine) UseEscrow(e escrow) { q.escrow = e }

// escrowKeys opens data keys with the reader's keys, and falls back to the
// escrow when the period key is gone. A wrong escrowed key fails like any
// wrong key: the index does not authenticate.
type escrowKeys struct {
	memoKeys
	lookup func() ([]byte, bool, error)
}

func (k escrowKeys) OpenKey(id string, info, sealed []byte) ([]byte, error) {
	dek, err := k.memoKeys.OpenKey(id, info, sealed)
	var nf *keyring.NotFoundError
	if !errors.As(err, &nf) {
		return dek, err
	}
	dek, ok, lerr := k.lookup()
	if lerr != nil {
		// Still a missing key (the store failing is not tampering), with
		// why the escrow did not stand in.
		return nil, fmt.Errorf("%w (and its escrow: %v)", err, lerr)
	}
	if !ok {
		return nil, err
	}
	return dek, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// lazyBuffer buffers r from its first Read: most segments opened are
// ruled out on their head and never read further, and a 256 KiB buffer
// each would be most of what a needle query allocates.
type lazyBuffer struct {
	r  io.Reader
	br *bufio.Reader
}

func (l *lazyBuffer) Read(p []byte) (int, error) {
	if l.br == nil {
		l.br = bufio.NewReaderSize(l.r, 256<<10)
	}
	return l.br.Read(p)
}

// lazyRange opens its source on the first Read: the body of a segment is
// requested only when the reader reaches it.
type lazyRange struct {
	open  func() (io.ReadCloser, error)
	empty bool // nothing after the head: never request anything
	rc    io.ReadCloser
}

func (l *lazyRange) Read(p []byte) (int, error) {
	if l.rc == nil {
		if l.empty {
			return 0, io.EOF
		}
		rc, err := l.open()
		if err != nil {
			return 0, err
		}
		l.rc = rc
	}
	return l.rc.Read(p)
}

// Close closes the source if it was opened.
func (l *lazyRange) Close() error {
	if l.rc == nil {
		return nil
	}
	return l.rc.Close()
}

// ShreddedError is a segment whose period's keys were destroyed on time:
// not damage, deletion. It names the receipt that proves it.
type ShreddedError struct {
	KeyID   string
	At      time.Time
	Receipt string
}

func (e *ShreddedError) Error() string {
	return fmt.Sprintf("key %s was shredded on %s (receipt %s): its events are deleted", e.KeyID, e.At.Format("2006-01-02"), e.Receipt)
}

// explainShredded turns "key not in keyring" into a ShreddedError when the
// bucket holds a valid shred receipt for that key's class and period.
func (q *Engine) explainShredded(ctx context.Context, err error) error {
	var nf *keyring.NotFoundError
	if !errors.As(err, &nf) {
		return err
	}
	class, period, ok := strings.Cut(strings.SplitN(nf.ID, ".v", 2)[0], "/")
	if !ok {
		return err
	}
	name := retention.ReceiptName(class, period)
	rc, gerr := q.src.GetRange(ctx, name, 0, 64<<10)
	if gerr != nil {
		return err
	}
	defer rc.Close()
	b, gerr := io.ReadAll(io.LimitReader(rc, 64<<10))
	if gerr != nil {
		return err
	}
	r, perr := retention.ParseReceipt(b, q.keys)
	if perr != nil || !slices.Contains(r.KeyIDs, nf.ID) {
		return err
	}
	return fmt.Errorf("%w", &ShreddedError{KeyID: nf.ID, At: r.DestroyedAt, Receipt: name})
}
