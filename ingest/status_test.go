package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/custodylog/custody/internal/secret"
)

// gateSink stands in for the Kafka sink in the HTTP status tests: it
// blocks every Submit until released, or fails with err.
type gateSink struct {
	mu      sync.Mutex
	entered chan struct{}
	release chan struct{}
	err     error
	got     []Record
}

func (g *gateSink) Submit(ctx context.Context, recs []Record) error {
	if g.entered != nil {
		g.entered <- struct{}{}
		<-g.release
	}
	if g.err != nil {
		return g.err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.got = append(g.got, recs...)
	return nil
}

func statusServer(t *testing.T, sink submitter) string {
	t.Helper()
	srv, err := NewServer(testConfig(), baseOptions(), sink, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL + "/v1/events"
}

// rawReply returns the status and the decoded body as a map, to check that
// every documented member is present.
func rawReply(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("status %d body is not JSON: %q", resp.StatusCode, b)
	}
	for _, k := range []string{"accepted", "rejected", "errors", "message"} {
		if _, ok := m[k]; !ok {
			t.Errorf("status %d body lacks %q: %s", resp.StatusCode, k, b)
		}
	}
	if _, isList := m["errors"].([]any); !isList {
		t.Errorf("status %d: errors is %v; want a list ([] when empty)", resp.StatusCode, m["errors"])
	}
	return resp.StatusCode, m
}

func postReq(url, tok, body string) *http.Request {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	return req
}

// TestStatusCodes covers every row of the status table in docs/EVENTS.md
// §8 that needs no real Kafka (413, 415 and the 503 of a full spool are
// in server_test.go), and that every answer carries all four members.
func TestStatusCodes(t *testing.T) {
	sink := &gateSink{}
	url := statusServer(t, sink)

	code, m := rawReply(t, postReq(url, tokenWeb, login(1, "acme")))
	if code != http.StatusAccepted || m["accepted"] != 1.0 || m["message"] != "1 events accepted" || len(m["errors"].([]any)) != 0 {
		t.Errorf("202: %d %v", code, m)
	}
	code, m = rawReply(t, postReq(url, tokenWeb, login(2, "acme")+"\n{\"kind\":\"login\"}"))
	if code != http.StatusBadRequest || m["accepted"] != 1.0 || m["rejected"] != 1.0 || !strings.Contains(m["message"].(string), "do not resend the accepted ones") {
		t.Errorf("400 partial: %d %v", code, m)
	}
	if code, m = rawReply(t, postReq(url, "", login(3, "acme"))); code != http.StatusUnauthorized {
		t.Errorf("401: %d %v", code, m)
	}
	code, m = rawReply(t, postReq(url, tokenWeb, `{"kind":"access_audit","tenant":"acme","login":"x","action":"query","purpose":"p"}`))
	if code != http.StatusForbidden || !strings.Contains(m["errors"].([]any)[0].(map[string]any)["error"].(string), "may not send access_audit events") {
		t.Errorf("403 forged access_audit: %d %v", code, m)
	}
	code, m = rawReply(t, postReq(url, tokenWeb, `{"kind":"login","tenant":"acme","login":"x","ip":"192.0.2.1","action":"success","class":"security"}`+"\n"+login(4, "globex")))
	if code != http.StatusForbidden || m["accepted"] != 0.0 {
		t.Errorf("403 foreign tenant: %d %v; want nothing accepted", code, m)
	}
	get, _ := http.NewRequest(http.MethodGet, url, nil)
	get.Header.Set("Authorization", "Bearer "+tokenWeb)
	if code, m = rawReply(t, get); code != http.StatusMethodNotAllowed {
		t.Errorf("405: %d %v", code, m)
	}
	sink.mu.Lock()
	n := len(sink.got)
	sink.mu.Unlock()
	if n != 2 {
		t.Errorf("sink holds %d records; want 2 (one from the 202, one from the partial 400)", n)
	}

	busy := &gateSink{err: ErrBusy}
	if code, m = rawReply(t, postReq(statusServer(t, busy), tokenWeb, login(5, "acme"))); code != http.StatusServiceUnavailable || m["accepted"] != 0.0 {
		t.Errorf("503 spool full: %d %v", code, m)
	}
}

// TestConcurrencyLimits fills a token's 16 slots (429), then the server's
// 64 (503), with requests held inside a blocked sink.
func TestConcurrencyLimits(t *testing.T) {
	sink := &gateSink{entered: make(chan struct{}, 100), release: make(chan struct{})}
	cfg := Defaults()
	var toks []string
	for i := 0; i < 5; i++ {
		tok := fmt.Sprintf("token-%d-0123456789abcdef", i)
		toks = append(toks, tok)
		cfg.Tokens = append(cfg.Tokens, Token{Name: fmt.Sprintf("t%d", i), Token: secret.String(tok), Tenants: []string{"acme"}})
	}
	srv, err := NewServer(cfg, baseOptions(), sink, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	url := hs.URL + "/v1/events"
	var wg sync.WaitGroup
	defer func() { close(sink.release); wg.Wait() }()
	hold := func(tok string, n int) {
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.DefaultClient.Do(postReq(url, tok, login(i, "acme")))
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
			select {
			case <-sink.entered:
			case <-time.After(30 * time.Second):
				t.Fatalf("request %d of %s never reached the sink", i, tok)
			}
		}
	}
	hold(toks[0], maxInFlightPerToken)
	code, m := rawReply(t, postReq(url, toks[0], login(99, "acme")))
	if code != http.StatusTooManyRequests || !strings.Contains(m["message"].(string), "16 requests in flight") {
		t.Errorf("429: %d %v", code, m)
	}
	for _, tok := range toks[1 : maxInFlight/maxInFlightPerToken] {
		hold(tok, maxInFlightPerToken)
	}
	code, m = rawReply(t, postReq(url, toks[4], login(98, "acme")))
	if code != http.StatusServiceUnavailable || !strings.Contains(m["message"].(string), "concurrency limit") {
		t.Errorf("503 at 64 in flight: %d %v", code, m)
	}
}
