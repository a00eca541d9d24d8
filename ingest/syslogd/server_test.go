package syslogd

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zaptest"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest"
)

// sink records what it is given; while refuse > 0 it refuses that many
// Submit calls first.
type sink struct {
	mu     sync.Mutex
	recs   []ingest.Record
	refuse int
}

func (s *sink) Submit(_ context.Context, recs []ingest.Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse > 0 {
		s.refuse--
		return errors.New("kafka and spool unavailable")
	}
	s.recs = append(s.recs, recs...)
	return nil
}

func (s *sink) events(t *testing.T) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, r := range s.recs {
		var m map[string]any
		if err := json.Unmarshal(r.Value, &m); err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func testConfig() Config {
	c := Defaults()
	c.Listen = "127.0.0.1:0"
	c.Rules = []Rule{
		{AppName: "sshd", Format: "sshd", Tenant: "acme", Tenants: []string{"globex"}, App: "bastion"},
		{AppName: "nginx", Format: "combined", Tenant: "acme", App: "web"},
		{AppName: "custody", Format: "json", Tenants: []string{"acme"}},
	}
	return c
}

// start runs a server on loopback and returns its address, the server
// and a function that stops it and waits.
func start(t *testing.T, cfg Config, sk *sink) (string, *Server, func()) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	base := event.Options{DefaultClass: "security", Classes: map[string]bool{"security": true}}.WithConfig(event.DefaultConfig())
	s, err := New(cfg, base, sk, zaptest.NewLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(stop)
	return ln.Addr().String(), s, stop
}

func octet(msg string) string { return fmt.Sprintf("%d %s", len(msg), msg) }

const (
	sshAccepted = `<38>1 2026-11-29T05:12:01.123456Z host1 sshd 812 - - Accepted publickey for alice from 198.51.100.7 port 50022 ssh2`
	sshOther    = `<38>1 2026-11-29T05:12:02Z host1 sshd 812 - - Received disconnect from 198.51.100.7 port 50022:11: bye`
	sshGlobex   = `<38>1 2026-11-29T05:12:03Z host2 sshd 813 - [custody@32473 tenant="globex" app="ssh-gw"] Failed password for invalid user bob from 2001:db8::5 port 4242 ssh2`
	sshForeign  = `<38>1 2026-11-29T05:12:04Z host2 sshd 813 - [custody@32473 tenant="initech"] Accepted password for eve from 198.51.100.9 port 22 ssh2`
	nginxLine   = `<190>1 2026-11-29T05:12:05Z web1 nginx - - - 203.0.113.9 - carol [29/Nov/2026:05:12:05 +0000] "GET /login?next=%2F HTTP/1.1" 200 512 "https://example.com/" "Mozilla/5.0 (X11; Linux x86_64)"`
	cronLine    = `<78>1 2026-11-29T05:12:06Z host1 CRON 99 - - (root) CMD (run-parts /etc/cron.hourly)`
	notSyslog   = `this is not syslog`
	jsonEvent   = `<14>1 2026-11-29T05:12:07Z app1 custody - - - {"time":"2026-11-29T05:12:07Z","kind":"source_change","tenant":"acme","repo":"git@example.com:acme/shop.git","action":"modify","login":"dave","protocol":"ssh"}`
)

// TestMessagesBecomeEvents sends both framings, every rule's format and
// the refusals over one connection, and checks each event and count.
func TestMessagesBecomeEvents(t *testing.T) {
	sk := &sink{}
	cfg := testConfig()
	cfg.MaxMessageBytes = 2048
	addr, srv, stop := start(t, cfg, sk)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	stream := octet(sshAccepted) + sshOther + "\n" + octet(sshGlobex) + nginxLine + "\n" + octet(sshForeign) +
		octet("<38>1 2026-11-29T05:12:01Z h sshd - - - "+strings.Repeat("x", 3000)) + // over the limit, skipped by its length
		cronLine + "\n" + notSyslog + "\n" + octet(jsonEvent) + "\r\n" + octet(sshAccepted) // a resend
	if _, err := c.Write([]byte(stream)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, func() bool { return count(srv, "accepted") == 5 })
	stop()
	ev := sk.events(t)
	if len(ev) != 5 {
		t.Fatalf("%d events; want 5: %v", len(ev), ev)
	}
	want := []map[string]any{
		{"kind": "login", "tenant": "acme", "app": "bastion", "ip": "198.51.100.7", "port": 50022.0, "login": "alice", "action": "success", "time": "2026-11-29T05:12:01.123456000Z", "source": "syslog"},
		{"kind": "login", "tenant": "globex", "app": "ssh-gw", "ip": "2001:db8::5", "login": "bob", "action": "failure"},
		{"kind": "connection", "tenant": "acme", "app": "web", "ip": "203.0.113.9", "login": "carol", "method": "GET", "status": 200.0, "path": "/login?next=%2F"},
		{"kind": "source_change", "tenant": "acme", "repo": "git@example.com:acme/shop.git", "login": "dave"},
	}
	for i, w := range want {
		for k, v := range w {
			if ev[i][k] != v {
				t.Errorf("event %d: %s = %v; want %v (%v)", i, k, ev[i][k], v, ev[i])
			}
		}
	}
	if a := ev[0]["attrs"].(map[string]any); a["host"] != "host1" || a["auth_method"] != "publickey" {
		t.Errorf("attrs %v", a)
	}
	if ev[4]["id"] != ev[0]["id"] {
		t.Errorf("a resent message got ID %v, the first %v: readers would keep both", ev[4]["id"], ev[0]["id"])
	}
	if ev[1]["id"] == ev[0]["id"] {
		t.Error("two messages share an ID")
	}
	for result, n := range map[string]float64{"ignored": 1, "unmatched": 1, "invalid": 3} {
		if got := count(srv, result); got != n {
			t.Errorf("%s = %v; want %v", result, got, n)
		}
	}
}

func count(s *Server, result string) float64 {
	return testutil.ToFloat64(s.messages.WithLabelValues(result))
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBackPressureKeepsEverything: while the sink refuses, the server
// retries and reads nothing new; every message arrives once it accepts.
func TestBackPressureKeepsEverything(t *testing.T) {
	sk := &sink{refuse: 3}
	addr, srv, stop := start(t, testConfig(), sk)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(c)
	const n = 2000
	for i := 0; i < n; i++ {
		fmt.Fprintf(w, "%s\n", strings.Replace(sshAccepted, "port 50022", fmt.Sprintf("port %d", 1000+i), 1))
	}
	w.Flush()
	c.Close()
	waitFor(t, func() bool { return count(srv, "accepted") == n })
	stop()
	ids := map[any]bool{}
	for _, e := range sk.events(t) {
		ids[e["id"]] = true
	}
	if len(ids) != n {
		t.Fatalf("%d distinct events; want %d", len(ids), n)
	}
}

// TestShutdownDrains: messages a sender wrote just before shutdown are
// read and submitted before the connection closes.
func TestShutdownDrains(t *testing.T) {
	sk := &sink{}
	addr, _, stop := start(t, testConfig(), sk)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var b bytes.Buffer
	for i := 0; i < 300; i++ {
		b.WriteString(octet(strings.Replace(sshAccepted, "alice", fmt.Sprintf("u%d", i), 1)))
	}
	if _, err := c.Write(b.Bytes()); err != nil {
		t.Fatal(err)
	}
	stop() // while the messages may still be unread
	if got := len(sk.events(t)); got != 300 {
		t.Fatalf("%d of 300 messages submitted before the connection closed", got)
	}
}

func TestConfigValidate(t *testing.T) {
	c := Defaults()
	c.Listen = "0.0.0.0:6514"
	c.MaxMessageBytes = 100
	c.Rules = []Rule{{Format: "xml"}}
	err := c.Validate()
	for _, want := range []string{"tls.", "max_message_bytes: 100 B is outside", `rules[0].format: "xml"`, "rules[0]: tenant or tenants is required"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate() = %v; want %q", err, want)
		}
	}
	if d := Defaults(); d.Validate() != nil {
		t.Errorf("the listener off: %v", d.Validate())
	}
}

// FuzzStream feeds arbitrary bytes through the framing and conversion:
// no panic, no frame over the limit.
func FuzzStream(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.txt")
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	cfg := testConfig()
	cfg.MaxMessageBytes = 2048
	base := event.Options{DefaultClass: "security", Classes: map[string]bool{"security": true}}.WithConfig(event.DefaultConfig())
	s, err := New(cfg, base, &sink{}, zaptest.NewLogger(f), nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReaderSize(bytes.NewReader(b), 64<<10)
		conv := NewConverter(cfg.Rules, cfg.StructuredDataID, base)
		for i := 0; i < 1000; i++ {
			frame, err := s.readFrame(r)
			var fe *frameError
			if err != nil && (!errors.As(err, &fe) || fe.fatal) {
				return
			}
			if len(frame) > int(cfg.MaxMessageBytes) {
				t.Fatalf("frame of %d bytes over the limit", len(frame))
			}
			if err == nil {
				conv.Convert(frame, frame)
			}
		}
	})
}
