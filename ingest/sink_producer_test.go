package ingest

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/custodylog/custody/ingest/spool"
	"github.com/custodylog/custody/internal/kafkaconn"
)

type topicExists struct{}

func (topicExists) EnsureTopic(context.Context, string) error { return nil }

// holdFirstProduce makes the fake broker keep the first produce request
// unanswered until release is closed, then handle it normally: a request
// that reached the broker but whose answer is late.
func holdFirstProduce(c *kfake.Cluster, release <-chan struct{}) (held <-chan struct{}) {
	h := make(chan struct{})
	var once sync.Once
	c.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		first := false
		once.Do(func() { first = true })
		if !first {
			return nil, nil, false
		}
		c.KeepControl()
		close(h)
		c.SleepControl(func() { <-release })
		return nil, nil, false
	})
	return h
}

func fakeSink(t *testing.T, c *kfake.Cluster, timeout, sentWait time.Duration) (*Sink, *spool.Spool) {
	t.Helper()
	k := kafkaconn.Defaults()
	k.Brokers, k.Topic = c.ListenAddrs(), "events"
	kc, err := k.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	s, err := NewSink(kc, sp, zap.NewNop(), SinkOptions{WriteTimeout: timeout, SentWait: sentWait})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.topics = topicExists{}
	return s, sp
}

func fakeRecords(n int) []Record {
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Key: []byte("acme"), Value: fmt.Appendf(nil, `{"id":"r-%d"}`, i)}
	}
	return recs
}

// countIn reads the topic of the fake cluster from the start and counts
// its records.
func countIn(t *testing.T, c *kfake.Cluster, want int) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	n := 0
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for n < want+1 && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachRecord(func(*kgo.Record) { n++ })
		if n >= want {
			// Anything more than want would be in the same or the next
			// fetch: one more short poll.
			sctx, scancel := context.WithTimeout(ctx, 300*time.Millisecond)
			cl.PollFetches(sctx).EachRecord(func(*kgo.Record) { n++ })
			scancel()
			break
		}
	}
	return n
}

// A produce request that the broker answers after the write timeout is
// waited for, not spooled: spooling it while the producer still owns it
// would put every record in Kafka twice (the spool's drain sending them
// again). Only records with no answer after the timeout and the wait for
// sent records are spooled, and counted as unsure.
func TestSinkSpoolsOnlyWhatKafkaCannotHold(t *testing.T) {
	t.Run("answer after the timeout", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		release := make(chan struct{})
		held := holdFirstProduce(c, release)
		s, sp := fakeSink(t, c, 300*time.Millisecond, 10*time.Second)
		go func() {
			<-held
			time.Sleep(time.Second) // past the write timeout, within the wait for sent records
			close(release)
		}()
		if err := s.Submit(context.Background(), fakeRecords(50)); err != nil {
			t.Fatal(err)
		}
		if sp.Size() != 0 || testutil.ToFloat64(s.spooled) != 0 {
			t.Fatalf("spooled %v records (%d bytes) that Kafka took after the timeout", testutil.ToFloat64(s.spooled), sp.Size())
		}
		if n := countIn(t, c, 50); n != 50 {
			t.Fatalf("the topic holds %d records; want the 50 submitted, once", n)
		}
	})
	t.Run("no answer", func(t *testing.T) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		release := make(chan struct{})
		defer close(release)
		held := holdFirstProduce(c, release)
		s, sp := fakeSink(t, c, 200*time.Millisecond, 300*time.Millisecond)
		start := time.Now()
		if err := s.Submit(context.Background(), fakeRecords(50)); err != nil {
			t.Fatal(err)
		}
		<-held
		if sp.Size() == 0 || testutil.ToFloat64(s.unsure) != 50 || testutil.ToFloat64(s.spooled) != 50 {
			t.Fatalf("after no answer: spool %d bytes, %v spooled, %v unsure; want all 50 spooled and counted unsure",
				sp.Size(), testutil.ToFloat64(s.spooled), testutil.ToFloat64(s.unsure))
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Submit took %s; want about the 0.5 s of its two waits", d)
		}
	})
}

// TestSinkCompression checks that kafka.compression chooses the codec of
// the batches the sink produces, as a consumer sees them (the record
// attributes carry the batch's codec), and that unset is zstd.
func TestSinkCompression(t *testing.T) {
	for name, want := range map[string]uint8{"": 4, "zstd": 4, "lz4": 3, "snappy": 2, "gzip": 1, "none": 0} {
		t.Run("codec="+name, func(t *testing.T) {
			c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "events"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			k := kafkaconn.Defaults()
			k.Brokers, k.Topic, k.Compression = c.ListenAddrs(), "events", name
			kc, err := k.NewClient()
			if err != nil {
				t.Fatal(err)
			}
			defer kc.Close()
			sp, err := spool.Open(filepath.Join(t.TempDir(), "spool"), 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Close()
			s, err := NewSink(kc, sp, zap.NewNop(), SinkOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			s.topics = topicExists{}
			if err := s.Submit(context.Background(), fakeRecords(50)); err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			n := 0
			for n < 50 && ctx.Err() == nil {
				cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
					n++
					if got := r.Attrs.CompressionType(); got != want {
						t.Fatalf("record %s in a batch of codec %d; want %d", r.Value, got, want)
					}
				})
			}
			if n != 50 {
				t.Fatalf("read %d records; want 50", n)
			}
		})
	}
}
