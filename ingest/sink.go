package ingest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
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
// While the spool holds anything, new records go to the spool too, behind
// the older ones, so a tenant's events reach Kafka in the order they were
// accepted.
//
// Every write first makes sure the topic exists: on the first write, and
// again after Kafka answered that it does not know the topic (deleted, or
// Kafka was unreachable when this process started), so a producer started
// on a fresh or unreachable cluster delivers once Kafka is back.
type Sink struct {
	w       *kafka.Writer
	topics  topicEnsurer
	topic   string
	known   atomic.Bool // the topic was ensured and not reported unknown since
	spool   *spool.Spool
	log     *zap.Logger
	timeout time.Duration

	written, spooled, kafkaErrors prometheus.Counter
}

// SinkOptions tune a Sink; zero values give the defaults.
type SinkOptions struct {
	// WriteTimeout bounds a direct Kafka write before falling back to
	// the spool. Default 5s.
	WriteTimeout time.Duration
	// Registerer receives the sink's metrics; nil means none.
	Registerer prometheus.Registerer
	// Name labels the metrics (ingest, agent, send).
	Name string
}

// topicEnsurer creates the topic if absent; *kafkaconn.Client is one.
type topicEnsurer interface {
	EnsureTopic(ctx context.Context, topic string) error
}

// NewSink returns a sink writing to the configured topic through the
// process's Kafka client, whose transport it shares. The caller owns the
// client and the spool and closes them after the sink.
func NewSink(kc *kafkaconn.Client, sp *spool.Spool, log *zap.Logger, o SinkOptions) (*Sink, error) {
	cfg := kc.Config()
	tr := kc.Transport()
	if o.WriteTimeout == 0 {
		o.WriteTimeout = 5 * time.Second
	}
	w := &kafka.Writer{
		Addr:  kafka.TCP(cfg.Brokers...),
		Topic: cfg.Topic,
		// Murmur2 is the Java client's default partitioner: a tenant's
		// events land on the same partition whichever client produced them.
		Balancer:     &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll,
		Compression:  kafka.Zstd,
		BatchSize:    10000,
		BatchBytes:   1 << 20, // the broker's default message.max.bytes
		BatchTimeout: 2 * time.Millisecond,
		MaxAttempts:  3,
		Transport:    tr,
	}
	labels := prometheus.Labels{"sink": o.Name}
	s := &Sink{
		w: w, topics: kc, topic: cfg.Topic, spool: sp, log: log, timeout: o.WriteTimeout,
		written:     prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_sink_kafka_written_total", Help: "Events acknowledged by Kafka.", ConstLabels: labels}),
		spooled:     prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_sink_spooled_total", Help: "Events written to the disk spool because Kafka did not acknowledge them in time.", ConstLabels: labels}),
		kafkaErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_sink_kafka_errors_total", Help: "Failed Kafka writes (each retried or spooled, never dropped).", ConstLabels: labels}),
	}
	if o.Registerer != nil {
		spoolBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custody_sink_spool_bytes", Help: "Bytes waiting in the disk spool.", ConstLabels: labels},
			func() float64 { return float64(sp.Size()) })
		for _, c := range []prometheus.Collector{s.written, s.spooled, s.kafkaErrors, spoolBytes} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// RecordOf is the Kafka record of an event: keyed by tenant, the
// canonical encoding without its trailing newline as the value.
func RecordOf(e *event.Event) Record {
	b := event.AppendJSON(nil, e)
	return Record{Key: []byte(e.Tenant), Value: b[:len(b)-1]}
}

func messages(recs []Record) []kafka.Message {
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Key: r.Key, Value: r.Value}
	}
	return msgs
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
	wctx, cancel := context.WithTimeout(ctx, s.timeout)
	err := s.write(wctx, messages(recs))
	cancel()
	if err == nil {
		s.written.Add(float64(len(recs)))
		return nil
	}
	s.kafkaErrors.Inc()
	failed := recs
	var we kafka.WriteErrors
	if errors.As(err, &we) && len(we) == len(recs) {
		failed = failed[:0:0]
		for i, e := range we {
			if e != nil {
				failed = append(failed, recs[i])
			}
		}
		s.written.Add(float64(len(recs) - len(failed)))
	}
	s.log.Warn("kafka write failed; spooling", zap.Int("events", len(failed)), zap.Error(err))
	return s.toSpool(failed)
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

