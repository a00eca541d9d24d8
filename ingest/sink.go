package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest/spool"
	"github.com/custodylog/custody/internal/kafkaconn"
)

// ErrBusy means an event could be neither written to Kafka nor spooled,
// because the spool is full. The sender must retry later; nothing it sent
// in that call was kept, unless the call says otherwise.
var ErrBusy = errors.New("kafka unavailable and spool full")

// Record is one Kafka message: the partition key (the tenant, so that one
// tenant's events stay in order) and the canonical event.
type Record struct {
	Key   []byte
	Value []byte
}

// Sink delivers records to Kafka, or to the durable spool when Kafka does
// not acknowledge in time. Submit returns nil only once every record is
// either acknowledged by all in-sync replicas or fsynced in the spool. A
// drainer (Run) moves spooled records to Kafka in order.
//
// The producer is franz-go's, idempotent: a produce request that it
// retries after a lost answer (a leader killed mid-request) is recognised
// by the broker from its producer ID and sequence number, so retries never
// store a record twice. A record is spooled only once the producer has
// failed it for good (never sent), with one exception that the metrics
// count (custody_sink_unsure_spooled_total): a record sent but unanswered
// for WriteTimeout + SentWait, which Kafka may still have taken.
//
// While the spool holds anything, new records go to the spool too, behind
// the older ones, so a tenant's events reach Kafka in the order they were
// accepted.
//
// Every write first makes sure the topic exists: on the first write, and
// again after Kafka answered that it does not know the topic (deleted, or
// Kafka was unreachable when this process started), so a producer started
// on a fresh or unreachable cluster delivers once Kafka is back.
type Sink struct {
	cl       *kgo.Client
	topics   topicEnsurer
	topic    string
	known    atomic.Bool // the topic was ensured and not reported unknown since
	spool    *spool.Spool
	log      *zap.Logger
	timeout  time.Duration
	sentWait time.Duration

	written, spooled, unsure, kafkaErrors prometheus.Counter
}

// SinkOptions tune a Sink; zero values give the defaults.
type SinkOptions struct {
	// WriteTimeout bounds a direct Kafka write before falling back to
	// the spool: records not yet sent by then go to the spool. Default 5s.
	WriteTimeout time.Duration
	// SentWait is how much longer Submit waits for records that were
	// sent when WriteTimeout passed: the broker may have written them,
	// and only its answer (or the producer's retry, deduplicated) tells.
	// Default 20s.
	SentWait time.Duration
	// Registerer receives the sink's metrics; nil means none.
	Registerer prometheus.Registerer
	// Name labels the metrics (ingest, agent, send).
	Name string
}

// topicEnsurer creates the topic if absent; *kafkaconn.Client is one.
type topicEnsurer interface {
	EnsureTopic(ctx context.Context, topic string) error
}

// NewSink returns a sink writing to the configured topic with the
// process's Kafka configuration; topics are created through kc. The caller
// owns the client and the spool and closes them after the sink.
func NewSink(kc *kafkaconn.Client, sp *spool.Spool, log *zap.Logger, o SinkOptions) (*Sink, error) {
	cfg := kc.Config()
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 5 * time.Second
	}
	if o.SentWait == 0 {
		o.SentWait = 20 * time.Second
	}
	opts, err := cfg.ProducerOpts()
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.DefaultProduceTopic(cfg.Topic),
		// Murmur2 on the key, as the Java client: a tenant's events land
		// on the same partition whichever client produced them.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		cfg.ProducerCompression(),
		kgo.ProducerBatchMaxBytes(1<<20), // the broker's default message.max.bytes
		kgo.ProducerLinger(2*time.Millisecond),
		kgo.WithLogger(kgoLogger{log.Named("kafka")}),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("cannot create the kafka producer: %w", err)
	}
	labels := prometheus.Labels{"sink": o.Name}
	s := &Sink{
		cl: cl, topics: kc, topic: cfg.Topic, spool: sp, log: log, timeout: o.WriteTimeout, sentWait: o.SentWait,
		written:     prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_sink_kafka_written_total", Help: "Events acknowledged by Kafka.", ConstLabels: labels}),
		spooled:     prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_sink_spooled_total", Help: "Events written to the disk spool because Kafka did not acknowledge them in time.", ConstLabels: labels}),
		unsure:      prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_sink_unsure_spooled_total", Help: "Events spooled while a produce request holding them was still unanswered: Kafka may hold them twice.", ConstLabels: labels}),
		kafkaErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_sink_kafka_errors_total", Help: "Failed Kafka writes (each retried or spooled, never dropped).", ConstLabels: labels}),
	}
	if o.Registerer != nil {
		spoolBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custody_sink_spool_bytes", Help: "Bytes waiting in the disk spool.", ConstLabels: labels},
			func() float64 { return float64(sp.Size()) })
		// The cap beside the fill, so that an alert can say "80% full"
		// without knowing each deployment's spool_max_bytes.
		spoolMax := prometheus.NewGauge(prometheus.GaugeOpts{Name: "custody_sink_spool_max_bytes", Help: "The disk spool's size limit (spool_max_bytes); beyond it the sink refuses events.", ConstLabels: labels})
		spoolMax.Set(float64(sp.MaxBytes()))
		for _, c := range []prometheus.Collector{s.written, s.spooled, s.unsure, s.kafkaErrors, spoolBytes, spoolMax} {
			if err := o.Registerer.Register(c); err != nil {
				cl.Close()
				return nil, err
			}
		}
	}
	return s, nil
}

