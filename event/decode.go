package event

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	json "github.com/segmentio/encoding/json"
)

// ErrNotAllowed is wrapped by a FieldError when the event is well formed
// but its sender may not send it: a tenant, kind or retention class
// outside what its credentials allow. Callers refuse the whole request on
// it (errors.Is), since that is a misconfigured or hostile sender.
var ErrNotAllowed = errors.New("not allowed for this sender")

// FieldError is a validation failure of one event. Field is the JSON
// member at fault, or empty when the problem is the event as a whole.
// Cause, when set, is a sentinel such as ErrNotAllowed.
type FieldError struct {
	Field  string
	Reason string
	Cause  error
}

// Unwrap returns the cause, for errors.Is.
func (e *FieldError) Unwrap() error { return e.Cause }

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Reason
	}
	return fmt.Sprintf("field %q: %s", e.Field, e.Reason)
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Options are the limits and the stamp that ingest applies.
type Options struct {
	// Now is the receive time; zero means time.Now().
	Now           time.Time
	MaxEventBytes int           // 0 means 16 KiB
	MaxFutureSkew time.Duration // 0 means 5 minutes
	LateAfter     time.Duration // 0 means 1 hour
	// Source is written to the event's "source"; it names the
	// authenticated sender and salts derived IDs.
	Source string
	// IDSalt is mixed into derived IDs; the agent passes the file
	// identity and offset of the line, so a line re-read after a restart
	// gets the same ID and an identical line elsewhere a different one.
	IDSalt []byte
	// DefaultClass fills "class" when the sender gave none; Classes, if
	// non-empty, is the set of configured classes.
	DefaultClass string
	Classes      map[string]bool
	// Tenants, if non-nil, is the set of tenants the sender may write for.
	Tenants map[string]bool
	// Kinds, if non-nil, is the set of kinds the sender may send.
	Kinds map[Kind]bool
	// AllowedClasses, if non-nil, is the set of classes the sender's
	// events may end up in, the default class included when it applies.
	AllowedClasses map[string]bool
	// Minimise holds, by retention class, what is kept of the members
	// that identify a person; a class without an entry keeps them all.
	Minimise map[string]*Minimiser
}

// WithConfig returns o with the limits and minimisation rules of the
// events section.
func (o Options) WithConfig(c Config) Options {
	o.MaxEventBytes, o.MaxFutureSkew, o.LateAfter = int(c.MaxEventBytes), c.MaxFutureSkew, c.LateAfter
	o.Minimise = c.Minimisers()
	return o
}

func notAllowed(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...), Cause: ErrNotAllowed}
}

// MaxUserAgent is the length user agents are cut to, at a rune boundary.
const MaxUserAgent = 1024

// earliest is the oldest event time accepted: anything before is a
// sender's clock or parsing bug, not a late event.
var earliest = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// wire is the JSON a sender may send. Members Custody sets itself
// (source, received, late, redacted) are refused.
type wire struct {
	V         *int            `json:"v"`
	ID        string          `json:"id"`
	Time      string          `json:"time"`
	Kind      string          `json:"kind"`
	Class     string          `json:"class"`
	Tenant    string          `json:"tenant"`
	App       string          `json:"app"`
	IP        string          `json:"ip"`
	Port      *int64          `json:"port"`
	Session   string          `json:"session"`
	Login     string          `json:"login"`
	UserAgent string          `json:"user_agent"`
	Action    string          `json:"action"`
	Protocol  string          `json:"protocol"`
	Method    string          `json:"method"`
	Path      string          `json:"path"`
	Status    *int64          `json:"status"`
	Repo      string          `json:"repo"`
	Ref       string          `json:"ref"`
	OldCommit string          `json:"old_commit"`
	NewCommit string          `json:"new_commit"`
	Purpose   string          `json:"purpose"`
	Attrs     json.RawMessage `json:"attrs"`

	// Set by Custody: present only so that a sender who sets them gets a
	// clear refusal instead of "unknown field".
	Source   json.RawMessage `json:"source"`
	Received json.RawMessage `json:"received"`
	Late     json.RawMessage `json:"late"`
	Redacted json.RawMessage `json:"redacted"`

	// at is the time as a value, from a sender that holds one
	// (DecodeFields); Time, when set, wins.
	at time.Time
}

