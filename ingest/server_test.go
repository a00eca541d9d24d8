package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest/spool"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

const (
	tokenWeb = "web-token-0123456789abcdef"
	tokenGit = "git-token-0123456789abcdef"
)

type fixture struct {
	st    stacktest.Stack
	topic string
	kafka kafkaconn.Config
	sink  *Sink
	spool *spool.Spool
	url   string
}

func testConfig() Config {
	c := Defaults()
	c.Tokens = []Token{
		{Name: "web", Token: tokenWeb, Tenants: []string{"acme"}},
		{Name: "git", Token: tokenGit, Tenants: []string{"acme", "globex"}},
	}
	return c
}

// baseOptions are what custody ingest passes for the default retention.
func baseOptions() event.Options {
	r := archive.DefaultRetention()
	return event.Options{DefaultClass: r.DefaultClass, Classes: r.NameSet()}.WithConfig(event.DefaultConfig())
}

// testClient is the process's Kafka client, closed with the test.
func testClient(t testing.TB, k kafkaconn.Config) *kafkaconn.Client {
	kc, err := k.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	return kc
}

// newFixture runs the ingest endpoint in-process against the real Kafka,
// on a fresh topic, with a fresh spool.
func newFixture(t *testing.T, cfg Config, brokers []string, spoolMax int64) *fixture {
	t.Helper()
	return newFixtureOpts(t, cfg, baseOptions(), brokers, spoolMax)
}

// newFixtureOpts is newFixture with other event options (limits, classes).
func newFixtureOpts(t *testing.T, cfg Config, opts event.Options, brokers []string, spoolMax int64) *fixture {
	t.Helper()
	st := stacktest.Get(t)
	f := &fixture{st: st, topic: stacktest.Topic(t, st, 3)}
	f.kafka = st.Kafka()
	f.kafka.Topic = f.topic
	if brokers != nil {
		f.kafka.Brokers = brokers
	}
	var err error
	if f.spool, err = spool.Open(filepath.Join(t.TempDir(), "spool"), spoolMax); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.spool.Close() })
	if f.sink, err = NewSink(testClient(t, f.kafka), f.spool, zap.NewNop(), SinkOptions{WriteTimeout: time.Second}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.sink.Close() })
	srv, err := NewServer(cfg, opts, f.sink, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	f.url = hs.URL + "/v1/events"
	return f
}

// newBenchFixture is a Sink on the real Kafka for benchmarks.
func newBenchFixture(b *testing.B) *Sink {
	st := stacktest.Get(b)
	k := st.Kafka()
	k.Topic = stacktest.Topic(b, st, 6)
	sp, err := spool.Open(filepath.Join(b.TempDir(), "spool"), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sp.Close() })
	s, err := NewSink(testClient(b, k), sp, zap.NewNop(), SinkOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func post(t *testing.T, url, tok, encoding string, body []byte) (int, Response) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Response
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("response %d is not JSON: %q", resp.StatusCode, b)
	}
	return resp.StatusCode, r
}

func login(i int, tenant string) string {
	return fmt.Sprintf(`{"id":"ev-%d","kind":"login","tenant":"%s","login":"user%d","ip":"203.0.113.%d","action":"success"}`, i, tenant, i, i%250)
}

func TestIngestPartialAcceptance(t *testing.T) {
	f := newFixture(t, testConfig(), nil, 1<<20)
	body := strings.Join([]string{
		login(1, "acme"),
		`{"kind":"login","tenant":"acme","login":"x","ip":"not-an-ip","action":"success"}`,
		"",
		login(2, "acme"),
		`{"kind":"connection"`,
		login(3, "acme"),
	}, "\n")
	code, r := post(t, f.url, tokenWeb, "", []byte(body))
	if code != http.StatusBadRequest || r.Accepted != 3 || r.Rejected != 2 {
		t.Fatalf("mixed batch: %d %+v; want 400 with 3 accepted, 2 rejected", code, r)
	}
	want := []LineError{
		{Line: 2, Field: "ip", Error: `"not-an-ip" is not an IP address`},
		{Line: 5, Error: "invalid JSON: the line ends inside a value"},
	}
	if fmt.Sprint(r.Errors) != fmt.Sprint(want) {
		t.Errorf("errors = %+v; want %+v", r.Errors, want)
	}
	msgs := stacktest.ReadAll(t, f.st, f.topic, 3, 30*time.Second)
	if len(msgs) != 3 {
		t.Fatalf("topic holds %d events; want the 3 good ones", len(msgs))
	}
	ids := map[string]bool{}
	for _, m := range msgs {
		e, err := event.Parse(m.Value)
		if err != nil {
			t.Fatalf("Kafka holds a non-canonical event %q: %v", m.Value, err)
		}
		if string(m.Key) != "acme" || e.Source != "web" || e.Class != "security" {
			t.Errorf("message key %q, source %q, class %q; want acme, web, security", m.Key, e.Source, e.Class)
		}
		ids[e.ID] = true
	}
	if !ids["ev-1"] || !ids["ev-2"] || !ids["ev-3"] {
		t.Errorf("IDs in Kafka = %v; want ev-1..3", ids)
	}
}

