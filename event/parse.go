package event

import (
	"bytes"
	"fmt"
	"net/netip"
	"time"

	json "github.com/segmentio/encoding/json"
)

// stored is the canonical JSON as Custody writes it, Custody's own
// members included.
type stored struct {
	wire
	Source   string `json:"source"`
	Received string `json:"received"`
	Late     bool   `json:"late"`
	Redacted int    `json:"redacted"`
}

// Parse reads one event in canonical form, as stored in Kafka and in the
// archive. Unlike Decode it trusts Custody's own members and applies no
// limits, redaction or stamping: it reads back what Custody wrote.
func Parse(line []byte) (*Event, error) {
	var s stored
	if _, err := json.Parse(bytes.TrimRight(line, "\n"), &s, json.DisallowUnknownFields|json.DontMatchCaseInsensitiveStructFields|json.UseNumber); err != nil {
		return nil, jsonError(line, err)
	}
	e := &Event{
		ID: s.ID, Kind: Kind(s.Kind), Class: s.Class, Tenant: s.Tenant, App: s.App, Source: s.Source,
		Late: s.Late, Redacted: s.Redacted, Session: s.Session, Login: s.Login, UserAgent: s.UserAgent,
		Action: s.Action, Protocol: s.Protocol, Method: s.Method, Path: s.Path, Repo: s.Repo, Ref: s.Ref,
		OldCommit: s.OldCommit, NewCommit: s.NewCommit, Purpose: s.Purpose,
	}
	var err error
	if s.V == nil || *s.V != Version {
		return nil, fieldErr("v", "missing or not %d", Version)
	}
	if e.Time, err = time.Parse(time.RFC3339Nano, s.Time); err != nil {
		return nil, fieldErr("time", "%q is not an RFC 3339 time", s.Time)
	}
	if s.Received != "" {
		if e.Received, err = time.Parse(time.RFC3339Nano, s.Received); err != nil {
			return nil, fieldErr("received", "%q is not an RFC 3339 time", s.Received)
		}
	}
	if s.IP != "" {
		if e.IP, err = netip.ParseAddr(s.IP); err != nil {
			return nil, fieldErr("ip", "%q is not an IP address", s.IP)
		}
	}
	if s.Port != nil {
		e.Port = uint16(*s.Port)
	}
	if s.Status != nil {
		e.Status = int(*s.Status)
	}
	if len(s.Attrs) > 0 {
		if _, err := json.Parse(s.Attrs, &e.Attrs, json.UseNumber); err != nil {
			return nil, fieldErr("attrs", "%v", err)
		}
	}
	if e.ID == "" || e.Kind == "" || e.Tenant == "" {
		return nil, fmt.Errorf("canonical event lacks id, kind or tenant")
	}
	return e, nil
}