// write sends msgs, ensuring the topic first when it is not known to
// exist.
func (s *Sink) write(ctx context.Context, msgs []kafka.Message) error {
	if err := s.ensure(ctx); err != nil {
		return err
	}
	err := s.w.WriteMessages(ctx, msgs...)
	if unknownTopic(err) {
		s.known.Store(false)
	}
	return err
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

// unknownTopic reports whether Kafka said the topic does not exist, for the
// whole write or for any of its messages.
func unknownTopic(err error) bool {
	var we kafka.WriteErrors
	if errors.As(err, &we) {
		for _, e := range we {
			if errors.Is(e, kafka.UnknownTopicOrPartition) {
				return true
			}
		}
	}
	return errors.Is(err, kafka.UnknownTopicOrPartition)
}

// drainBatch moves the oldest batch in the spool to Kafka with write, and
// acknowledges it in the spool only once Kafka took all of it. It returns
// how many records moved: 0 when the spool is empty.
func (s *Sink) drainBatch(ctx context.Context, write func(context.Context, []kafka.Message) error) (int, error) {
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
	if err := write(ctx, messages(batch)); err != nil {
		return 0, err
	}
	s.written.Add(float64(len(batch)))
	if err := s.spool.Ack(cur); err != nil {
		return 0, fmt.Errorf("cannot acknowledge spool: %w", err)
	}
	return len(batch), nil
}

// Run drains the spool into Kafka until ctx ends. A batch is acknowledged
// in the spool only after Kafka acknowledged all of it; a failure is
// retried with backoff, so records leave the spool in order, at least once.
func (s *Sink) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	retrying := func(ctx context.Context, msgs []kafka.Message) error {
		for {
			err := s.write(ctx, msgs)
			if err == nil || ctx.Err() != nil {
				return err
			}
			// Retry only what Kafka did not take: sending again the part
			// of a batch that was acknowledged (the partitions whose leader
			// answered) would store it twice.
			var we kafka.WriteErrors
			if errors.As(err, &we) && len(we) == len(msgs) {
				left := msgs[:0:0]
				for i, e := range we {
					if e != nil {
						left = append(left, msgs[i])
					}
				}
				if len(left) == 0 {
					return nil
				}
				msgs = left
			}
			s.kafkaErrors.Inc()
			s.log.Warn("cannot drain spool to kafka; retrying", zap.Int("events", len(msgs)), zap.Duration("backoff", backoff), zap.Error(err))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 5*time.Second)
		}
	}
	for {
		n, err := s.drainBatch(ctx, retrying)
		if ctx.Err() != nil {
			return nil // stopping: what is not acknowledged stays spooled
		}
		if err != nil {
			return err
		}
		if n > 0 {
			backoff = 100 * time.Millisecond
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

// Flush drains the spool into Kafka until it is empty, without retrying:
// it is for one-shot commands, which leave what Kafka refuses for their
// next run.
func (s *Sink) Flush(ctx context.Context) error {
	once := func(ctx context.Context, msgs []kafka.Message) error {
		wctx, cancel := context.WithTimeout(ctx, s.timeout)
		defer cancel()
		if err := s.write(wctx, msgs); err != nil {
			s.kafkaErrors.Inc()
			return fmt.Errorf("kafka did not take %d spooled events: %w", len(msgs), err)
		}
		return nil
	}
	for {
		n, err := s.drainBatch(ctx, once)
		if err != nil || n == 0 {
			return err
		}
	}
}

// Close flushes and closes the Kafka writer.
func (s *Sink) Close() error { return s.w.Close() }
