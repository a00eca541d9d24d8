package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"iter"
	"maps"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/pipeline/dlq"
)

// objects is what the archiver needs from the S3 store.
type objects interface {
	Put(ctx context.Context, name string, r io.Reader, size int64, lock store.Lock) error
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	List(ctx context.Context, prefix string) iter.Seq2[store.Object, error]
}

// committer commits offsets with metadata on behalf of a group member.
type committer interface {
	OffsetCommit(ctx context.Context, req *kafka.OffsetCommitRequest) (*kafka.OffsetCommitResponse, error)
}

// Archiver is `custody archive run`: a member of the consumer group that
// cuts its partitions into segments. See docs/PIPELINE.md for the protocol.
type Archiver struct {
	cfg       Config
	kafka     kafkaconn.Config
	ret       archive.Retention
	classes   map[string]bool
	retention map[string]archive.Class
	store     objects
	keys      keyring.WriteKeys // the signer and V1; the public keyring is public
	// public is the public keyring in use: SetPublic swaps it (`custody
	// keys generate` adds keys while archivers run) while workers seal
	// and verify with whichever one they load.
	public atomic.Pointer[keyring.PublicKeyring]
	log    *zap.Logger
	dialer *kafka.Dialer
	client *kafka.Client
	// committer is client, except in unit tests of the cut logic.
	committer committer
	dlq       *kafka.Writer
	now       func() time.Time

	mem         atomic.Int64 // bytes held by open buffers, all partitions
	uploadErr   atomic.Pointer[string]
	kafkaErr    atomic.Pointer[string]
	m           metrics
	commitEvery time.Duration

	// Crash, if set, is called at each step of the storage protocol
	// ("after-upload", "after-checkpoint", "after-commit"); the fault
	// tests make it kill the process there.
	Crash func(step string)
}

func (a *Archiver) crash(step string) {
	if a.Crash != nil {
		a.Crash(step)
	}
}

type metrics struct {
	consumed, archived, skipped, dlq, segments prometheus.Counter
	checkpoints                                prometheus.Counter
	bytesIn, bytesOut, uploadErrors            prometheus.Counter
	flushSeconds                               prometheus.Histogram
	lag                                        *prometheus.GaugeVec
	openBuffers, bufferBytes, assigned         prometheus.Gauge
}

func newMetrics() metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_archiver_" + name, Help: help})
	}
	return metrics{
		consumed:     c("events_consumed_total", "Records read from Kafka."),
		archived:     c("events_archived_total", "Events stored in segments."),
		skipped:      c("events_skipped_total", "Records skipped on replay because a stored segment already holds them."),
		dlq:          c("dead_letters_total", "Records sent to the dead-letter topic."),
		segments:     c("segments_total", "Segments stored."),
		checkpoints:  c("checkpoints_total", "Chain checkpoints stored (docs/CHAIN.md)."),
		bytesIn:      c("bytes_in_total", "Plaintext bytes of archived events."),
		bytesOut:     c("bytes_out_total", "Segment bytes stored."),
		uploadErrors: c("upload_errors_total", "Failed segment uploads (each retried)."),
		flushSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "custody_archiver_flush_seconds", Help: "Time to build and store one segment.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
		lag:         prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "custody_archiver_lag_records", Help: "Records between the archiver and the end of each partition."}, []string{"partition"}),
		openBuffers: prometheus.NewGauge(prometheus.GaugeOpts{Name: "custody_archiver_open_buffers", Help: "Open buffers (class, kind, hour and partition)."}),
		bufferBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "custody_archiver_buffer_bytes", Help: "Memory held by open buffers."}),
		assigned:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "custody_archiver_assigned_partitions", Help: "Partitions this member archives."}),
	}
}

func (m metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.checkpoints, m.consumed, m.archived, m.skipped, m.dlq, m.segments, m.bytesIn, m.bytesOut, m.uploadErrors, m.flushSeconds, m.lag, m.openBuffers, m.bufferBytes, m.assigned}
}