// defaults fills the limits o leaves zero and returns the receive time.
func (o *Options) defaults() time.Time {
	if o.MaxEventBytes == 0 {
		o.MaxEventBytes = 16 << 10
	}
	if o.MaxFutureSkew == 0 {
		o.MaxFutureSkew = 5 * time.Minute
	}
	if o.LateAfter == 0 {
		o.LateAfter = time.Hour
	}
	if o.Now.IsZero() {
		return time.Now()
	}
	return o.Now
}

// Decode parses one NDJSON line from a sender, validates it, redacts
// secrets from it and stamps it. Errors are *FieldError.
func Decode(line []byte, o Options) (*Event, error) {
	now := o.defaults()
	line = bytes.TrimRight(line, "\r\n")
	if len(bytes.TrimSpace(line)) == 0 {
		return nil, fieldErr("", "empty line")
	}
	if len(line) > o.MaxEventBytes {
		return nil, fieldErr("", "event is %d bytes; the limit is %d", len(line), o.MaxEventBytes)
	}
	if !utf8.Valid(line) {
		return nil, fieldErr("", "event is not valid UTF-8")
	}
	var w wire
	// segmentio/encoding/json: the encoding/json API, several times faster
	// on this path, and with exact (not case-insensitive) member names.
	rest, err := json.Parse(line, &w, json.DisallowUnknownFields|json.DontMatchCaseInsensitiveStructFields)
	if err != nil {
		return nil, jsonError(line, err)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fieldErr("", "more than one JSON value on the line")
	}
	for _, f := range []struct {
		name string
		v    json.RawMessage
	}{{"source", w.Source}, {"received", w.Received}, {"late", w.Late}, {"redacted", w.Redacted}} {
		if f.v != nil {
			return nil, fieldErr(f.name, "is set by Custody and may not be sent")
		}
	}
	e := &Event{Source: o.Source, Received: now.UTC()}
	if err := e.fill(&w, now, o); err != nil {
		return nil, err
	}
	e.finish(o, line)
	return e, nil
}

// Fields are the members a sender sets, held apart, for senders that do
// not have a JSON line (DecodeFields). Port and Status are nil when
// absent; Attrs is a JSON object, or empty.
type Fields struct {
	// At is the event's time as a value, for a sender that holds one
	// (OTLP's nanoseconds): no text to write and parse again. Time, when
	// set, wins.
	At time.Time

	ID, Time, Kind, Class, Tenant, App, IP                    string
	Port                                                      *int64
	Session, Login, UserAgent, Action, Protocol, Method, Path string
	Status                                                    *int64
	Repo, Ref, OldCommit, NewCommit, Purpose                  string
	Attrs                                                     []byte
}

// DecodeFields is Decode for a sender that holds the members apart, as
// the OTLP receiver does: the same checks, redaction and stamping, without
// writing and parsing a JSON line. Two differences: the size limit
// applies to the members' bytes (the line's syntax not counted), and an
// ID the sender did not set derives from o.IDSalt with the time, source
// and tenant, not from a line, so the caller's salt must tell its events
// apart.
func DecodeFields(f *Fields, o Options) (*Event, error) {
	now := o.defaults()
	w := wire{ID: f.ID, Time: f.Time, Kind: f.Kind, Class: f.Class, Tenant: f.Tenant, App: f.App, IP: f.IP, Port: f.Port,
		Session: f.Session, Login: f.Login, UserAgent: f.UserAgent, Action: f.Action, Protocol: f.Protocol, Method: f.Method, Path: f.Path,
		Status: f.Status, Repo: f.Repo, Ref: f.Ref, OldCommit: f.OldCommit, NewCommit: f.NewCommit, Purpose: f.Purpose, Attrs: f.Attrs, at: f.At}
	size := len(f.Attrs)
	for _, m := range []struct{ name, v string }{{"id", w.ID}, {"time", w.Time}, {"kind", w.Kind}, {"class", w.Class}, {"tenant", w.Tenant},
		{"app", w.App}, {"ip", w.IP}, {"session", w.Session}, {"login", w.Login}, {"user_agent", w.UserAgent}, {"action", w.Action},
		{"protocol", w.Protocol}, {"method", w.Method}, {"path", w.Path}, {"repo", w.Repo}, {"ref", w.Ref},
		{"old_commit", w.OldCommit}, {"new_commit", w.NewCommit}, {"purpose", w.Purpose}} {
		if !utf8.ValidString(m.v) {
			return nil, fieldErr(m.name, "is not valid UTF-8")
		}
		size += len(m.v)
	}
	if !utf8.Valid(f.Attrs) {
		return nil, fieldErr("attrs", "is not valid UTF-8")
	}
	if size > o.MaxEventBytes {
		return nil, fieldErr("", "event is %d bytes; the limit is %d", size, o.MaxEventBytes)
	}
	e := &Event{Source: o.Source, Received: now.UTC()}
	if err := e.fill(&w, now, o); err != nil {
		return nil, err
	}
	e.finish(o, nil)
	return e, nil
}

