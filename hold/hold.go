// Package hold places and releases legal holds: a case's hold keeps every
// segment that may hold its events from deletion (S3 object legal hold)
// and readable after its period key is shredded (the data key escrowed,
// sealed to the case's own key pair), until the case is released, which
// destroys the case key with a signed receipt. docs/HOLDS.md is its
// contract.
package hold

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/signed"
	"github.com/custodylog/custody/query"
)

// Object names. The leading underscore keeps them out of every class's
// prefix (class names start with a letter) and so out of lifecycle rules.
const (
	RecordPrefix  = "_holds/records/"
	EscrowPrefix  = "_holds/keys/"
	ReceiptPrefix = "_receipts/hold/"
)

// RecordName is the register entry of a case.
func RecordName(caseRef string) string { return RecordPrefix + caseRef + ".json" }

// EscrowName is where a held segment's data key is escrowed for a case.
func EscrowName(caseRef, segmentName string) string {
	return EscrowPrefix + caseRef + "/" + segmentName + ".key"
}

// ReceiptName is the release receipt of a case.
func ReceiptName(caseRef string) string { return ReceiptPrefix + caseRef + ".json" }

// Status of a hold in its record.
const (
	Active    = "active"
	Releasing = "releasing"
	Released  = "released"
)

// Record is a case's entry in the register: what the hold covers, and
// where it stands. It is signed (label "custody hold record v1").
type Record struct {
	Version int       `json:"version"`
	Case    string    `json:"case"`
	Status  string    `json:"status"`
	From    time.Time `json:"from"`
	To      time.Time `json:"to"`
	Tenant  string    `json:"tenant,omitempty"`
	Login   string    `json:"login,omitempty"`
	IP      string    `json:"ip,omitempty"`
	// HoldKey is the case's public key (the suite's encoding): anyone may
	// escrow a data key to it; only the reader's hold keyring opens it.
	HoldKey    []byte    `json:"hold_key"`
	PlacedAt   time.Time `json:"placed_at"`
	PlacedBy   string    `json:"placed_by"`
	SweptAt    time.Time `json:"swept_at,omitzero"`
	Held       int       `json:"held"`     // segments under legal hold after the last sweep
	Escrowed   int       `json:"escrowed"` // of which format v2, their data keys escrowed
	ReleasedAt time.Time `json:"released_at,omitzero"`
}

const recordLabel = "custody hold record v1"

// Spec is what a hold covers: events in [From, To) that match every
// member given, in every retention class and kind.
type Spec struct {
	Case          string
	From, To      time.Time
	Tenant, Login string
	IP            *netip.Prefix
}

func (s Spec) ip() string {
	if s.IP == nil {
		return ""
	}
	return s.IP.String()
}

// Validate checks the case reference and the range.
func (s Spec) Validate() error {
	if err := keyring.ValidCase(s.Case); err != nil {
		return err
	}
	f := query.Filter{From: s.From, To: s.To}
	return f.Validate()
}

// filter is the query filter of a record: a hold covers a segment exactly
// when a query with that filter would read it.
func (r *Record) filter() (query.Filter, error) {
	f := query.Filter{From: r.From, To: r.To, Tenant: r.Tenant, Login: r.Login}
	if r.IP != "" {
		p, err := query.ParseIP(r.IP)
		if err != nil {
			return f, fmt.Errorf("hold %s: ip: %v", r.Case, err)
		}
		f.IP = &p
	}
	return f, nil
}

func (r *Record) same(s Spec) bool {
	return r.From.Equal(s.From) && r.To.Equal(s.To) && r.Tenant == s.Tenant && r.Login == s.Login && r.IP == s.ip()
}

// Describe renders what the hold covers, as the place command's flags.
func (r *Record) Describe() string {
	var b strings.Builder
	fmt.Fprintf(&b, "--from %s --to %s", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339))
	for _, f := range []struct{ flag, v string }{{"tenant", r.Tenant}, {"login", r.Login}, {"ip", r.IP}} {
		if f.v != "" {
			fmt.Fprintf(&b, " --%s %s", f.flag, f.v)
		}
	}
	return b.String()
}

// Escrow is the content of an escrow object: a held segment's data key,
// sealed with HPKE to the case's public key, info
// "custody hold escrow v1" ‖ 0x00 ‖ case ‖ 0x00 ‖ segment name. A format
// v1 segment (whose monthly key is never shredded) has no sealed key: the
// object only records that the case holds it.
type Escrow struct {
	Version        int    `json:"version"`
	Case           string `json:"case"`
	Segment        string `json:"segment"`
	SegmentVersion string `json:"segment_version,omitempty"`
	SegmentSize    int64  `json:"segment_size"`
	KeyID          string `json:"key_id"`
	SealedKey      []byte `json:"sealed_key,omitempty"`
}

func escrowInfo(caseRef, segmentName string) []byte {
	return []byte("custody hold escrow v1\x00" + caseRef + "\x00" + segmentName)
}

