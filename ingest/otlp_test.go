package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	commonv1 "go.opentelemetry.io/proto/otlp/common/v1"
	logsv1 "go.opentelemetry.io/proto/otlp/logs/v1"
	resourcev1 "go.opentelemetry.io/proto/otlp/resource/v1"
	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// memSink keeps what it is given.
type memSink struct {
	mu   sync.Mutex
	recs []Record
}

func (m *memSink) Submit(_ context.Context, recs []Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recs = append(m.recs, recs...)
	return nil
}

func str(k, v string) *commonv1.KeyValue {
	return &commonv1.KeyValue{Key: k, Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: v}}}
}

func num(k string, v int64) *commonv1.KeyValue {
	return &commonv1.KeyValue{Key: k, Value: &commonv1.AnyValue{Value: &commonv1.AnyValue_IntValue{IntValue: v}}}
}

func otlpServer(t *testing.T) (*httptest.Server, *memSink, *Server) {
	t.Helper()
	sink := &memSink{}
	s, err := NewServer(testConfig(), baseOptions(), sink, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return hs, sink, s
}

func testLogs(now time.Time) *logsv1.LogsData {
	ts := uint64(now.UnixNano())
	return &logsv1.LogsData{ResourceLogs: []*logsv1.ResourceLogs{{
		Resource: &resourcev1.Resource{Attributes: []*commonv1.KeyValue{str("service.name", "shop"), str("custody.tenant", "acme"), str("host.name", "web1")}},
		ScopeLogs: []*logsv1.ScopeLogs{{LogRecords: []*logsv1.LogRecord{
			{TimeUnixNano: ts, TraceId: bytes.Repeat([]byte{0xab}, 16), Body: &commonv1.AnyValue{Value: &commonv1.AnyValue_StringValue{StringValue: "GET /cart"}},
				Attributes: []*commonv1.KeyValue{str("client.address", "203.0.113.7"), num("client.port", 51234), str("user_agent.original", "Mozilla/5.0"),
					str("http.request.method", "GET"), str("url.path", "/cart"), str("url.query", "id=3"), num("http.response.status_code", 200),
					str("session.id", "s-7f3a"), str("enduser.id", "alice"), str("password", "hunter2")}},
			{TimeUnixNano: ts, Attributes: []*commonv1.KeyValue{str("custody.kind", "login"), str("custody.action", "failure"), str("client.address", "2001:db8::7"), str("user.name", "bob")}},
			{TimeUnixNano: ts, Attributes: []*commonv1.KeyValue{str("vcs.repository.url.full", "https://git.example.com/acme/shop"), str("vcs.ref.head.name", "main"),
				str("vcs.ref.head.revision", "b5d0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8"), str("custody.action", "modify"), str("network.protocol.name", "https"), str("enduser.id", "carol")}},
			{TimeUnixNano: ts, Attributes: []*commonv1.KeyValue{str("client.address", "not-an-ip")}},
			{TimeUnixNano: ts, Attributes: []*commonv1.KeyValue{str("custody.tenant", "globex"), str("client.address", "198.51.100.1")}},
			{TimeUnixNano: ts, Attributes: []*commonv1.KeyValue{str("client.address", "198.51.100.1"), str("client.port", "https")}},
		}}},
	}}}
}

func postOTLP(t *testing.T, url, ct string, body []byte, gz bool) (*http.Response, []byte) {
	t.Helper()
	if gz {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(body)
		zw.Close()
		body = b.Bytes()
	}
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/logs", bytes.NewReader(body))
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Authorization", "Bearer "+tokenWeb)
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// partialSuccess decodes ExportLogsServiceResponse's partial_success.
func partialSuccess(t *testing.T, b []byte) (rejected uint64, msg string) {
	t.Helper()
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			t.Fatalf("unexpected field %d in the response", num)
		}
		ps, n := protowire.ConsumeBytes(b)
		b = b[n:]
		for len(ps) > 0 {
			f, _, n := protowire.ConsumeTag(ps)
			ps = ps[n:]
			switch f {
			case 1:
				v, n := protowire.ConsumeVarint(ps)
				rejected, ps = v, ps[n:]
			case 2:
				v, n := protowire.ConsumeString(ps)
				msg, ps = v, ps[n:]
			}
		}
	}
	return rejected, msg
}

