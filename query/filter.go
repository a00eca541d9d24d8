package query

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unsafe"

	json "github.com/segmentio/encoding/json"

	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/event"
)

// Filter is what an investigator asks for. Empty members match anything.
// From is inclusive, To exclusive.
type Filter struct {
	From, To time.Time
	// IP is an address (as a /32 or /128) or a CIDR prefix.
	IP      *netip.Prefix
	Login   string
	Kind    string
	Tenant  string
	App     string
	Repo    string
	Session string
	// Tenants, when set, is the reader's tenant scope: only events of
	// these tenants match, whatever Tenant says. custody serve sets it
	// from the identity, server-side.
	Tenants []string
	// NotKinds are kinds never read (custody serve keeps access_audit
	// events, the access log, out of event queries).
	NotKinds []string
}

// ParseTime reads RFC 3339 or a date (YYYY-MM-DD, midnight UTC). With end
// set, a date means the end of that day, so --to 2026-11-03 includes the 3rd.
func ParseTime(s string, end bool) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 (2026-11-29T05:00:00Z) nor a date (2026-11-29)", s)
	}
	if end {
		t = t.AddDate(0, 0, 1)
	}
	return t, nil
}

// ParseIP reads an address or a CIDR prefix, normalised like ingest does.
func ParseIP(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("%q is an IPv4-mapped prefix shorter than ::ffff:0:0/96", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
	}
	a = a.Unmap().WithZone("")
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// Validate checks the range and members.
func (f *Filter) Validate() error {
	if f.From.IsZero() || f.To.IsZero() {
		return errors.New("--from and --to are required")
	}
	if !f.From.Before(f.To) {
		return fmt.Errorf("--from %s is not before --to %s", f.From.Format(time.RFC3339), f.To.Format(time.RFC3339))
	}
	if f.Kind != "" {
		ok := false
		for _, k := range event.Kinds {
			ok = ok || string(k) == f.Kind
		}
		if !ok {
			return fmt.Errorf("--kind %q is not one of connection, login, source_change, activity, access_audit", f.Kind)
		}
	}
	return nil
}

// keepsAKind reports whether a segment holds a kind f does not exclude.
func (f *Filter) keepsAKind(h *segment.Header) bool {
	if h.Kind != "" {
		return !slices.Contains(f.NotKinds, h.Kind)
	}
	for k := range h.Kinds {
		if !slices.Contains(f.NotKinds, k) {
			return true
		}
	}
	return false
}

// RulesOut reports whether a segment's header and index rule it out: no
// event in it can match.
func (f *Filter) RulesOut(h *segment.Header, ix *segment.Index) bool {
	// Events lie in [MinTime, MaxTime]; the query wants [From, To).
	if h.MinTime.Compare(f.To) >= 0 || h.MaxTime.Before(f.From) {
		return true
	}
	if f.Kind != "" && !h.Has(f.Kind) {
		return true
	}
	if len(f.NotKinds) > 0 && !f.keepsAKind(h) {
		return true
	}
	for _, c := range []struct {
		field segment.Field
		v     string
	}{{segment.FieldLogin, f.Login}, {segment.FieldTenant, f.Tenant}, {segment.FieldApp, f.App}, {segment.FieldRepo, f.Repo}, {segment.FieldSession, f.Session}} {
		if c.v != "" && !ix.MayContain(c.field, c.v) {
			return true
		}
	}
	if len(f.Tenants) > 0 && !slices.ContainsFunc(f.Tenants, func(t string) bool { return ix.MayContain(segment.FieldTenant, t) }) {
		return true
	}
	if f.IP != nil {
		p := *f.IP
		if p.Bits() == p.Addr().BitLen() {
			return !ix.MayContain(segment.FieldIP, p.Addr().String())
		}
		return !ix.MayContainPrefix(p)
	}
	return false
}

// row is the part of a stored event the filter and the ordering need.
// Strings point into the line (zero-copy parse).
type row struct {
	ID      string `json:"id"`
	Time    string `json:"time"`
	Kind    string `json:"kind"`
	Tenant  string `json:"tenant"`
	App     string `json:"app"`
	IP      string `json:"ip"`
	Login   string `json:"login"`
	Session string `json:"session"`
	Repo    string `json:"repo"`
}

// canonicalPrefix starts every event Custody stores (docs/EVENTS.md §6).
var canonicalPrefix = []byte(`{"v":1,`)

// fastRow reads the members of a canonical line in one pass instead of
// parsing it as general JSON. It relies on the canonical form
// (docs/EVENTS.md §6): a flat object of strings, numbers and booleans with
// "attrs", the only nested member, last. It stops at "attrs", and gives up
// (ok false, the caller parses the line) on anything else, such as a
// string holding an escape.
func fastRow(line []byte, r *row) bool {
	if !bytes.HasPrefix(line, canonicalPrefix) {
		return false
	}
	p := len(canonicalPrefix)
	for p < len(line) {
		if line[p] != '"' {
			return false
		}
		k := bytes.IndexByte(line[p+1:], '"')
		if k < 0 || p+k+3 >= len(line) || line[p+k+2] != ':' {
			return false
		}
		name := line[p+1 : p+1+k]
		p += k + 3
		if string(name) == "attrs" {
			return true
		}
		if line[p] == '"' {
			e := bytes.IndexByte(line[p+1:], '"')
			if e < 0 {
				return false
			}
			v := line[p+1 : p+1+e]
			if bytes.IndexByte(v, '\\') >= 0 {
				return false
			}
			switch string(name) {
			case "id":
				r.ID = unsafeString(v)
			case "time":
				r.Time = unsafeString(v)
			case "kind":
				r.Kind = unsafeString(v)
			case "tenant":
				r.Tenant = unsafeString(v)
			case "app":
				r.App = unsafeString(v)
			case "ip":
				r.IP = unsafeString(v)
			case "login":
				r.Login = unsafeString(v)
			case "session":
				r.Session = unsafeString(v)
			case "repo":
				r.Repo = unsafeString(v)
			}
			p += e + 2
		} else {
			// A number or a boolean: up to the next separator.
			e := bytes.IndexAny(line[p:], ",}")
			if e < 0 {
				return false
			}
			p += e
		}
		switch {
		case p < len(line) && line[p] == ',':
			p++
		case p == len(line)-1 && line[p] == '}':
			return true
		default:
			return false
		}
	}
	return false
}

// unsafeString views b as a string without copying; the caller must not
// keep it beyond b's lifetime (fastRow's results are used, then dropped).
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// match reports whether line passes the filter, and its time and ID. The
// row's strings point into line.
func (f *Filter) match(line []byte, r *row) (time.Time, bool, error) {
	*r = row{}
	if !fastRow(line, r) {
		*r = row{}
		if _, err := json.Parse(line, r, json.ZeroCopy); err != nil {
			return time.Time{}, false, fmt.Errorf("stored event is not JSON: %v", err)
		}
	}
	return f.matchRow(r)
}

// rowColumn is a member matchRow reads, for a columnar reader: its key,
// whether the filter needs it, and the row field it sets.
type rowColumn struct {
	key   string
	field func(*row) *string
}

// columns are the members matchRow reads of a row with this filter (time,
// kind and tenant always: the range, NotKinds and the tenant scope). The
// ID is read from the lines that match.
func (f *Filter) columns() []rowColumn {
	all := []struct {
		c    rowColumn
		need bool
	}{
		{rowColumn{"time", func(r *row) *string { return &r.Time }}, true},
		{rowColumn{"kind", func(r *row) *string { return &r.Kind }}, true},
		{rowColumn{"tenant", func(r *row) *string { return &r.Tenant }}, true},
		{rowColumn{"ip", func(r *row) *string { return &r.IP }}, f.IP != nil},
		{rowColumn{"login", func(r *row) *string { return &r.Login }}, f.Login != ""},
		{rowColumn{"app", func(r *row) *string { return &r.App }}, f.App != ""},
		{rowColumn{"repo", func(r *row) *string { return &r.Repo }}, f.Repo != ""},
		{rowColumn{"session", func(r *row) *string { return &r.Session }}, f.Session != ""},
	}
	var cols []rowColumn
	for _, c := range all {
		if c.need {
			cols = append(cols, c.c)
		}
	}
	return cols
}

// set sets the column's row field to a string value's JSON text v (nil:
// the row lacks the member), false when v is not a string without
// escapes (the caller then parses the whole line).
func (c rowColumn) set(r *row, v []byte) bool {
	if v == nil {
		return true
	}
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || bytes.IndexByte(v, '\\') >= 0 {
		return false
	}
	*c.field(r) = unsafeString(v[1 : len(v)-1])
	return true
}

// matchRow is match for a row already read.
func (f *Filter) matchRow(r *row) (time.Time, bool, error) {
	t, err := event.ParseTime(r.Time)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("stored event %s has time %q", r.ID, r.Time)
	}
	if t.Before(f.From) || !t.Before(f.To) {
		return t, false, nil
	}
	if f.Kind != "" && r.Kind != f.Kind || len(f.NotKinds) > 0 && slices.Contains(f.NotKinds, r.Kind) || f.Login != "" && r.Login != f.Login || f.Tenant != "" && r.Tenant != f.Tenant ||
		f.App != "" && r.App != f.App || f.Repo != "" && r.Repo != f.Repo || f.Session != "" && r.Session != f.Session ||
		len(f.Tenants) > 0 && !slices.Contains(f.Tenants, r.Tenant) {
		return t, false, nil
	}
	if f.IP != nil {
		a, err := netip.ParseAddr(r.IP)
		if err != nil || !f.IP.Contains(a) {
			return t, false, nil
		}
	}
	return t, true, nil
}
