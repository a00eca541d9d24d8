package ingest

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
)

// The OTLP/HTTP logs receiver, POST /v1/logs (docs/EVENTS.md §8). The
// request is decoded with the OpenTelemetry Collector's pdata (plog): its
// generated decoder is about 2.8 times faster than protobuf-go's on these
// messages, and it reads OTLP/JSON (hex trace IDs) as the spec writes it.
// plogotlp, which holds the response type, links gRPC; the response is
// two small fields, encoded here: ExportLogsServiceResponse {
// partial_success = 1 { rejected_log_records = 1, error_message = 2 } }.

// otlpMember maps an OpenTelemetry semantic-convention attribute to the
// event member it fills, and its rank among the attributes that fill the
// same member (lower wins: enduser.id before user.name), or -1.
func otlpMember(attr string) (member int, rank int) {
	switch attr {
	case "client.address":
		return mIP, 0
	case "client.port":
		return mPort, 0
	case "user_agent.original":
		return mUserAgent, 0
	case "enduser.id":
		return mLogin, 0
	case "user.name":
		return mLogin, 1
	case "session.id":
		return mSession, 0
	case "http.request.method":
		return mMethod, 0
	case "url.path":
		return mPath, 0
	case "url.query":
		return mQuery, 0
	case "http.response.status_code":
		return mStatus, 0
	case "network.protocol.name":
		return mProtocol, 0
	case "vcs.repository.url.full":
		return mRepo, 0
	case "vcs.ref.head.name":
		return mRef, 0
	case "vcs.ref.head.revision":
		return mNewCommit, 0
	case "vcs.ref.base.revision":
		return mOldCommit, 0
	case "log.record.uid":
		return mID, 0
	case "custody.tenant":
		return mTenant, 0
	case "custody.kind":
		return mKind, 0
	case "custody.class":
		return mClass, 0
	case "custody.action":
		return mAction, 0
	case "service.name":
		return mApp, 0
	}
	return -1, 0
}

// The members an OTLP record can fill.
const (
	mKind = iota
	mClass
	mTenant
	mApp
	mIP
	mPort
	mSession
	mLogin
	mUserAgent
	mAction
	mProtocol
	mMethod
	mPath
	mQuery // joined to path, never written alone
	mStatus
	mRepo
	mRef
	mOldCommit
	mNewCommit
	mID
	nMembers
)

var memberNames = [nMembers]string{"kind", "class", "tenant", "app", "ip", "port", "session", "login", "user_agent", "action", "protocol", "method", "path", "", "status", "repo", "ref", "old_commit", "new_commit", "id"}

// maxOTLPErrors bounds the reasons quoted in a partial-success message.
const maxOTLPErrors = 10

func (s *Server) postLogs(w http.ResponseWriter, r *http.Request) {
	start := s.now()
	defer func() { s.duration.Observe(time.Since(start).Seconds()) }()
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := ct == "application/json"
	fail := func(code int, msg string) { s.otlpStatus(w, code, isJSON, msg) }
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		fail(http.StatusMethodNotAllowed, "use POST")
		return
	}
	if !isJSON && ct != "application/x-protobuf" {
		fail(http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q: use application/x-protobuf or application/json (OTLP/HTTP)", ct))
		return
	}
	tok, release := s.admit(w, r, fail)
	if tok == nil {
		return
	}
	defer release()
	limit := int64(s.cfg.MaxRequestBytes)
	raw := transportErrors{http.MaxBytesReader(w, r.Body, limit)}
	body, err := decompress(r, raw)
	if err != nil {
		fail(http.StatusUnsupportedMediaType, err.Error())
		return
	}
	defer body.Close()
	bp := readBody(io.LimitReader(body, limit+1), r.ContentLength, limit, body == io.ReadCloser(raw))
	defer bodyPool.Put(bp)
	b, err := bp.b, bp.err
	switch {
	case err != nil:
		fail(http.StatusBadRequest, "cannot read the body: "+err.Error())
		return
	case int64(len(b)) > limit:
		fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body over max_request_bytes %d", limit))
		return
	}
	var req plog.Logs
	if isJSON {
		req, err = (&plog.JSONUnmarshaler{}).UnmarshalLogs(b)
	} else {
		req, err = (&plog.ProtoUnmarshaler{}).UnmarshalLogs(b)
	}
	if err != nil {
		fail(http.StatusBadRequest, "not an OTLP logs request: "+err.Error())
		return
	}
	// The request's digest and a record's position in it name the record:
	// an exporter's retry of the same request gives the same IDs.
	recs, rejected, reasons, redacted := s.otlpEvents(req, sha256.Sum256(b), tok)
	s.redacted.Add(float64(redacted))
	if len(recs) > 0 {
		if err := s.sink.Submit(r.Context(), recs); err != nil {
			s.events.WithLabelValues("unavailable").Add(float64(len(recs)))
			s.log.Warn("cannot accept OTLP logs", zap.String("token", tok.name), zap.Int("events", len(recs)), zap.Error(err))
			w.Header().Set("Retry-After", "5")
			fail(http.StatusServiceUnavailable, "events not kept: "+err.Error()) // retryable per OTLP
			return
		}
	}
	s.events.WithLabelValues("accepted").Add(float64(len(recs)))
	s.events.WithLabelValues("invalid").Add(float64(rejected))
	msg := ""
	if rejected > 0 {
		msg = strings.Join(reasons, "; ")
		if rejected > len(reasons) {
			msg += fmt.Sprintf("; and %d more", rejected-len(reasons))
		}
	}
	s.otlpResponse(w, isJSON, rejected, msg)
}

