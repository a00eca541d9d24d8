package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
)

// submitter is what the HTTP endpoint needs from a Sink.
type submitter interface {
	Submit(ctx context.Context, recs []Record) error
}

type token struct {
	name   string
	digest [sha256.Size]byte
	opts   event.Options // what the token may send: tenants, kinds, classes
	slots  chan struct{} // per-token concurrency limit
}

// Server is the HTTP endpoint POST /v1/events.
type Server struct {
	cfg    Config
	sink   submitter
	log    *zap.Logger
	tokens []*token
	slots  chan struct{} // global concurrency limit
	now    func() time.Time

	requests *prometheus.CounterVec
	events   *prometheus.CounterVec
	redacted prometheus.Counter
	duration prometheus.Histogram
}

const (
	maxInFlight         = 64
	maxInFlightPerToken = 16
	maxErrorsReported   = 100
)

// NewServer builds the endpoint. base holds the event limits, the default
// and configured classes; each token narrows it to its own tenants, kinds
// and classes. Metrics go to reg when it is not nil.
func NewServer(cfg Config, base event.Options, sink submitter, log *zap.Logger, reg prometheus.Registerer) (*Server, error) {
	s := &Server{
		cfg: cfg, sink: sink, log: log, now: time.Now,
		slots: make(chan struct{}, maxInFlight),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_ingest_requests_total", Help: "HTTP requests to /v1/events and /v1/logs (OTLP) by status code."},
			[]string{"code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_ingest_events_total", Help: "Events by outcome: accepted, or rejected with a reason."},
			[]string{"result"}),
		redacted: prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_ingest_redacted_total", Help: "Secret-looking attributes and values dropped from accepted events."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "custody_ingest_request_duration_seconds", Help: "Time from request to response, Kafka or spool acknowledgement included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	for _, r := range []string{"accepted", "invalid", "too_large", "unavailable"} {
		s.events.WithLabelValues(r) // from 0, before the first of each
	}
	for _, t := range cfg.Tokens {
		o := base
		o.Source, o.Tenants, o.Kinds, o.AllowedClasses = t.Name, map[string]bool{}, t.AllowedKinds(), t.AllowedClasses(base.DefaultClass)
		for _, tn := range t.Tenants {
			o.Tenants[tn] = true
		}
		s.tokens = append(s.tokens, &token{name: t.Name, digest: sha256.Sum256([]byte(t.Token.Reveal())), opts: o, slots: make(chan struct{}, maxInFlightPerToken)})
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.requests, s.events, s.redacted, s.duration} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Handler routes /v1/events.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/events", s.postEvents)
	mux.HandleFunc("/v1/logs", s.postLogs) // OTLP/HTTP (otlp.go)
	return mux
}

// LineError is one rejected line in a response.
type LineError struct {
	Line  int    `json:"line"`
	Field string `json:"field,omitempty"`
	Error string `json:"error"`
}

// Response is the JSON body of every /v1/events answer. Every member is
// always present (docs/EVENTS.md §8): errors is [] when there are none.
type Response struct {
	Accepted int         `json:"accepted"`
	Rejected int         `json:"rejected"`
	Errors   []LineError `json:"errors"`
	// Message says what happened to the request as a whole.
	Message string `json:"message"`
}

