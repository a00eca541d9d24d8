package query

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	json "github.com/segmentio/encoding/json"

	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/ingest/event"
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

// prunable reports whether a segment's header and index rule it out.
func (f *Filter) prunable(h *segment.Header, ix *segment.Index) bool {
	// Events lie in [MinTime, MaxTime]; the query wants [From, To).
	if h.MinTime.Compare(f.To) >= 0 || h.MaxTime.Before(f.From) {
		return true
	}
	if f.Kind != "" && h.Kind != f.Kind {
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

// match reports whether line passes the filter, and its time and ID.
func (f *Filter) match(line []byte, r *row) (time.Time, bool, error) {
	*r = row{}
	if _, err := json.Parse(line, r, json.ZeroCopy); err != nil {
		return time.Time{}, false, fmt.Errorf("stored event is not JSON: %v", err)
	}
	t, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("stored event %s has time %q", r.ID, r.Time)
	}
	if t.Before(f.From) || !t.Before(f.To) {
		return t, false, nil
	}
	if f.Kind != "" && r.Kind != f.Kind || f.Login != "" && r.Login != f.Login || f.Tenant != "" && r.Tenant != f.Tenant ||
		f.App != "" && r.App != f.App || f.Repo != "" && r.Repo != f.Repo || f.Session != "" && r.Session != f.Session {
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