// otlpEvents turns every log record into an event record, or a reason
// naming the record by its indexes.
func (s *Server) otlpEvents(req plog.Logs, digest [sha256.Size]byte, tok *token) (recs []Record, rejected int, reasons []string, redacted int) {
	opts := tok.opts
	opts.Now = s.now()
	defaultTenant := ""
	if len(opts.Tenants) == 1 { // a token of one tenant names it
		for t := range opts.Tenants {
			defaultTenant = t
		}
	}
	var salt []byte
	var enc records
	sc := &otlpScratch{}
	rls := req.ResourceLogs()
	n := 0
	for i := 0; i < rls.Len(); i++ {
		for j, sls := 0, rls.At(i).ScopeLogs(); j < sls.Len(); j++ {
			n += sls.At(j).LogRecords().Len()
		}
	}
	recs = make([]Record, 0, n)
	for i := 0; i < rls.Len(); i++ {
		rl := rls.At(i)
		res := rl.Resource().Attributes()
		for j := 0; j < rl.ScopeLogs().Len(); j++ {
			lrs := rl.ScopeLogs().At(j).LogRecords()
			for k := 0; k < lrs.Len(); k++ {
				lr := lrs.At(k)
				// The ID's salt: the request's digest and the record's
				// position (event.DecodeFields hashes no line).
				salt = append(salt[:0], digest[:]...)
				salt = append(salt, "otlp/"...)
				salt = strconv.AppendInt(salt, int64(i), 10)
				salt = append(salt, '/')
				salt = strconv.AppendInt(salt, int64(j), 10)
				salt = append(salt, '/')
				salt = strconv.AppendInt(salt, int64(k), 10)
				opts.IDSalt = salt
				e, err := otlpEvent(sc, res, lr, opts, defaultTenant)
				if err != nil {
					rejected++
					if len(reasons) < maxOTLPErrors {
						reasons = append(reasons, fmt.Sprintf("resource_logs[%d].scope_logs[%d].log_records[%d]: %v", i, j, k, err))
					}
					continue
				}
				redacted += e.Redacted
				recs = append(recs, enc.of(e))
			}
		}
	}
	return recs, rejected, reasons, redacted
}

// bodyBuf is a request body read whole, from bodyPool.
type bodyBuf struct {
	b   []byte
	err error
}

// bodyPool holds the buffers OTLP bodies are read into: pdata copies
// every string and byte field it decodes, so a buffer is free again once
// the request is unmarshalled and digested. Buffers over 4 MiB are not
// kept, so that one large request does not pin its memory.
var bodyPool = sync.Pool{New: func() any { return new(bodyBuf) }}

// readBody reads r whole into a pooled buffer. With an exact length (an
// uncompressed body that states its Content-Length, at most limit) the
// buffer is sized once instead of grown by doubling. The caller puts the
// result back into bodyPool when it is done with b.
func readBody(r io.Reader, contentLength, limit int64, exact bool) *bodyBuf {
	bp := bodyPool.Get().(*bodyBuf)
	if cap(bp.b) > 4<<20 {
		bp.b = nil
	}
	b := bp.b[:0]
	if exact && contentLength > 0 && contentLength <= limit && int64(cap(b)) < contentLength+1 {
		b = make([]byte, 0, contentLength+1) // +1: the read that sees EOF
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			bp.b, bp.err = b, nil
			return bp
		}
		if err != nil {
			bp.b, bp.err = b, err
			return bp
		}
	}
}

