//go:build faults

package faults

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// TestKafkaOutage stops Kafka for 30 s while 50,000 events are sent, half
// through the HTTP endpoint and half through the agent. Both keep
// accepting (from their disk spools); once Kafka is back every event is in
// the topic, counted by ID.
func TestKafkaOutage(t *testing.T) {
	st := stacktest.Get(t)
	topic := stacktest.Topic(t, st, 3)
	logPath := filepath.Join(t.TempDir(), "app.log")
	cfg := writeConfig(t, st, topic, fmt.Sprintf("  files:\n    - path: %s\n      format: json\n      tenants: [acme]\n", logPath))
	ingest := start(t, "ingest", "--config", cfg, "--log-level", "warn")
	agent := start(t, "agent", "--config", cfg, "--log-level", "warn")
	waitHTTP(t, "http://127.0.0.1:19181/readyz", 30*time.Second)
	waitHTTP(t, "http://127.0.0.1:19182/healthz", 30*time.Second)

	stack(t, "down", "kafka")
	down := time.Now()
	restarted := false
	defer func() {
		if !restarted {
			stack(t, "up", "kafka")
		}
	}()

	const perPath = 25000
	want := map[string]bool{}
	// HTTP: batches of 500, each must be acknowledged (202) by the spool.
	for b := 0; b < perPath/500; b++ {
		var body bytes.Buffer
		for i := b * 500; i < (b+1)*500; i++ {
			id := fmt.Sprintf("http-%d", i)
			want[id] = true
			fmt.Fprintf(&body, `{"id":"%s","kind":"login","tenant":"acme","login":"u%d","ip":"203.0.113.%d","action":"success"}`+"\n", id, i, i%250)
		}
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:18181/v1/events", &body)
		req.Header.Set("Authorization", "Bearer faults-token-0123456789")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("batch %d with Kafka down: %d; want 202 from the spool", b, resp.StatusCode)
		}
	}
	// Agent: lines appended to the tailed file.
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < perPath/1000; b++ {
		var buf bytes.Buffer
		for i := b * 1000; i < (b+1)*1000; i++ {
			id := fmt.Sprintf("agent-%d", i)
			want[id] = true
			fmt.Fprintf(&buf, `{"id":"%s","kind":"activity","tenant":"acme","login":"u%d","action":"x"}`+"\n", id, i)
		}
		f.Write(buf.Bytes())
	}
	f.Close()
	if d := 30*time.Second - time.Since(down); d > 0 {
		time.Sleep(d) // the outage lasts 30 s whatever the send took
	}
	stack(t, "up", "kafka")
	restarted = true
	t.Logf("kafka was down for %s", time.Since(down).Round(time.Second))

	msgs := stacktest.ReadUntil(t, st, topic, allIDs(t, want), 3*time.Minute)
	got := map[string]int{}
	for _, m := range msgs {
		e, err := event.Parse(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		got[e.ID]++
	}
	missing := 0
	for id := range want {
		if got[id] == 0 {
			missing++
		}
	}
	extra := 0
	for id := range got {
		if !want[id] {
			extra++
		}
	}
	if missing > 0 || extra > 0 {
		t.Fatalf("after the outage: %d of %d events missing, %d unknown IDs", missing, len(want), extra)
	}
	t.Logf("%d events sent during a 30 s Kafka outage, all %d in the topic (%d messages)", len(want), len(got), len(msgs))
	ingest.stop(t)
	agent.stop(t)
}
