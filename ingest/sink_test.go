package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/custodylog/custody/ingest/spool"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// Regression test: a producer started while Kafka was unreachable never
// created the events topic later, so spooled events waited for ever with
// "Unknown Topic Or Partition". The sink ensures the topic before its
// first write and again after Kafka reports the topic unknown.
func TestSinkCreatesTopicWhenKafkaComesBack(t *testing.T) {
	st := stacktest.Get(t)
	g := stacktest.NewGate(t, st.KafkaBrokers[0])
	k := st.Kafka()
	k.Brokers = []string{g.Addr()}
	k.Topic = stacktest.Name(t, "absent")
	k.DialTimeout = time.Second
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	s, err := NewSink(testClient(t, k), sp, zap.NewNop(), SinkOptions{WriteTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var recs []Record
	for i := 0; i < 3; i++ {
		recs = append(recs, Record{Key: []byte("acme"), Value: fmt.Appendf(nil, `{"id":"gate-%d"}`, i)})
	}
	if err := s.Submit(ctx, recs); err != nil {
		t.Fatalf("Submit with Kafka unreachable = %v; want the records spooled", err)
	}
	if sp.Size() == 0 {
		t.Fatal("nothing spooled while Kafka was unreachable")
	}
	g.Open()
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx) }()
	msgs := stacktest.ReadAll(t, st, k.Topic, 3, 60*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 || sp.Size() != 0 {
		t.Fatalf("topic holds %d records, spool %d bytes; want 3 and an empty spool", len(msgs), sp.Size())
	}
}

// A one-shot producer (custody send, the hook) on a cluster without the
// topic creates it rather than leaving its events in the outbox.
func TestSinkCreatesAbsentTopic(t *testing.T) {
	st := stacktest.Get(t)
	k := st.Kafka()
	k.Topic = stacktest.Name(t, "fresh")
	sp, err := spool.Open(filepath.Join(t.TempDir(), "outbox"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	s, err := NewSink(testClient(t, k), sp, zap.NewNop(), SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Submit(context.Background(), []Record{{Key: []byte("acme"), Value: []byte(`{"id":"fresh-1"}`)}}); err != nil {
		t.Fatal(err)
	}
	if sp.Size() != 0 {
		t.Fatalf("the record went to the outbox (%d bytes); want it in Kafka", sp.Size())
	}
	if n := len(stacktest.ReadAll(t, st, k.Topic, 1, 30*time.Second)); n != 1 {
		t.Fatalf("topic holds %d records; want 1", n)
	}
}
