package kafkaconn_test

import (
	"context"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/segmentio/kafka-go"
)

// Regression test: every /readyz probe and EnsureTopic built a kafka-go
// Transport and never closed it; 20 probes leaked 40 goroutines. One
// client per process now serves them all.
func TestProbesDoNotLeakGoroutines(t *testing.T) {
	st := stacktest.Get(t)
	cfg := st.Kafka()
	cfg.Topic = stacktest.Name(t, "probe")
	kc, err := cfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kc.Ping(ctx); err == nil || !strings.Contains(err.Error(), cfg.Topic) {
		t.Errorf("Ping before the topic exists = %v; want an error naming %s", err, cfg.Topic)
	}
	if err := kc.EnsureTopic(ctx, cfg.Topic); err != nil {
		t.Fatal(err)
	}
	if err := kc.Ping(ctx); err != nil {
		t.Fatalf("Ping after EnsureTopic = %v", err)
	}
	before := runtime.NumGoroutine()
	for i := 0; i < 100; i++ {
		if err := kc.Ping(ctx); err != nil {
			t.Fatal(err)
		}
		if err := kc.EnsureTopic(ctx, cfg.Topic); err != nil {
			t.Fatal(err)
		}
	}
	// Goroutines of finished calls may take a moment to return.
	var after int
	for deadline := time.Now().Add(5 * time.Second); ; {
		after = runtime.NumGoroutine()
		if after-before <= 5 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if after-before > 5 {
		t.Errorf("goroutines grew from %d to %d over 100 probes and 100 EnsureTopic calls; want a bounded count", before, after)
	}
	kc.Close()
}

func TestPingUnreachable(t *testing.T) {
	cfg := kafkaconn.Defaults()
	cfg.Brokers = []string{"127.0.0.1:1"}
	cfg.DialTimeout = time.Second
	kc, err := cfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := kc.Ping(ctx); err == nil || !strings.Contains(err.Error(), "127.0.0.1:1 unreachable") {
		t.Errorf("Ping of a closed port = %v; want unreachable naming the broker", err)
	}
}

// ReadSince reads what was written from a time on, across partitions, up
// to the end at the call, and nothing older.
func TestReadSince(t *testing.T) {
	st := stacktest.Get(t)
	cfg := st.Kafka()
	topic := stacktest.Topic(t, st, 3)
	kc, err := cfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := &kafka.Writer{Addr: kafka.TCP(st.KafkaBrokers...), Topic: topic, Balancer: &kafka.RoundRobin{}, RequiredAcks: kafka.RequireAll, Transport: st.Transport()}
	defer w.Close()
	old := time.Now().Add(-time.Hour)
	var msgs []kafka.Message
	for i := 0; i < 6; i++ {
		ts := time.Now()
		if i < 2 {
			ts = old // written "an hour ago" (the record timestamp)
		}
		msgs = append(msgs, kafka.Message{Value: []byte(fmt.Sprintf("m%d", i)), Time: ts})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	read := func(since time.Time) []string {
		var got []string
		if err := kc.ReadSince(ctx, topic, since, func(b []byte) error { got = append(got, string(b)); return nil }); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		return got
	}
	if got := read(time.Now().Add(-10 * time.Minute)); strings.Join(got, ",") != "m2,m3,m4,m5" {
		t.Errorf("ReadSince(10 minutes ago) = %v; want m2-m5", got)
	}
	if got := read(old.Add(-time.Minute)); len(got) != 6 {
		t.Errorf("ReadSince(before all) = %v; want all 6", got)
	}
	if got := read(time.Now().Add(time.Minute)); len(got) != 0 {
		t.Errorf("ReadSince(the future) = %v; want none", got)
	}
}
