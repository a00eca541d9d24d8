package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/query"
)

// counting is the store, counting the reads of segments.
type counting struct {
	*store.Store
	lists, gets atomic.Int64
	delay       atomic.Int64 // nanoseconds each GetRange waits first
}

func (c *counting) List(ctx context.Context, prefix string) iter.Seq2[store.Object, error] {
	c.lists.Add(1)
	return c.Store.List(ctx, prefix)
}

func (c *counting) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	c.gets.Add(1)
	select {
	case <-time.After(time.Duration(c.delay.Load())):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return c.Store.GetRange(ctx, name, off, n)
}

// rig is an archive of one hour with events of tenants acme and globex,
// served by an in-process Server over loopback.
type rig struct {
	st     stacktest.Stack
	topic  string
	url    string
	seg    *counting
	s      *store.Store
	keys   archivetest.Keys
	hour   time.Time
	tokens map[string]string // name -> token
	// now is the rights register's clock: tests move it to age requests.
	now    atomic.Pointer[time.Time]
	rights *Rights // the register of the server served last
}

func (r *rig) clock() time.Time {
	if t := r.now.Load(); t != nil {
		return *t
	}
	return time.Now()
}

var roleTokens = []Token{
	{Name: "inv-acme", Role: Investigator, Tenants: []string{"acme"}},
	{Name: "inv-all", Role: Investigator},
	{Name: "legal", Role: Legal},
	{Name: "legal-2", Role: Legal},
	{Name: "auditor", Role: Auditor},
	{Name: "admin", Role: Admin},
}

func newRig(t *testing.T) *rig {
	st := stacktest.Get(t)
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	s, _ := archivetest.NewStore(t, st, ret)
	keys := archivetest.Keyring(t)
	r := &rig{st: st, topic: stacktest.Topic(t, st, 1), seg: &counting{Store: s}, s: s, keys: keys, hour: time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour), tokens: map[string]string{}}
	for i, tenant := range []string{"acme", "globex"} {
		var evs []event.Event
		for j := 0; j < 3; j++ {
			evs = append(evs, event.Event{ID: fmt.Sprintf("%s-%d", tenant, j), Time: r.hour.Add(time.Duration(j) * time.Minute), Kind: event.KindLogin, Class: "security",
				Tenant: tenant, IP: netip.MustParseAddr("203.0.113.7"), Login: "alice", Action: "success"})
		}
		r.putSegment(t, int32(i), evs)
	}
	// An access_audit event already archived, an hour before the others.
	r.putSegment(t, 9, []event.Event{{ID: "audit-archived-1", Time: r.hour.Add(-30 * time.Minute), Kind: event.KindAccessAudit, Class: "security", Tenant: "platform",
		Login: "earlier-investigator", Action: "query", Purpose: "older case", Attrs: map[string]any{"case": "OLD-1"}}})
	r.url = r.serve(t, strings.Join(st.KafkaBrokers, ","))
	return r
}