// finish derives the ID the sender did not set and minimises, as the
// event's class asks. line, when set, is what the sender sent.
func (e *Event) finish(o Options, line []byte) {
	m := o.Minimise[e.Class]
	if e.ID == "" {
		if m != nil {
			// Keyed: the line holds the full IP and login, and an ID
			// hashed from it alone could be brute-forced back to them.
			e.ID = DeriveID(e.Time, m.key, []byte(o.Source), []byte(e.Tenant), o.IDSalt, line)
		} else {
			e.ID = DeriveID(e.Time, []byte(o.Source), []byte(e.Tenant), o.IDSalt, line)
		}
	}
	if m != nil {
		m.apply(e)
	}
}

// jsonError explains a decoding failure, naming the member. It finds
// what is wrong from the line itself (an unknown member, a cut line) or
// from the decoder's typed errors, never from the decoder's message text,
// which is not part of its API. It runs only on the error path.
func jsonError(line []byte, err error) *FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fieldErr(te.Field, "is a JSON %s; want %s", valueKind(te.Value), jsonType(te.Type.String()))
	}
	name, complete := scanMembers(line)
	if name != "" {
		return fieldErr(name, "is not a v1 event member (put free-form data under attrs)")
	}
	if !complete {
		return fieldErr("", "invalid JSON: the line ends inside a value")
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		msg := strings.TrimPrefix(se.Error(), "json: ")
		if len(msg) > 120 {
			msg = msg[:120] + "..."
		}
		return fieldErr("", "invalid JSON: %s", msg)
	}
	return fieldErr("", "invalid JSON: %v", err)
}

// wireMembers are the member names wire accepts.
var wireMembers = func() map[string]bool {
	m := map[string]bool{}
	t := reflect.TypeFor[wire]()
	for i := 0; i < t.NumField(); i++ {
		if t.Field(i).IsExported() {
			m[strings.Split(t.Field(i).Tag.Get("json"), ",")[0]] = true
		}
	}
	return m
}()

// scanMembers tokenizes line and returns the first top-level member name
// that wire does not know, and whether the top-level value was complete.
func scanMembers(line []byte) (unknown string, complete bool) {
	tk := json.NewTokenizer(line)
	depth := 0
	for tk.Next() {
		switch tk.Delim {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return "", true
			}
		}
		if tk.IsKey && tk.Depth == 1 {
			var k string
			if json.Unmarshal(tk.Value, &k) == nil && !wireMembers[k] {
				return k, true
			}
		}
	}
	// Input ran out inside an object or array, without a syntax error: the
	// line was cut. A syntax error counts as complete, for the caller to
	// report as such.
	return "", depth == 0 || tk.Err != nil
}

// valueKind names the JSON type of a value as the decoder reports it:
// either a word (encoding/json) or the raw text (segmentio's decoder).
func valueKind(v string) string {
	if u, err := strconv.Unquote(v); err == nil {
		v = u // segmentio reports the raw text, Go-quoted
	}
	switch {
	case v == "":
		return "value"
	case v[0] == '"' || v == "string":
		return "string"
	case v[0] == '{' || v == "object":
		return "object"
	case v[0] == '[' || v == "array":
		return "array"
	case v[0] == 't' || v[0] == 'f' || v == "bool":
		return "boolean"
	case v[0] == 'n':
		return "null"
	}
	return "number"
}

func jsonType(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "*int", "*int64", "int", "int64":
		return "an integer"
	}
	return goType
}

