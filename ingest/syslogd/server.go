package syslogd

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
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
	for _, r := range []Result{Accepted, Ignored, Unmatched, Invalid} {
		s.messages.WithLabelValues(string(r))
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
	conv := NewConverter(s.cfg.Rules, s.cfg.StructuredDataID, s.base)
	conv.now = s.now
	var batch []ingest.Record
	n := 0
	for {
		frame, err := s.readFrame(r)
		if err == nil {
			n++
			rec, result, cerr := conv.Convert(frame, frame)
			s.messages.WithLabelValues(string(result)).Inc()
			switch {
			case cerr != nil && result == Invalid:
				s.log.Warn("syslog message refused", zap.String("peer", peer), zap.Int("message", n), zap.Error(cerr))
			case cerr != nil:
				s.log.Debug("syslog message not archived", zap.String("peer", peer), zap.Int("message", n), zap.String("result", string(result)), zap.Error(cerr))
			default:
				batch = append(batch, rec)
			}
		}
		var fe *frameError
		if errors.As(err, &fe) {
			s.messages.WithLabelValues(string(Invalid)).Inc()
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

// Result is what became of a message.
type Result string

// The results, also the values of custody_syslog_messages_total's label.
const (
	Accepted  Result = "accepted"
	Ignored   Result = "ignored"   // a matched program's message that is no event
	Unmatched Result = "unmatched" // no rule for its APP-NAME
	Invalid   Result = "invalid"
)

// Converter turns RFC 5424 messages into events by rules; the listener
// and custody normalize share it. Not safe for concurrent use (its parser
// keeps state): one per connection or consumer.
type Converter struct {
	rules []Rule
	sdID  string
	base  event.Options
	now   func() time.Time
	m     syslog.Machine
}

// NewConverter returns a converter. base holds the event limits and
// classes, and the source the events name.
func NewConverter(rules []Rule, structuredDataID string, base event.Options) *Converter {
	return &Converter{rules: rules, sdID: structuredDataID, base: base, now: time.Now, m: rfc5424.NewMachine()}
}

// Convert turns one message into a record, or says why not. The event ID
// derives from salt (and the event), so the same salt for the same
// message gives the same ID: the listener passes the message's bytes, so
// that a message the sender resends after a reconnect is kept once by
// readers; normalize passes the record's topic, partition and offset.
func (c *Converter) Convert(msg, salt []byte) (ingest.Record, Result, error) {
	parsed, err := c.m.Parse(msg)
	if err != nil {
		return ingest.Record{}, Invalid, fmt.Errorf("not an RFC 5424 message: %v", err)
	}
	sm := parsed.(*rfc5424.SyslogMessage)
	app := deref(sm.Appname)
	var rule *Rule
	for i := range c.rules {
		if r := &c.rules[i]; r.AppName == "" || r.AppName == app {
			rule = r
			break
		}
	}
	if rule == nil {
		return ingest.Record{}, Unmatched, fmt.Errorf("no rule for APP-NAME %q", app)
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
		if sd, ok := (*sm.StructuredData)[c.sdID]; ok {
			if t, ok := sd["tenant"]; ok {
				if !allowed[t] {
					return ingest.Record{}, Invalid, fmt.Errorf("structured data [%s]: tenant %q is not one of the rule's tenants", c.sdID, t)
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
		return ingest.Record{}, Invalid, fmt.Errorf("tenant: the rule for APP-NAME %q has no default tenant and the message's structured data [%s] names none", app, c.sdID)
	}
	o := c.base
	o.Now, o.Tenants, o.IDSalt = c.now(), allowed, salt
	text := string(bytes.TrimPrefix([]byte(deref(sm.Message)), utf8BOM))
	var p logparse.Event
	switch rule.Format {
	case "json":
		e, err := event.Decode([]byte(text), o)
		if err != nil {
			return ingest.Record{}, Invalid, fmt.Errorf("MSG: %w", err)
		}
		return ingest.RecordOf(e), Accepted, nil
	case "sshd":
		if sm.Timestamp == nil {
			return ingest.Record{}, Invalid, errors.New("TIMESTAMP: missing (the NILVALUE); an event needs its time")
		}
		l, err := logparse.ParseSSHDMessage(text)
		if errors.Is(err, logparse.ErrIgnored) {
			return ingest.Record{}, Ignored, err
		}
		if err != nil {
			return ingest.Record{}, Invalid, fmt.Errorf("MSG: %w", err)
		}
		l.Time, l.Host = sm.Timestamp.UTC(), deref(sm.Hostname)
		p = l.Event(tenant, evApp)
	case "combined":
		acc, err := logparse.ParseCombined(text)
		if err != nil {
			return ingest.Record{}, Invalid, fmt.Errorf("MSG: %w", err)
		}
		p = acc.Event(tenant, evApp, deref(sm.Hostname))
	}
	e, err := event.Decode(p.JSON(), o)
	if err != nil {
		return ingest.Record{}, Invalid, err
	}
	return ingest.RecordOf(e), Accepted, nil
}

var utf8BOM = []byte{0xef, 0xbb, 0xbf}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