// putSegment stores evs (one kind, one hour, in time order) as a segment
// of partition p, from offset 0, indexed by IP, tenant and login.
func (r *rig) putSegment(t *testing.T, p int32, evs []event.Event) {
	t.Helper()
	ix := segment.NewIndexBuilder()
	var body bytes.Buffer
	for i := range evs {
		e := &evs[i]
		body.Write(event.AppendJSON(nil, e))
		if e.IP.IsValid() {
			ix.AddIP(e.IP.String())
		}
		ix.Add(segment.FieldTenant, e.Tenant)
		ix.Add(segment.FieldLogin, e.Login)
	}
	hour := evs[0].Time.Truncate(time.Hour)
	m := segment.Meta{Class: "security", Kind: string(evs[0].Kind), Hour: hour, Topic: "t", Partition: p, FirstOffset: 0, LastOffset: int64(len(evs) - 1), Count: int64(len(evs)),
		MinTime: evs[0].Time, MaxTime: evs[len(evs)-1].Time}
	pk, err := r.keys.Public.Current("security", hour)
	if err != nil {
		t.Fatal(err)
	}
	var seg bytes.Buffer
	w, err := segment.NewWriterV2(&seg, m, ix, pk, r.keys.Signer)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(body.Bytes())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.s.Put(context.Background(), w.Name(), &seg, int64(seg.Len()), store.Lock{Mode: "GOVERNANCE", Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
}

// serve starts an API server over the rig's archive whose audit events go
// to the Kafka at kafkaAddr, and returns its URL.
func (r *rig) serve(t *testing.T, kafkaAddr string, mods ...func(*Config)) string {
	kcfg := r.st.Kafka()
	kcfg.Brokers, kcfg.Topic = strings.Split(kafkaAddr, ","), r.topic
	kc, err := kcfg.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	audit := announce.NewKafka(kc, "security", "serve@test")
	t.Cleanup(func() { audit.Close() })
	cfg := Defaults()
	for _, tk := range roleTokens {
		tok := "cst_test_token_for_" + tk.Name + "_0123456789"
		r.tokens[tk.Name] = tok
		tk.SHA256 = HashToken(tok)
		cfg.Tokens = append(cfg.Tokens, tk)
	}
	for _, m := range mods {
		m(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	eng := query.NewEngine(query.Defaults(), r.seg, r.keys.Read(), []string{"security"})
	exports := NewExports(cfg.Exports, ExportDeps{Store: r.s, Signer: r.keys.Signer, Trusted: r.keys.Public, Keys: r.keys.Read(), Class: "security", Mode: "GOVERNANCE",
		Instance: "test", Software: "custody test", TempDir: t.TempDir(), RetentionDays: map[string]int{"security": 30}})
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}, Grace: 6 * time.Hour}
	rights := NewRights(r.s, r.keys.Signer, r.keys.Public, audit, ret, r.clock)
	r.rights = rights
	srv, err := New(context.Background(), cfg, Deps{Engine: eng, Cases: NewCases(r.s, r.keys.Signer, r.keys.Public, audit, time.Now), Exports: exports, Rights: rights, Audit: audit, Log: zap.NewNop(),
		Recent: kc, Topic: r.topic})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.RunExports(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func (r *rig) do(t *testing.T, who, method, path string, body any) (int, []byte) {
	t.Helper()
	return r.doAt(t, r.url, who, method, path, body)
}

func (r *rig) doAt(t *testing.T, url, who, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url+path, rd)
	if who != "" {
		tok, ok := r.tokens[who]
		if !ok {
			tok = who // a raw token
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (r *rig) openCase(t *testing.T, id string) {
	t.Helper()
	if code, b := r.do(t, "legal", "POST", "/v1/cases", CaseRequest{ID: id, Title: "test " + id, LegalBasis: "art. 6(1)(c) GDPR", Authority: "court"}); code != http.StatusCreated {
		t.Fatalf("open case %s: %d %s", id, code, b)
	}
}

func (r *rig) queryReq(caseRef string) QueryRequest {
	day := r.hour.Format("2006-01-02")
	return QueryRequest{Case: caseRef, Purpose: "test", From: day, To: day}
}

// ids are the event IDs of a query answer, and its trailer.
func ids(t *testing.T, b []byte) ([]string, Trailer) {
	t.Helper()
	var out []string
	var tr Trailer
	seen := false
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if bytes.HasPrefix(l, []byte(`{"trailer":`)) {
			var x struct{ Trailer Trailer }
			if err := json.Unmarshal(l, &x); err != nil {
				t.Fatal(err)
			}
			tr, seen = x.Trailer, true
			continue
		}
		var e struct{ ID string }
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatalf("answer line %q: %v", l, err)
		}
		out = append(out, e.ID)
	}
	if !seen {
		t.Fatalf("answer without a trailer:\n%s", b)
	}
	return out, tr
}

// Every role against every endpoint: allowed or denied as docs/SERVE.md
// §3 says, and nobody without a token.
func TestRoleEndpointMatrix(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "M-1")
	type cell struct {
		method, path string
		body         any
	}
	endpoints := map[string]cell{
		"whoami":      {"GET", "/v1/whoami", nil},
		"query":       {"POST", "/v1/query", r.queryReq("M-1")},
		"cases.list":  {"GET", "/v1/cases", nil},
		"cases.open":  {"POST", "/v1/cases", CaseRequest{ID: "M-new", Title: "t", LegalBasis: "b"}},
		"cases.close": {"POST", "/v1/cases/M-close/close", nil},
		"access-log":  {"GET", "/v1/access-log?from=" + r.hour.Format("2006-01-02") + "&to=" + r.hour.Format("2006-01-02"), nil},
		"exports.new": {"POST", "/v1/exports", r.exportReq("M-1")},
		"exports":     {"GET", "/v1/exports", nil},
		"export":      {"GET", "/v1/exports/" + r.createExport(t, "legal", r.exportReq("M-1")).ID, nil},
	}
	allowedCells := map[string][]string{
		"inv-acme": {"whoami", "query", "cases.list"},
		"inv-all":  {"whoami", "query", "cases.list"},
		"legal":    {"whoami", "query", "cases.list", "cases.open", "cases.close", "exports.new", "exports", "export"},
		"auditor":  {"whoami", "cases.list", "access-log", "exports", "export"},
		"admin":    {"whoami"},
	}
	for who, ok := range allowedCells {
		for name, c := range endpoints {
			want := false
			for _, a := range ok {
				want = want || a == name
			}
			if name == "cases.open" {
				c.body = CaseRequest{ID: "M-new-" + who, Title: "t", LegalBasis: "b"}
			}
			if name == "cases.close" {
				r.openCase(t, "M-close-"+who)
				c.path = "/v1/cases/M-close-" + who + "/close"
			}
			code, b := r.do(t, who, c.method, c.path, c.body)
			if got := code < 300; got != want || (!want && code != http.StatusForbidden) {
				t.Errorf("%s %s: %d %s; allowed %t", who, name, code, b, want)
			}
		}
	}
	for name, c := range endpoints {
		for _, tok := range []string{"", "cst_not_a_token_0123456789", strings.ToUpper(r.tokens["legal"])} {
			if code, b := r.do(t, tok, c.method, c.path, c.body); code != http.StatusUnauthorized {
				t.Errorf("%s with token %q: %d %s; want 401", name, tok, code, b)
			}
		}
	}
}

// A token scoped to acme never sees globex, with a filter naming globex
// (refused) or no tenant filter (only acme's events).
func TestTenantScope(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "S-1")
	code, b := r.do(t, "inv-acme", "POST", "/v1/query", r.queryReq("S-1"))
	got, _ := ids(t, b)
	if code != 200 || strings.Join(got, ",") != "acme-0,acme-1,acme-2" {
		t.Errorf("acme-scoped, no tenant filter: %d %v", code, got)
	}
	q := r.queryReq("S-1")
	q.Tenant = "globex"
	if code, b := r.do(t, "inv-acme", "POST", "/v1/query", q); code != http.StatusForbidden || !strings.Contains(string(b), "inv-acme may read only acme") {
		t.Errorf("acme-scoped asking for globex: %d %s", code, b)
	}
	// The access log (tenant platform, kind access_audit) is not readable
	// through a query, whoever asks.
	aq := r.queryReq("S-1")
	aq.Kind = "access_audit"
	if code, b := r.do(t, "legal", "POST", "/v1/query", aq); code != http.StatusForbidden || !strings.Contains(string(b), "GET /v1/access-log") {
		t.Errorf("a query for access_audit events: %d %s", code, b)
	}
	code, b = r.do(t, "inv-all", "POST", "/v1/query", q)
	got, _ = ids(t, b)
	if code != 200 || strings.Join(got, ",") != "globex-0,globex-1,globex-2" {
		t.Errorf("unscoped asking for globex: %d %v", code, got)
	}
}

// Cases bind reads: unknown and closed cases are refused, and opening
// needs a title and a legal basis.
func TestCasesBindReads(t *testing.T) {
	r := newRig(t)
	if code, b := r.do(t, "inv-all", "POST", "/v1/query", r.queryReq("NOPE")); code != http.StatusForbidden || !strings.Contains(string(b), `case \"NOPE\" does not exist`) {
		t.Errorf("query on an unknown case: %d %s", code, b)
	}
	r.openCase(t, "C-1")
	if code, b := r.do(t, "legal", "POST", "/v1/cases", CaseRequest{ID: "C-1", Title: "again", LegalBasis: "b"}); code != http.StatusConflict {
		t.Errorf("opening C-1 twice: %d %s", code, b)
	}
	if code, b := r.do(t, "legal", "POST", "/v1/cases", CaseRequest{ID: "C-2", Title: "no basis"}); code != http.StatusBadRequest || !strings.Contains(string(b), "legal_basis") {
		t.Errorf("a case without a legal basis: %d %s", code, b)
	}
	if code, b := r.do(t, "inv-all", "POST", "/v1/query", r.queryReq("C-1")); code != 200 {
		t.Errorf("query on an open case: %d %s", code, b)
	}
	if code, b := r.do(t, "legal", "POST", "/v1/cases/C-1/close", nil); code != 200 || !strings.Contains(string(b), `"closed_by":"legal"`) {
		t.Errorf("close: %d %s", code, b)
	}
	if code, b := r.do(t, "inv-all", "POST", "/v1/query", r.queryReq("C-1")); code != http.StatusForbidden || !strings.Contains(string(b), "was closed") {
		t.Errorf("query on a closed case: %d %s", code, b)
	}
	code, b := r.do(t, "auditor", "GET", "/v1/cases", nil)
	var list struct{ Cases []Case }
	json.Unmarshal(b, &list)
	if code != 200 || len(list.Cases) != 1 || list.Cases[0].ID != "C-1" || list.Cases[0].Open() {
		t.Errorf("cases: %d %s", code, b)
	}
	// Bad requests name the field.
	for _, c := range []struct {
		body string
		want string
	}{
		{`{"case":"C-1","purpose":"p","from":"2026-11-01","to":"2026-11-02","colour":"red"}`, `unknown field \"colour\"`},
		{`{"case":"C-1","from":"2026-11-01","to":"2026-11-02"}`, "purpose: is required"},
		{`{"case":"C-1","purpose":"p","from":"2026-11-01","to":"2026-12-30"}`, "at most"},
		{`{"case":"C-1","purpose":"p","from":"yesterday","to":"2026-11-02"}`, "from:"},
		{`{"case":"C-1","purpose":"p","from":"2026-11-01","to":"2026-11-02","ip":"300.1.1.1"}`, "ip:"},
	} {
		req, _ := http.NewRequest("POST", r.url+"/v1/query", strings.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+r.tokens["inv-all"])
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(b), c.want) {
			t.Errorf("body %s: %d %s; want 400 naming %q", c.body, resp.StatusCode, b, c.want)
		}
	}
}

// Every query has exactly its two audit events, the first acknowledged
// before anything was read, with the identity, case, filters and scope.
func TestAuditBeforeAnswer(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "A-1")
	q := r.queryReq("A-1")
	q.IP = "203.0.113.7"
	code, b := r.do(t, "inv-acme", "POST", "/v1/query", q)
	got, tr := ids(t, b)
	if code != 200 || len(got) != 3 {
		t.Fatalf("query: %d %s", code, b)
	}
	var audits []map[string]any
	caseOpened := false
	stacktest.ReadUntil(t, r.st, r.topic, func(ms []kafka.Message) bool {
		audits = audits[:0]
		for _, m := range ms {
			var e map[string]any
			json.Unmarshal(m.Value, &e)
			if e["kind"] == "access_audit" {
				audits = append(audits, e)
			}
			if a, _ := e["attrs"].(map[string]any); e["action"] == "case.open" && a["case"] == "A-1" {
				caseOpened = true
			}
		}
		return len(audits) >= 2
	}, 30*time.Second)
	if len(audits) != 2 {
		t.Fatalf("%d access_audit events; want 2", len(audits))
	}
	if !caseOpened {
		t.Error("opening case A-1 left no case.open event in the topic")
	}
	req, res := audits[0], audits[1]
	ra, _ := req["attrs"].(map[string]any)
	fl, _ := ra["filters"].(map[string]any)
	if req["action"] != "query" || req["login"] != "inv-acme" || req["purpose"] != "test" || ra["case"] != "A-1" || ra["role"] != "investigator" ||
		ra["request_id"] != tr.RequestID || fl["ip"] != "203.0.113.7" || fmt.Sprint(ra["tenant_scope"]) != "[acme]" || ra["client"] != "127.0.0.1" {
		t.Errorf("request audit event: %v", req)
	}
	oa, _ := res["attrs"].(map[string]any)
	if res["action"] != "query.result" || oa["request_id"] != tr.RequestID || oa["events"] != float64(3) {
		t.Errorf("result audit event: %v", res)
	}
}