func (e *Event) fill(w *wire, now time.Time, o Options) error {
	if w.V != nil && *w.V != Version {
		return fieldErr("v", "is %d; this server accepts version %d", *w.V, Version)
	}
	if w.ID != "" {
		if err := checkID(w.ID); err != nil {
			return err
		}
		e.ID = w.ID
	}
	if w.Time == "" && w.at.IsZero() {
		e.Time = now.UTC()
	} else {
		t := w.at.UTC()
		if w.Time != "" {
			var err error
			if t, err = time.Parse(time.RFC3339Nano, w.Time); err != nil {
				return fieldErr("time", "%q is not an RFC 3339 time such as 2026-11-29T05:12:00.123Z", w.Time)
			}
			t = t.UTC()
		}
		shown := func() string { // as the sender wrote it; only on the error path
			if w.Time != "" {
				return w.Time
			}
			return t.Format(time.RFC3339Nano)
		}
		if t.After(now.Add(o.MaxFutureSkew)) {
			return fieldErr("time", "%s is %s ahead of the server clock; the limit is %s", shown(), t.Sub(now).Round(time.Second), o.MaxFutureSkew)
		}
		if t.Before(earliest) {
			return fieldErr("time", "%s is before 2000-01-01", shown())
		}
		e.Time = t
		e.Late = now.Sub(t) > o.LateAfter
	}
	e.Kind = Kind(w.Kind)
	switch e.Kind {
	case KindConnection, KindLogin, KindSourceChange, KindActivity, KindAccessAudit:
	case "":
		return fieldErr("kind", "is required")
	default:
		return fieldErr("kind", "%q is not one of connection, login, source_change, activity, access_audit", w.Kind)
	}
	if o.Kinds != nil && !o.Kinds[e.Kind] {
		return notAllowed("kind", "this sender may not send %s events (its credentials allow %s)", e.Kind, kindList(o.Kinds))
	}
	e.Class = w.Class
	if e.Class == "" {
		e.Class = o.DefaultClass
	} else if len(o.Classes) > 0 && !o.Classes[e.Class] {
		return fieldErr("class", "%q is not a configured retention class", w.Class)
	}
	if o.AllowedClasses != nil && !o.AllowedClasses[e.Class] {
		how := ""
		if w.Class == "" {
			how = " (the default class)"
		}
		return notAllowed("class", "this sender may not write to retention class %q%s (its credentials allow %s)", e.Class, how, setList(o.AllowedClasses))
	}
	if w.Tenant == "" {
		return fieldErr("tenant", "is required")
	}
	if !isSlug(w.Tenant, 128) {
		return fieldErr("tenant", "%q must be 1-128 characters of A-Z a-z 0-9 . _ - starting with a letter or digit", w.Tenant)
	}
	if o.Tenants != nil && !o.Tenants[w.Tenant] {
		return notAllowed("tenant", "this sender may not write for tenant %q", w.Tenant)
	}
	e.Tenant = w.Tenant
	var err error
	if e.App, err = text("app", w.App, 128); err != nil {
		return err
	}
	if w.IP != "" {
		a, perr := netip.ParseAddr(w.IP)
		if perr != nil {
			return fieldErr("ip", "%q is not an IP address", w.IP)
		}
		// One spelling per address: IPv4-mapped IPv6 becomes IPv4 and
		// zones (meaningless off the host) are dropped.
		e.IP = a.Unmap().WithZone("")
	}
	if w.Port != nil {
		if *w.Port < 1 || *w.Port > 65535 {
			return fieldErr("port", "%d is outside 1-65535", *w.Port)
		}
		e.Port = uint16(*w.Port)
	}
	if e.Session, err = text("session", w.Session, 256); err != nil {
		return err
	}
	if e.Login, err = text("login", w.Login, 256); err != nil {
		return err
	}
	e.UserAgent = truncate(w.UserAgent, MaxUserAgent)
	if e.Action, err = text("action", w.Action, 128); err != nil {
		return err
	}
	if e.Protocol, err = text("protocol", w.Protocol, 32); err != nil {
		return err
	}
	if w.Method != "" && !isToken(w.Method, 16) {
		return fieldErr("method", "%q is not an HTTP method", w.Method)
	}
	e.Method = w.Method
	if e.Path, err = text("path", w.Path, 4096); err != nil {
		return err
	}
	if w.Status != nil {
		if *w.Status < 100 || *w.Status > 599 {
			return fieldErr("status", "%d is not an HTTP status", *w.Status)
		}
		e.Status = int(*w.Status)
	}
	if e.Repo, err = text("repo", w.Repo, 512); err != nil {
		return err
	}
	if e.Ref, err = text("ref", w.Ref, 512); err != nil {
		return err
	}
	for _, c := range []struct {
		name string
		v    string
		dst  *string
	}{{"old_commit", w.OldCommit, &e.OldCommit}, {"new_commit", w.NewCommit, &e.NewCommit}} {
		if c.v != "" && !isHex(c.v, 4, 64) {
			return fieldErr(c.name, "%q is not a 4-64 digit hexadecimal commit ID", c.v)
		}
		*c.dst = strings.ToLower(c.v)
	}
	if e.Purpose, err = text("purpose", w.Purpose, 1024); err != nil {
		return err
	}
	// Secrets are removed from every free-text member (docs/EVENTS.md §5),
	// after validation so that limits apply to what the sender sent.
	for _, m := range []*string{&e.App, &e.Session, &e.Login, &e.UserAgent, &e.Action, &e.Protocol, &e.Path, &e.Repo, &e.Ref, &e.Purpose} {
		var n int
		*m, n = redactText(*m)
		e.Redacted += n
	}
	if len(w.Attrs) > 0 && string(w.Attrs) != "null" {
		attrs, n, err := decodeAttrs(w.Attrs)
		if err != nil {
			return err
		}
		e.Attrs, e.Redacted = attrs, e.Redacted+n
	}
	return e.checkKind()
}