// kgoLogger passes franz-go's warnings and errors to zap.
type kgoLogger struct{ log *zap.Logger }

func (l kgoLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (l kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	if level > kgo.LogLevelWarn || level == kgo.LogLevelNone {
		return
	}
	fields := make([]zap.Field, 0, len(keyvals)/2)
	for i := 0; i+1 < len(keyvals); i += 2 {
		fields = append(fields, zap.Any(fmt.Sprint(keyvals[i]), keyvals[i+1]))
	}
	if level == kgo.LogLevelError {
		l.log.Error(msg, fields...)
		return
	}
	l.log.Warn(msg, fields...)
}

// RecordOf is the Kafka record of an event: keyed by tenant, the
// canonical encoding without its trailing newline as the value.
func RecordOf(e *event.Event) Record {
	b := event.AppendJSON(nil, e)
	return Record{Key: []byte(e.Tenant), Value: b[:len(b)-1]}
}

// records encodes the records of one request into shared arrays: one
// allocation for many records, where RecordOf grows a slice several times
// for each (8% of ingest's CPU). Contract: bytes handed out are never
// written again (a full array is replaced, never reused), so a record may
// outlive its request, in the producer or the spool. Not safe for
// concurrent use; the zero value is ready.
type records struct {
	buf  []byte
	keys map[string][]byte // tenant → key, shared by the request's records
}

// of is RecordOf(e), encoded into r's current array.
func (r *records) of(e *event.Event) Record {
	// A canonical line is at most a few times its members' bytes; when
	// the room left may not hold one, start a new array (doubling from
	// 16 KiB to 1 MiB), so that an append almost never reallocates. If it
	// does, the records before keep the old array, which stays valid.
	const first, most, room = 16 << 10, 1 << 20, 8 << 10
	if cap(r.buf)-len(r.buf) < room {
		r.buf = make([]byte, 0, min(max(2*cap(r.buf), first), most))
	}
	start := len(r.buf)
	r.buf = event.AppendJSON(r.buf, e)
	end := len(r.buf) - 1 // without the newline
	key, ok := r.keys[e.Tenant]
	if !ok {
		if r.keys == nil {
			r.keys = map[string][]byte{}
		}
		key = []byte(e.Tenant)
		r.keys[e.Tenant] = key
	}
	return Record{Key: key, Value: r.buf[start:end:end]}
}

// Submit delivers recs durably; see Sink. It returns ErrBusy when the
// spool is full, and then nothing was kept.
func (s *Sink) Submit(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	if s.spool.Size() > 0 {
		return s.toSpool(recs)
	}
	failed, late, err := s.write(ctx, recs, s.timeout, s.sentWait)
	s.written.Add(float64(len(recs) - len(failed) - len(late)))
	if err == nil {
		return nil
	}
	s.kafkaErrors.Inc()
	left := make([]Record, 0, len(failed)+len(late))
	for _, i := range failed {
		left = append(left, recs[i])
	}
	for _, i := range late {
		left = append(left, recs[i])
	}
	if len(late) > 0 {
		s.unsure.Add(float64(len(late)))
		s.log.Error("kafka has not answered for records it was sent; spooling them, so Kafka may hold them twice",
			zap.Int("events", len(late)), zap.Duration("waited", s.timeout+s.sentWait))
	}
	s.log.Warn("kafka write failed; spooling", zap.Int("events", len(left)), zap.Error(err))
	return s.toSpool(left)
}

func (s *Sink) toSpool(recs []Record) error {
	enc := make([][]byte, len(recs))
	for i, r := range recs {
		b := make([]byte, 0, 2+len(r.Key)+len(r.Value))
		b = binary.BigEndian.AppendUint16(b, uint16(len(r.Key)))
		b = append(b, r.Key...)
		enc[i] = append(b, r.Value...)
	}
	if err := s.spool.Append(enc); err != nil {
		if errors.Is(err, spool.ErrFull) {
			return ErrBusy
		}
		return err
	}
	s.spooled.Add(float64(len(recs)))
	return nil
}

func decodeSpooled(b []byte) (Record, error) {
	if len(b) < 2 || int(binary.BigEndian.Uint16(b)) > len(b)-2 {
		return Record{}, fmt.Errorf("spooled record of %d bytes is malformed", len(b))
	}
	k := int(binary.BigEndian.Uint16(b))
	return Record{Key: b[2 : 2+k], Value: b[2+k:]}, nil
}

// write produces recs and waits for each record's outcome. It reports the
// records that failed for good (never written: safe to send again) and,
// when err is not nil, the first failure. Records not yet sent when
// timeout passes are failed by the producer; records already sent cannot
// be (the broker may have them) and are waited for up to sentWait longer.
// Those still unanswered then are reported in late; the producer still
// owns them and may deliver them. timeout 0 waits until ctx ends.
//
// The records' bytes must not change after write returns while late is
// not empty: the producer may still read them.
func (s *Sink) write(ctx context.Context, recs []Record, timeout, sentWait time.Duration) (failed, late []int, err error) {
	wctx, cancel := ctx, context.CancelFunc(func() {})
	if timeout > 0 {
		wctx, cancel = context.WithTimeout(ctx, timeout)
	}
	defer cancel()
	if err := s.ensure(wctx); err != nil {
		all := make([]int, len(recs))
		for i := range all {
			all[i] = i
		}
		return all, nil, err
	}
	// The promises run on franz-go's goroutine and may run after a late
	// return: they touch errs, settled and left only under mu, and not at
	// all once over is set.
	var (
		mu      sync.Mutex
		errs    = make([]error, len(recs))
		settled = make([]bool, len(recs))
		left    = len(recs)
		over    bool
		done    = make(chan struct{})
	)
	for i, r := range recs {
		s.cl.Produce(wctx, &kgo.Record{Key: r.Key, Value: r.Value}, func(_ *kgo.Record, err error) {
			mu.Lock()
			defer mu.Unlock()
			if over {
				return
			}
			errs[i], settled[i] = err, true
			if left--; left == 0 {
				close(done)
			}
		})
	}
	select {
	case <-done:
	case <-wctx.Done():
		// Unsent records fail now; sent ones wait for the broker.
		t := time.NewTimer(sentWait)
		select {
		case <-done:
		case <-t.C:
		}
		t.Stop()
	}
	mu.Lock()
	defer mu.Unlock()
	over = true
	for i, e := range errs {
		switch {
		case !settled[i]:
			late = append(late, i)
		case e != nil:
			failed = append(failed, i)
			if err == nil {
				err = e
			}
			if errors.Is(e, kerr.UnknownTopicOrPartition) {
				s.known.Store(false)
			}
		}
	}
	if len(late) > 0 && err == nil {
		err = fmt.Errorf("kafka did not answer for %d records within %s", len(late), timeout+sentWait)
	}
	return failed, late, err
}

// ensure creates the topic unless it is known to exist.
func (s *Sink) ensure(ctx context.Context) error {
	if s.known.Load() {
		return nil
	}
	if err := s.topics.EnsureTopic(ctx, s.topic); err != nil {
		return err
	}
	s.known.Store(true)
	return nil
}

// drainBatch moves the oldest batch in the spool to Kafka with deliver,
// and acknowledges it in the spool only once Kafka took all of it. It
// returns how many records moved: 0 when the spool is empty.
func (s *Sink) drainBatch(ctx context.Context, deliver func(context.Context, []Record) error) (int, error) {
	recs, cur, err := s.spool.Read(5000)
	if err != nil {
		return 0, fmt.Errorf("cannot read spool: %w", err)
	}
	if len(recs) == 0 {
		return 0, nil
	}
	batch := make([]Record, len(recs))
	for i, b := range recs {
		if batch[i], err = decodeSpooled(b); err != nil {
			return 0, err
		}
	}
	if err := deliver(ctx, batch); err != nil {
		return 0, err
	}
	if err := s.spool.Ack(cur); err != nil {
		return 0, fmt.Errorf("cannot acknowledge spool: %w", err)
	}
	return len(batch), nil
}

// deliver writes recs, sending again only the records the producer failed
// for good (the rest of the batch is in Kafka: sending it again would
// store it twice), with backoff, until all are written or ctx ends.
// Each attempt may take timeout (0: until ctx ends) plus sentWait.
func (s *Sink) deliver(ctx context.Context, recs []Record, timeout time.Duration) error {
	backoff := 100 * time.Millisecond
	for {
		failed, late, err := s.write(ctx, recs, timeout, s.sentWait)
		s.written.Add(float64(len(recs) - len(failed) - len(late)))
		if err == nil {
			return nil
		}
		s.kafkaErrors.Inc()
		if len(late) > 0 || ctx.Err() != nil {
			// Unanswered records cannot be sent again without the risk of
			// a second copy: the batch stays spooled for the next attempt
			// (a drainer after a restart), and with it the records Kafka
			// took, the price of a spool acknowledged by prefix.
			return fmt.Errorf("kafka did not take %d of %d spooled events: %w", len(failed)+len(late), len(recs), err)
		}
		left := make([]Record, len(failed))
		for j, i := range failed {
			left[j] = recs[i]
		}
		recs = left
		s.log.Warn("cannot drain spool to kafka; retrying", zap.Int("events", len(recs)), zap.Duration("backoff", backoff), zap.Error(err))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// Run drains the spool into Kafka until ctx ends. A batch is acknowledged
// in the spool only after Kafka acknowledged all of it; a failure is
// retried with backoff, so records leave the spool in order, at least once.
func (s *Sink) Run(ctx context.Context) error {
	retrying := func(ctx context.Context, recs []Record) error { return s.deliver(ctx, recs, 0) }
	for {
		n, err := s.drainBatch(ctx, retrying)
		if ctx.Err() != nil {
			return nil // stopping: what is not acknowledged stays spooled
		}
		if err != nil {
			return err
		}
		if n > 0 {
			s.log.Info("drained spool batch to kafka", zap.Int("events", n), zap.Int64("spool_bytes", s.spool.Size()))
			continue
		}
		// Idle: a producer started while Kafka was unreachable creates the
		// topic as soon as Kafka answers, not at its first event, so that
		// readiness (which needs the topic) follows Kafka's return.
		ectx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := s.ensure(ectx); err != nil && ctx.Err() == nil {
			s.log.Debug("cannot ensure the topic yet", zap.String("topic", s.topic), zap.Error(err))
		}
		cancel()
		select {
		case <-ctx.Done():
			return nil
		case <-s.spool.Signal():
		case <-time.After(time.Second):
		}
	}
}

// Flush drains the spool into Kafka until it is empty, giving each batch
// the write timeout (twice, for records refused in part): it is for
// one-shot commands, which leave what Kafka does not take for their next
// run.
func (s *Sink) Flush(ctx context.Context) error {
	once := func(ctx context.Context, recs []Record) error {
		fctx, cancel := context.WithTimeout(ctx, 2*s.timeout)
		defer cancel()
		return s.deliver(fctx, recs, s.timeout)
	}
	for {
		n, err := s.drainBatch(ctx, once)
		if err != nil || n == 0 {
			return err
		}
	}
}

// Close waits for records still in the producer, up to the write timeout
// and the wait for sent records, then closes it. Records it held past that
// were spooled by Submit already.
func (s *Sink) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout+s.sentWait)
	defer cancel()
	err := s.cl.Flush(ctx)
	s.cl.Close()
	if err != nil {
		return fmt.Errorf("kafka producer closed with records unanswered: %w", err)
	}
	return nil
}