// Kafka unreachable: the query is refused with 503, and not one segment
// was listed or read.
func TestKafkaDownRefusesBeforeReading(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "K-1")
	// A second server over the same archive and cases, whose Kafka is a
	// gate that never opens.
	down := r.serve(t, stacktest.NewGate(t, r.st.KafkaBrokers[0]).Addr())
	lists, gets := r.seg.lists.Load(), r.seg.gets.Load()
	start := time.Now()
	code, b := r.doAt(t, down, "inv-all", "POST", "/v1/query", r.queryReq("K-1"))
	if code != http.StatusServiceUnavailable || !strings.Contains(string(b), "cannot be recorded") {
		t.Fatalf("query with Kafka down: %d %s", code, b)
	}
	if l, g := r.seg.lists.Load()-lists, r.seg.gets.Load()-gets; l != 0 || g != 0 {
		t.Errorf("with Kafka down the archive was read: %d lists, %d gets", l, g)
	}
	t.Logf("refused after %s", time.Since(start).Round(time.Millisecond))
	// The same query through the server whose Kafka answers reads.
	if code, b := r.do(t, "inv-all", "POST", "/v1/query", r.queryReq("K-1")); code != 200 || r.seg.gets.Load() == gets {
		t.Errorf("query with Kafka up: %d %s", code, b)
	}
}

