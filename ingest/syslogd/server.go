package syslogd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	syslog "github.com/leodido/go-syslog/v4"
	"github.com/leodido/go-syslog/v4/rfc5424"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest"
	"github.com/custodylog/custody/ingest/logparse"
)

type submitter interface {
	Submit(ctx context.Context, recs []ingest.Record) error
}

// Server accepts syslog connections. Each connection is read by one
// goroutine that Serve owns; a batch is submitted (and acknowledged by
// Kafka or the spool) before the next bytes are read, so back-pressure
// reaches the sender through TCP and nothing is dropped.
type Server struct {
	cfg  Config
	base event.Options
	sink submitter
	log  *zap.Logger
	now  func() time.Time

	messages *prometheus.CounterVec
	conns    prometheus.Gauge
}

// batchMessages bounds one Submit.
const batchMessages = 512

// drainWait is how long, after shutdown begins, a connection keeps being
// read for what its sender already wrote.
const drainWait = time.Second

// New returns a server. base holds the event limits and classes, as for
// the HTTP endpoint; Source becomes "syslog".
func New(cfg Config, base event.Options, sink submitter, log *zap.Logger, reg prometheus.Registerer) (*Server, error) {
	s := &Server{cfg: cfg, base: base, sink: sink, log: log, now: time.Now,
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "custody_syslog_messages_total",
			Help: "Syslog messages by result: accepted, ignored (a matched program's line that is no event), unmatched (no rule), invalid."}, []string{"result"}),
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Name: "custody_syslog_connections", Help: "Open syslog connections."}),
	}
	s.base.Source = "syslog"
	for _, r := range []string{"accepted", "ignored", "unmatched", "invalid"} {
		s.messages.WithLabelValues(r)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{s.messages, s.conns} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Serve accepts connections on ln until ctx ends, then reads what each
// sender already wrote for up to drainWait, submits it, and returns once
// every connection is closed. It closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("syslog listener: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// frameError is a message the framing could not delimit or that is too
// long; the connection goes on after it when it can.
type frameError struct {
	msg   string
	fatal bool // the stream cannot be resynchronised: close
}

func (e *frameError) Error() string { return e.msg }

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	s.conns.Inc()
	defer s.conns.Dec()
	defer c.Close()
	peer := c.RemoteAddr().String()
	// On shutdown, half-close first: a sender such as rsyslog checks for
	// the peer's FIN before each send and then reconnects (to the next
	// instance) and sends there instead. What it wrote before noticing
	// is read for drainWait more and submitted; then the connection
	// closes. Plain TCP syslog has no acknowledgements, so closing with
	// unread bytes would lose them silently (RST).
	stop := context.AfterFunc(ctx, func() {
		c.SetReadDeadline(time.Now().Add(drainWait))
		closeWrite(c)
	})
	defer stop()
	// Submits outlive ctx's end by the drain: ctx ending must not drop
	// messages already read.
	sctx := context.WithoutCancel(ctx)
	r := bufio.NewReaderSize(c, 64<<10)
	m := newMachine()
	var batch []ingest.Record
	n := 0
	for {
		frame, err := s.readFrame(r)
		if err == nil {
			n++
			rec, result, cerr := s.convert(m, frame)
			s.messages.WithLabelValues(result).Inc()
			switch {
			case cerr != nil && result == "invalid":
				s.log.Warn("syslog message refused", zap.String("peer", peer), zap.Int("message", n), zap.Error(cerr))
			case cerr != nil:
				s.log.Debug("syslog message not archived", zap.String("peer", peer), zap.Int("message", n), zap.String("result", result), zap.Error(cerr))
			default:
				batch = append(batch, rec)
			}
		}
		var fe *frameError
		if errors.As(err, &fe) {
			s.messages.WithLabelValues("invalid").Inc()
			s.log.Warn("syslog frame refused", zap.String("peer", peer), zap.Int("message", n+1), zap.Error(err))
			n++
		}
		// Submit when the batch is full, when nothing more is waiting
		// in the buffer (the sender paused), or when the stream ends.
		if len(batch) > 0 && (len(batch) >= batchMessages || r.Buffered() == 0 || err != nil) {
			if !s.submit(sctx, peer, batch) {
				return
			}
			batch = batch[:0]
		}
		if err != nil && (fe == nil || fe.fatal) {
			if fe == nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log.Info("syslog connection ended", zap.String("peer", peer), zap.Error(err))
			}
			return
		}
	}
}

// closeWrite sends a TCP FIN, under TLS too: the FIN, not TLS's
// close_notify, is what senders detect between messages.
func closeWrite(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tc, ok := c.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}

