package ingest

import (
	"bufio"
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

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/event"
)

// submitter is what the HTTP endpoint needs from a Sink.
type submitter interface {
	Submit(ctx context.Context, recs []Record) error
}

type token struct {
	name    string
	digest  [sha256.Size]byte
	tenants map[string]bool
	slots   chan struct{} // per-token concurrency limit
}

// Server is the HTTP endpoint POST /v1/events.
type Server struct {
	cfg     Config
	ret     archive.Retention
	classes map[string]bool
	sink    submitter
	log     *zap.Logger
	tokens  []*token
	slots   chan struct{} // global concurrency limit
	now     func() time.Time

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

// NewServer builds the endpoint. Metrics go to reg when it is not nil.
func NewServer(cfg Config, ret archive.Retention, sink submitter, log *zap.Logger, reg prometheus.Registerer) (*Server, error) {
	s := &Server{
		cfg: cfg, ret: ret, sink: sink, log: log, now: time.Now,
		classes: map[string]bool{},
		slots:   make(chan struct{}, maxInFlight),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_ingest_requests_total", Help: "HTTP requests to /v1/events by status code."},
			[]string{"code"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_ingest_events_total", Help: "Events by outcome: accepted, or rejected with a reason."},
			[]string{"result"}),
		redacted: prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_ingest_redacted_total", Help: "Secret-looking attributes and values dropped from accepted events."}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "custody_ingest_request_duration_seconds", Help: "Time from request to response, Kafka or spool acknowledgement included.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	for _, c := range ret.Classes {
		s.classes[c.Name] = true
	}
	for _, t := range cfg.Tokens {
		tk := &token{name: t.Name, digest: sha256.Sum256([]byte(t.Token.Reveal())), tenants: map[string]bool{}, slots: make(chan struct{}, maxInFlightPerToken)}
		for _, tn := range t.Tenants {
			tk.tenants[tn] = true
		}
		s.tokens = append(s.tokens, tk)
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
	return mux
}

// LineError is one rejected line in a response.
type LineError struct {
	Line  int    `json:"line"`
	Field string `json:"field,omitempty"`
	Error string `json:"error"`
}

// Response is the JSON body of every /v1/events answer.
type Response struct {
	Accepted int         `json:"accepted"`
	Rejected int         `json:"rejected"`
	Errors   []LineError `json:"errors,omitempty"`
	// Message explains a refusal of the whole request.
	Message string `json:"message,omitempty"`
}

func (s *Server) reply(w http.ResponseWriter, code int, r Response) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(r)
	s.requests.WithLabelValues(strconv.Itoa(code)).Inc()
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
	tok := s.authenticate(r)
	if tok == nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="custody"`)
		s.reply(w, http.StatusUnauthorized, Response{Message: "missing or unknown bearer token"})
		return
	}
	select {
	case tok.slots <- struct{}{}:
		defer func() { <-tok.slots }()
	default:
		w.Header().Set("Retry-After", "1")
		s.reply(w, http.StatusTooManyRequests, Response{Message: fmt.Sprintf("token %s has %d requests in flight; wait for them", tok.name, maxInFlightPerToken)})
		return
	}
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	default:
		w.Header().Set("Retry-After", "1")
		s.reply(w, http.StatusServiceUnavailable, Response{Message: "server at its concurrency limit"})
		return
	}

	limit := int64(s.cfg.MaxRequestBytes)
	body, err := decompress(r, http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		s.reply(w, http.StatusUnsupportedMediaType, Response{Message: err.Error()})
		return
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
	maxEvent := int(s.cfg.MaxEventBytes)
	br := bufio.NewReaderSize(body, maxEvent+2)
	opts := event.Options{
		Now: s.now(), MaxEventBytes: maxEvent, MaxFutureSkew: s.cfg.MaxFutureSkew, LateAfter: s.cfg.LateAfter,
		Source: tok.name, DefaultClass: s.ret.DefaultClass, Classes: s.classes, Tenants: tok.tenants,
	}
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
		} else if len(strings.TrimSpace(string(line))) > 0 {
			e, derr := event.Decode(line, opts)
			if derr != nil {
				var fe *event.FieldError
				if !errors.As(derr, &fe) {
					fe = &event.FieldError{Reason: derr.Error()}
				}
				if fe != nil && fe.Field == "tenant" && strings.HasPrefix(fe.Reason, "this token may not write") {
					forbidden = true
				}
				s.events.WithLabelValues("invalid").Inc()
				reject(lineNo, fe.Field, fe.Reason)
			} else {
				s.redacted.Add(float64(e.Redacted))
				recs = append(recs, RecordOf(e))
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
			return nil, Response{Message: "cannot read request body: " + err.Error()}, http.StatusBadRequest
		}
	}
	if forbidden {
		resp.Message = fmt.Sprintf("token %s may not write for some tenants in this request; nothing was accepted", tok.name)
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
