// Package dlq lists the records the archiver dead-lettered, with the
// reason it gave, and replays them into the events topic once the cause is
// fixed (a retention class added, a key generated). docs/PIPELINE.md §7.
//
// Replay is at least once and idempotent by event ID: it produces a
// partition's letters, waits for Kafka's acknowledgement by all in-sync
// replicas, then commits the partition's offset under the replay group. A
// crash in between replays those letters again on the next run; the
// copies carry the same event IDs, and readers keep one event per
// (tenant, ID) (docs/EVENTS.md §4).
package dlq

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/internal/kafkaconn"
)

// The headers the archiver adds to a dead letter (pipeline.deadLetter).
const (
	HeaderReason          = "custody-dlq-reason"
	HeaderSourceTopic     = "custody-source-topic"
	HeaderSourcePartition = "custody-source-partition"
	HeaderSourceOffset    = "custody-source-offset"
)

// Letter is one dead-lettered record, described without its content:
// the ID, tenant and kind are read from the value when it is JSON that
// names them.
type Letter struct {
	Partition int       `json:"partition"`
	Offset    int64     `json:"offset"`
	Time      time.Time `json:"time"`
	Reason    string    `json:"reason"`
	Source    string    `json:"source"` // topic/partition@offset
	ID        string    `json:"id,omitempty"`
	Tenant    string    `json:"tenant,omitempty"`
	Kind      string    `json:"kind,omitempty"`
	Bytes     int       `json:"bytes"`
}

func letter(r kafkaconn.Record) Letter {
	l := Letter{Partition: r.Partition, Offset: r.Offset, Time: r.Time.UTC(), Reason: r.Header(HeaderReason), Bytes: len(r.Value)}
	if t := r.Header(HeaderSourceTopic); t != "" {
		l.Source = t + "/" + r.Header(HeaderSourcePartition) + "@" + r.Header(HeaderSourceOffset)
	}
	var v struct {
		ID     string `json:"id"`
		Tenant string `json:"tenant"`
		Kind   string `json:"kind"`
	}
	if json.Unmarshal(r.Value, &v) == nil {
		l.ID, l.Tenant, l.Kind = v.ID, v.Tenant, v.Kind
	}
	return l
}

// List calls fn with every dead letter the topic holds now, partition by
// partition in offset order.
func List(ctx context.Context, kc *kafkaconn.Client, topic string, fn func(Letter) error) error {
	parts, err := kc.Partitions(ctx, topic)
	if err != nil {
		return err
	}
	for _, p := range sortedKeys(parts) {
		if err := kc.Scan(ctx, topic, p, parts[p][0], parts[p][1], func(r kafkaconn.Record) error { return fn(letter(r)) }); err != nil {
			return err
		}
	}
	return nil
}

// writer is the producer of the events topic (a kafka.Writer with
// RequiredAcks all).
type writer interface {
	WriteMessages(ctx context.Context, msgs ...kafka.Message) error
}

// Span is the offsets of one partition a replay covered: [From, To).
type Span struct {
	Partition int   `json:"partition"`
	From      int64 `json:"from"`
	To        int64 `json:"to"`
}

// Result is what a replay did.
type Result struct {
	Replayed int    `json:"replayed"`
	Spans    []Span `json:"spans"`
}

// Pending returns, per partition with letters not yet replayed by group,
// the span a replay would cover now: from the group's committed offset
// (or the first offset held) to the end.
func Pending(ctx context.Context, kc *kafkaconn.Client, topic, group string) ([]Span, error) {
	parts, err := kc.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	commits, err := kc.Commits(ctx, group)
	if err != nil {
		return nil, err
	}
	done := map[int]int64{}
	for _, c := range commits {
		if c.Topic == topic {
			done[c.Partition] = c.Offset
		}
	}
	var out []Span
	for _, p := range sortedKeys(parts) {
		from := max(parts[p][0], done[p])
		if from < parts[p][1] {
			out = append(out, Span{Partition: p, From: from, To: parts[p][1]})
		}
	}
	return out, nil
}

// batch is how many letters are produced before waiting for the
// acknowledgement and committing.
const batch = 500

// Replay produces the letters of spans (from Pending) to w, with their
// keys, values and headers as the sender wrote them (the dead-letter
// headers removed), and commits each batch's end under group once Kafka
// acknowledged it.
func Replay(ctx context.Context, kc *kafkaconn.Client, w writer, topic, group string, spans []Span) (Result, error) {
	var res Result
	for _, sp := range spans {
		var msgs []kafka.Message
		var next int64
		flush := func() error {
			if len(msgs) == 0 {
				return nil
			}
			if err := w.WriteMessages(ctx, msgs...); err != nil {
				return fmt.Errorf("cannot replay %d letters of %s/%d up to offset %d: %w", len(msgs), topic, sp.Partition, next-1, err)
			}
			if err := kc.Commit(ctx, group, topic, sp.Partition, next); err != nil {
				return err
			}
			res.Replayed += len(msgs)
			msgs = msgs[:0]
			return nil
		}
		err := kc.Scan(ctx, topic, sp.Partition, sp.From, sp.To, func(r kafkaconn.Record) error {
			msgs = append(msgs, kafka.Message{Key: r.Key, Value: r.Value, Headers: senderHeaders(r.Headers)})
			next = r.Offset + 1
			if len(msgs) == batch {
				return flush()
			}
			return nil
		})
		if err == nil {
			err = flush()
		}
		if err != nil {
			return res, err
		}
		res.Spans = append(res.Spans, sp)
	}
	return res, nil
}

// senderHeaders drops the headers the archiver added.
func senderHeaders(hs []kafka.Header) []kafka.Header {
	var out []kafka.Header
	for _, h := range hs {
		switch h.Key {
		case HeaderReason, HeaderSourceTopic, HeaderSourcePartition, HeaderSourceOffset:
		default:
			out = append(out, h)
		}
	}
	return out
}

func sortedKeys(m map[int][2]int64) []int {
	ks := make([]int, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