// submit delivers a batch, retrying while the sink refuses (the sender
// waits meanwhile: its bytes stay unread). It gives up only after the
// drain, and then the connection closes with the batch unacknowledged.
func (s *Server) submit(ctx context.Context, peer string, batch []ingest.Record) bool {
	backoff := 100 * time.Millisecond
	deadline := time.Time{}
	for {
		err := s.sink.Submit(ctx, batch)
		if err == nil {
			return true
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(time.Minute)
		}
		if time.Now().After(deadline) {
			s.log.Error("syslog batch not delivered; closing the connection (the sender keeps what it could not send)", zap.String("peer", peer), zap.Int("events", len(batch)), zap.Error(err))
			return false
		}
		s.log.Warn("cannot deliver syslog batch; retrying", zap.String("peer", peer), zap.Int("events", len(batch)), zap.Error(err))
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

// readFrame reads one message framed per RFC 6587: octet counting
// ("LEN SP MSG", RFC 5425's framing) when the frame starts with a digit,
// else non-transparent framing up to LF. The returned bytes are valid
// until the next call.
func (s *Server) readFrame(r *bufio.Reader) ([]byte, error) {
	max := int(s.cfg.MaxMessageBytes)
	for {
		b, err := r.Peek(1)
		if err != nil {
			return nil, err
		}
		switch {
		case b[0] == '\n' || b[0] == '\r' || b[0] == 0:
			r.ReadByte() // blank lines and trailers between frames
			continue
		case b[0] >= '1' && b[0] <= '9':
			return readOctetCounted(r, max)
		default:
			return readLine(r, max)
		}
	}
}

func readOctetCounted(r *bufio.Reader, max int) ([]byte, error) {
	head, err := r.ReadSlice(' ')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) || len(head) > 0 && !errors.Is(err, io.EOF) {
			return nil, &frameError{msg: "octet count: no space after the length", fatal: true}
		}
		if errors.Is(err, io.EOF) && len(head) > 0 {
			return nil, &frameError{msg: "octet count: the stream ends inside the length", fatal: true}
		}
		return nil, err
	}
	n, err := strconv.Atoi(string(head[:len(head)-1]))
	if err != nil || len(head) > 11 || n < 1 {
		return nil, &frameError{msg: fmt.Sprintf("octet count: %q is not a length", head[:len(head)-1]), fatal: true}
	}
	if n > max {
		// The length is known, so the stream stays in step: skip it.
		if _, err := r.Discard(n); err != nil {
			return nil, err
		}
		return nil, &frameError{msg: fmt.Sprintf("message of %d bytes is over max_message_bytes %d", n, max)}
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &frameError{msg: fmt.Sprintf("the stream ends inside a message of %d bytes", n), fatal: true}
		}
		return nil, err
	}
	return buf, nil
}

func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		part, err := r.ReadSlice('\n')
		line = append(line, part...)
		if len(line) > max+1 {
			// Skip to the end of this line, then report it.
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = r.ReadSlice('\n')
			}
			if err != nil && !errors.Is(err, io.EOF) {
				return nil, err
			}
			return nil, &frameError{msg: fmt.Sprintf("line over max_message_bytes %d", max), fatal: errors.Is(err, io.EOF)}
		}
		switch {
		case err == nil:
			return bytes.TrimRight(line, "\r\n"), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, &frameError{msg: "the stream ends inside a line (no LF)", fatal: true}
		default:
			return nil, err
		}
	}
}

// parsedEvent is the v1 JSON built from a message, validated and redacted
// by event.Decode like any sender's event.
type parsedEvent struct {
	Time      string         `json:"time"`
	Kind      string         `json:"kind"`
	Tenant    string         `json:"tenant"`
	App       string         `json:"app,omitempty"`
	IP        string         `json:"ip,omitempty"`
	Port      int            `json:"port,omitempty"`
	Login     string         `json:"login,omitempty"`
	UserAgent string         `json:"user_agent,omitempty"`
	Action    string         `json:"action,omitempty"`
	Protocol  string         `json:"protocol,omitempty"`
	Method    string         `json:"method,omitempty"`
	Path      string         `json:"path,omitempty"`
	Status    int            `json:"status,omitempty"`
	Attrs     map[string]any `json:"attrs,omitempty"`
}