// checkKind enforces the members each kind must carry: what the law asks
// to keep (docs/EVENTS.md).
func (e *Event) checkKind() error {
	need := func(field string, ok bool) error {
		if !ok {
			return fieldErr(field, "is required for %s events", e.Kind)
		}
		return nil
	}
	oneOf := func(field, v string, allowed ...string) error {
		for _, a := range allowed {
			if v == a {
				return nil
			}
		}
		return fieldErr(field, "%q is not one of %s for %s events", v, strings.Join(allowed, ", "), e.Kind)
	}
	var errs []error
	switch e.Kind {
	case KindConnection:
		errs = append(errs, need("ip", e.IP.IsValid()))
	case KindLogin:
		errs = append(errs, need("action", e.Action != ""), need("login", e.Login != ""), need("ip", e.IP.IsValid()))
		if e.Action != "" {
			errs = append(errs, oneOf("action", e.Action, "success", "failure", "mfa", "logout"))
		}
	case KindSourceChange:
		errs = append(errs, need("action", e.Action != ""), need("repo", e.Repo != ""), need("login", e.Login != ""), need("protocol", e.Protocol != ""))
		if e.Action != "" {
			errs = append(errs, oneOf("action", e.Action, "create", "modify", "delete"))
		}
		if e.Protocol != "" {
			errs = append(errs, oneOf("protocol", e.Protocol, "ssh", "https"))
		}
	case KindActivity:
		errs = append(errs, need("action", e.Action != ""), need("login", e.Login != ""))
	case KindAccessAudit:
		errs = append(errs, need("action", e.Action != ""), need("login", e.Login != ""), need("purpose", e.Purpose != ""))
	}
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func checkID(id string) error {
	if len(id) > 128 {
		return fieldErr("id", "is %d characters; the limit is 128", len(id))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; !idByte[c] {
			return fieldErr("id", "%q has %q at byte %d; only A-Z a-z 0-9 - _ . : are allowed", id, c, i)
		}
	}
	return nil
}

// idByte marks the bytes an ID may hold.
var idByte = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':'
	}
	return t
}()

// text checks a free-text member: at most max bytes and no control
// characters (which would let one event forge a line in a text export).
func text(field, v string, max int) (string, error) {
	if len(v) > max {
		return "", fieldErr(field, "is %d bytes; the limit is %d", len(v), max)
	}
	// Bytes, not runes: a control character is one byte in UTF-8, and no
	// byte of a longer sequence is below 0x80.
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c == 0x7f {
			return "", fieldErr(field, "has control character %U at byte %d", rune(c), i)
		}
	}
	return v, nil
}

func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

func isSlug(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return false
		}
	}
	return true
}

func isToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '-') {
			return false
		}
	}
	return true
}

func isHex(s string, min, max int) bool {
	if len(s) < min || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func kindList(m map[Kind]bool) string {
	var out []string
	for _, k := range Kinds {
		if m[k] {
			out = append(out, string(k))
		}
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ", ")
}

func setList(m map[string]bool) string {
	out := make([]string, 0, len(m))
	for k := range m {
		if m[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return "none"
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}