func (s *Server) reply(w http.ResponseWriter, code int, r Response) {
	if r.Errors == nil {
		r.Errors = []LineError{}
	}
	if r.Message == "" {
		r.Message = summary(code, r)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(r)
	s.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

// summary is the message of an answer that has no more specific one.
func summary(code int, r Response) string {
	switch {
	case code == http.StatusAccepted:
		return fmt.Sprintf("%d events accepted", r.Accepted)
	case code == http.StatusBadRequest && r.Accepted > 0:
		return fmt.Sprintf("%d events accepted; %d lines rejected (listed in errors); do not resend the accepted ones", r.Accepted, r.Rejected)
	case code == http.StatusBadRequest:
		return fmt.Sprintf("all %d lines rejected (listed in errors)", r.Rejected)
	}
	return http.StatusText(code)
}

// authenticate finds the token presented as "Authorization: Bearer ...".
// Every configured token is compared in constant time, so the response
// time does not reveal how much of a guess was right.
func (s *Server) authenticate(r *http.Request) *token {
	h := r.Header.Get("Authorization")
	scheme, value, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || value == "" {
		return nil
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(value)))
	var found *token
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(d[:], t.digest[:]) == 1 {
			found = t
		}
	}
	return found
}

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	defer func() { s.duration.Observe(time.Since(start).Seconds()) }()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		s.reply(w, http.StatusMethodNotAllowed, Response{Message: "use POST"})
		return
	}
	tok, release := s.admit(w, r, func(code int, msg string) { s.reply(w, code, Response{Message: msg}) })
	if tok == nil {
		return
	}
	defer release()

	limit := int64(s.cfg.MaxRequestBytes)
	raw := transportErrors{http.MaxBytesReader(w, r.Body, limit)}
	body, err := decompress(r, raw)
	if err != nil {
		s.reply(w, http.StatusUnsupportedMediaType, Response{Message: err.Error()})
		return
	}
	if body != io.ReadCloser(raw) {
		body = decodeErrors{body}
	}
	defer body.Close()
	recs, resp, code := s.parse(io.LimitReader(body, limit+1), tok, limit)
	if code != 0 {
		s.reply(w, code, resp)
		return
	}
	if err := s.sink.Submit(r.Context(), recs); err != nil {
		s.events.WithLabelValues("unavailable").Add(float64(len(recs)))
		w.Header().Set("Retry-After", "5")
		s.log.Warn("cannot accept events", zap.String("token", tok.name), zap.Int("events", len(recs)), zap.Error(err))
		s.reply(w, http.StatusServiceUnavailable, Response{Rejected: resp.Accepted + resp.Rejected, Errors: resp.Errors, Message: "events not kept: " + err.Error()})
		return
	}
	s.events.WithLabelValues("accepted").Add(float64(len(recs)))
	if resp.Rejected > 0 {
		s.reply(w, http.StatusBadRequest, resp)
		return
	}
	s.reply(w, http.StatusAccepted, resp)
}

