package serve

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/signed"
)

// The rights-request register (docs/EXPORTS.md §7): every request a person
// makes under their data-protection rights, from receipt to reply, kept
// for RightsDays after the reply and then deleted. Like exports, each step
// is its own signed, create-only object under _rights/<id>/ (request.json,
// reply.json, close.json), announced in the events topic first; nothing
// is under object lock, so that the sweep can delete a record on time.

// RightsPrefix is where rights requests live.
const RightsPrefix = "_rights/"

const rightsLabel = "custody rights request v1"

// RightsClass is the retention class whose days, if configured, say how
// long a rights request is kept after its reply; without it, a year.
const RightsClass = "rights"

// Rights a person may exercise.
var rightKinds = []string{"access", "rectification", "erasure", "objection", "portability", "limitation"}

// RightsRequest is one request, as the register answers it.
type RightsRequest struct {
	ID string `json:"id"`
	// Subject is whom the request is about: a login, or a tenant (an
	// organisation's account).
	SubjectLogin  string    `json:"subject_login,omitempty"`
	SubjectTenant string    `json:"subject_tenant,omitempty"`
	Right         string    `json:"right"`
	ReceivedAt    time.Time `json:"received_at"`
	// IdentityVerified says whether, and VerifiedBy how, the requester's
	// identity was checked before anything is disclosed.
	IdentityVerified bool         `json:"identity_verified"`
	VerifiedBy       string       `json:"verified_by,omitempty"`
	OpenedBy         string       `json:"opened_by"`
	OpenedAt         time.Time    `json:"opened_at"`
	Reply            *RightsReply `json:"reply,omitempty"`
	ClosedBy         string       `json:"closed_by,omitempty"`
	ClosedAt         time.Time    `json:"closed_at,omitzero"`
	// DeleteAfter is when the sweep deletes the record: the reply plus the
	// rights retention (absent until the reply).
	DeleteAfter time.Time `json:"delete_after,omitzero"`
}

// RightsReply is the answer given.
type RightsReply struct {
	At      time.Time `json:"at"`
	By      string    `json:"by"`
	Outcome string    `json:"outcome"` // granted, partly granted, refused
	Answer  string    `json:"answer"`
}

// RightsRequestBody is the body of POST /v1/requests.
type RightsRequestBody struct {
	SubjectLogin     string `json:"subject_login,omitempty"`
	SubjectTenant    string `json:"subject_tenant,omitempty"`
	Right            string `json:"right"`
	ReceivedAt       string `json:"received_at"` // RFC 3339 or a date
	IdentityVerified bool   `json:"identity_verified"`
	VerifiedBy       string `json:"verified_by,omitempty"`
}

// ReplyBody is the body of POST /v1/requests/{id}/reply.
type ReplyBody struct {
	Outcome string `json:"outcome"`
	// Answer is the text sent; for erasure and objection an empty answer
	// is filled with the legal basis and the date the data will be gone.
	Answer string `json:"answer,omitempty"`
}

// rightsObjects is what the register needs from the bucket.
type rightsObjects interface {
	caseObjects
	RemoveAll(ctx context.Context, name string) error
}

// Rights is the rights-request register. Safe for concurrent use.
type Rights struct {
	st      rightsObjects
	signer  keyring.SigningKey
	trusted *keyring.PublicKeyring
	events  announcer
	ret     archive.Retention
	now     func() time.Time
}

// NewRights is the register in st; ret gives the rights retention and,
// for erasure and objection answers, when the data will be gone.
func NewRights(st rightsObjects, signer keyring.SigningKey, trusted *keyring.PublicKeyring, events announcer, ret archive.Retention, now func() time.Time) *Rights {
	return &Rights{st: st, signer: signer, trusted: trusted, events: events, ret: ret, now: now}
}

// Days is how long a request is kept after its reply.
func (rr *Rights) Days() int {
	if c, ok := rr.ret.Class(RightsClass); ok {
		return c.Days
	}
	return 365
}

// ErrNoRequest is a rights request ID that names nothing.
var ErrNoRequest = errors.New("no such rights request")

func rightsDir(id string) string { return RightsPrefix + id + "/" }

func validRightsID(id string) bool {
	return strings.HasPrefix(id, "rr-") && len(id) == len("rr-20260101-")+8 && !strings.ContainsAny(id, "/.")
}

func (rr *Rights) write(ctx context.Context, name string, v any) error {
	b, err := signed.Encode(rightsLabel, v, rr.signer)
	if err != nil {
		return err
	}
	_, err = rr.st.Write(ctx, name, b, store.WriteOptions{})
	return err
}