// The access log returns the audit events of the range from the archive
// and, not yet archived, from Kafka, each once; reading it is recorded too.
func TestAccessLog(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "L-1")
	_, b := r.do(t, "inv-acme", "POST", "/v1/query", r.queryReq("L-1"))
	_, qt := ids(t, b)
	from := r.hour.Add(-time.Hour).Format(time.RFC3339)
	to := time.Now().UTC().Add(time.Minute).Format(time.RFC3339)
	// The query's audit events are in Kafka once its answer ended.
	var got []string
	var tr Trailer
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, b := r.do(t, "auditor", "GET", "/v1/access-log?from="+from+"&to="+to, nil)
		if code != 200 {
			t.Fatalf("access log: %d %s", code, b)
		}
		got, tr = ids(t, b)
		if n := strings.Count(string(b), qt.RequestID); n == 2 || time.Now().After(deadline) {
			if n != 2 {
				t.Fatalf("the query's two audit events (request %s) are not both in the access log:\n%s", qt.RequestID, b)
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Reading the access log was recorded too: the earlier reads are in it.
	if code, b := r.do(t, "auditor", "GET", "/v1/access-log?from="+from+"&to="+to+"&login=auditor", nil); code != 200 || !strings.Contains(string(b), `"action":"access-log"`) {
		t.Errorf("the access log's own reads are not in it: %d %s", code, b)
	}
	if got[0] != "audit-archived-1" || tr.Archived != 1 || tr.Recent < 3 {
		t.Errorf("access log: %v, trailer %+v; want the archived event first, then the recent ones", got, tr)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("event %s twice in the access log", id)
		}
		seen[id] = true
	}
	// Filters: by login, and by case.
	code, b := r.do(t, "auditor", "GET", "/v1/access-log?from="+from+"&to="+to+"&case=OLD-1", nil)
	if got, _ := ids(t, b); code != 200 || strings.Join(got, ",") != "audit-archived-1" {
		t.Errorf("access log of case OLD-1: %d %v", code, got)
	}
	code, b = r.do(t, "auditor", "GET", "/v1/access-log?from="+from+"&to="+to+"&login=inv-acme", nil)
	if got, _ := ids(t, b); code != 200 || len(got) != 2 {
		t.Errorf("access log of inv-acme: %d %v", code, got)
	}
	if code, b := r.do(t, "auditor", "GET", "/v1/access-log?from="+to+"&to="+from, nil); code != 400 {
		t.Errorf("reversed range: %d %s", code, b)
	}
}