// admit authenticates the request and takes a slot of its token's and of
// the server's concurrency limits, or answers through fail and returns
// nil. release gives the slots back.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, fail func(code int, msg string)) (tok *token, release func()) {
	tok = s.authenticate(r)
	if tok == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="custody"`)
		fail(http.StatusUnauthorized, "missing or unknown bearer token")
		return nil, nil
	}
	select {
	case tok.slots <- struct{}{}:
	default:
		w.Header().Set("Retry-After", "1")
		fail(http.StatusTooManyRequests, fmt.Sprintf("token %s has %d requests in flight; wait for them", tok.name, maxInFlightPerToken))
		return nil, nil
	}
	select {
	case s.slots <- struct{}{}:
	default:
		<-tok.slots
		w.Header().Set("Retry-After", "1")
		fail(http.StatusServiceUnavailable, "server at its concurrency limit")
		return nil, nil
	}
	return tok, func() { <-s.slots; <-tok.slots }
}

// decompress wraps the body according to Content-Encoding.
func decompress(r *http.Request, body io.ReadCloser) (io.ReadCloser, error) {
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		return body, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("Content-Encoding gzip: cannot read gzip header: %v", err)
		}
		return zr, nil
	case "zstd":
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(8<<20))
		if err != nil {
			return nil, fmt.Errorf("Content-Encoding zstd: %v", err)
		}
		return zr.IOReadCloser(), nil
	default:
		return nil, fmt.Errorf("Content-Encoding %q is not supported; use gzip, zstd or none", enc)
	}
}

// corruptBody marks a failure to decompress the request body, as opposed
// to a failure to read it: the answer is 415, not 400.
type corruptBody struct{ err error }

func (e *corruptBody) Error() string { return "body does not decompress: " + e.err.Error() }
func (e *corruptBody) Unwrap() error { return e.err }

// bodyError is an error reading the request body itself (its size limit,
// a broken connection), as opposed to decompressing it.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// transportErrors marks the errors of the raw body as bodyError.
type transportErrors struct{ io.ReadCloser }

func (t transportErrors) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = &bodyError{err}
	}
	return n, err
}

// decodeErrors marks the decompressor's own errors as corruptBody; errors
// of the raw body pass through with their own status.
type decodeErrors struct{ io.ReadCloser }

func (d decodeErrors) Read(p []byte) (int, error) {
	n, err := d.ReadCloser.Read(p)
	var be *bodyError
	if err != nil && err != io.EOF && !errors.As(err, &be) {
		err = &corruptBody{err}
	}
	return n, err
}

// parse reads NDJSON lines and decodes each. It returns the records to
// submit, the response so far, and a non-zero status code if the whole
// request must be refused.
//
// Policy: a bad line is rejected alone and named in the response; the good
// lines of the same request are accepted (status 400 says some were not).
// A line for a tenant the token may not write for refuses the whole
// request (403): that is a misconfigured or hostile sender, not a typo.
func (s *Server) parse(body io.Reader, tok *token, limit int64) ([]Record, Response, int) {
	var resp Response
	var recs []Record
	var enc records
	opts := tok.opts
	opts.Now = s.now()
	maxEvent := opts.MaxEventBytes
	if maxEvent == 0 {
		maxEvent = 16 << 10
	}
	br := bufio.NewReaderSize(body, maxEvent+2)
	var read int64
	reject := func(line int, field, msg string) {
		resp.Rejected++
		if len(resp.Errors) < maxErrorsReported {
			resp.Errors = append(resp.Errors, LineError{Line: line, Field: field, Error: msg})
		}
	}
	forbidden := false
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		read += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			// Too long: skip to the end of the line and reject it alone.
			n := len(line)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				n += len(line)
				read += int64(len(line))
			}
			s.events.WithLabelValues("too_large").Inc()
			reject(lineNo, "", fmt.Sprintf("event is at least %d bytes; the limit is %d", n, maxEvent))
			if err == nil {
				continue
			}
		} else if len(bytes.TrimSpace(line)) > 0 {
			e, derr := event.Decode(line, opts)
			if derr != nil {
				var fe *event.FieldError
				if !errors.As(derr, &fe) {
					fe = &event.FieldError{Reason: derr.Error()}
				}
				if errors.Is(derr, event.ErrNotAllowed) {
					forbidden = true
				}
				s.events.WithLabelValues("invalid").Inc()
				reject(lineNo, fe.Field, fe.Reason)
			} else {
				s.redacted.Add(float64(e.Redacted))
				recs = append(recs, enc.of(e))
				resp.Accepted++
			}
		}
		if read > limit {
			return nil, Response{Message: fmt.Sprintf("request body exceeds %d bytes after decompression", limit)}, http.StatusRequestEntityTooLarge
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				return nil, Response{Message: fmt.Sprintf("request body exceeds %d bytes", mbe.Limit)}, http.StatusRequestEntityTooLarge
			}
			var cb *corruptBody
			if errors.As(err, &cb) {
				return nil, Response{Message: cb.Error() + "; nothing was accepted"}, http.StatusUnsupportedMediaType
			}
			return nil, Response{Message: "cannot read request body: " + err.Error()}, http.StatusBadRequest
		}
	}
	if forbidden {
		resp.Message = fmt.Sprintf("token %s may not send some events of this request (tenant, kind or class; see errors); nothing was accepted", tok.name)
		resp.Rejected += resp.Accepted
		resp.Accepted = 0
		return nil, resp, http.StatusForbidden
	}
	if resp.Accepted == 0 && resp.Rejected == 0 {
		return nil, Response{Message: "no events in the request body"}, http.StatusBadRequest
	}
	if resp.Accepted == 0 {
		return nil, resp, http.StatusBadRequest
	}
	return recs, resp, 0
}