func (rr *Rights) read(ctx context.Context, name string, v any) error {
	rc, err := rr.st.Get(ctx, name)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 1<<20))
	if err != nil {
		return err
	}
	if _, err := signed.Decode(b, rightsLabel, rr.trusted, v); err != nil {
		return fmt.Errorf("rights record %s: %w", name, err)
	}
	return nil
}

type rightsClose struct {
	By string    `json:"by"`
	At time.Time `json:"at"`
}

// Get reads a request and its reply and closure.
func (rr *Rights) Get(ctx context.Context, id string) (*RightsRequest, error) {
	if !validRightsID(id) {
		return nil, fmt.Errorf("rights request %q: %w", id, ErrNoRequest)
	}
	var r RightsRequest
	if err := rr.read(ctx, rightsDir(id)+"request.json", &r); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("rights request %s: %w", id, ErrNoRequest)
		}
		return nil, err
	}
	var reply RightsReply
	switch err := rr.read(ctx, rightsDir(id)+"reply.json", &reply); {
	case err == nil:
		r.Reply = &reply
		r.DeleteAfter = reply.At.AddDate(0, 0, rr.Days())
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	var cl rightsClose
	switch err := rr.read(ctx, rightsDir(id)+"close.json", &cl); {
	case err == nil:
		r.ClosedBy, r.ClosedAt = cl.By, cl.At
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	return &r, nil
}

// List returns every request in the register, oldest first.
func (rr *Rights) List(ctx context.Context) ([]RightsRequest, error) {
	out := []RightsRequest{}
	for o, err := range rr.st.List(ctx, RightsPrefix) {
		if err != nil {
			return nil, err
		}
		id, base, _ := strings.Cut(strings.TrimPrefix(o.Name, RightsPrefix), "/")
		if base != "request.json" {
			continue
		}
		r, err := rr.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b RightsRequest) int {
		return cmp.Or(a.OpenedAt.Compare(b.OpenedAt), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Open records a new request, once its event is acknowledged.
func (rr *Rights) Open(ctx context.Context, by string, b RightsRequestBody) (*RightsRequest, error) {
	if (b.SubjectLogin == "") == (b.SubjectTenant == "") {
		return nil, bad("subject_login, subject_tenant: exactly one is required: whom the request is about")
	}
	if !slices.Contains(rightKinds, b.Right) {
		return nil, bad("right: %q is not one of %s", b.Right, strings.Join(rightKinds, ", "))
	}
	received, err := parseWhen(b.ReceivedAt)
	if err != nil {
		return nil, bad("received_at: %v", err)
	}
	now := rr.now().UTC().Truncate(time.Second)
	if received.After(now) {
		return nil, bad("received_at: %s is in the future", b.ReceivedAt)
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	r := RightsRequest{ID: "rr-" + now.Format("20060102") + "-" + hex.EncodeToString(rnd[:]), SubjectLogin: b.SubjectLogin, SubjectTenant: b.SubjectTenant,
		Right: b.Right, ReceivedAt: received, IdentityVerified: b.IdentityVerified, VerifiedBy: b.VerifiedBy, OpenedBy: by, OpenedAt: now}
	if err := rr.announce(ctx, "rights.open", r.ID, by, map[string]any{"request": r.ID, "right": r.Right, "received_at": r.ReceivedAt.Format(time.RFC3339), "identity_verified": r.IdentityVerified}); err != nil {
		return nil, err
	}
	if err := rr.write(ctx, rightsDir(r.ID)+"request.json", r); err != nil {
		return nil, err
	}
	return &r, nil
}

// announce records a step in the events topic. The subject is not named
// in the event: the register holds it, and is deleted on time; the events
// topic's archive keeps the step for the security retention.
func (rr *Rights) announce(ctx context.Context, action, id, by string, attrs map[string]any) error {
	actx, cancel := context.WithTimeout(ctx, auditTimeout)
	defer cancel()
	now := rr.now().UTC()
	if err := rr.events.Announce(actx, announce.Event{Action: action, Time: now, IDParts: []string{action, id}, Login: by, Attrs: attrs}); err != nil {
		return fmt.Errorf("%w: %v", errUnrecorded, err)
	}
	return nil
}

// ErrReplied is a second reply.
var ErrReplied = errors.New("the request already has its reply")

// Reply records the answer. For erasure and objection without an answer,
// the answer is the legal basis and the date the data will be gone: the
// day the keys of today's period are shredded for the longest class.
func (rr *Rights) Reply(ctx context.Context, id, by string, b ReplyBody) (*RightsRequest, error) {
	r, err := rr.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Reply != nil {
		return nil, ErrReplied
	}
	if strings.TrimSpace(b.Outcome) == "" {
		return nil, bad("outcome: is required (granted, partly granted, refused, …)")
	}
	now := rr.now().UTC().Truncate(time.Second)
	answer := b.Answer
	if answer == "" && (r.Right == "erasure" || r.Right == "objection") {
		answer = rr.ObligationAnswer(now)
	}
	if strings.TrimSpace(answer) == "" {
		return nil, bad("answer: is required for a %s request", r.Right)
	}
	reply := RightsReply{At: now, By: by, Outcome: b.Outcome, Answer: answer}
	if err := rr.announce(ctx, "rights.reply", r.ID, by, map[string]any{"request": r.ID, "right": r.Right, "outcome": b.Outcome}); err != nil {
		return nil, err
	}
	if err := rr.write(ctx, rightsDir(r.ID)+"reply.json", reply); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, ErrReplied
		}
		return nil, err
	}
	return rr.Get(ctx, id)
}

// ObligationAnswer is the reply to an erasure or objection request
// against data under the legal retention obligation: its basis, and the
// date the last of it is gone (today's period keys shredded, for the
// longest class, after the grace).
func (rr *Rights) ObligationAnswer(now time.Time) string {
	gone := now.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1+rr.ret.MaxDays()).Add(rr.ret.Grace)
	return fmt.Sprintf("Connection data (IP address and port, user agent, logins, changes to application source code) must be kept for %d days from each event under the hosting provider's legal retention obligation, and may be used only to investigate security incidents and to answer lawful requests from authorities and your own requests; it cannot be erased or withheld before then. Each event is deleted, by destroying the keys that encrypt it, %d days after its day; everything held about you today is gone by %s.",
		rr.ret.MaxDays(), rr.ret.MaxDays(), gone.Format("2006-01-02"))
}

// Close closes a replied request.
func (rr *Rights) Close(ctx context.Context, id, by string) (*RightsRequest, error) {
	r, err := rr.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Reply == nil {
		return nil, bad("the request has no reply yet: reply first")
	}
	if !r.ClosedAt.IsZero() {
		return r, nil
	}
	now := rr.now().UTC().Truncate(time.Second)
	if err := rr.announce(ctx, "rights.close", r.ID, by, map[string]any{"request": r.ID}); err != nil {
		return nil, err
	}
	if err := rr.write(ctx, rightsDir(r.ID)+"close.json", rightsClose{By: by, At: now}); err != nil && !errors.Is(err, store.ErrExists) {
		return nil, err
	}
	return rr.Get(ctx, id)
}

// Sweep deletes every request whose reply is older than Days (every
// version of each of its objects) and returns their IDs. The request
// object goes first: a sweep cut short leaves objects without a request,
// which the next sweep deletes (no step is ever written without it).
func (rr *Rights) Sweep(ctx context.Context) ([]string, error) {
	objs := map[string][]string{}
	for o, err := range rr.st.List(ctx, RightsPrefix) {
		if err != nil {
			return nil, err
		}
		id, _, _ := strings.Cut(strings.TrimPrefix(o.Name, RightsPrefix), "/")
		objs[id] = append(objs[id], o.Name)
	}
	now := rr.now()
	var gone []string
	for _, id := range slices.Sorted(maps.Keys(objs)) {
		names := objs[id]
		if slices.Contains(names, rightsDir(id)+"request.json") {
			r, err := rr.Get(ctx, id)
			if err != nil {
				return gone, err
			}
			if r.Reply == nil || now.Before(r.DeleteAfter) {
				continue
			}
			names = slices.DeleteFunc(names, func(n string) bool { return n == rightsDir(id)+"request.json" })
			names = append([]string{rightsDir(id) + "request.json"}, names...)
		}
		for _, n := range names {
			if err := rr.st.RemoveAll(ctx, n); err != nil {
				return gone, fmt.Errorf("cannot delete rights request %s: %w", id, err)
			}
		}
		gone = append(gone, id)
	}
	return gone, nil
}

// parseWhen reads RFC 3339 or a date.
func parseWhen(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither RFC 3339 nor YYYY-MM-DD", s)
	}
	return t, nil
}
