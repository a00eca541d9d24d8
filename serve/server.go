package serve

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/query"
)

// errUnrecorded means Kafka did not acknowledge an audit or case event:
// the request fails with 503 and nothing is read or changed.
var errUnrecorded = errors.New("the access cannot be recorded (Kafka did not acknowledge the audit event), so nothing was read")

// auditTimeout bounds the wait for Kafka to acknowledge an audit event:
// past it the request is refused rather than left hanging.
const auditTimeout = 10 * time.Second

// Identity is who a request is from, once authenticated.
type Identity struct {
	Name    string   `json:"name"`
	Role    Role     `json:"role"`
	Tenants []string `json:"tenants,omitempty"` // empty: every tenant
	Via     string   `json:"via"`               // token
}

// engine runs queries; *query.Engine is one.
type engine interface {
	Run(ctx context.Context, f query.Filter, opts query.Options, emit func(line []byte) error) (query.Stats, error)
}

// Server is the reader's HTTP API. Safe for concurrent use.
type Server struct {
	cfg     Config
	eng     engine
	cases   *Cases
	exports *Exports // nil: exports are not served
	rights  *Rights  // nil: the rights-request register is not served
	audit   announcer
	log     *zap.Logger
	tokens  map[string]Identity // by token hash
	certs   map[string]Identity // by client certificate subject CN
	jwt     *jwtVerifier        // nil: JWTs are not accepted
	// sessions seals the console's cookies; nil: no console.
	sessions *sealer
	// oidcLogin signs people in to the console; nil: API tokens only.
	oidcLogin *oidcLogin

	recent       recentReader // nil: the access log reads the archive only
	topic        string
	recentWindow time.Duration

	mu     sync.Mutex // guards active
	active map[string]int
	total  int

	requests *prometheus.CounterVec
	denied   *prometheus.CounterVec
}

// Deps are what a Server is built on.
type Deps struct {
	Engine engine
	// Objects, Signer and Trusted hold the case register.
	Cases *Cases
	// Exports runs and records disclosure exports; nil leaves them out.
	Exports *Exports
	// Rights is the rights-request register; nil leaves it out.
	Rights *Rights
	// Audit writes access_audit and case events; it must return only once
	// Kafka has acknowledged with acks=all.
	Audit      announcer
	Log        *zap.Logger
	Registerer prometheus.Registerer
	// Recent reads the events topic (Topic) for the access log's events
	// not yet archived.
	Recent recentReader
	Topic  string
}