// New returns an archiver. It writes format v2 segments with the public
// keyring (which must hold a key for every class and period of event time
// it will see; a missing key stops that buffer, with an error in the log
// and in readiness, until `custody keys generate` adds it) and signs them
// with keys.Signer. It can never read what it writes.
func New(cfg Config, kc kafkaconn.Config, ret archive.Retention, st objects, keys keyring.WriteKeys, log *zap.Logger, reg prometheus.Registerer) (*Archiver, error) {
	dialer, err := kc.Dialer()
	if err != nil {
		return nil, err
	}
	tr, err := kc.Transport()
	if err != nil {
		return nil, err
	}
	a := &Archiver{
		cfg: cfg, kafka: kc, ret: ret, classes: ret.NameSet(), store: st, keys: keys, log: log, dialer: dialer,
		client: &kafka.Client{Addr: kafka.TCP(kc.Brokers...), Transport: tr, Timeout: 30 * time.Second},
		dlq: &kafka.Writer{Addr: kafka.TCP(kc.Brokers...), Topic: kc.DLQTopic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{},
			Transport: tr, BatchTimeout: time.Millisecond, MaxAttempts: 3},
		now: time.Now, m: newMetrics(), commitEvery: 2 * time.Second,
	}
	a.committer = a.client
	a.public.Store(keys.Public)
	a.retention = map[string]archive.Class{}
	for _, c := range ret.Classes {
		a.retention[c.Name] = c
	}
	if reg != nil {
		for _, c := range ret.Classes {
			// Seconds of event time ahead for which the public keyring
			// can seal this class's segments: an archiver that meets an
			// event past it stops that buffer until keys are added.
			horizon := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custody_archiver_key_horizon_seconds",
				Help:        "Seconds from now to the end of the last day with a public key, for new segments of the class (0: none for today).",
				ConstLabels: prometheus.Labels{"class": c.Name}}, func() float64 {
				now := a.now()
				return max(0, a.public.Load().Horizon(c.Name, now, horizonDays).Sub(now).Seconds())
			})
			if err := reg.Register(horizon); err != nil {
				return nil, err
			}
		}
		for _, c := range a.m.collectors() {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return a, nil
}

// horizonDays bounds how far ahead the key horizon looks: past a year the
// figure no longer matters to an alert.
const horizonDays = 400

// SetPublic makes kr the public keyring new segments are sealed to and
// stored objects are verified with, if it still trusts this archiver's
// signing key. Safe while the archiver runs.
func (a *Archiver) SetPublic(kr *keyring.PublicKeyring) error {
	if _, ok := kr.Signer(a.keys.Signer.ID); !ok {
		return fmt.Errorf("signing key %s is not a signer of the new public keyring: readers would refuse what this archiver writes", a.keys.Signer.ID)
	}
	a.public.Store(kr)
	return nil
}

// Ready reports the conditions readiness probes need: the last upload and
// Kafka errors, if they are still current.
func (a *Archiver) Ready(context.Context) error {
	if p := a.uploadErr.Load(); p != nil {
		return errors.New(*p)
	}
	if p := a.kafkaErr.Load(); p != nil {
		return errors.New(*p)
	}
	return nil
}