// convert turns one message into a record, or says why not: result is
// accepted, ignored, unmatched or invalid. The event ID derives from the
// message's bytes, so a message the sender resends (after a reconnect)
// gets the same ID and readers keep it once.
func (s *Server) convert(m syslog.Machine, frame []byte) (ingest.Record, string, error) {
	parsed, err := m.Parse(frame)
	if err != nil {
		return ingest.Record{}, "invalid", fmt.Errorf("not an RFC 5424 message: %v", err)
	}
	sm := parsed.(*rfc5424.SyslogMessage)
	app := deref(sm.Appname)
	var rule *Rule
	for i := range s.cfg.Rules {
		if r := &s.cfg.Rules[i]; r.AppName == "" || r.AppName == app {
			rule = r
			break
		}
	}
	if rule == nil {
		return ingest.Record{}, "unmatched", fmt.Errorf("no rule for APP-NAME %q", app)
	}
	tenant, evApp := rule.Tenant, rule.App
	allowed := map[string]bool{}
	if rule.Tenant != "" {
		allowed[rule.Tenant] = true
	}
	for _, t := range rule.Tenants {
		allowed[t] = true
	}
	if sm.StructuredData != nil {
		if sd, ok := (*sm.StructuredData)[s.cfg.StructuredDataID]; ok {
			if t, ok := sd["tenant"]; ok {
				if !allowed[t] {
					return ingest.Record{}, "invalid", fmt.Errorf("structured data [%s]: tenant %q is not one of the rule's tenants", s.cfg.StructuredDataID, t)
				}
				tenant = t
			}
			if a, ok := sd["app"]; ok {
				evApp = a
			}
		}
	}
	if tenant == "" && len(rule.Tenants) == 1 {
		tenant = rule.Tenants[0]
	}
	if tenant == "" && rule.Format != "json" { // a JSON event names its own, within allowed
		return ingest.Record{}, "invalid", fmt.Errorf("tenant: the rule for APP-NAME %q has no default tenant and the message's structured data [%s] names none", app, s.cfg.StructuredDataID)
	}
	o := s.base
	o.Now, o.Tenants, o.IDSalt = s.now(), allowed, frame
	text := string(bytes.TrimPrefix([]byte(deref(sm.Message)), utf8BOM))
	var p parsedEvent
	switch rule.Format {
	case "json":
		e, err := event.Decode([]byte(text), o)
		if err != nil {
			return ingest.Record{}, "invalid", fmt.Errorf("MSG: %w", err)
		}
		return ingest.RecordOf(e), "accepted", nil
	case "sshd":
		if sm.Timestamp == nil {
			return ingest.Record{}, "invalid", errors.New("TIMESTAMP: missing (the NILVALUE); an event needs its time")
		}
		l, err := logparse.ParseSSHDMessage(text)
		if errors.Is(err, logparse.ErrIgnored) {
			return ingest.Record{}, "ignored", err
		}
		if err != nil {
			return ingest.Record{}, "invalid", fmt.Errorf("MSG: %w", err)
		}
		p = parsedEvent{Time: sm.Timestamp.UTC().Format(time.RFC3339Nano), Kind: string(event.KindLogin), Tenant: tenant, App: evApp,
			IP: l.IP, Port: l.Port, Login: l.User, Action: l.Action, Protocol: "ssh", Attrs: map[string]any{}}
		if h := deref(sm.Hostname); h != "" {
			p.Attrs["host"] = h
		}
		if l.Method != "" {
			p.Attrs["auth_method"] = l.Method
		}
		if l.Invalid {
			p.Attrs["invalid_user"] = true
		}
	case "combined":
		acc, err := logparse.ParseCombined(text)
		if err != nil {
			return ingest.Record{}, "invalid", fmt.Errorf("MSG: %w", err)
		}
		p = parsedEvent{Time: acc.Time.Format(time.RFC3339Nano), Kind: string(event.KindConnection), Tenant: tenant, App: evApp,
			IP: acc.IP, Login: acc.User, UserAgent: acc.UserAgent, Method: acc.Method, Path: acc.Path, Protocol: acc.Protocol, Status: acc.Status,
			Attrs: map[string]any{"bytes": acc.Bytes}}
		if acc.Referer != "" {
			p.Attrs["referer"] = acc.Referer
		}
		if h := deref(sm.Hostname); h != "" {
			p.Attrs["host"] = h
		}
	}
	b, err := json.Marshal(p)
	if err != nil {
		return ingest.Record{}, "invalid", err
	}
	e, err := event.Decode(b, o)
	if err != nil {
		return ingest.Record{}, "invalid", err
	}
	return ingest.RecordOf(e), "accepted", nil
}

// newMachine returns a strict RFC 5424 parser; one per connection, since
// a machine is not safe for concurrent use.
func newMachine() syslog.Machine { return rfc5424.NewMachine() }

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
