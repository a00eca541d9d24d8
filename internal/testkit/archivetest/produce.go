package archivetest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// Events makes n canonical events of every kind, spread over tenants and
// event hours: most in the last 90 minutes, some one to three days late,
// a few in earlier months. IDs are "<prefix>-<i>".
func Events(n int, prefix string, classes []string, now time.Time) [][]byte {
	r := rand.New(rand.NewPCG(uint64(n), uint64(len(prefix))))
	out := make([][]byte, n)
	for i := range out {
		var ts time.Time
		switch x := r.IntN(100); {
		case x < 80:
			ts = now.Add(-time.Duration(r.Int64N(int64(90 * time.Minute))))
		case x < 95:
			ts = now.Add(-24*time.Hour - time.Duration(r.Int64N(int64(48*time.Hour))))
		default:
			ts = now.AddDate(0, -1-r.IntN(2), 0)
		}
		e := event.Event{
			ID: fmt.Sprintf("%s-%d", prefix, i), Time: ts, Kind: event.Kinds[i%len(event.Kinds)], Class: classes[i%len(classes)],
			Tenant: fmt.Sprintf("t%d", i%10), Source: "test", Received: now,
			IP: netip.AddrFrom4([4]byte{203, 0, 113, byte(i % 250)}), Port: uint16(1024 + i%60000),
			Login: fmt.Sprintf("user%d", i%300), Session: fmt.Sprintf("s-%d", i%1000), Action: "x", Purpose: "test",
			Repo: "acme/shop", Protocol: "ssh", UserAgent: "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36",
			Path: fmt.Sprintf("/products/%d?ref=%x", i%5000, r.Uint32()),
		}
		line := event.AppendJSON(nil, &e)
		out[i] = line[:len(line)-1]
	}
	return out
}

// Produce writes values to topic keyed by tenant (as ingest does) and
// returns how many times each ID is now in Kafka: once each, since the
// writer is checked message by message.
func Produce(t testing.TB, st stacktest.Stack, topic string, values [][]byte) map[string]int {
	t.Helper()
	w := &kafka.Writer{Addr: kafka.TCP(st.KafkaBrokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{},
		Compression: kafka.Zstd, BatchSize: 5000, BatchBytes: 1 << 20, BatchTimeout: 5 * time.Millisecond, Transport: st.Transport()}
	defer w.Close()
	want := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 0; i < len(values); i += 5000 {
		end := min(i+5000, len(values))
		msgs := make([]kafka.Message, 0, end-i)
		for _, v := range values[i:end] {
			e, err := event.Parse(v)
			key := []byte("invalid")
			if err == nil {
				key = []byte(e.Tenant)
				want[e.ID]++
			}
			msgs = append(msgs, kafka.Message{Key: key, Value: v})
		}
		if err := w.WriteMessages(ctx, msgs...); err != nil {
			t.Fatalf("produce: %v", err)
		}
	}
	return want
}
