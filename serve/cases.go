package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"sort"
	"strings"
	"time"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/signed"
)

// Cases live in the bucket, so that every `custody serve` behind a load
// balancer shares them and they survive restarts: one signed object per
// case, _cases/<id>.json, written create-only when the case opens and
// replaced when it closes (the versioned bucket keeps both). Each change
// is also announced in the events topic (case.open, case.close) before the
// object is written, so the archive holds the cases' history too.

// CasePrefix is where case records live.
const CasePrefix = "_cases/"

// CaseName is the object of a case.
func CaseName(id string) string { return CasePrefix + id + ".json" }

const caseLabel = "custody case v1"

// Case is a legal case or investigation that reads are bound to.
type Case struct {
	ID         string    `json:"id"`
	Title      string    `json:"title"`
	LegalBasis string    `json:"legal_basis"`
	Authority  string    `json:"authority,omitempty"` // the requesting authority, if any
	OpenedBy   string    `json:"opened_by"`
	OpenedAt   time.Time `json:"opened_at"`
	ClosedBy   string    `json:"closed_by,omitempty"`
	ClosedAt   time.Time `json:"closed_at,omitzero"`
}

// Open reports whether the case is open.
func (c *Case) Open() bool { return c.ClosedAt.IsZero() }

// caseObjects is what cases need from the bucket.
type caseObjects interface {
	List(ctx context.Context, prefix string) iter.Seq2[store.Object, error]
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	Write(ctx context.Context, name string, b []byte, o store.WriteOptions) (string, error)
}

// announcer writes to the events topic and returns once Kafka has
// acknowledged (acks=all).
type announcer interface {
	Announce(ctx context.Context, e announce.Event) error
}

// Cases is the case register. Safe for concurrent use.
type Cases struct {
	st      caseObjects
	signer  keyring.SigningKey
	trusted *keyring.PublicKeyring
	events  announcer
	now     func() time.Time
}

// NewCases is the register in st: records signed by signer and checked
// against trusted, changes announced through events.
func NewCases(st caseObjects, signer keyring.SigningKey, trusted *keyring.PublicKeyring, events announcer, now func() time.Time) *Cases {
	return &Cases{st: st, signer: signer, trusted: trusted, events: events, now: now}
}

// ErrNoCase and ErrCaseExists are the register's refusals.
var (
	ErrNoCase     = errors.New("no such case")
	ErrCaseExists = errors.New("a case with this ID already exists")
)

// Get reads and verifies a case.
func (cs *Cases) Get(ctx context.Context, id string) (*Case, error) {
	if keyring.ValidCase(id) != nil {
		return nil, fmt.Errorf("case %q: %w", id, ErrNoCase)
	}
	rc, err := cs.st.Get(ctx, CaseName(id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("case %q: %w", id, ErrNoCase)
	}
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
	if err != nil {
		return nil, err
	}
	var c Case
	if _, err := signed.Decode(b, caseLabel, cs.trusted, &c); err != nil {
		return nil, fmt.Errorf("case record %s: %w", CaseName(id), err)
	}
	if c.ID != id {
		return nil, fmt.Errorf("case record %s names case %q", CaseName(id), c.ID)
	}
	return &c, nil
}

// List returns every case, by ID.
func (cs *Cases) List(ctx context.Context) ([]Case, error) {
	var out []Case
	for o, err := range cs.st.List(ctx, CasePrefix) {
		if err != nil {
			return nil, err
		}
		c, err := cs.Get(ctx, strings.TrimSuffix(strings.TrimPrefix(o.Name, CasePrefix), ".json"))
		if err != nil {
			return nil, err
		}
		out = append(out, *c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Create opens a case. The case.open event is acknowledged before the
// record is written: a case never exists without its event.
func (cs *Cases) Create(ctx context.Context, c Case) (*Case, error) {
	if err := keyring.ValidCase(c.ID); err != nil {
		return nil, &requestError{400, "id: " + err.Error()}
	}
	if strings.TrimSpace(c.Title) == "" || strings.TrimSpace(c.LegalBasis) == "" {
		return nil, &requestError{400, "title and legal_basis are required"}
	}
	if _, err := cs.Get(ctx, c.ID); err == nil {
		return nil, fmt.Errorf("case %s: %w", c.ID, ErrCaseExists)
	} else if !errors.Is(err, ErrNoCase) {
		return nil, err
	}
	c.OpenedAt, c.ClosedAt, c.ClosedBy = cs.now().UTC().Truncate(time.Second), time.Time{}, ""
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := cs.events.Announce(actx, announce.Event{Action: "case.open", Time: c.OpenedAt, IDParts: []string{"case.open", c.ID}, Login: c.OpenedBy,
		Attrs: map[string]any{"case": c.ID, "title": c.Title, "legal_basis": c.LegalBasis, "authority": c.Authority}}); err != nil {
		return nil, fmt.Errorf("%w: %v", errUnrecorded, err)
	}
	b, err := signed.Encode(caseLabel, c, cs.signer)
	if err != nil {
		return nil, err
	}
	if _, err := cs.st.Write(ctx, CaseName(c.ID), b, store.WriteOptions{}); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("case %s: %w", c.ID, ErrCaseExists)
		}
		return nil, err
	}
	return &c, nil
}

// Close closes a case: no read is bound to it from then on.
func (cs *Cases) Close(ctx context.Context, id, by string) (*Case, error) {
	c, err := cs.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if !c.Open() {
		return c, nil
	}
	c.ClosedAt, c.ClosedBy = cs.now().UTC().Truncate(time.Second), by
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	if err := cs.events.Announce(actx, announce.Event{Action: "case.close", Time: c.ClosedAt, IDParts: []string{"case.close", c.ID}, Login: by,
		Attrs: map[string]any{"case": c.ID}}); err != nil {
		return nil, fmt.Errorf("%w: %v", errUnrecorded, err)
	}
	b, err := signed.Encode(caseLabel, c, cs.signer)
	if err != nil {
		return nil, err
	}
	if _, err := cs.st.Write(ctx, CaseName(c.ID), b, store.WriteOptions{Overwrite: true}); err != nil {
		return nil, err
	}
	return c, nil
}