// New returns the API server. ctx bounds the background fetches of a
// remote JWKS: the server's lifetime.
func New(ctx context.Context, cfg Config, d Deps) (*Server, error) {
	s := &Server{cfg: cfg, eng: d.Engine, cases: d.Cases, exports: d.Exports, rights: d.Rights, audit: d.Audit, log: d.Log, tokens: map[string]Identity{}, certs: map[string]Identity{}, active: map[string]int{},
		recent: d.Recent, topic: d.Topic, recentWindow: cfg.AccessLogRecent,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_serve_requests_total", Help: "API requests by endpoint and status code."}, []string{"endpoint", "code"}),
		denied:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_serve_denied_total", Help: "Requests refused before any read, by reason."}, []string{"reason"}),
	}
	// Every reason starts at 0, so that rate() and the alert rules
	// (docs/prometheus) see the series before the first refusal.
	for _, r := range []string{"unauthenticated", "role", "busy", "csrf", "unrecorded"} {
		s.denied.WithLabelValues(r)
	}
	if d.Exports != nil {
		d.Exports.limit = s.cfg.exportLimit
	}
	for _, t := range cfg.Tokens {
		s.tokens[strings.ToLower(t.SHA256)] = Identity{Name: t.Name, Role: t.Role, Tenants: t.Tenants, Via: "token"}
	}
	for _, c := range cfg.Certificates {
		s.certs[c.Subject] = Identity{Name: c.Subject, Role: c.Role, Tenants: c.Tenants, Via: "mtls"}
	}
	if cfg.OIDC.Enabled() {
		v, err := newJWTVerifier(ctx, cfg.OIDC)
		if err != nil {
			return nil, err
		}
		s.jwt = v
		if cfg.OIDC.Console.Enabled() && !cfg.Console.Disabled {
			s.oidcLogin = newOIDCLogin(v, cfg.OIDC.Console)
		}
	}
	if !cfg.Console.Disabled {
		key := cfg.Console.sessionKey
		if key == nil {
			key = make([]byte, 32)
			rand.Read(key)
			s.log.Warn("no console session key configured (serve.console.session_key_file or CUSTODY_CONSOLE_SESSION_KEY): console sign-ins end when this process does and are not valid on other instances")
		}
		sl, err := newSealer(key)
		if err != nil {
			return nil, err
		}
		s.sessions = sl
	}
	if d.Registerer != nil {
		for _, c := range []prometheus.Collector{s.requests, s.denied} {
			if err := d.Registerer.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// action is one thing a role may be allowed to do.
type action string

const (
	actQuery     action = "query"      // read event content
	actCasesRead action = "cases.read" // list cases
	actCasesEdit action = "cases.edit" // open and close cases
	actWhoami    action = "whoami"
	actAccessLog action = "access-log"  // read the access_audit events
	actExport    action = "export"      // create, approve and download disclosure exports
	actExports   action = "exports"     // read the disclosure register
	actRights    action = "rights"      // open, reply to and close rights requests; subject exports
	actRightsReg action = "rights.read" // read the rights-request register
)

// allowed is the role × action matrix (docs/SERVE.md §3). Anything not
// listed is denied.
var allowed = map[Role]map[action]bool{
	Investigator: {actQuery: true, actCasesRead: true, actWhoami: true},
	Legal:        {actQuery: true, actCasesRead: true, actCasesEdit: true, actWhoami: true, actExport: true, actExports: true, actRights: true, actRightsReg: true},
	Auditor:      {actCasesRead: true, actWhoami: true, actAccessLog: true, actExports: true, actRightsReg: true},
	Admin:        {actWhoami: true},
}

// route is one endpoint: its pattern, metrics name, action and handler.
type route struct {
	pattern, name string
	act           action
	h             handler
}

// routes are the API (api/openapi.yaml; a test keeps the two in step).
func (s *Server) routes() []route {
	return []route{
		{"GET /v1/whoami", "whoami", actWhoami, s.whoami},
		{"POST /v1/query", "query", actQuery, s.query},
		{"GET /v1/cases", "cases", actCasesRead, s.listCases},
		{"POST /v1/cases", "cases", actCasesEdit, s.createCase},
		{"POST /v1/cases/{id}/close", "cases.close", actCasesEdit, s.closeCase},
		{"GET /v1/access-log", "access-log", actAccessLog, s.accessLog},
		{"POST /v1/exports", "exports", actExport, s.createExport},
		{"GET /v1/exports", "exports", actExports, s.listExports},
		{"GET /v1/exports/{id}", "export", actExports, s.getExport},
		{"POST /v1/exports/{id}/approve", "export.approve", actExport, s.approveExport},
		{"GET /v1/exports/{id}/package", "export.package", actExport, s.downloadExport},
		{"POST /v1/subject-exports", "subject-exports", actRights, s.createSubjectExport},
		{"POST /v1/requests", "requests", actRights, s.openRights},
		{"GET /v1/requests", "requests", actRightsReg, s.listRights},
		{"GET /v1/requests/{id}", "request", actRightsReg, s.getRights},
		{"POST /v1/requests/{id}/reply", "request.reply", actRights, s.replyRights},
		{"POST /v1/requests/{id}/close", "request.close", actRights, s.closeRights},
	}
}

// RunExports runs the exports queued until ctx ends (Exports.Run); the
// caller waits for it to return.
func (s *Server) RunExports(ctx context.Context) {
	if s.exports != nil {
		s.exports.Run(ctx, s.eng, s.audit, s.log)
	}
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, r := range s.routes() {
		mux.Handle(r.pattern, s.guard(r.name, r.act, r.h))
	}
	if s.sessions != nil {
		s.consoleRoutes(mux)
	}
	return mux
}

// statusWriter records the status code for the metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

type handler func(w http.ResponseWriter, r *http.Request, id Identity)

// guard authenticates, then authorises act for the identity's role: deny
// by default.
func (s *Server) guard(endpoint string, act action, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() { s.requests.WithLabelValues(endpoint, fmt.Sprint(sw.code)).Inc() }()
		sw.Header().Set("X-Content-Type-Options", "nosniff")
		id, se, ok := s.authenticate(r)
		if !ok {
			s.denied.WithLabelValues("unauthenticated").Inc()
			sw.Header().Set("WWW-Authenticate", `Bearer realm="custody"`)
			writeError(sw, http.StatusUnauthorized, "a valid bearer token is required")
			return
		}
		if se != nil && !safeMethod(r.Method) && !csrfOK(r, se) {
			// The session cookie rides along with any request the
			// browser makes; only the console's own pages know this value.
			s.denied.WithLabelValues("csrf").Inc()
			writeError(sw, http.StatusForbidden, "missing or wrong anti-CSRF token (X-CSRF-Token)")
			return
		}
		if !allowed[id.Role][act] {
			s.denied.WithLabelValues("role").Inc()
			writeError(sw, http.StatusForbidden, fmt.Sprintf("role %s may not %s", id.Role, act))
			return
		}
		r.Body = http.MaxBytesReader(sw, r.Body, int64(s.cfg.MaxRequestBytes))
		h(sw, r, id)
	})
}

// authenticate finds who a request is from: a bearer token or JWT, a
// verified client certificate, or a console session (returned too, since
// its state-changing requests need the anti-CSRF check).
func (s *Server) authenticate(r *http.Request) (Identity, *session, bool) {
	h := r.Header.Get("Authorization")
	if h == "" && r.TLS != nil && len(r.TLS.VerifiedChains) > 0 {
		// A client certificate the TLS handshake verified against
		// tls.client_ca_file, mapped by its subject's common name.
		id, ok := s.certs[r.TLS.VerifiedChains[0][0].Subject.CommonName]
		return id, nil, ok
	}
	if h == "" {
		if se, ok := s.sessionOf(r); ok {
			id, ok := s.sessionIdentity(se)
			return id, se, ok
		}
		return Identity{}, nil, false
	}
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return Identity{}, nil, false
	}
	if s.jwt != nil && looksLikeJWT(tok) {
		id, err := s.jwt.authenticate(r.Context(), tok)
		if err != nil {
			// Why, for the operator; never the token.
			s.log.Info("bearer JWT refused", zap.String("client", clientAddr(r)), zap.Error(err))
			return Identity{}, nil, false
		}
		return id, nil, true
	}
	// A map lookup by the token's SHA-256: the hash of a guess says
	// nothing about the hash of the real token.
	id, ok := s.tokens[HashToken(strings.TrimSpace(tok))]
	return id, nil, ok
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func (s *Server) whoami(w http.ResponseWriter, _ *http.Request, id Identity) {
	writeJSON(w, http.StatusOK, id)
}

func (s *Server) listCases(w http.ResponseWriter, r *http.Request, _ Identity) {
	cs, err := s.cases.List(r.Context())
	if err != nil {
		s.log.Error("cannot list cases", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "cannot list cases")
		return
	}
	if cs == nil {
		cs = []Case{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"cases": cs})
}

// CaseRequest opens a case.
type CaseRequest struct {
	ID         string `json:"id"`
	Title      string `json:"title"`
	LegalBasis string `json:"legal_basis"`
	Authority  string `json:"authority"`
}

func (s *Server) createCase(w http.ResponseWriter, r *http.Request, id Identity) {
	var req CaseRequest
	if err := decodeStrict(r, &req); err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	c, err := s.cases.Create(r.Context(), Case{ID: req.ID, Title: req.Title, LegalBasis: req.LegalBasis, Authority: req.Authority, OpenedBy: id.Name})
	switch {
	case errors.Is(err, ErrCaseExists):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, errUnrecorded):
		writeError(w, http.StatusServiceUnavailable, "the case cannot be recorded (Kafka did not acknowledge its event); nothing was changed")
	case errors.As(err, new(*requestError)):
		writeError(w, statusOf(err), err.Error())
	case err != nil:
		s.log.Error("cannot open case", zap.String("case", req.ID), zap.Error(err))
		writeError(w, http.StatusInternalServerError, "cannot open the case")
	default:
		writeJSON(w, http.StatusCreated, c)
	}
}