// Run is a group member until ctx ends. It then flushes and commits every
// partition it holds, within Config.ShutdownTimeout, and leaves the group.
func (a *Archiver) Run(ctx context.Context) error {
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                    a.cfg.GroupID,
		Brokers:               a.kafka.Brokers,
		Dialer:                a.dialer,
		Topics:                []string{a.kafka.Topic},
		StartOffset:           kafka.FirstOffset,
		HeartbeatInterval:     time.Second,
		SessionTimeout:        10 * time.Second,
		RebalanceTimeout:      a.cfg.ShutdownTimeout + 10*time.Second,
		JoinGroupBackoff:      time.Second,
		WatchPartitionChanges: true,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			a.log.Warn("consumer group", zap.String("msg", fmt.Sprintf(msg, args...)))
		}),
	})
	if err != nil {
		return fmt.Errorf("cannot join consumer group %s: %w", a.cfg.GroupID, err)
	}
	defer func() {
		// Close ends the generation: every partition worker flushes and
		// commits, then the member leaves the group.
		if err := group.Close(); err != nil {
			a.log.Warn("leaving consumer group", zap.Error(err))
		}
	}()
	for {
		gen, err := group.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			a.kafkaErr.Store(ptr(fmt.Sprintf("consumer group: %v", err)))
			a.log.Warn("consumer group generation failed", zap.Error(err))
			continue
		}
		a.kafkaErr.Store(nil)
		parts := gen.Assignments[a.kafka.Topic]
		ids := make([]int, len(parts))
		for i, p := range parts {
			ids[i] = p.ID
			gen.Start(func(gctx context.Context) {
				// A partition whose chain moved under it (a stale member
				// wrote the checkpoint it meant to write) starts over
				// from the committed offset within the generation.
				for a.runPartition(gctx, gen, p.ID) {
					select {
					case <-gctx.Done():
						return
					case <-time.After(time.Second):
					}
				}
			})
		}
		a.log.Info("partitions assigned", zap.Int32("generation", gen.ID), zap.Ints("partitions", ids))
	}
}

func ptr(s string) *string { return &s }

// worker archives one partition for one generation.
type worker struct {
	a          *Archiver
	gen        *kafka.Generation
	partition  int
	buffers    map[key]*buffer
	cov        coverage
	next       int64 // offset after the last record handled
	committed  int64
	commitMD   string
	lastCommit time.Time
	f          fields
	ch         chainState
	// every is whether this partition's segments hold every kind: the
	// key scheme of its commit metadata, which the next owner follows,
	// so that it reproduces a crashed owner's cuts and names. When the
	// configured scheme differs, switchAt is where it changes (see
	// switchScheme); 0 until the first record sets it.
	every    bool
	switchAt int64
}

// runPartition archives one partition until the generation ends or an
// error stops it. It reports whether the partition should start over
// (errChainMoved).
func (a *Archiver) runPartition(ctx context.Context, gen *kafka.Generation, partition int) (restart bool) {
	log := a.log.With(zap.Int("partition", partition), zap.Int32("generation", gen.ID))
	w := &worker{a: a, gen: gen, partition: partition, buffers: map[key]*buffer{}}
	start, cov, md, scheme, err := a.fetchCommitted(ctx, partition)
	if err != nil {
		log.Warn("cannot read committed offset; the partition restarts with the next generation", zap.Error(err))
		return false
	}
	w.cov, w.next, w.committed, w.commitMD = cov, start, start, md
	w.every = a.everyKind()
	switch scheme {
	case metadataKinds:
		w.every = false
	case metadataEvery:
		w.every = true
	}
	if err := w.loadChain(ctx, md); err != nil {
		a.uploadErr.Store(ptr(fmt.Sprintf("partition %d: %v", partition, err)))
		log.Error("cannot find the head of the partition's chain; the partition restarts with the next generation", zap.Error(err))
		return false
	}
	a.m.assigned.Inc()
	defer a.m.assigned.Dec()
	log.Info("partition started", zap.Int64("offset", start), zap.Int("coverage_entries", len(cov)))

	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: a.kafka.Brokers, Topic: a.kafka.Topic, Partition: partition, Dialer: a.dialer,
		MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 250 * time.Millisecond, QueueCapacity: 1000,
	})
	if start < 0 {
		start = kafka.FirstOffset
	}
	if err := r.SetOffset(start); err != nil {
		log.Warn("cannot set offset", zap.Error(err))
		r.Close()
		return false
	}
	defer func() {
		r.Close()
		for _, b := range w.buffers {
			a.mem.Add(-b.size())
		}
		a.m.openBuffers.Sub(float64(len(w.buffers)))
		a.m.bufferBytes.Set(float64(a.mem.Load()))
	}()

	// Records are fetched on this goroutine, each FetchMessage bounded by
	// the next tick's deadline: a pump goroutine handing every record over
	// a channel cost a goroutine switch per record (kafka-go's reader
	// already hands each one over its own). A deadline that expires while
	// a record waits leaves it in the reader for the next call.
	const tickEvery = time.Second
	for {
		fctx, cancel := context.WithTimeout(ctx, tickEvery)
		var err error
		fetched := false
		for {
			var m kafka.Message
			if m, err = r.FetchMessage(fctx); err != nil {
				break
			}
			fetched = true
			if err := w.handle(ctx, m); err != nil {
				cancel()
				return w.stop(ctx, log, err)
			}
		}
		cancel()
		if fetched {
			a.kafkaErr.Store(nil) // Kafka answers again; once a tick, not per record
		}
		switch {
		case ctx.Err() != nil:
			w.shutdown(log)
			return false
		case !errors.Is(err, context.DeadlineExceeded):
			// A fatal fetch error: the generation restarts the partition.
			a.kafkaErr.Store(ptr(fmt.Sprintf("partition %d: %v", partition, err)))
			log.Warn("fetch failed", zap.Error(err))
			w.shutdown(log)
			return false
		}
		a.m.lag.WithLabelValues(strconv.Itoa(partition)).Set(float64(r.Stats().Lag))
		if err := w.tick(ctx); err != nil {
			return w.stop(ctx, log, err)
		}
	}
}

