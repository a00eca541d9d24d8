// Package announce writes Custody's own records of what it did (keys
// shredded, holds placed and released) into the events topic, as activity
// events of tenant "platform", acknowledged by all in-sync replicas: the
// same stream that carries everything else, so the archive accounts for
// its own deletions and holds.
package announce

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/kafkaconn"
)

// Event is one announcement.
type Event struct {
	// Action names what happened: key.shred, hold.place, hold.release.
	Action string
	// Time is when it happened; with IDParts (which name the kind of thing
	// and what it was done to) it derives the event ID, so announcing the
	// same thing again after a crash stores no second event.
	Time    time.Time
	IDParts []string
	// Login is who did it (the signer of the receipt or record, or the
	// identity that read).
	Login string
	Attrs map[string]any
	// Kind defaults to activity; a reader's own access records are
	// access_audit, with the Purpose of the access.
	Kind    event.Kind
	Purpose string
}

// Kafka announces to the client's events topic.
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

// Announce writes one event and returns once Kafka has acknowledged it.
func (k *Kafka) Announce(ctx context.Context, a Event) error {
	if err := k.kc.EnsureTopic(ctx, k.kc.Config().Topic); err != nil {
		return err
	}
	parts := make([][]byte, 0, len(a.IDParts))
	for _, p := range a.IDParts {
		parts = append(parts, []byte(p))
	}
	kind := a.Kind
	if kind == "" {
		kind = event.KindActivity
	}
	e := &event.Event{
		ID: event.DeriveID(a.Time, parts...), Time: a.Time.UTC(),
		Kind: kind, Class: k.class, Tenant: "platform", Source: k.source, Received: time.Now().UTC(),
		Login: a.Login, Action: a.Action, Purpose: a.Purpose,
	}
	if a.Attrs != nil {
		e.Attrs = normalise(a.Attrs).(map[string]any)
	}
	b := event.AppendJSON(nil, e)
	if err := k.w.WriteMessages(ctx, kafka.Message{Key: []byte(e.Tenant), Value: b[:len(b)-1]}); err != nil {
		return fmt.Errorf("kafka did not take the %s event: %w", a.Action, err)
	}
	return nil
}

// normalise turns attribute values into the JSON types events carry
// (event.AppendJSON takes what event.Decode produces): numbers become
// json.Number, string slices and maps become []any and map[string]any.
// Anything else is rendered with fmt, so an announcement never panics.
func normalise(v any) any {
	switch x := v.(type) {
	case nil, string, bool, json.Number:
		return x
	case int:
		return json.Number(strconv.Itoa(x))
	case int64:
		return json.Number(strconv.FormatInt(x, 10))
	case float64:
		return json.Number(strconv.FormatFloat(x, 'g', -1, 64))
	case []string:
		out := make([]any, len(x))
		for i, s := range x {
			out[i] = s
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalise(e)
		}
		return out
	case map[string]string:
		out := make(map[string]any, len(x))
		for k, s := range x {
			out[k] = s
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalise(e)
		}
		return out
	}
	return fmt.Sprint(v)
}

// Close closes the writer.
func (k *Kafka) Close() error { return k.w.Close() }