func (s *Server) closeCase(w http.ResponseWriter, r *http.Request, id Identity) {
	c, err := s.cases.Close(r.Context(), r.PathValue("id"), id.Name)
	switch {
	case errors.Is(err, ErrNoCase):
		writeError(w, http.StatusNotFound, err.Error())
	case errors.Is(err, errUnrecorded):
		writeError(w, http.StatusServiceUnavailable, "the closure cannot be recorded (Kafka did not acknowledge its event); the case stays open")
	case err != nil:
		s.log.Error("cannot close case", zap.Error(err))
		writeError(w, http.StatusInternalServerError, "cannot close the case")
	default:
		writeJSON(w, http.StatusOK, c)
	}
}

// requestError is a request the client must change; the message names the
// field and says why.
type requestError struct {
	code int
	msg  string
}

func (e *requestError) Error() string { return e.msg }

func statusOf(err error) int {
	var re *requestError
	if errors.As(err, &re) {
		return re.code
	}
	return http.StatusBadRequest
}

// decodeStrict reads one JSON object, refusing unknown fields, trailing
// data and bodies over the limit.
func decodeStrict(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &requestError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over %d bytes", mbe.Limit)}
		}
		return &requestError{http.StatusBadRequest, fmt.Sprintf("request body: %v", err)}
	}
	if dec.More() {
		return &requestError{http.StatusBadRequest, "request body: data after the JSON object"}
	}
	return nil
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// acquire takes a query slot for the identity, or reports why not.
func (s *Server) acquire(id Identity) (func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.total >= s.cfg.MaxConcurrent || s.active[id.Name] >= s.cfg.MaxConcurrentPerIdentity {
		return nil, false
	}
	s.total++
	s.active[id.Name]++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.total--
		if s.active[id.Name]--; s.active[id.Name] == 0 {
			delete(s.active, id.Name)
		}
	}, true
}

