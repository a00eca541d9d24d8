// Package event is Custody's event schema v1: the Go type, its one
// canonical JSON encoding, decoding with validation and redaction, and
// event IDs. docs/EVENTS.md documents every field.
package event

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"time"
)

// Version is the schema version written in every event's "v".
const Version = 1

// Kind is the type of an event.
type Kind string

const (
	KindConnection   Kind = "connection"
	KindLogin        Kind = "login"
	KindSourceChange Kind = "source_change"
	KindActivity     Kind = "activity"
	KindAccessAudit  Kind = "access_audit"
)

// Kinds lists every kind, in documentation order.
var Kinds = []Kind{KindConnection, KindLogin, KindSourceChange, KindActivity, KindAccessAudit}

// Event is one security event. Field order here is the canonical JSON
// order; see AppendJSON.
type Event struct {
	ID     string
	Time   time.Time // UTC, nanoseconds
	Kind   Kind
	Class  string // retention class; ingest fills the default
	Tenant string
	App    string
	// Source is the authenticated origin (the ingest token's name, or the
	// agent's configured name); set by Custody, never by the sender.
	Source string
	// Received is when Custody first accepted the event; set by Custody.
	Received time.Time
	// Late marks an event older than ingest.late_after when received.
	Late bool
	// Redacted counts attributes or values removed because they looked
	// like passwords, secrets, tokens, cookies or keys.
	Redacted  int
	IP        netip.Addr
	Port      uint16
	Session   string
	Login     string
	UserAgent string
	Action    string
	Protocol  string
	Method    string
	Path      string
	Status    int
	Repo      string
	Ref       string
	OldCommit string
	NewCommit string
	Purpose   string
	// Attrs are free-form attributes, already redacted. Values are
	// string, bool, json.Number, []any or map[string]any.
	Attrs map[string]any
}

// DeriveID returns a UUIDv7-formatted event ID whose 48-bit timestamp is
// t in milliseconds and whose 74 "random" bits are taken from SHA-256 of
// parts. The same inputs always give the same ID, which is what makes IDs
// stable across retries and restarts: an agent derives them from the file
// and offset of a line, ingest from the sender and the raw line, the git
// hook from the ref update.
func DeriveID(t time.Time, parts ...[]byte) string {
	h := sha256.New()
	var n [8]byte
	for _, p := range parts {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		h.Write(p)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	var u [16]byte
	ms := uint64(t.UnixMilli())
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	copy(u[6:], sum[:10])
	u[6] = 0x70 | u[6]&0x0f // version 7
	u[8] = 0x80 | u[8]&0x3f // RFC 9562 variant
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}