// TestOTLPLogs: an OTLP/HTTP protobuf request (gzip) maps the semantic
// conventions to members, the rest to attrs, redacts, and refuses the
// records that cannot be events with a partial success that names them.
func TestOTLPLogs(t *testing.T) {
	hs, sink, s := otlpServer(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	body, err := proto.Marshal(testLogs(now))
	if err != nil {
		t.Fatal(err)
	}
	resp, b := postOTLP(t, hs.URL, "application/x-protobuf", body, true)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-protobuf" {
		t.Fatalf("status %d, %s", resp.StatusCode, b)
	}
	rejected, msg := partialSuccess(t, b)
	if rejected != 3 || !strings.Contains(msg, `resource_logs[0].scope_logs[0].log_records[3]: field "ip"`) || !strings.Contains(msg, "log_records[4]: ") || !strings.Contains(msg, "globex") ||
		!strings.Contains(msg, `log_records[5]: field "port": https is not an integer`) {
		t.Errorf("partial success %d, %q", rejected, msg)
	}
	if len(sink.recs) != 3 {
		t.Fatalf("%d events; want 3", len(sink.recs))
	}
	var ev []map[string]any
	for _, r := range sink.recs {
		var m map[string]any
		json.Unmarshal(r.Value, &m)
		ev = append(ev, m)
		if strings.Contains(string(r.Value), "hunter2") {
			t.Errorf("a secret passed: %s", r.Value)
		}
	}
	for i, want := range []map[string]any{
		{"kind": "connection", "tenant": "acme", "app": "shop", "ip": "203.0.113.7", "port": 51234.0, "user_agent": "Mozilla/5.0", "method": "GET",
			"path": "/cart?id=3", "status": 200.0, "session": "s-7f3a", "login": "alice", "source": "web", "time": now.Format("2006-01-02T15:04:05.000000000Z")},
		{"kind": "login", "action": "failure", "ip": "2001:db8::7", "login": "bob"},
		{"kind": "source_change", "repo": "https://git.example.com/acme/shop", "ref": "main", "new_commit": "b5d0c1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8", "protocol": "https", "login": "carol", "action": "modify"},
	} {
		for k, v := range want {
			if ev[i][k] != v {
				t.Errorf("event %d: %s = %v; want %v", i, k, ev[i][k], v)
			}
		}
	}
	if n := testutil.ToFloat64(s.redacted); n != 1 {
		t.Errorf("custody_ingest_redacted_total %v; want 1 (the password attribute)", n)
	}
	attrs, _ := ev[0]["attrs"].(map[string]any)
	if attrs["host.name"] != "web1" || attrs["body"] != "GET /cart" || attrs["trace_id"] != strings.Repeat("ab", 16) {
		t.Errorf("attrs %v", attrs)
	}
	// The same request again (an exporter's retry) gives the same IDs.
	postOTLP(t, hs.URL, "application/x-protobuf", body, false)
	if len(sink.recs) != 6 {
		t.Fatalf("%d events after the retry; want 6", len(sink.recs))
	}
	for i := 0; i < 3; i++ {
		var a, b struct{ ID string }
		json.Unmarshal(sink.recs[i].Value, &a)
		json.Unmarshal(sink.recs[i+3].Value, &b)
		if a.ID != b.ID || a.ID == "" {
			t.Errorf("event %d of a retried request has ID %q, first %q", i, b.ID, a.ID)
		}
	}
}

