package normalize

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap/zaptest"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest/syslogd"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/pipeline/dlq"
)

func testConfig() Config {
	c := Defaults()
	c.DLQTopic = "raw.dlq"
	c.Inputs = []Input{
		{Topic: "raw.json", Format: "json", Tenants: []string{"acme"}},
		{Topic: "raw.nginx", Format: "combined", Tenant: "acme", App: "web"},
		{Topic: "raw.auth", Format: "sshd", Tenant: "acme", App: "bastion"},
		{Topic: "raw.syslog", Format: "rfc5424", Rules: []syslogd.Rule{{AppName: "sshd", Format: "sshd", Tenant: "globex"}}},
	}
	return c
}

// run starts a normalizer on a fake cluster holding raw, returns what it
// produced to the events and dead-letter topics once want records are
// there, and stops it.
func run(t *testing.T, c *kfake.Cluster, cfg Config, want int) (events, dead []*kgo.Record, n *Normalizer) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	k := kafkaconn.Defaults()
	k.Brokers, k.Topic = c.ListenAddrs(), "events"
	base := event.Options{DefaultClass: "security", Classes: map[string]bool{"security": true}}.WithConfig(event.DefaultConfig())
	n, err := New(cfg, k, base, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	rd, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("events", cfg.DLQTopic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	pctx, pcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer pcancel()
	for len(events)+len(dead) < want && pctx.Err() == nil {
		rd.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			if r.Topic == "events" {
				events = append(events, r)
			} else {
				dead = append(dead, r)
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(events)+len(dead) < want {
		t.Fatalf("%d events and %d dead letters; want %d records", len(events), len(dead), want)
	}
	return events, dead, n
}

func produce(t *testing.T, c *kfake.Cluster, topic string, values ...string) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, v := range values {
		if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNormalizeFormats: every format's good records become events with
// derived IDs, bad ones dead letters with the reason and their origin,
// lines without events are dropped and counted.
func TestNormalizeFormats(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "raw.json", "raw.nginx", "raw.auth", "raw.syslog", "events", "raw.dlq"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	produce(t, c, "raw.json",
		`{"time":"2026-11-29T05:00:00Z","kind":"login","tenant":"acme","ip":"198.51.100.1","login":"ann","action":"success","protocol":"https","attrs":{"password":"hunter2"}}`,
		`{"time":"2026-11-29T05:00:00Z","kind":"login","tenant":"initech","ip":"198.51.100.1","login":"ann","action":"success","protocol":"https"}`)
	produce(t, c, "raw.nginx",
		`203.0.113.9 - carol [29/Nov/2026:05:12:05 +0000] "GET /cart?id=1 HTTP/1.1" 200 512 "-" "curl/8.5.0"`+"\n",
		`not an access log line`)
	produce(t, c, "raw.auth",
		`2026-11-29T05:12:01.5+00:00 host1 sshd[812]: Accepted publickey for alice from 198.51.100.7 port 50022 ssh2`,
		`2026-11-29T05:12:02+00:00 host1 sshd[812]: Received disconnect from 198.51.100.7 port 50022:11: bye`)
	produce(t, c, "raw.syslog",
		`<38>1 2026-11-29T05:12:03Z host2 sshd 813 - - Failed password for bob from 2001:db8::5 port 4242 ssh2`,
		`<78>1 2026-11-29T05:12:06Z host1 CRON 99 - - (root) CMD (run-parts /etc/cron.hourly)`)
	cfg := testConfig()
	events, dead, n := run(t, c, cfg, 6)
	if len(events) != 4 || len(dead) != 2 {
		t.Fatalf("%d events, %d dead letters; want 4 and 2", len(events), len(dead))
	}
	byLogin := map[string]map[string]any{}
	for _, r := range events {
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatal(err)
		}
		byLogin[fmt.Sprint(m["login"])] = m
		if string(r.Key) != m["tenant"] {
			t.Errorf("key %q, tenant %v", r.Key, m["tenant"])
		}
		if m["source"] != "normalize" || m["id"] == "" {
			t.Errorf("event %v: want source normalize and an ID", m)
		}
	}
	for login, want := range map[string]map[string]any{
		"ann":   {"kind": "login", "tenant": "acme"},
		"carol": {"kind": "connection", "app": "web", "path": "/cart?id=1"},
		"alice": {"kind": "login", "app": "bastion", "port": 50022.0},
		"bob":   {"kind": "login", "tenant": "globex", "action": "failure"},
	} {
		for k, v := range want {
			if byLogin[login][k] != v {
				t.Errorf("%s: %s = %v; want %v", login, k, byLogin[login][k], v)
			}
		}
	}
	if strings.Contains(string(events[0].Value)+string(events[1].Value), "hunter2") {
		t.Error("a secret passed normalize")
	}
	reasons := map[string]string{}
	for _, r := range dead {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		reasons[h[dlq.HeaderSourceTopic]] = h[dlq.HeaderReason]
		if h[dlq.HeaderSourceOffset] != "1" || h[dlq.HeaderSourcePartition] != "0" {
			t.Errorf("dead letter from %s: headers %v; want partition 0, offset 1", h[dlq.HeaderSourceTopic], h)
		}
	}
	if !strings.Contains(reasons["raw.json"], `tenant`) || !strings.Contains(reasons["raw.nginx"], "combined:") {
		t.Errorf("reasons %v", reasons)
	}
	for result, want := range map[string]float64{resultProduced: 4, resultDeadLetter: 2, resultIgnored: 1, resultUnmatched: 1} {
		if got := testutil.ToFloat64(n.records.WithLabelValues(result)); got != want {
			t.Errorf("%s = %v; want %v", result, got, want)
		}
	}

	// Run again from the start under a new group: the same records give
	// the same IDs, so a batch redone after a crash is kept once.
	cfg.GroupID = "again"
	again, _, _ := run(t, c, cfg, 12)
	ids := map[string]int{}
	for _, r := range append(events, again...) {
		var m struct{ ID string }
		json.Unmarshal(r.Value, &m)
		ids[m.ID]++
	}
	if len(ids) != 4 {
		t.Errorf("redone records gave %d distinct IDs; want the same 4: %v", len(ids), ids)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Defaults()
	c.Timezone = "Mars/Olympus"
	c.InstanceID = "bad id"
	c.Inputs = []Input{{Topic: "a", Format: "xml"}, {Topic: "a", Format: "combined"}, {Topic: "custody.raw.dlq", Format: "rfc5424"}, {Format: "json"}}
	err := c.Validate()
	for _, want := range []string{"timezone:", `instance_id: "bad id"`, `inputs[0].format: "xml"`, "inputs[1].topic: a is listed twice", "inputs[1].tenant: is required for combined",
		"inputs[2].topic: custody.raw.dlq is the dead-letter topic", "inputs[2].rules: rfc5424 needs", "inputs[3].topic: is required", "inputs[3]: json needs tenants"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want %q", err, want)
		}
	}
}

// FuzzEvent: any raw record, in any input's format, becomes a canonical
// event, a reason, or nothing; never a panic.
func FuzzEvent(f *testing.F) {
	for _, s := range []string{
		`{"time":"2026-11-29T05:00:00Z","kind":"login","tenant":"acme","login":"ann","action":"success","protocol":"https"}`,
		`203.0.113.9 - carol [29/Nov/2026:05:12:05 +0000] "GET /cart?id=1 HTTP/1.1" 200 512 "-" "curl/8.5.0"`,
		`Nov 29 05:12:01 host1 sshd[812]: Accepted publickey for alice from 198.51.100.7 port 50022 ssh2`,
		`<38>1 2026-11-29T05:12:03Z host2 sshd 813 - [custody@32473 tenant="globex"] Failed password for bob from 2001:db8::5 port 4242 ssh2`,
	} {
		f.Add([]byte(s))
	}
	cfg := testConfig()
	base := event.Options{DefaultClass: "security", Classes: map[string]bool{"security": true}}.WithConfig(event.DefaultConfig())
	n, err := New(cfg, kafkaconn.Defaults(), base, zaptest.NewLogger(f), nil)
	if err != nil {
		f.Fatal(err)
	}
	conv := syslogd.NewConverter(cfg.Inputs[3].Rules, cfg.StructuredDataID, n.base)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, in := range cfg.Inputs {
			rec, result, err := n.event(in, conv, b, []byte("raw/0@1"))
			switch {
			case result == resultProduced && err != nil:
				t.Fatalf("%s: produced with error %v", in.Format, err)
			case result == resultProduced:
				if _, err := event.Parse(rec.Value); err != nil {
					t.Fatalf("%s: produced a non-canonical event %q: %v", in.Format, rec.Value, err)
				}
			case err == nil:
				t.Fatalf("%s: %s without a reason", in.Format, result)
			}
		}
	})
}