// ReleaseReceipt is what a release receipt says (label
// "custody hold release receipt v1").
type ReleaseReceipt struct {
	Version    int       `json:"version"`
	Kind       string    `json:"kind"` // "hold-release"
	Case       string    `json:"case"`
	HoldKeyID  string    `json:"hold_key_id"`
	From       time.Time `json:"from"`
	To         time.Time `json:"to"`
	PlacedAt   time.Time `json:"placed_at"`
	ReleasedAt time.Time `json:"released_at"`
	Runner     string    `json:"runner"`
}

const receiptLabel = "custody hold release receipt v1"

// ParseReceipt checks a release receipt's signature and returns it.
func ParseReceipt(b []byte, trusted *keyring.PublicKeyring) (ReleaseReceipt, error) {
	var r ReleaseReceipt
	if _, err := signed.Decode(b, receiptLabel, trusted, &r); err != nil {
		return ReleaseReceipt{}, fmt.Errorf("hold release receipt: %w", err)
	}
	return r, nil
}

// objects is what holds need from the bucket.
type objects interface {
	List(ctx context.Context, prefix string) iter.Seq2[store.Object, error]
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	GetRange(ctx context.Context, name string, off, length int64) (io.ReadCloser, error)
	GetVersionRange(ctx context.Context, name, version string, off, length int64) (io.ReadCloser, error)
	Stat(ctx context.Context, name string) (store.Object, error)
	Write(ctx context.Context, name string, b []byte, o store.WriteOptions) (string, error)
	SetLegalHold(ctx context.Context, name, version string, on bool) error
	RemoveAll(ctx context.Context, name string) error
}

// announcer sends hold.place and hold.release events.
type announcer interface {
	Announce(ctx context.Context, e announce.Event) error
}

// maxSmall bounds what is read of records, escrow objects and receipts.
const maxSmall = 64 << 10

// getter is what reading one small object needs.
type getter interface {
	Get(ctx context.Context, name string) (io.ReadCloser, error)
}

func readSmall(ctx context.Context, st getter, name string) ([]byte, error) {
	rc, err := st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxSmall+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", name, err)
	}
	if len(b) > maxSmall {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxSmall)
	}
	return b, nil
}

// ReadRecord reads and verifies a case's record; a case never placed is
// (nil, nil).
func ReadRecord(ctx context.Context, st getter, trusted *keyring.PublicKeyring, caseRef string) (*Record, error) {
	b, err := readSmall(ctx, st, RecordName(caseRef))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r Record
	if _, err := signed.Decode(b, recordLabel, trusted, &r); err != nil {
		return nil, fmt.Errorf("hold record %s: %w", RecordName(caseRef), err)
	}
	if r.Case != caseRef {
		return nil, fmt.Errorf("hold record %s names case %q", RecordName(caseRef), r.Case)
	}
	return &r, nil
}

// Records reads and verifies every record in the register, in case order.
// A record that does not verify is an error naming it: what it covers is
// then unknown.
func Records(ctx context.Context, st interface {
	getter
	List(ctx context.Context, prefix string) iter.Seq2[store.Object, error]
}, trusted *keyring.PublicKeyring) ([]Record, error) {
	var out []Record
	for o, err := range st.List(ctx, RecordPrefix) {
		if err != nil {
			return nil, err
		}
		r, err := ReadRecord(ctx, st, trusted, strings.TrimSuffix(strings.TrimPrefix(o.Name, RecordPrefix), ".json"))
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, *r)
		}
	}
	return out, nil
}

// Keeps reports whether the hold, unless released, covers part of
// [start, end).
func (r *Record) Keeps(start, end time.Time) bool {
	return r.Status != Released && r.From.Before(end) && start.Before(r.To)
}

// readEscrow reads and checks an escrow object; absent is (nil, nil).
func readEscrow(ctx context.Context, st objects, caseRef, segmentName string) (*Escrow, error) {
	name := EscrowName(caseRef, segmentName)
	b, err := readSmall(ctx, st, name)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e, err := parseEscrow(b, caseRef, segmentName)
	if err != nil {
		return nil, fmt.Errorf("escrow %s: %w", name, err)
	}
	return e, nil
}

// parseEscrow decodes an escrow object that must be the case's escrow of
// the segment (its name says so; a copy under another name is refused).
func parseEscrow(b []byte, caseRef, segmentName string) (*Escrow, error) {
	var e Escrow
	if err := jsonStrict(b, &e); err != nil {
		return nil, err
	}
	if e.Version != 1 || e.Case != caseRef || e.Segment != segmentName {
		return nil, fmt.Errorf("version %d, case %q, segment %q do not match its name", e.Version, e.Case, e.Segment)
	}
	if len(e.SealedKey) > 4096 {
		return nil, fmt.Errorf("sealed_key is %d bytes", len(e.SealedKey))
	}
	return &e, nil
}

// Vault gives the query engine (query.UseEscrow) what holds keep: the
// escrowed data key of a segment whose period key is gone, and the held
// segments that lifecycle has hidden behind a delete marker. Safe for
// concurrent use.
type Vault struct {
	st      objects
	holds   *keyring.HoldKeyring
	trusted *keyring.PublicKeyring

	once   sync.Once
	ranges map[string][2]time.Time // case -> [from, to); absent: unknown, so everything
}

