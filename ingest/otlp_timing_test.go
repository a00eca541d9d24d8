package ingest

import (
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
	"google.golang.org/protobuf/proto"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/dataset"
)

// otlpRecord is e as an OpenTelemetry SDK would send it: the semantic
// conventions otlp.go maps, the rest as attributes; e's ID as
// log.record.uid when uid is set.
func otlpRecord(e *event.Event, uid bool) *logsv1.LogRecord {
	lr := &logsv1.LogRecord{TimeUnixNano: uint64(e.Time.UnixNano())}
	add := func(k, v string) {
		if v != "" {
			lr.Attributes = append(lr.Attributes, str(k, v))
		}
	}
	addInt := func(k string, v int64) {
		if v != 0 {
			lr.Attributes = append(lr.Attributes, num(k, v))
		}
	}
	if uid {
		add("log.record.uid", e.ID)
	}
	add("custody.tenant", e.Tenant)
	add("custody.kind", string(e.Kind))
	add("custody.action", e.Action)
	add("service.name", e.App)
	add("client.address", e.IP.String())
	addInt("client.port", int64(e.Port))
	add("user_agent.original", e.UserAgent)
	add("enduser.id", e.Login)
	add("session.id", e.Session)
	add("http.request.method", e.Method)
	path, query, _ := strings.Cut(e.Path, "?")
	add("url.path", path)
	add("url.query", query)
	addInt("http.response.status_code", int64(e.Status))
	add("network.protocol.name", e.Protocol)
	add("vcs.repository.url.full", e.Repo)
	add("vcs.ref.head.name", e.Ref)
	add("vcs.ref.head.revision", e.NewCommit)
	add("vcs.ref.base.revision", e.OldCommit)
	for k, v := range e.Attrs {
		if s, ok := v.(string); ok {
			add(k, s)
		}
	}
	return lr
}

// BenchmarkIngestOTLP posts the realistic dataset (internal/testkit/dataset)
// through the real Kafka in one run: as NDJSON on /v1/events and as
// OTLP/HTTP protobuf on /v1/logs, 1,000 events a request. The NDJSON lines
// carry their senders' IDs; so do the OTLP records of otlp-protobuf, as
// log.record.uid, and otlp-protobuf-derived-ids has none (the receiver
// derives them). Issue 17 asks OTLP for at least 80% of NDJSON's events
// per CPU-second.
func BenchmarkIngestOTLP(b *testing.B) {
	benchFormats(b, newBenchFixture(b))
}

// BenchmarkIngestOTLPNoKafka is the same without the producer: the cost
// of each format's decoding alone.
func BenchmarkIngestOTLPNoKafka(b *testing.B) {
	benchFormats(b, discard{})
}

func benchFormats(b *testing.B, sink submitter) {
	const perReq, reqs = 1000, 32
	g := dataset.New(dataset.Options{Seed: 1, Total: perReq * reqs, Start: time.Now().UTC().Truncate(time.Hour).Add(-6 * time.Hour)})
	var nd, otlp, derived [][]byte
	tenants := map[string]bool{}
	marshal := func(sl *logsv1.ScopeLogs) []byte {
		body, err := proto.Marshal(&logsv1.LogsData{ResourceLogs: []*logsv1.ResourceLogs{{ScopeLogs: []*logsv1.ScopeLogs{sl}}}})
		if err != nil {
			b.Fatal(err)
		}
		return body
	}
	for i := 0; i < reqs; i++ {
		var lines []byte
		sl, sd := &logsv1.ScopeLogs{}, &logsv1.ScopeLogs{}
		for j := 0; j < perReq; j++ {
			e := g.Next()
			tenants[e.Tenant] = true
			sl.LogRecords = append(sl.LogRecords, otlpRecord(e, true))
			sd.LogRecords = append(sd.LogRecords, otlpRecord(e, false))
			e.Source, e.Received, e.Late, e.Redacted = "", time.Time{}, false, 0
			lines = event.AppendJSON(lines, e)
		}
		nd = append(nd, lines)
		otlp = append(otlp, marshal(sl))
		derived = append(derived, marshal(sd))
	}
	cfg := testConfig()
	cfg.Tokens[0].Tenants = nil
	for t := range tenants {
		cfg.Tokens[0].Tenants = append(cfg.Tokens[0].Tenants, t)
	}
	sort.Strings(cfg.Tokens[0].Tenants)
	cfg.Tokens[0].Kinds = []string{"connection", "login", "source_change"}
	b.Run("ndjson", func(b *testing.B) {
		runBench(b, sink, cfg, benchRequests{path: "/v1/events", bodies: nd, perReq: perReq, status: http.StatusAccepted})
	})
	b.Run("otlp-protobuf", func(b *testing.B) {
		runBench(b, sink, cfg, benchRequests{path: "/v1/logs", contentType: "application/x-protobuf", bodies: otlp, perReq: perReq, status: http.StatusOK})
	})
	b.Run("otlp-protobuf-derived-ids", func(b *testing.B) {
		runBench(b, sink, cfg, benchRequests{path: "/v1/logs", contentType: "application/x-protobuf", bodies: derived, perReq: perReq, status: http.StatusOK})
	})
}