// Trailer is the last line of a query response: what was read and what
// could not be.
type Trailer struct {
	RequestID string `json:"request_id"`
	Events    int64  `json:"events"`
	Segments  int64  `json:"segments"`
	Scanned   int64  `json:"scanned"`
	Pruned    int64  `json:"pruned"`
	Bytes     int64  `json:"bytes"`
	Truncated bool   `json:"truncated,omitempty"` // stopped at the limit
	// Archived and Recent (the access log only) count the events from
	// the archive and from Kafka.
	Archived int64          `json:"archived,omitempty"`
	Recent   int64          `json:"recent,omitempty"`
	Failed   []SegmentError `json:"failed,omitempty"`
	Error    string         `json:"error,omitempty"` // the query stopped early
}

// Progress is a progress line of a query answer, asked for with
// "progress": true.
type Progress struct {
	Segments int64 `json:"segments"` // listed in the range's hours
	Scanned  int64 `json:"scanned"`  // read
	Pruned   int64 `json:"pruned"`   // skipped on header and index alone
	Events   int64 `json:"events"`   // matched so far
	Bytes    int64 `json:"bytes"`    // stored bytes fetched
}

// SegmentError is a segment that could not be read.
type SegmentError struct {
	Segment string `json:"segment"`
	Error   string `json:"error"`
}