// otlpEvent maps one log record: its attributes over its resource's, the
// semantic conventions to members, the rest to attrs (as JSON); then the
// members go through event.DecodeFields, Decode's checks and redaction
// without a JSON line to write and parse again.
func otlpEvent(sc *otlpScratch, res pcommon.Map, lr plog.LogRecord, opts event.Options, defaultTenant string) (*event.Event, error) {
	sc.reset()
	slot, set, rank := &sc.slot, &sc.set, &sc.rank
	extra := sc.extra
	own := lr.Attributes()
	own.Range(func(k string, v pcommon.Value) bool {
		if m, r := otlpMember(k); m < 0 {
			extra = append(extra, kv{k, v})
		} else if !set[m] || r < rank[m] {
			slot[m], set[m], rank[m] = v, true, r
		}
		return true
	})
	res.Range(func(k string, v pcommon.Value) bool {
		m, r := otlpMember(k)
		switch {
		case m < 0:
			if _, mine := own.Get(k); !mine { // the record's own wins
				extra = append(extra, kv{k, v})
			}
		case !set[m]:
			slot[m], set[m], rank[m] = v, true, r+100 // any record attribute wins
		case rank[m] >= 100 && r+100 < rank[m]:
			slot[m], rank[m] = v, r+100
		}
		return true
	})
	var f event.Fields
	t := lr.Timestamp()
	if t == 0 {
		t = lr.ObservedTimestamp()
	}
	if t != 0 {
		f.At = t.AsTime()
	}
	switch {
	case set[mKind]:
	case set[mRepo]:
		f.Kind = string(event.KindSourceChange)
	default:
		f.Kind = string(event.KindConnection)
	}
	if !set[mTenant] {
		f.Tenant = defaultTenant
	}
	for m, v := range slot {
		if !set[m] {
			continue
		}
		switch m {
		case mPort, mStatus:
			n, err := intValue(memberNames[m], v)
			if err != nil {
				return nil, err
			}
			if m == mPort {
				f.Port = &n
			} else {
				f.Status = &n
			}
			continue
		case mQuery:
			continue
		}
		str := v.AsString()
		switch m {
		case mKind:
			f.Kind = str
		case mClass:
			f.Class = str
		case mTenant:
			f.Tenant = str
		case mApp:
			f.App = str
		case mIP:
			f.IP = str
		case mSession:
			f.Session = str
		case mLogin:
			f.Login = str
		case mUserAgent:
			f.UserAgent = str
		case mAction:
			f.Action = str
		case mProtocol:
			f.Protocol = str
		case mMethod:
			f.Method = str
		case mPath:
			f.Path = str
			if set[mQuery] && slot[mQuery].AsString() != "" {
				f.Path += "?" + slot[mQuery].AsString()
			}
		case mRepo:
			f.Repo = str
		case mRef:
			f.Ref = str
		case mOldCommit:
			f.OldCommit = str
		case mNewCommit:
			f.NewCommit = str
		case mID:
			f.ID = str
		}
	}
	if set[mQuery] && !set[mPath] {
		extra = append(extra, kv{"url.query", slot[mQuery]})
	}
	body := lr.Body()
	hasBody := body.Type() != pcommon.ValueTypeEmpty
	trace, span := lr.TraceID(), lr.SpanID()
	b := sc.buf[:0]
	if len(extra) > 0 || hasBody || !trace.IsEmpty() || !span.IsEmpty() || lr.SeverityText() != "" || lr.EventName() != "" {
		b = append(b, '{')
		member := func(k string) {
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = event.AppendString(b, k)
			b = append(b, ':')
		}
		for _, e := range extra {
			member(e.k)
			b = appendValue(b, e.v)
		}
		if hasBody {
			member("body")
			b = appendValue(b, body)
		}
		if !trace.IsEmpty() {
			member("trace_id")
			b = append(b, '"')
			b = hex.AppendEncode(b, trace[:])
			b = append(b, '"')
		}
		if !span.IsEmpty() {
			member("span_id")
			b = append(b, '"')
			b = hex.AppendEncode(b, span[:])
			b = append(b, '"')
		}
		if st := lr.SeverityText(); st != "" {
			member("severity")
			b = event.AppendString(b, st)
		}
		if en := lr.EventName(); en != "" {
			member("event.name")
			b = event.AppendString(b, en)
		}
		b = append(b, '}')
		f.Attrs = b
	}
	sc.buf, sc.extra = b, extra[:0]
	return event.DecodeFields(&f, opts)
}