// stop ends the worker after err. When the chain moved under it, nothing
// more is stored or committed (its view of what is stored is stale) and
// the partition starts over; otherwise it flushes and commits what it can.
func (w *worker) stop(ctx context.Context, log *zap.Logger, err error) bool {
	if errors.Is(err, errChainMoved) {
		log.Warn("partition starts over from its committed offset", zap.Error(err))
		return ctx.Err() == nil
	}
	if ctx.Err() == nil {
		log.Warn("partition stopped", zap.Error(err))
	}
	w.shutdown(log)
	return false
}

// fetchCommitted reads the committed offset and coverage of a partition.
// The scheme is the commit metadata's version ("" when it has none).
func (a *Archiver) fetchCommitted(ctx context.Context, partition int) (offset int64, cov coverage, md, scheme string, err error) {
	resp, err := a.client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: a.cfg.GroupID, Topics: map[string][]int{a.kafka.Topic: {partition}}})
	if err != nil {
		return 0, nil, "", "", err
	}
	if resp.Error != nil {
		return 0, nil, "", "", resp.Error
	}
	for _, p := range resp.Topics[a.kafka.Topic] {
		if p.Partition != partition {
			continue
		}
		if p.Error != nil {
			return 0, nil, "", "", p.Error
		}
		cov, scheme, err := decodeCoverage(p.Metadata)
		if err != nil {
			// A corrupt hint is not fatal: the existence check before each
			// buffer finds stored segments anyway.
			a.log.Warn("ignoring commit metadata", zap.Int("partition", partition), zap.Error(err))
			cov, scheme = coverage{}, ""
		}
		return p.CommittedOffset, cov, p.Metadata, scheme, nil
	}
	return -1, coverage{}, "", "", nil
}