func TestIngestAuthAndTenants(t *testing.T) {
	f := newFixture(t, testConfig(), nil, 1<<20)
	if code, _ := post(t, f.url, "", "", []byte(login(1, "acme"))); code != http.StatusUnauthorized {
		t.Errorf("no token: %d; want 401", code)
	}
	if code, _ := post(t, f.url, "web-token-0123456789abcdeX", "", []byte(login(1, "acme"))); code != http.StatusUnauthorized {
		t.Errorf("wrong token: %d; want 401", code)
	}
	// The web token may write for acme only: one globex line refuses all.
	code, r := post(t, f.url, tokenWeb, "", []byte(login(1, "acme")+"\n"+login(2, "globex")+"\n"))
	if code != http.StatusForbidden || r.Accepted != 0 || !strings.Contains(r.Errors[0].Error, `may not write for tenant "globex"`) {
		t.Fatalf("foreign tenant: %d %+v; want 403 naming globex, nothing accepted", code, r)
	}
	if code, _ := post(t, f.url, tokenGit, "", []byte(login(3, "globex"))); code != http.StatusAccepted {
		t.Errorf("git token for globex: %d; want 202", code)
	}
	msgs := stacktest.ReadAll(t, f.st, f.topic, 1, 30*time.Second)
	if len(msgs) != 1 || !bytes.Contains(msgs[0].Value, []byte(`"id":"ev-3"`)) {
		t.Fatalf("topic holds %d events; want only ev-3 (nothing from the refused request)", len(msgs))
	}
}

func TestIngestEncodingsAndLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRequestBytes = 64 << 10
	opts := baseOptions()
	opts.MaxEventBytes = 1024
	f := newFixtureOpts(t, cfg, opts, nil, 1<<20)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(login(1, "acme") + "\n" + login(2, "acme") + "\n"))
	zw.Close()
	if code, r := post(t, f.url, tokenWeb, "gzip", gz.Bytes()); code != http.StatusAccepted || r.Accepted != 2 {
		t.Errorf("gzip body: %d %+v; want 202 with 2 accepted", code, r)
	}
	enc, _ := zstd.NewWriter(nil)
	zs := enc.EncodeAll([]byte(login(3, "acme")+"\n"), nil)
	if code, r := post(t, f.url, tokenWeb, "zstd", zs); code != http.StatusAccepted || r.Accepted != 1 {
		t.Errorf("zstd body: %d %+v; want 202", code, r)
	}
	if code, r := post(t, f.url, tokenWeb, "br", []byte("x")); code != http.StatusUnsupportedMediaType || !strings.Contains(r.Message, `"br" is not supported`) {
		t.Errorf("brotli body: %d %+v; want 415", code, r)
	}
	if code, _ := post(t, f.url, tokenWeb, "gzip", []byte("not gzip")); code != http.StatusUnsupportedMediaType {
		t.Errorf("not gzip at all: %d; want 415", code)
	}
	// Regression: a valid gzip header followed by a corrupt or cut stream
	// was answered 400 ("cannot read request body"); docs/EVENTS.md
	// promises 415 for a body that does not decompress.
	var ok bytes.Buffer
	zw = gzip.NewWriter(&ok)
	for i := 0; i < 200; i++ {
		zw.Write([]byte(login(900+i, "acme") + "\n"))
	}
	zw.Close()
	flipped := bytes.Clone(ok.Bytes())
	flipped[len(flipped)/2] ^= 0xff
	cut := ok.Bytes()[:ok.Len()/2]
	for name, b := range map[string][]byte{"flipped byte": flipped, "cut in half": cut} {
		if code, r := post(t, f.url, tokenWeb, "gzip", b); code != http.StatusUnsupportedMediaType || r.Accepted != 0 || !strings.Contains(r.Message, "does not decompress") {
			t.Errorf("corrupt gzip (%s): %d %+v; want 415 'does not decompress', nothing accepted", name, code, r)
		}
	}
	zcorrupt := bytes.Clone(enc.EncodeAll(ok.Bytes(), nil))
	zcorrupt[len(zcorrupt)/2] ^= 0xff
	if code, r := post(t, f.url, tokenWeb, "zstd", zcorrupt); code != http.StatusUnsupportedMediaType {
		t.Errorf("corrupt zstd: %d %+v; want 415", code, r)
	}
	long := `{"kind":"activity","tenant":"acme","login":"a","action":"x","attrs":{"pad":"` + strings.Repeat("p", 2000) + `"}}`
	code, r := post(t, f.url, tokenWeb, "", []byte(login(4, "acme")+"\n"+long+"\n"+login(5, "acme")))
	if code != http.StatusBadRequest || r.Accepted != 2 || r.Errors[0].Line != 2 || !strings.Contains(r.Errors[0].Error, "the limit is 1024") {
		t.Errorf("one oversized line: %d %+v; want 400 rejecting line 2 only", code, r)
	}
	// A gzip bomb: 1 MiB of newlines decompress past the 64 KiB request cap.
	gz.Reset()
	zw = gzip.NewWriter(&gz)
	zw.Write(bytes.Repeat([]byte("\n"), 1<<20))
	zw.Close()
	if code, r := post(t, f.url, tokenWeb, "gzip", gz.Bytes()); code != http.StatusRequestEntityTooLarge {
		t.Errorf("decompressed body over the cap: %d %+v; want 413", code, r)
	}
	if code, _ := post(t, f.url, tokenWeb, "", bytes.Repeat([]byte(login(6, "acme")+"\n"), 1000)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("body over the cap: %d; want 413", code)
	}
	if code, r := post(t, f.url, tokenWeb, "", []byte("\n\n")); code != http.StatusBadRequest || r.Message != "no events in the request body" {
		t.Errorf("empty body: %d %+v", code, r)
	}
	if n := len(stacktest.ReadAll(t, f.st, f.topic, 5, 30*time.Second)); n != 5 {
		t.Errorf("topic holds %d events; want 5", n)
	}
}