// Limits per role: a shorter range and fewer results for investigators
// than the section's, and a truncated answer says so.
func TestRoleLimits(t *testing.T) {
	r := newRig(t)
	url := r.serve(t, strings.Join(r.st.KafkaBrokers, ","), func(c *Config) {
		c.Roles = map[Role]Limits{Investigator: {MaxRange: 2 * time.Hour, MaxResults: 2}}
	})
	r.openCase(t, "R-1")
	if code, b := r.doAt(t, url, "inv-all", "POST", "/v1/query", r.queryReq("R-1")); code != 400 || !strings.Contains(string(b), "at most 2h0m0s") {
		t.Errorf("a day's range for an investigator limited to 2h: %d %s", code, b)
	}
	q := r.queryReq("R-1")
	q.From, q.To = r.hour.Format(time.RFC3339), r.hour.Add(time.Hour).Format(time.RFC3339)
	code, b := r.doAt(t, url, "inv-all", "POST", "/v1/query", q)
	got, tr := ids(t, b)
	if code != 200 || len(got) != 2 || !tr.Truncated {
		t.Errorf("results limited to 2: %d %v %+v", code, got, tr)
	}
	// Legal keeps the section's limits; the archived access_audit event of
	// the day is not event content, and never in a query's answer.
	q.From, q.To = r.hour.Format("2006-01-02"), r.hour.Format("2006-01-02")
	code, b = r.doAt(t, url, "legal", "POST", "/v1/query", q)
	if got, tr := ids(t, b); code != 200 || len(got) != 6 || tr.Truncated || slices.Contains(got, "audit-archived-1") {
		t.Errorf("legal's query: %d %v %+v", code, got, tr)
	}
}