func (w *worker) handle(ctx context.Context, m kafka.Message) error {
	a := w.a
	a.m.consumed.Inc()
	// w.next moves past a record only once it is buffered, known stored or
	// dead-lettered: the commit offset derives from it, and a record that
	// failed half-way (a cancelled existence check, say) must be read again.
	if err := extract(m.Value, a.classes, &w.f); err != nil {
		var inv *invalidError
		if !errors.As(err, &inv) {
			return err
		}
		if err := w.deadLetter(ctx, m, inv.reason); err != nil {
			return err
		}
		w.count(m.Offset, key{}, true)
		w.next = m.Offset + 1
		return nil
	}
	if w.every != a.everyKind() && w.switchAt == 0 {
		// The previous owner (and any stale one) read no further than
		// the high watermark this fetch saw.
		w.switchAt = max(m.HighWaterMark, m.Offset+1)
		a.log.Info("segment key scheme changes once the partition reaches the high watermark", zap.Int("partition", w.partition),
			zap.Bool("every_kind", a.everyKind()), zap.Int64("at_offset", w.switchAt))
	}
	k := key{class: w.f.Class, kind: w.f.Kind, hour: w.f.t.Truncate(time.Hour).Unix()}
	if w.every {
		k.kind = ""
	}
	if until := a.retention[k.class].RetainUntil(k.Hour()); until.Before(a.now().Add(expiryMargin)) {
		// Past its retention already: storing it would keep it longer
		// than the law allows, and object lock would refuse the date.
		if err := w.deadLetter(ctx, m, fmt.Sprintf("event time %s is past the %d-day retention of class %s (expired %s)",
			w.f.Time, a.retention[k.class].Days, k.class, until.Format(time.RFC3339))); err != nil {
			return err
		}
		w.count(m.Offset, key{}, true)
		w.next = m.Offset + 1
		return nil
	}
	if last, ok := w.cov[k]; ok && m.Offset <= last {
		a.m.skipped.Inc()
		w.count(m.Offset, k, false)
		w.next = m.Offset + 1
		return nil
	}
	b := w.buffers[k]
	if b == nil {
		// Before opening a buffer, look for a segment already stored under
		// the name it would get: one this partition's previous owner (or a
		// stale one) stored after the last commit. Its header says how far
		// it reaches, and that many records are skipped, which reproduces
		// the cut exactly.
		seg, found, err := w.stored(ctx, k, m.Offset)
		if err != nil {
			return err
		}
		if found {
			w.cov[k] = seg.Last
			w.listSegment(seg)
			a.m.skipped.Inc()
			w.count(m.Offset, k, false)
			w.next = m.Offset + 1
			return nil
		}
		b = newBuffer(k, m.Offset, a.now(), a.columnar(k))
		// The chain's counts just before this buffer's first record: what
		// a checkpoint needs when the commit offset is this buffer's.
		b.cum = maps.Clone(w.ch.cum)
		w.buffers[k] = b
		a.m.openBuffers.Inc()
	}
	w.count(m.Offset, k, false)
	before := b.size()
	if err := b.add(m.Offset, m.Value, &w.f); err != nil {
		return err
	}
	w.next = m.Offset + 1
	a.mem.Add(b.size() - before)
	a.m.bufferBytes.Set(float64(a.mem.Load()))
	if b.count >= int64(a.cfg.FlushEvents) || b.bodyLen >= int(a.cfg.FlushBytes) {
		if err := w.flush(ctx, k); err != nil {
			return err
		}
	}
	// At the memory cap the oldest buffers go first, late hours included.
	for a.mem.Load() > int64(a.cfg.MemoryCap) && len(w.buffers) > 0 {
		if err := w.flush(ctx, w.oldest()); err != nil {
			return err
		}
	}
	return w.switchScheme(ctx)
}

// columnar reports whether a buffer of k becomes a format v3 segment:
// under format 3, and for a key of every kind (v3 only) whatever the
// format, which a partition switching to format 2 still cuts.
func (a *Archiver) columnar(k key) bool { return a.cfg.SegmentFormat >= 3 || k.kind == "" }

// everyKind reports whether the configuration wants segments of every kind
// (format v3) rather than one kind each.
func (a *Archiver) everyKind() bool { return a.cfg.SegmentFormat >= 3 }

// switchScheme changes the partition's key scheme to the configured one
// once every record up to switchAt is handled. A replaying owner must cut
// and name segments as the owner before it did, or it would store again
// what that owner stored past the last commit under other names; that
// owner read nothing at or past the high watermark the first fetch here
// saw. So the partition keeps the committed scheme up to there, then cuts
// every buffer, and commits with the new scheme's metadata: past that
// commit nothing is stored, by any owner, under the old names.
func (w *worker) switchScheme(ctx context.Context) error {
	if w.switchAt == 0 || w.next < w.switchAt {
		return nil
	}
	for k := range w.buffers {
		if err := w.flush(ctx, k); err != nil {
			return err
		}
	}
	// No buffer is open: the commit is at w.next, and prunes every
	// coverage entry (all below it).
	w.every = w.a.everyKind()
	err := w.commit(ctx)
	if err == nil && w.committed == w.next && strings.HasPrefix(w.commitMD, metadataVersion(w.every)) {
		w.switchAt = 0
		w.a.log.Info("segment key scheme changed", zap.Int("partition", w.partition), zap.Bool("every_kind", w.every), zap.Int64("offset", w.next))
		return nil
	}
	// Not committed (an error, or the chain could not account for it
	// yet): no segment may be stored under the new names before it is.
	w.every = !w.every
	return err
}