// TestOTLPRecordUID: log.record.uid is the event's ID, so a record sent
// again in another request (an exporter's queue re-batched after a
// restart) keeps it; a uid that cannot be an ID is refused by name.
func TestOTLPRecordUID(t *testing.T) {
	hs, sink, _ := otlpServer(t)
	ts := uint64(time.Now().Add(-time.Minute).UnixNano())
	rec := func(uid, ip string) *logsv1.LogRecord {
		return &logsv1.LogRecord{TimeUnixNano: ts, Attributes: []*commonv1.KeyValue{str("log.record.uid", uid), str("client.address", ip)}}
	}
	req := func(recs ...*logsv1.LogRecord) []byte {
		b, err := proto.Marshal(&logsv1.LogsData{ResourceLogs: []*logsv1.ResourceLogs{{
			Resource:  &resourcev1.Resource{Attributes: []*commonv1.KeyValue{str("custody.tenant", "acme")}},
			ScopeLogs: []*logsv1.ScopeLogs{{LogRecords: recs}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	const uid = "01JDQ7ZC2Y5V8M3K4N6P9R0S1T"
	postOTLP(t, hs.URL, "application/x-protobuf", req(rec(uid, "203.0.113.7"), rec("", "203.0.113.8")), false)
	resp, b := postOTLP(t, hs.URL, "application/x-protobuf", req(rec("", "198.51.100.1"), rec(uid, "203.0.113.7"), rec("not an id", "203.0.113.9")), false)
	if rejected, msg := partialSuccess(t, b); resp.StatusCode != http.StatusOK || rejected != 1 || !strings.Contains(msg, `log_records[2]: field "id"`) {
		t.Fatalf("status %d, partial success %d %q", resp.StatusCode, rejected, msg)
	}
	ids := map[string][]string{}
	for _, r := range sink.recs {
		var e struct{ ID, IP string }
		json.Unmarshal(r.Value, &e)
		ids[e.IP] = append(ids[e.IP], e.ID)
	}
	if got := ids["203.0.113.7"]; len(got) != 2 || got[0] != uid || got[1] != uid {
		t.Errorf("the record with log.record.uid has IDs %q; want %s twice", got, uid)
	}
	if got := ids["203.0.113.8"]; len(got) != 1 || got[0] == uid || got[0] == "" {
		t.Errorf("a record without log.record.uid has ID %q", got)
	}
}

// TestOTLPLogsJSON: OTLP/JSON, hex trace IDs and all.
func TestOTLPLogsJSON(t *testing.T) {
	hs, sink, _ := otlpServer(t)
	doc := `{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
	  "scopeLogs":[{"logRecords":[{"timeUnixNano":"` + jsonNanos(time.Now()) + `","severityNumber":9,"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
	  "attributes":[{"key":"client.address","value":{"stringValue":"198.51.100.9"}},{"key":"client.port","value":{"intValue":"4242"}}]}]}]}]}`
	resp, b := postOTLP(t, hs.URL, "application/json", []byte(doc), false)
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(b)) != "{}" {
		t.Fatalf("status %d, %s", resp.StatusCode, b)
	}
	if len(sink.recs) != 1 || !strings.Contains(string(sink.recs[0].Value), `"trace_id":"5b8efff798038103d269b633813fc60c"`) || !strings.Contains(string(sink.recs[0].Value), `"port":4242`) {
		t.Fatalf("events %q", sink.recs)
	}
	resp, b = postOTLP(t, hs.URL, "application/json", []byte(`{"resourceLogs":7}`), false)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "not an OTLP logs request") {
		t.Errorf("a broken request: %d %s", resp.StatusCode, b)
	}
	resp, _ = postOTLP(t, hs.URL, "text/plain", []byte(`x`), false)
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain: %d", resp.StatusCode)
	}
}

func jsonNanos(t time.Time) string {
	b, _ := json.Marshal(t.UnixNano())
	return string(b)
}

// FuzzOTLPLogs: any body, as protobuf or JSON, gives an answer, never a
// panic; every event it keeps is canonical.
func FuzzOTLPLogs(f *testing.F) {
	seed, _ := proto.Marshal(testLogs(time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)))
	f.Add(seed, false)
	f.Add([]byte(`{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"attributes":[{"key":"client.address","value":{"stringValue":"198.51.100.9"}}]}]}]}]}`), true)
	sink := &memSink{}
	s, err := NewServer(testConfig(), baseOptions(), sink, zaptest.NewLogger(f), nil)
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, body []byte, isJSON bool) {
		ct := "application/x-protobuf"
		if isJSON {
			ct = "application/json"
		}
		req := httptest.NewRequest(http.MethodPost, "/v1/logs", bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+tokenWeb)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK && w.Code != http.StatusBadRequest {
			t.Fatalf("status %d: %s", w.Code, w.Body.Bytes())
		}
	})
}