// TestPasswordNeverReachesKafka reads the topic back with kcat, a client
// no one here wrote, and looks for the secrets that were sent.
func TestPasswordNeverReachesKafka(t *testing.T) {
	f := newFixture(t, testConfig(), nil, 1<<20)
	kcat := stacktest.Kcat(t)
	const secretValue = "Tr0ub4dor-and-3"
	var body strings.Builder
	for i := 0; i < 20; i++ {
		fmt.Fprintf(&body, `{"id":"pw-%d","kind":"login","tenant":"acme","login":"alice","ip":"203.0.113.5","action":"failure","path":"/login?password=%s","attrs":{"form":{"password":"%s","Set-Cookie":"sid=%s"},"authorization":"Basic %s"}}`+"\n",
			i, secretValue, secretValue, secretValue, secretValue)
	}
	if code, r := post(t, f.url, tokenWeb, "", []byte(body.String())); code != http.StatusAccepted || r.Accepted != 20 {
		t.Fatalf("post: %d %+v", code, r)
	}
	stacktest.ReadAll(t, f.st, f.topic, 20, 30*time.Second) // wait until all are there
	out, err := exec.Command(kcat, append(f.st.KcatArgs(), "-C", "-t", f.topic, "-o", "beginning", "-e", "-q", "-f", "%k\t%s\n")...).CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), `"redacted":4`); n != 20 {
		t.Fatalf("kcat read %d redacted events; want all 20:\n%s", n, out)
	}
	if strings.Contains(string(out), secretValue) {
		t.Fatalf("a secret reached Kafka:\n%s", out)
	}
}