// NewVault reads escrow objects from st with the reader's hold keyring;
// trusted checks the records that say what each hold covers.
func NewVault(st objects, holds *keyring.HoldKeyring, trusted *keyring.PublicKeyring) *Vault {
	return &Vault{st: st, holds: holds, trusted: trusted}
}

// covers reports whether a case's hold may cover the hour.
func (v *Vault) covers(ctx context.Context, caseRef string, hour time.Time) bool {
	v.once.Do(func() {
		v.ranges = map[string][2]time.Time{}
		for _, c := range v.holds.Cases() {
			if r, err := ReadRecord(ctx, v.st, v.trusted, c); err == nil && r != nil {
				v.ranges[c] = [2]time.Time{r.From.Truncate(time.Hour), r.To}
			}
		}
	})
	r, ok := v.ranges[caseRef]
	return !ok || (!hour.Before(r[0]) && hour.Before(r[1]))
}

// Held lists the segments under a segment hour prefix
// (segment.HourPrefix) that a case under hold escrowed and that are not
// listed (lifecycle hid them), with the version and size each escrow
// names.
func (v *Vault) Held(ctx context.Context, prefix string, hour time.Time, listed func(name string) bool) ([]store.Object, error) {
	var out []store.Object
	for _, c := range v.holds.Cases() {
		if !v.covers(ctx, c, hour) {
			continue
		}
		base := EscrowPrefix + c + "/"
		for o, err := range v.st.List(ctx, base+prefix) {
			if err != nil {
				return nil, err
			}
			seg := strings.TrimSuffix(strings.TrimPrefix(o.Name, base), ".key")
			if listed(seg) {
				continue
			}
			e, err := readEscrow(ctx, v.st, c, seg)
			if err != nil {
				return nil, err
			}
			if e != nil && e.SegmentVersion != "" {
				out = append(out, store.Object{Name: seg, Size: e.SegmentSize, Version: e.SegmentVersion})
			}
		}
	}
	return out, nil
}

// GetVersionRange reads a held segment by version.
func (v *Vault) GetVersionRange(ctx context.Context, name, version string, off, length int64) (io.ReadCloser, error) {
	return v.st.GetVersionRange(ctx, name, version, off, length)
}

// DataKey returns the escrowed data key of a segment, if a case under hold
// escrowed it. A wrong key is not detected here but by the segment's
// index, which does not authenticate under it.
func (v *Vault) DataKey(ctx context.Context, segmentName string) ([]byte, bool, error) {
	for _, c := range v.holds.Cases() {
		e, err := readEscrow(ctx, v.st, c, segmentName)
		if err != nil {
			return nil, false, err
		}
		if e == nil || len(e.SealedKey) == 0 {
			continue
		}
		dek, err := v.holds.Open(c, escrowInfo(c, segmentName), e.SealedKey)
		if err != nil {
			return nil, false, fmt.Errorf("escrow %s does not open: %w", EscrowName(c, segmentName), err)
		}
		return dek, true, nil
	}
	return nil, false, nil
}

// capture records the data key segment.Open obtained: once Open returns
// without error, the index has authenticated under it, so it is the
// segment's.
type capture struct {
	keyring.Set
	dek []byte
}

func (c *capture) OpenKey(id string, info, sealed []byte) ([]byte, error) {
	dek, err := c.Set.OpenKey(id, info, sealed)
	if err == nil {
		c.dek = bytes.Clone(dek)
	}
	return dek, err
}

// eachHour visits, per class and hour in [from, to), each segment prefix
// of the hour (segment.HourPrefixes: each kind's and that of segments of
// every kind) and the segments listed under it.
func eachHour(ctx context.Context, st objects, classes []string, from, to time.Time, visit func(prefix string, objs []store.Object) error) error {
	kinds := make([]string, len(event.Kinds))
	for i, k := range event.Kinds {
		kinds[i] = string(k)
	}
	for h := from.UTC().Truncate(time.Hour); h.Before(to); h = h.Add(time.Hour) {
		for _, c := range classes {
			for _, prefix := range segment.HourPrefixes(c, kinds, h) {
				var objs []store.Object
				for o, err := range st.List(ctx, prefix) {
					if err != nil {
						return err
					}
					objs = append(objs, o)
				}
				if len(objs) == 0 {
					continue
				}
				if err := visit(prefix, objs); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// sealedEscrowSize is the smallest escrow object that carries a sealed
// key: the key alone is 1,168 bytes, 1,560 in base64; one without (a
// format v1 segment's) is a few hundred bytes.
const sealedEscrowSize = 1560

// escrowed lists the case's escrow objects under a segment prefix, by
// segment name, with whether each carries a sealed key: one LIST instead
// of a GET per segment.
func escrowed(ctx context.Context, st objects, caseRef, prefix string) (map[string]bool, error) {
	base := EscrowPrefix + caseRef + "/"
	out := map[string]bool{}
	for o, err := range st.List(ctx, base+prefix) {
		if err != nil {
			return nil, err
		}
		out[strings.TrimSuffix(strings.TrimPrefix(o.Name, base), ".key")] = o.Size >= sealedEscrowSize
	}
	return out, nil
}