// A full spool refuses an OTLP request as retryable (503, Retry-After, a
// google.rpc.Status of UNAVAILABLE), keeping nothing, as /v1/events does:
// the exporter retries the same request, which gives the same IDs.
func TestOTLPSpoolFull(t *testing.T) {
	busy := &gateSink{err: ErrBusy}
	s, err := NewServer(testConfig(), baseOptions(), busy, zaptest.NewLogger(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	body, err := proto.Marshal(testLogs(time.Now().UTC()))
	if err != nil {
		t.Fatal(err)
	}
	resp, b := postOTLP(t, hs.URL, "application/x-protobuf", body, false)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q; want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// google.rpc.Status: code = 1, message = 2.
	var code uint64
	var msg string
	for rest := b; len(rest) > 0; {
		f, typ, n := protowire.ConsumeTag(rest)
		if n < 0 {
			t.Fatalf("body %q is not a google.rpc.Status", b)
		}
		rest = rest[n:]
		switch {
		case f == 1 && typ == protowire.VarintType:
			code, n = protowire.ConsumeVarint(rest)
		case f == 2 && typ == protowire.BytesType:
			msg, n = protowire.ConsumeString(rest)
		default:
			n = protowire.ConsumeFieldValue(f, typ, rest)
		}
		if n < 0 {
			t.Fatalf("body %q is not a google.rpc.Status", b)
		}
		rest = rest[n:]
	}
	if code != 14 || !strings.Contains(msg, "events not kept") {
		t.Fatalf("status code %d, message %q; want UNAVAILABLE (14) naming why", code, msg)
	}
	busy.mu.Lock()
	defer busy.mu.Unlock()
	if len(busy.got) != 0 {
		t.Fatalf("the sink kept %d records", len(busy.got))
	}
}

// TestReadBody: a body is read whole however the reader splits it, into a
// buffer sized once when its length is known, and a read error is kept.
func TestReadBody(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 10_000)
	for _, tc := range []struct {
		name  string
		r     io.Reader
		cl    int64
		exact bool
	}{
		{"exact", bytes.NewReader(want), int64(len(want)), true},
		{"unknown length", bytes.NewReader(want), -1, true},
		{"compressed", bytes.NewReader(want), 100, false},
		{"one byte a read", iotest.OneByteReader(bytes.NewReader(want)), int64(len(want)), true},
		{"half reads", iotest.HalfReader(bytes.NewReader(want)), -1, false},
	} {
		bp := readBody(tc.r, tc.cl, 1<<30, tc.exact)
		if bp.err != nil || !bytes.Equal(bp.b, want) {
			t.Errorf("%s: %d bytes, %v", tc.name, len(bp.b), bp.err)
		}
		bodyPool.Put(bp)
	}
	bp := readBody(iotest.TimeoutReader(bytes.NewReader(want)), -1, 1<<30, false)
	if !errors.Is(bp.err, iotest.ErrTimeout) {
		t.Errorf("a failed read gave %v", bp.err)
	}
	// An exact length allocates once: the buffer is not grown by doubling.
	allocs := testing.AllocsPerRun(20, func() {
		bp := readBody(bytes.NewReader(want), int64(len(want)), 1<<30, true)
		bp.b = nil // as if the pool were empty
		bodyPool.Put(bp)
	})
	if allocs > 2 {
		t.Errorf("%v allocations for a body of known length", allocs)
	}
}
