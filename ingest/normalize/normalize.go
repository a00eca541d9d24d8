package normalize

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest"
	"github.com/custodylog/custody/ingest/logparse"
	"github.com/custodylog/custody/ingest/syslogd"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/pipeline/dlq"
)

// Normalizer is `custody normalize`. Run owns its Kafka client.
type Normalizer struct {
	cfg    Config
	kc     kafkaconn.Config
	base   event.Options
	log    *zap.Logger
	loc    *time.Location
	now    func() time.Time
	inputs map[string]Input

	records *prometheus.CounterVec
	lastErr atomic.Pointer[string]
}

// Results of one raw record; the values of custody_normalize_records_total's
// label. Ignored and unmatched records are valid log lines that carry no
// event (an sshd line that is no login; another program's syslog message).
const (
	resultProduced   = "produced"
	resultIgnored    = "ignored"
	resultUnmatched  = "unmatched"
	resultDeadLetter = "dead_letter"
)

// pollRecords bounds one batch: produced, acknowledged, then committed.
const pollRecords = 2000

// New returns a normalizer producing to kc.Topic. base holds the event
// limits and classes.
func New(cfg Config, kc kafkaconn.Config, base event.Options, log *zap.Logger, reg prometheus.Registerer) (*Normalizer, error) {
	loc, err := time.LoadLocation(cfg.Timezone)
	if err != nil {
		return nil, fmt.Errorf("normalize.timezone: %w", err)
	}
	n := &Normalizer{cfg: cfg, kc: kc, base: base, log: log, loc: loc, now: time.Now, inputs: map[string]Input{},
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_normalize_records_total",
			Help: "Raw records by result: produced (as an event), ignored, unmatched (no event in them), dead_letter."}, []string{"result"}),
	}
	n.base.Source = "normalize"
	for _, in := range cfg.Inputs {
		n.inputs[in.Topic] = in
	}
	for _, r := range []string{resultProduced, resultIgnored, resultUnmatched, resultDeadLetter} {
		n.records.WithLabelValues(r)
	}
	if reg != nil {
		if err := reg.Register(n.records); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Ready reports the last produce error while it lasts.
func (n *Normalizer) Ready(context.Context) error {
	if p := n.lastErr.Load(); p != nil {
		return errors.New(*p)
	}
	return nil
}

// Run consumes the raw topics until ctx ends. Each polled batch is
// converted, produced (events to the events topic, dead letters to the
// DLQ) and acknowledged by Kafka (acks=all, idempotent) before its
// offsets are committed; a crash in between makes the next member
// convert the batch again, and the events get the same IDs (derived from
// the raw record's topic, partition and offset), so readers keep each
// once. Rebalances wait for the batch in hand (BlockRebalanceOnPoll).
func (n *Normalizer) Run(ctx context.Context) error {
	opts, err := n.kc.ProducerOpts()
	if err != nil {
		return err
	}
	topics := make([]string, 0, len(n.inputs))
	for t := range n.inputs {
		topics = append(topics, t)
	}
	opts = append(opts,
		kgo.ConsumerGroup(n.cfg.GroupID),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Murmur2 on the tenant, as ingest: a tenant's events share a
		// partition whichever producer wrote them.
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
		n.kc.ProducerCompression(),
	)
	if n.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(n.cfg.InstanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("cannot create the kafka client: %w", err)
	}
	defer cl.Close() // leaves the group (a static member stays in it)
	// A batch polled but not finished still blocks rebalances; leaving
	// the group needs them allowed.
	defer cl.AllowRebalance()
	convs := map[string]*syslogd.Converter{}
	for t, in := range n.inputs {
		if in.Format == "rfc5424" {
			c := syslogd.NewConverter(in.Rules, n.cfg.StructuredDataID, n.base)
			convs[t] = c
		}
	}
	for {
		fs := cl.PollRecords(ctx, pollRecords)
		if ctx.Err() != nil {
			return nil // the batch in hand is not committed: the next member redoes it
		}
		fetchErrs := 0
		fs.EachError(func(topic string, p int32, err error) {
			fetchErrs++
			n.log.Warn("fetch error", zap.String("topic", topic), zap.Int32("partition", p), zap.Error(err))
		})
		recs := fs.Records()
		if len(recs) == 0 {
			cl.AllowRebalance()
			if fetchErrs > 0 { // e.g. refused by an ACL: do not spin
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
			continue
		}
		out := make([]*kgo.Record, 0, len(recs))
		for _, r := range recs {
			if o := n.convert(r, convs[r.Topic]); o != nil {
				out = append(out, o)
			}
		}
		if len(out) > 0 {
			if err := n.produce(ctx, cl, out); err != nil {
				return nil // ctx ended: nothing of this batch is committed
			}
		}
		if err := cl.CommitRecords(context.WithoutCancel(ctx), recs...); err != nil {
			// The next commit covers these offsets; until then a restart
			// redoes the batch, with the same IDs.
			n.log.Warn("offset commit failed; the batch may be redone", zap.Error(err))
		}
		cl.AllowRebalance()
	}
}

// produce sends out until every record is acknowledged, retrying only
// the ones that failed (the idempotent producer keeps a retried record
// once). It returns an error only when ctx ends first.
func (n *Normalizer) produce(ctx context.Context, cl *kgo.Client, out []*kgo.Record) error {
	backoff := 100 * time.Millisecond
	for {
		var failed []*kgo.Record
		var first error
		for _, res := range cl.ProduceSync(ctx, out...) {
			if res.Err != nil {
				failed = append(failed, res.Record)
				if first == nil {
					first = res.Err
				}
			}
		}
		if first == nil {
			n.lastErr.Store(nil)
			return nil
		}
		msg := fmt.Sprintf("produce: %v", first)
		n.lastErr.Store(&msg)
		n.log.Warn("cannot produce; retrying", zap.Int("records", len(failed)), zap.Error(first))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
		out = failed
	}
}

// convert turns one raw record into the record to produce: an event, or a
// dead letter naming why; nil for ignored and unmatched records, which
// are counted and dropped.
func (n *Normalizer) convert(r *kgo.Record, conv *syslogd.Converter) *kgo.Record {
	in := n.inputs[r.Topic]
	salt := []byte(r.Topic + "/" + strconv.Itoa(int(r.Partition)) + "@" + strconv.FormatInt(r.Offset, 10))
	rec, result, err := n.event(in, conv, r.Value, salt)
	n.records.WithLabelValues(result).Inc()
	switch result {
	case resultProduced:
		return &kgo.Record{Topic: n.kc.Topic, Key: rec.Key, Value: rec.Value}
	case resultDeadLetter:
		n.log.Debug("dead letter", zap.String("topic", r.Topic), zap.Int32("partition", r.Partition), zap.Int64("offset", r.Offset), zap.Error(err))
		return &kgo.Record{Topic: n.cfg.DLQTopic, Key: r.Key, Value: r.Value, Headers: []kgo.RecordHeader{
			{Key: dlq.HeaderReason, Value: []byte(err.Error())},
			{Key: dlq.HeaderSourceTopic, Value: []byte(r.Topic)},
			{Key: dlq.HeaderSourcePartition, Value: []byte(strconv.Itoa(int(r.Partition)))},
			{Key: dlq.HeaderSourceOffset, Value: []byte(strconv.FormatInt(r.Offset, 10))},
		}}
	}
	return nil
}

// event turns a raw record's value into an event record, or names the
// result and why not.
func (n *Normalizer) event(in Input, conv *syslogd.Converter, value, salt []byte) (ingest.Record, string, error) {
	line := bytes.TrimRight(value, "\r\n")
	allowed := map[string]bool{}
	if in.Tenant != "" {
		allowed[in.Tenant] = true
	}
	for _, t := range in.Tenants {
		allowed[t] = true
	}
	o := n.base
	o.Now, o.Tenants, o.IDSalt = n.now(), allowed, salt
	var p logparse.Event
	switch in.Format {
	case "rfc5424":
		rec, res, err := conv.Convert(line, salt)
		switch res {
		case syslogd.Accepted:
			return rec, resultProduced, nil
		case syslogd.Ignored:
			return rec, resultIgnored, err
		case syslogd.Unmatched:
			return rec, resultUnmatched, err
		}
		return rec, resultDeadLetter, fmt.Errorf("rfc5424: %w", err)
	case "json":
		e, err := event.Decode(line, o)
		if err != nil {
			return ingest.Record{}, resultDeadLetter, fmt.Errorf("json: %w", err)
		}
		return ingest.RecordOf(e), resultProduced, nil
	case "combined":
		acc, err := logparse.ParseCombined(string(line))
		if err != nil {
			return ingest.Record{}, resultDeadLetter, fmt.Errorf("combined: %w", err)
		}
		p = acc.Event(in.Tenant, in.App, "")
	case "sshd":
		l, err := logparse.ParseSSHD(string(line), n.now(), n.loc)
		if errors.Is(err, logparse.ErrIgnored) {
			return ingest.Record{}, resultIgnored, err
		}
		if err != nil {
			return ingest.Record{}, resultDeadLetter, fmt.Errorf("sshd: %w", err)
		}
		p = l.Event(in.Tenant, in.App)
	default:
		return ingest.Record{}, resultDeadLetter, fmt.Errorf("unknown format %q", in.Format)
	}
	e, err := event.Decode(p.JSON(), o)
	if err != nil {
		return ingest.Record{}, resultDeadLetter, fmt.Errorf("%s: %w", in.Format, err)
	}
	return ingest.RecordOf(e), resultProduced, nil
}
