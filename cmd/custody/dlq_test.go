package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/pipeline/dlq"
)

// TestDLQCommands: custody dlq list shows each letter's reason and origin
// without its content; replay refuses to run unexplained, records the
// replay in Kafka before and after, produces the letters to the events
// topic once, and finds nothing left the second time.
func TestDLQCommands(t *testing.T) {
	st := stacktest.Get(t)
	events, dead := stacktest.Topic(t, st, 1), stacktest.Topic(t, st, 1)
	w := &kafka.Writer{Addr: kafka.TCP(st.KafkaBrokers...), Topic: dead, RequiredAcks: kafka.RequireAll, Transport: st.Transport(), BatchTimeout: time.Millisecond}
	defer w.Close()
	letter := func(id, reason string, off int) kafka.Message {
		return kafka.Message{Key: []byte("acme"), Value: []byte(fmt.Sprintf(`{"v":1,"id":%q,"tenant":"acme","kind":"login","class":"gone","secret-ish":"content"}`, id)),
			Headers: []kafka.Header{{Key: "x-sender", Value: []byte("kept")}, {Key: dlq.HeaderReason, Value: []byte(reason)},
				{Key: dlq.HeaderSourceTopic, Value: []byte(events)}, {Key: dlq.HeaderSourcePartition, Value: []byte("0")}, {Key: dlq.HeaderSourceOffset, Value: []byte(fmt.Sprint(off))}}}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.WriteMessages(ctx, letter("dl-1", `class "gone" is not a configured retention class`, 7), letter("dl-2", "v is 2; want 1", 9)); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "custody.yaml")
	doc := fmt.Sprintf("kafka:\n  brokers: [%s]\n  topic: %s\n  dlq_topic: %s\n%sarchive:\n  group_id: %s\n", strings.Join(st.KafkaBrokers, ","), events, dead, st.KafkaYAML(), stacktest.Name(t, "g"))
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}

	out, errOut, code := runCLI(t, "--config", cfg, "dlq", "list")
	if code != 0 {
		t.Fatalf("dlq list: %d %s", code, errOut)
	}
	for _, want := range []string{"0/0\t", events + "/0@7", "id=dl-1 tenant=acme kind=login", `class "gone" is not a configured retention class`, "0/1\t", "v is 2; want 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("dlq list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret-ish") || !strings.Contains(errOut, "2 dead letters in "+dead) {
		t.Errorf("dlq list printed content or no count:\n%s\n%s", out, errOut)
	}
	if out, _, _ := runCLI(t, "--config", cfg, "dlq", "list", "--reason", "v is 2", "--format", "json"); strings.Count(out, "\n") != 1 || !strings.Contains(out, `"id":"dl-2"`) {
		t.Errorf("dlq list --reason --format json:\n%s", out)
	}

	if _, errOut, code := runCLI(t, "--config", cfg, "dlq", "replay"); code == 0 || !strings.Contains(errOut, "--why is required") {
		t.Errorf("replay without --why: %d %s", code, errOut)
	}
	if out, _, code := runCLI(t, "--config", cfg, "dlq", "replay", "--dry-run"); code != 0 || !strings.Contains(out, "2 dead letters to replay") {
		t.Errorf("replay --dry-run: %d %s", code, out)
	}
	out, errOut, code = runCLI(t, "--config", cfg, "dlq", "replay", "--why", "class gone configured", "--operator", "oncall")
	if code != 0 || !strings.Contains(out, "2 dead letters replayed to "+events) {
		t.Fatalf("replay: %d %s %s", code, out, errOut)
	}
	if out, _, code := runCLI(t, "--config", cfg, "dlq", "replay", "--why", "again"); code != 0 || !strings.Contains(out, "0 dead letters to replay") {
		t.Errorf("second replay: %d %s", code, out)
	}

	// The events topic: the two letters as the sender wrote them, and the
	// replay's two audit events, request before result.
	msgs := stacktest.ReadAll(t, st, events, 4, 30*time.Second)
	var got []string
	for _, m := range msgs {
		if e, err := event.Parse(m.Value); err == nil && e.Action == "dlq.replay" {
			if e.Login != "oncall" || e.Attrs["why"] != nil && e.Attrs["why"] != "class gone configured" {
				t.Errorf("audit event %s: login %q attrs %v", e.ID, e.Login, e.Attrs)
			}
			got = append(got, "audit:"+fmt.Sprint(e.Attrs["phase"]))
			continue
		}
		for _, h := range m.Headers {
			if strings.HasPrefix(h.Key, "custody-") {
				t.Errorf("replayed record kept header %s", h.Key)
			}
		}
		if len(m.Headers) != 1 || string(m.Headers[0].Value) != "kept" {
			t.Errorf("replayed record headers %v; want the sender's x-sender only", m.Headers)
		}
		got = append(got, string(m.Value[strings.Index(string(m.Value), `"id":`):][6:10]))
	}
	if strings.Join(got, ",") != "audit:request,dl-1,dl-2,audit:result" {
		t.Errorf("events topic after the replay: %v; want the request audit, dl-1, dl-2, the result audit", got)
	}
}