func (w *worker) oldest() key {
	var ok key
	var t time.Time
	for k, b := range w.buffers {
		if t.IsZero() || b.opened.Before(t) {
			ok, t = k, b.opened
		}
	}
	return ok
}

// tick cuts the buffers the clock has made due (Config.due) and commits
// progress made without flushes (skips on replay, dead letters, idle
// partitions).
func (w *worker) tick(ctx context.Context) error {
	now := w.a.now()
	for k, b := range w.buffers {
		if !now.Before(w.a.cfg.due(k.Hour(), b.opened)) {
			if err := w.flush(ctx, k); err != nil {
				return err
			}
		}
	}
	if now.Sub(w.lastCommit) >= w.a.commitEvery {
		return w.commit(ctx)
	}
	return nil
}

// shutdown flushes every buffer and commits, within the shutdown timeout,
// on a context of its own since the generation's has ended.
func (w *worker) shutdown(log *zap.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), w.a.cfg.ShutdownTimeout)
	defer cancel()
	n := len(w.buffers)
	for k := range w.buffers {
		if err := w.flush(ctx, k); err != nil {
			log.Warn("flush at shutdown failed; the next owner replays from the last commit", zap.Error(err))
			return
		}
	}
	if err := w.commit(ctx); err != nil {
		log.Warn("commit at shutdown failed; the next owner replays from the previous commit", zap.Error(err))
		return
	}
	log.Info("partition released", zap.Int("flushed", n), zap.Int64("committed", w.committed))
}

// stored reports whether the segment that a buffer of k starting at first
// would become is already stored, and what the chain records of it (how
// far it reaches, the SHA-256 of its bytes). The header is authenticated
// (segment.Verify) before it is trusted, so a planted object cannot make
// the archiver skip records.
func (w *worker) stored(ctx context.Context, k key, first int64) (chain.Segment, bool, error) {
	m := segment.Meta{Class: k.class, Kind: k.kind, Hour: k.Hour(), Topic: w.a.kafka.Topic, Partition: int32(w.partition), FirstOffset: first}
	name := segment.Name(&m)
	var seg chain.Segment
	found := false
	err := w.retry(ctx, "check segment "+name, func() error {
		rc, err := w.a.store.Get(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			found = false
			return nil
		}
		if err != nil {
			return err
		}
		// The archiver holds no private key: it checks the signature of
		// what is stored (format v2), never trusting an unsigned or
		// foreign object; a v1 segment needs the v1 keyring.
		sum := sha256.New()
		h, err := segment.Verify(io.TeeReader(rc, sum), name, w.a.public.Load())
		if err == nil {
			_, err = io.Copy(sum, rc) // anything after what Verify read
		}
		rc.Close()
		if errors.Is(err, segment.ErrVersion1) && w.a.keys.V1 != nil {
			h, err = w.openV1(ctx, name)
		}
		if err != nil {
			return fmt.Errorf("stored segment %s cannot be trusted: %w", name, err)
		}
		seg = chain.Segment{Name: name, SHA256: hex.EncodeToString(sum.Sum(nil)), First: first, Last: h.LastOffset, Count: h.Count}
		found = true
		return nil
	})
	if err != nil {
		return chain.Segment{}, false, err
	}
	return seg, found, nil
}

