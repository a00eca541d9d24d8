package retention

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/kafkaconn"
)

// Kafka announces receipts as activity events of tenant "platform" in the
// events topic, acknowledged by all in-sync replicas.
type Kafka struct {
	w      *kafka.Writer
	kc     *kafkaconn.Client
	class  string
	source string
}

// NewKafka writes to the client's events topic; class is the retention
// class of the announcements (the default class).
func NewKafka(kc *kafkaconn.Client, class, source string) *Kafka {
	cfg := kc.Config()
	return &Kafka{kc: kc, class: class, source: source, w: &kafka.Writer{Addr: kafka.TCP(cfg.Brokers...), Topic: cfg.Topic,
		Balancer: &kafka.Murmur2Balancer{}, RequiredAcks: kafka.RequireAll, Transport: kc.Transport(), BatchTimeout: time.Millisecond}}
}

// Announce writes one receipt event. Its ID is derived from the class and
// period, so announcing again after a crash stores no second event.
func (k *Kafka) Announce(ctx context.Context, r Receipt, receiptName string) error {
	if err := k.kc.EnsureTopic(ctx, k.kc.Config().Topic); err != nil {
		return err
	}
	ids := make([]any, len(r.KeyIDs))
	for i, id := range r.KeyIDs {
		ids[i] = id
	}
	e := &event.Event{
		ID: event.DeriveID(r.DestroyedAt, []byte("shred"), []byte(r.Class), []byte(r.Period)), Time: r.DestroyedAt.UTC(),
		Kind: event.KindActivity, Class: k.class, Tenant: "platform", Source: k.source, Received: time.Now().UTC(),
		Login: r.Runner, Action: "key.shred",
		Attrs: map[string]any{"class": r.Class, "period": r.Period, "key_ids": ids, "receipt": receiptName},
	}
	b := event.AppendJSON(nil, e)
	if err := k.w.WriteMessages(ctx, kafka.Message{Key: []byte(e.Tenant), Value: b[:len(b)-1]}); err != nil {
		return fmt.Errorf("kafka did not take the receipt event: %w", err)
	}
	return nil
}

// Close closes the writer.
func (k *Kafka) Close() error { return k.w.Close() }