// A client that goes away cancels its query: the outcome audit event says
// so, and the reads stop.
func TestDisconnectCancels(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "D-1")
	r.seg.delay.Store(int64(2 * time.Second))
	b, _ := json.Marshal(r.queryReq("D-1"))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", r.url+"/v1/query", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+r.tokens["inv-all"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("query: %v %v", resp, err)
	}
	rid := resp.Header.Get("X-Request-Id")
	start := time.Now()
	cancel() // the headers came: the query runs; the client leaves
	resp.Body.Close()
	var result map[string]any
	stacktest.ReadUntil(t, r.st, r.topic, func(ms []kafka.Message) bool {
		for _, m := range ms {
			var e map[string]any
			json.Unmarshal(m.Value, &e)
			if a, _ := e["attrs"].(map[string]any); e["action"] == "query.result" && a["request_id"] == rid {
				result = a
				return true
			}
		}
		return false
	}, 30*time.Second)
	if result == nil || !strings.Contains(fmt.Sprint(result["error"]), "canceled") {
		t.Fatalf("outcome of a query whose client left: %v", result)
	}
	// Every segment read waits 2 s: cancelled, none of them was scanned.
	if result["scanned"] != float64(0) {
		t.Errorf("segments scanned after the client left: %v", result["scanned"])
	}
	t.Logf("outcome recorded %s after the client left", time.Since(start).Round(time.Millisecond))
}