// TestSpoolWhenKafkaUnreachable points the sink at a port where no broker
// listens: ingest still answers 202, from the spool. A second sink on the
// same spool, with the real broker, then drains it into Kafka. With the
// spool full, ingest answers 503 and keeps nothing.
func TestSpoolWhenKafkaUnreachable(t *testing.T) {
	f := newFixture(t, testConfig(), []string{"127.0.0.1:1"}, 4<<10)
	var sent []string
	for i := 0; i < 3; i++ {
		code, r := post(t, f.url, tokenWeb, "", []byte(login(100+i, "acme")))
		if code != http.StatusAccepted {
			t.Fatalf("post with Kafka down: %d %+v; want 202 from the spool", code, r)
		}
		sent = append(sent, fmt.Sprintf("ev-%d", 100+i))
	}
	if f.spool.Size() == 0 {
		t.Fatal("spool is empty after accepting events with Kafka down")
	}
	big := strings.Repeat(login(200, "acme")+"\n", 20) // ~2.5 KiB: past the 4 KiB cap
	code, r := post(t, f.url, tokenWeb, "", []byte(big))
	if code != http.StatusServiceUnavailable || !strings.Contains(r.Message, "spool full") {
		t.Fatalf("post with the spool full: %d %+v; want 503", code, r)
	}

	good := f.kafka
	good.Brokers = f.st.KafkaBrokers
	drainer, err := NewSink(testClient(t, good), f.spool, zap.NewNop(), SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer drainer.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- drainer.Run(ctx) }()
	msgs := stacktest.ReadAll(t, f.st, f.topic, len(sent), 30*time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		e, err := event.Parse(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e.ID)
	}
	if strings.Join(got, ",") != strings.Join(sent, ",") {
		t.Fatalf("drained %v; want exactly %v in order (ev-200 was refused with 503)", got, sent)
	}
	if f.spool.Size() != 0 {
		t.Errorf("spool holds %d bytes after draining", f.spool.Size())
	}
}

// TestAnalyticsMinimisedBeforeKafka sends analytics-class events and reads
// the topic back with kcat: no full IP, user agent, login or session of
// them reaches Kafka (docs/EVENTS.md §5a).
func TestAnalyticsMinimisedBeforeKafka(t *testing.T) {
	cfg := testConfig()
	cfg.Tokens[0].Classes = []string{"security", "analytics"}
	opts := baseOptions()
	opts.Classes = map[string]bool{"security": true, "analytics": true}
	ec := event.DefaultConfig()
	ec.Minimise = []event.Minimise{{Class: "analytics", IP: "truncate", Port: "drop", UserAgent: "summary", Login: "pseudonym", Session: "pseudonym", PseudonymKey: "analytics-key-for-tests-0123456789abcdef"}}
	opts = opts.WithConfig(ec)
	f := newFixtureOpts(t, cfg, opts, nil, 1<<20)
	kcat := stacktest.Kcat(t)
	const ua = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15"
	var body strings.Builder
	var ips []string
	for i := 0; i < 20; i++ {
		ip := fmt.Sprintf("198.51.%d.%d", 100+i, 200+i)
		ips = append(ips, ip)
		fmt.Fprintf(&body, `{"kind":"connection","class":"analytics","tenant":"acme","ip":"%s","port":%d,"login":"person%d@example.org","session":"sess-%04d","user_agent":"%s","path":"/"}`+"\n", ip, 40000+i, i, i, ua)
	}
	fmt.Fprintf(&body, `{"kind":"connection","tenant":"acme","ip":"192.0.2.99","port":41000,"login":"kept@example.org","user_agent":"%s"}`+"\n", ua)
	if code, r := post(t, f.url, tokenWeb, "", []byte(body.String())); code != http.StatusAccepted || r.Accepted != 21 {
		t.Fatalf("post: %d %+v", code, r)
	}
	stacktest.ReadAll(t, f.st, f.topic, 21, 30*time.Second)
	out, err := exec.Command(kcat, append(f.st.KcatArgs(), "-C", "-t", f.topic, "-o", "beginning", "-e", "-q")...).CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	var analytics, security []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, `"class":"analytics"`) {
			analytics = append(analytics, l)
		} else {
			security = append(security, l)
		}
	}
	if len(analytics) != 20 || len(security) != 1 {
		t.Fatalf("kcat read %d analytics and %d security events; want 20 and 1:\n%s", len(analytics), len(security), out)
	}
	all := strings.Join(analytics, "\n")
	for _, ip := range ips {
		if strings.Contains(all, `"`+ip+`"`) {
			t.Errorf("full IP %s reached Kafka", ip)
		}
	}
	for _, leak := range []string{"@example.org", "sess-", "Macintosh", "605.1.15", `"port"`} {
		if strings.Contains(all, leak) {
			t.Errorf("%q of an analytics event reached Kafka:\n%s", leak, all)
		}
	}
	if !strings.Contains(all, `"ip":"198.51.0.0"`) || !strings.Contains(all, `"user_agent":"Safari 17; MacOS; Desktop"`) || !strings.Contains(all, `"login":"p-`) {
		t.Errorf("analytics events lack the minimised forms:\n%s", analytics[0])
	}
	if s := security[0]; !strings.Contains(s, `"ip":"192.0.2.99"`) || !strings.Contains(s, "kept@example.org") || !strings.Contains(s, "Macintosh") {
		t.Errorf("the security event was minimised: %s", s)
	}
}
