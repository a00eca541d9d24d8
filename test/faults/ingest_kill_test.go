//go:build faults

package faults

import (
	"math/rand/v2"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// TestIngestKill9 kills custody ingest with SIGKILL 12 times while a client
// keeps posting, the first half of the run with Kafka stopped so that
// acknowledgements come from the disk spool. Every event answered with 202
// must end up in Kafka; events never acknowledged may or may not.
func TestIngestKill9(t *testing.T) {
	st := stacktest.Get(t)
	topic := stacktest.Topic(t, st, 3)
	cfg := writeConfig(t, st, topic, "")
	acked := map[string]bool{}
	batch := 0
	client := &http.Client{Timeout: 10 * time.Second}
	// sendFor posts 200-event batches until d passes; a failed request (the
	// process was killed under it) is not acknowledged and not retried.
	sendFor := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			ids := postBatch(client, "k", batch)
			batch++
			if ids == nil {
				time.Sleep(20 * time.Millisecond) // the server is restarting
				continue
			}
			for _, id := range ids {
				acked[id] = true
			}
		}
	}
	cycle := func() {
		p := start(t, "ingest", "--config", cfg, "--log-level", "error")
		waitHTTP(t, "http://127.0.0.1:19181/healthz", 30*time.Second)
		sendFor(time.Duration(200+rand.IntN(600)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}

	stack(t, "down", "kafka")
	for i := 0; i < 6; i++ {
		cycle()
	}
	stack(t, "up", "kafka")
	for i := 0; i < 6; i++ {
		cycle()
	}
	final := start(t, "ingest", "--config", cfg, "--log-level", "error")
	waitHTTP(t, "http://127.0.0.1:19181/healthz", 30*time.Second)
	if len(acked) < 1000 {
		t.Fatalf("only %d events acknowledged; the test exercised nothing", len(acked))
	}
	msgs := stacktest.ReadUntil(t, st, topic, allIDs(t, acked), 3*time.Minute)
	got := map[string]bool{}
	for _, m := range msgs {
		e, err := event.Parse(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		got[e.ID] = true
	}
	lost := 0
	for id := range acked {
		if !got[id] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged events lost after 12 kill -9 of ingest", lost, len(acked))
	}
	t.Logf("%d events acknowledged across 12 kill -9 (6 with Kafka down), all in Kafka; %d messages, %d distinct", len(acked), len(msgs), len(got))
	final.stop(t)
}