func (s *Server) query(w http.ResponseWriter, r *http.Request, id Identity) {
	req, err := decodeQuery(r)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	maxRange, maxResults := s.cfg.limits(id.Role)
	f, err := req.filter(id, maxRange)
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	c, err := s.cases.Get(r.Context(), req.Case)
	if errors.Is(err, ErrNoCase) {
		writeError(w, http.StatusForbidden, fmt.Sprintf("case %q does not exist: every read names an open case", req.Case))
		return
	}
	if err != nil {
		s.log.Error("cannot read case", zap.String("case", req.Case), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, "cannot read the case register")
		return
	}
	if !c.Open() {
		writeError(w, http.StatusForbidden, fmt.Sprintf("case %s was closed on %s", c.ID, c.ClosedAt.Format(time.RFC3339)))
		return
	}
	release, ok := s.acquire(id)
	if !ok {
		s.denied.WithLabelValues("busy").Inc()
		writeError(w, http.StatusTooManyRequests, "too many queries running (overall or for this identity); retry later")
		return
	}
	defer release()
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.QueryTimeout)
	defer cancel()

	// Audit before answer: nothing is read until Kafka holds the record.
	rid := newRequestID()
	start := time.Now().UTC()
	audit := map[string]any{"phase": "request", "request_id": rid, "case": c.ID, "role": string(id.Role), "via": id.Via,
		"filters": req.attrs(), "tenant_scope": scopeAttr(id), "client": clientAddr(r)}
	actx, acancel := context.WithTimeout(ctx, auditTimeout)
	err = s.audit.Announce(actx, announce.Event{Kind: event.KindAccessAudit, Action: "query", Time: start, IDParts: []string{"access", rid, "request"},
		Login: id.Name, Purpose: req.Purpose, Attrs: audit})
	acancel()
	if err != nil {
		s.denied.WithLabelValues("unrecorded").Inc()
		s.log.Error("audit event not acknowledged: query refused", zap.String("request_id", rid), zap.Error(err))
		writeError(w, http.StatusServiceUnavailable, errUnrecorded.Error())
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("X-Request-Id", rid)
	w.WriteHeader(http.StatusOK)
	// The status and request ID go out now: a client knows at once that
	// the access was recorded and the query runs (and can leave, which
	// cancels it).
	w.(http.Flusher).Flush()
	bw := bufio.NewWriterSize(w, 64<<10)
	limit := req.Limit
	if maxResults > 0 && (limit == 0 || limit > maxResults) {
		limit = maxResults
	}
	// Ask for one more than the limit, to tell a truncated answer from a
	// complete one.
	opts := query.Options{}
	if limit > 0 {
		opts.Limit = limit + 1
	}
	var n int64
	truncated := false
	lastFlush := time.Now()
	// With progress lines, the engine's progress goroutine writes too:
	// mu then guards bw (uncontended between those five a second).
	var mu sync.Mutex
	lock, unlock := func() {}, func() {}
	if req.Progress {
		lock, unlock = mu.Lock, mu.Unlock
		opts.Progress = func(st query.Stats) {
			mu.Lock()
			defer mu.Unlock()
			b, _ := json.Marshal(map[string]Progress{"progress": {Segments: st.Total, Scanned: st.Scanned, Pruned: st.Pruned, Events: st.Matched, Bytes: st.Bytes}})
			bw.Write(b)
			bw.WriteByte('\n')
			if bw.Flush() == nil {
				w.(http.Flusher).Flush()
			}
		}
	}
	stats, runErr := s.eng.Run(ctx, f, opts, func(line []byte) error {
		lock()
		defer unlock()
		if limit > 0 && n >= int64(limit) {
			truncated = true
			return nil
		}
		n++
		bw.Write(line)
		if err := bw.WriteByte('\n'); err != nil {
			return err
		}
		// Flush at least every 200 ms, so a slow query still shows
		// progress; the clock is read every 256 events, not per event.
		if n%256 == 0 && time.Since(lastFlush) > 200*time.Millisecond {
			lastFlush = time.Now()
			if err := bw.Flush(); err != nil {
				return err
			}
			w.(http.Flusher).Flush()
		}
		return nil
	})
	t := writeTrailer(bw, Trailer{RequestID: rid, Events: n, Truncated: truncated}, stats, runErr)

	// The outcome, whatever happened to the client.
	octx, ocancel := context.WithTimeout(context.WithoutCancel(r.Context()), 30*time.Second)
	defer ocancel()
	errs := make([]any, 0, len(t.Failed))
	for _, fe := range t.Failed {
		errs = append(errs, fe.Segment+": "+fe.Error)
	}
	outcome := map[string]any{"phase": "result", "request_id": rid, "case": c.ID, "events": n, "segments": stats.Total, "scanned": stats.Scanned,
		"failed": len(t.Failed), "errors": errs, "duration_ms": time.Since(start).Milliseconds(), "truncated": truncated}
	if runErr != nil {
		outcome["error"] = runErr.Error()
	}
	if err := s.audit.Announce(octx, announce.Event{Kind: event.KindAccessAudit, Action: "query.result", Time: time.Now().UTC(), IDParts: []string{"access", rid, "result"},
		Login: id.Name, Purpose: req.Purpose, Attrs: outcome}); err != nil {
		s.log.Error("the outcome audit event was not acknowledged", zap.String("request_id", rid), zap.Error(err))
	}
	s.log.Info("query", zap.String("request_id", rid), zap.String("identity", id.Name), zap.String("case", c.ID), zap.Int64("events", n),
		zap.Int64("scanned", stats.Scanned), zap.Int("failed", len(t.Failed)), zap.Duration("took", time.Since(start)))
}

// writeTrailer completes t with the engine's stats and error, writes it as
// the answer's last line and flushes; it returns what it wrote.
func writeTrailer(bw *bufio.Writer, t Trailer, stats query.Stats, runErr error) Trailer {
	t.Segments, t.Scanned, t.Pruned, t.Bytes = stats.Total, stats.Scanned, stats.Pruned, stats.Bytes
	for _, fe := range stats.Failed {
		t.Failed = append(t.Failed, SegmentError{Segment: fe.Name, Error: fe.Err.Error()})
	}
	if runErr != nil {
		t.Error = runErr.Error()
	}
	tb, _ := json.Marshal(map[string]Trailer{"trailer": t})
	bw.Write(tb)
	bw.WriteByte('\n')
	bw.Flush()
	return t
}

func scopeAttr(id Identity) any {
	if len(id.Tenants) == 0 {
		return "all"
	}
	out := make([]any, len(id.Tenants))
	for i, t := range id.Tenants {
		out[i] = t
	}
	return out
}