// openV1 authenticates a v1 segment's header with the v1 keyring.
func (w *worker) openV1(ctx context.Context, name string) (*segment.Header, error) {
	rc, err := w.a.store.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	r, err := segment.Open(rc, name, w.a.keys.V1, segment.ReaderOptions{})
	if err != nil {
		return nil, err
	}
	return r.Header(), nil
}

// permanent marks an error that retrying cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// retry runs op until it succeeds, fails permanently or ctx ends, backing
// off up to 10 s. While it fails, readiness reports the error.
func (w *worker) retry(ctx context.Context, what string, op func() error) error {
	backoff := 200 * time.Millisecond
	for {
		err := op()
		if err == nil {
			w.a.uploadErr.Store(nil)
			return nil
		}
		var p permanent
		if errors.As(err, &p) {
			return p.error
		}
		w.a.m.uploadErrors.Inc()
		msg := fmt.Sprintf("%s: %v", what, err)
		w.a.uploadErr.Store(&msg)
		w.a.log.Warn("retrying", zap.String("op", what), zap.Duration("backoff", backoff), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// flush cuts buffer k into a segment and stores it, then commits. A name
// already taken (If-None-Match refused the upload) means another writer
// stored that segment, perhaps with a different cut: its header tells how
// far it reaches, the records it holds are dropped here and the rest stay
// buffered under their own name.
func (w *worker) flush(ctx context.Context, k key) error {
	a := w.a
	b := w.buffers[k]
	if b == nil {
		return nil
	}
	start := time.Now()
	sizeBefore := b.size()
	for b != nil {
		m := b.meta(a.kafka.Topic, w.partition)
		seg := segBuffers.Get().(*bytes.Buffer)
		var name string
		err := w.retry(ctx, "build segment", func() error {
			pub, err := a.public.Load().Current(k.class, m.Hour)
			if err != nil {
				return err
			}
			lock, err := store.LockFor(a.ret, k.class, m.Hour)
			if err != nil {
				return err
			}
			seg.Reset()
			newWriter := segment.NewWriterV2
			if a.columnar(k) {
				newWriter = segment.NewWriterV3
			}
			sw, err := newWriter(seg, m, b.ix, pub, a.keys.Signer)
			if err != nil {
				return err
			}
			name = sw.Name()
			if err := b.writeBody(sw); err != nil {
				return err
			}
			if err := sw.Close(); err != nil {
				return err
			}
			err = a.store.Put(ctx, name, bytes.NewReader(seg.Bytes()), int64(seg.Len()), lock)
			if errors.Is(err, store.ErrExists) {
				return permanent{err} // handled below, not retried
			}
			return err
		})
		segLen := seg.Len()
		var sum [sha256.Size]byte
		if err == nil {
			sum = sha256.Sum256(seg.Bytes())
		}
		segBuffers.Put(seg)
		if errors.Is(err, store.ErrExists) {
			stored, found, serr := w.stored(ctx, k, b.first)
			if serr != nil {
				return serr
			}
			if !found {
				return fmt.Errorf("segment %s was refused as existing but cannot be read", name)
			}
			w.listSegment(stored)
			last := stored.Last
			a.log.Info("segment already stored by another writer; adopting its cut", zap.String("segment", name), zap.Int64("last_offset", last))
			if last > w.cov[k] {
				w.cov[k] = last
			}
			a.m.skipped.Add(float64(min(b.count, countThrough(b, last))))
			old := b
			b, err = b.dropThrough(last)
			old.release()
			if err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		a.crash("after-upload")
		w.listSegment(chain.Segment{Name: name, SHA256: hex.EncodeToString(sum[:]), First: b.first, Last: b.last, Count: b.count})
		a.m.segments.Inc()
		a.m.archived.Add(float64(b.count))
		a.m.bytesIn.Add(float64(b.bodyLen))
		a.m.bytesOut.Add(float64(segLen))
		w.cov[k] = b.last
		b.release()
		break
	}
	delete(w.buffers, k)
	a.mem.Add(-sizeBefore)
	a.m.openBuffers.Dec()
	a.m.bufferBytes.Set(float64(a.mem.Load()))
	a.m.flushSeconds.Observe(time.Since(start).Seconds())
	return w.commit(ctx)
}

func countThrough(b *buffer, offset int64) int64 {
	var n int64
	for _, o := range b.offsets {
		if o <= offset {
			n++
		}
	}
	return n
}

// segBuffers recycles the memory segments are built in before upload.
var segBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// expiryMargin: events whose retention ends sooner than this are treated
// as expired, so a segment's retain-until date is never in the past by the
// time its upload reaches the store.
const expiryMargin = 10 * time.Minute

// maxMetadata keeps the commit metadata under the broker's default
// offset.metadata.max.bytes (4096).
const maxMetadata = 3800

// commit records progress: the offset below which every record is stored
// (or dead-lettered), and the coverage of keys stored beyond it.
func (w *worker) commit(ctx context.Context) error {
	c := w.next
	for _, b := range w.buffers {
		c = min(c, b.first)
	}
	w.cov.prune(c)
	md := w.cov.encode(c, w.every)
	if len(md) > maxMetadata && len(w.buffers) > 0 {
		// Too many keys stored past the oldest open buffer: cut it so the
		// commit offset can move on (flush commits again).
		return w.flush(ctx, w.oldest())
	}
	w.lastCommit = w.a.now()
	if c == w.committed && md+w.hint() == w.commitMD && len(w.ch.pending) == 0 {
		return nil
	}
	// The chain first: a commit moves the offset replay starts from past
	// records, and the coverage past segments, which only a checkpoint
	// already stored may list (a crash after the commit never revisits
	// them). No checkpoint, no commit.
	if c > w.ch.from || len(w.ch.pending) > 0 {
		ok, err := w.checkpoint(ctx, c)
		if err != nil || !ok {
			return err
		}
	}
	md += w.hint()
	if c == w.committed && md == w.commitMD {
		return nil
	}
	resp, err := w.a.committer.OffsetCommit(ctx, &kafka.OffsetCommitRequest{
		GroupID: w.a.cfg.GroupID, GenerationID: int(w.gen.ID), MemberID: w.gen.MemberID,
		Topics: map[string][]kafka.OffsetCommit{w.a.kafka.Topic: {{Partition: w.partition, Offset: c, Metadata: md}}},
	})
	if err != nil {
		return fmt.Errorf("cannot commit offset %d of partition %d: %w", c, w.partition, err)
	}
	for _, p := range resp.Topics[w.a.kafka.Topic] {
		if p.Error != nil {
			return fmt.Errorf("cannot commit offset %d of partition %d: %w", c, w.partition, p.Error)
		}
	}
	w.committed, w.commitMD = c, md
	w.a.crash("after-commit")
	return nil
}

// deadLetter sends a record that cannot be archived to the DLQ topic, with
// the reason and its origin in headers, retrying until Kafka takes it.
func (w *worker) deadLetter(ctx context.Context, m kafka.Message, reason string) error {
	dm := kafka.Message{Key: m.Key, Value: m.Value, Headers: append(m.Headers[:len(m.Headers):len(m.Headers)],
		kafka.Header{Key: dlq.HeaderReason, Value: []byte(reason)},
		kafka.Header{Key: dlq.HeaderSourceTopic, Value: []byte(m.Topic)},
		kafka.Header{Key: dlq.HeaderSourcePartition, Value: []byte(strconv.Itoa(m.Partition))},
		kafka.Header{Key: dlq.HeaderSourceOffset, Value: []byte(strconv.FormatInt(m.Offset, 10))},
	)}
	err := w.retry(ctx, "write dead letter", func() error { return w.a.dlq.WriteMessages(ctx, dm) })
	if err != nil {
		return err
	}
	w.a.m.dlq.Inc()
	w.a.log.Warn("record sent to the dead-letter topic", zap.Int("partition", m.Partition), zap.Int64("offset", m.Offset), zap.String("reason", reason))
	return nil
}

// Close releases the Kafka clients.
func (a *Archiver) Close() error { return a.dlq.Close() }
