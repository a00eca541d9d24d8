//go:build faults

package faults

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlplog/otlploghttp"
	otellog "go.opentelemetry.io/otel/log"
	sdklog "go.opentelemetry.io/otel/sdk/log"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// TestOTelSDKExportsToIngest: the OpenTelemetry Go SDK's OTLP/HTTP log
// exporter (protobuf, gzip) sends connection and login records to a
// running custody ingest, authenticated by its token header; every record
// reaches Kafka as an event with its semantic-convention attributes
// mapped, a bad one is refused by partial success, and the events are
// archived and read back.
func TestOTelSDKExportsToIngest(t *testing.T) {
	st := stacktest.Get(t)
	topic := stacktest.Topic(t, st, 3)
	cfg := writeConfig(t, st, topic, "")
	ing := start(t, "ingest", "--config", cfg, "--log-level", "info")
	waitHTTP(t, "http://127.0.0.1:19181/readyz", time.Minute)

	ctx := context.Background()
	exp, err := otlploghttp.New(ctx, otlploghttp.WithEndpoint("127.0.0.1:18181"), otlploghttp.WithInsecure(),
		otlploghttp.WithCompression(otlploghttp.GzipCompression),
		otlploghttp.WithHeaders(map[string]string{"Authorization": "Bearer faults-token-0123456789"}))
	if err != nil {
		t.Fatal(err)
	}
	res := resource.NewSchemaless(attribute.String("service.name", "shop"), attribute.String("custody.tenant", "acme"))
	lp := sdklog.NewLoggerProvider(sdklog.WithResource(res), sdklog.WithProcessor(sdklog.NewBatchProcessor(exp, sdklog.WithExportMaxBatchSize(512))))
	logger := lp.Logger("custody-test")
	const n = 2000
	for i := 0; i < n; i++ {
		var r otellog.Record
		r.SetTimestamp(time.Now())
		r.SetBody(attribute.StringValue(fmt.Sprintf("request %d", i)))
		if i%2 == 0 {
			r.AddAttributes(attribute.String("client.address", fmt.Sprintf("203.0.113.%d", i%250+1)), attribute.Int("client.port", 1024+i),
				attribute.String("http.request.method", "GET"), attribute.String("url.path", fmt.Sprintf("/otel/%05d", i)), attribute.String("url.query", "a=1"),
				attribute.Int("http.response.status_code", 200), attribute.String("user_agent.original", "otel-test/1.0"))
		} else {
			r.AddAttributes(attribute.String("custody.kind", "login"), attribute.String("custody.action", "success"),
				attribute.String("client.address", "198.51.100.7"), attribute.String("enduser.id", fmt.Sprintf("otel%05d", i)), attribute.String("password", "hunter2"))
		}
		logger.Emit(ctx, r)
	}
	var bad otellog.Record
	bad.AddAttributes(attribute.String("client.address", "not-an-ip"))
	logger.Emit(ctx, bad)
	// Shutdown flushes, and reports the partial success of the batch
	// that held the bad record: the SDK saw it refused, by name.
	if err := lp.Shutdown(ctx); err == nil || !strings.Contains(err.Error(), `field "ip": "not-an-ip" is not an IP address (1 logs rejected)`) {
		t.Fatalf("shutdown: %v; want the partial success refusing the bad record", err)
	}

	want := map[string]bool{}
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			want[fmt.Sprintf("path:/otel/%05d?a=1", i)] = true
		} else {
			want[fmt.Sprintf("login:otel%05d", i)] = true
		}
	}
	got := map[string]string{} // key -> event ID
	stacktest.ReadUntil(t, st, topic, func(msgs []kafka.Message) bool {
		for _, m := range msgs {
			e, err := event.Parse(m.Value)
			if err != nil {
				t.Fatalf("non-canonical event: %v", err)
			}
			if e.App != "shop" || e.Tenant != "acme" || e.Source != "web" || !e.IP.IsValid() {
				t.Fatalf("event %s lost its resource or members", m.Value)
			}
			if _, ok := e.Attrs["password"]; ok {
				t.Fatalf("a secret passed: %s", m.Value)
			}
			k := "path:" + e.Path
			if e.Kind == event.KindLogin {
				k = "login:" + e.Login
			}
			if id, seen := got[k]; seen && id != e.ID {
				t.Fatalf("%s arrived as two events, %s and %s", k, id, e.ID)
			}
			got[k] = e.ID
		}
		return len(got) >= len(want)
	}, 2*time.Minute)
	for k := range want {
		if got[k] == "" {
			t.Fatalf("record %s never arrived (%d of %d)\n%s", k, len(got), len(want), tail(ing.stderr.String()))
		}
	}
	if len(got) != len(want) {
		t.Fatalf("%d distinct records in Kafka; want %d (the bad one refused)", len(got), len(want))
	}
	ing.stop(t)
	archived := archiveLines(t, st, topic, got)
	t.Logf("OpenTelemetry Go SDK -> custody ingest /v1/logs: %d records, %d events archived, the bad one refused", n+1, archived)
}