// intValue reads port or status: an integer, or a string of one.
func intValue(name string, v pcommon.Value) (int64, error) {
	switch v.Type() {
	case pcommon.ValueTypeInt:
		return v.Int(), nil
	case pcommon.ValueTypeStr:
		if n, err := strconv.ParseInt(v.Str(), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, &event.FieldError{Field: name, Reason: fmt.Sprintf("%s is not an integer", v.AsString())}
}

// otlpScratch is otlpEvent's working memory, reused across the records
// of a request (the JSON buffer above all).
type otlpScratch struct {
	slot  [nMembers]pcommon.Value
	set   [nMembers]bool
	rank  [nMembers]int
	extra []kv
	buf   []byte // attrs JSON
}

type kv struct {
	k string
	v pcommon.Value
}

func (sc *otlpScratch) reset() {
	sc.set = [nMembers]bool{}
	sc.extra = sc.extra[:0]
}

// appendValue writes an OTLP value as JSON; bytes as base64, as
// OTLP/JSON writes them; an empty value as null.
func appendValue(b []byte, v pcommon.Value) []byte {
	switch v.Type() {
	case pcommon.ValueTypeStr:
		return event.AppendString(b, v.Str())
	case pcommon.ValueTypeBool:
		return strconv.AppendBool(b, v.Bool())
	case pcommon.ValueTypeInt:
		return strconv.AppendInt(b, v.Int(), 10)
	case pcommon.ValueTypeDouble:
		d := v.Double()
		if math.IsInf(d, 0) || math.IsNaN(d) {
			return event.AppendString(b, strconv.FormatFloat(d, 'g', -1, 64))
		}
		return strconv.AppendFloat(b, d, 'g', -1, 64)
	case pcommon.ValueTypeBytes:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes().AsRaw())
		return append(b, '"')
	case pcommon.ValueTypeSlice:
		b = append(b, '[')
		sl := v.Slice()
		for i := 0; i < sl.Len(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, sl.At(i))
		}
		return append(b, ']')
	case pcommon.ValueTypeMap:
		b = append(b, '{')
		first := true
		v.Map().Range(func(k string, e pcommon.Value) bool {
			if !first {
				b = append(b, ',')
			}
			first = false
			b = event.AppendString(b, k)
			b = append(b, ':')
			b = appendValue(b, e)
			return true
		})
		return append(b, '}')
	}
	return append(b, "null"...)
}

// otlpResponse writes an ExportLogsServiceResponse, with partial_success
// when records were rejected.
func (s *Server) otlpResponse(w http.ResponseWriter, isJSON bool, rejected int, msg string) {
	var b []byte
	if isJSON {
		resp := map[string]any{}
		if rejected > 0 {
			resp["partialSuccess"] = map[string]any{"rejectedLogRecords": strconv.Itoa(rejected), "errorMessage": msg}
		}
		b, _ = json.Marshal(resp)
		w.Header().Set("Content-Type", "application/json")
	} else {
		if rejected > 0 {
			ps := appendVarintField(nil, 1, uint64(rejected))
			ps = appendBytesField(ps, 2, []byte(msg))
			b = appendBytesField(b, 1, ps)
		}
		w.Header().Set("Content-Type", "application/x-protobuf")
	}
	w.WriteHeader(http.StatusOK)
	w.Write(b)
	s.requests.WithLabelValues("200").Inc()
}

// otlpStatus answers a failed request with a google.rpc.Status
// {code = 1, message = 2}, as OTLP/HTTP asks.
func (s *Server) otlpStatus(w http.ResponseWriter, code int, isJSON bool, msg string) {
	grpcCode, ok := map[int]int{http.StatusUnauthorized: 16, http.StatusTooManyRequests: 8, http.StatusRequestEntityTooLarge: 8,
		http.StatusMethodNotAllowed: 12, http.StatusServiceUnavailable: 14}[code]
	if !ok { // any other refusal is the request's fault
		grpcCode = 3 // INVALID_ARGUMENT
	}
	var b []byte
	if isJSON {
		b, _ = json.Marshal(map[string]any{"code": grpcCode, "message": msg})
		w.Header().Set("Content-Type", "application/json")
	} else {
		b = appendVarintField(b, 1, uint64(grpcCode))
		b = appendBytesField(b, 2, []byte(msg))
		w.Header().Set("Content-Type", "application/x-protobuf")
	}
	w.WriteHeader(code)
	w.Write(b)
	s.requests.WithLabelValues(strconv.Itoa(code)).Inc()
}

// appendVarintField and appendBytesField write one protobuf field: the
// key (field number << 3 | wire type 0 or 2), then the value.
func appendVarintField(b []byte, field int, v uint64) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3)
	return binary.AppendUvarint(b, v)
}

func appendBytesField(b []byte, field int, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(field)<<3|2)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
