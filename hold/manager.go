package hold

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/signed"
	"github.com/custodylog/custody/query"
)

func jsonStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// Manager places and releases holds. It runs where the private keyring is
// (only the reader can open the data keys it escrows). Operations on one
// case must not run concurrently; every step is idempotent, so a run
// interrupted anywhere is completed by running the same command again.
type Manager struct {
	Store objects
	// Keys are the reader's private and public keyrings.
	Keys       keyring.Set
	HoldPath   string        // the hold keyring file
	Passphrase secret.String // seals the hold keyring, as the private one
	Signer     keyring.SigningKey
	Classes    []string
	LockMode   string // the retention mode, for release receipts
	Events     announcer
	// MaxSegmentBytes bounds a segment's plaintext, as the query does.
	MaxSegmentBytes int64
	// Concurrency is how many segments are examined at once (default 4).
	Concurrency int
	Now         func() time.Time
	// Crash, if set, is called after each step with its name: the kill -9
	// tests stop the process there.
	Crash func(step string)
}

func (m *Manager) crash(step string) {
	if m.Crash != nil {
		m.Crash(step)
	}
}

func (m *Manager) writeRecord(ctx context.Context, r *Record) error {
	b, err := signed.Encode(recordLabel, r, m.Signer)
	if err != nil {
		return err
	}
	// Not create-only: the record is updated in place (the bucket keeps
	// every version). Not under legal hold: it is signed, and the hold
	// keyring, not the record, says which holds are in force.
	_, err = m.Store.Write(ctx, RecordName(r.Case), b, store.WriteOptions{Overwrite: true})
	return err
}

// PlaceReport is what Place did.
type PlaceReport struct {
	Record   Record
	Resumed  bool     // the case was already under hold: a sweep for what is new
	Held     int      // segments under legal hold now
	Escrowed int      // of which format v2, data key escrowed
	New      int      // put under hold by this run
	Pruned   int      // in the range, ruled out by their index
	Shredded []string // in the range, period key already destroyed: deleted, cannot be held
	Failed   []string // could not be read: "<name>: <why>"
}

// Place puts the case under hold, or, for a case already under hold,
// sweeps again for segments written since (spec may then give only the
// case). Steps: the case key pair (hold keyring), the record (status
// active), then per covered segment its legal hold and its escrow object,
// then the record's counts and a hold.place event.
func (m *Manager) Place(ctx context.Context, s Spec) (PlaceReport, error) {
	var rep PlaceReport
	if err := keyring.ValidCase(s.Case); err != nil {
		return rep, err
	}
	holds, err := keyring.LoadHolds(m.HoldPath, m.Passphrase)
	if err != nil {
		return rep, err
	}
	rec, err := ReadRecord(ctx, m.Store, m.Keys.Public, s.Case)
	if err != nil {
		return rep, err
	}
	now := m.Now().UTC().Truncate(time.Second)
	switch {
	case rec != nil && rec.Status != Active:
		return rep, fmt.Errorf("case %s was released (status %s); a new hold needs a new case reference", s.Case, rec.Status)
	case rec != nil:
		if !s.From.IsZero() && !rec.same(s) {
			return rep, fmt.Errorf("case %s is already under hold with %s; release it, or use another case reference, to hold something else", s.Case, rec.Describe())
		}
		if _, ok := holds.Public(s.Case); !ok {
			return rep, fmt.Errorf("case %s is active in the register but its key is not in the hold keyring %s: its escrowed keys cannot be opened here (is this the reader's hold keyring?)", s.Case, m.HoldPath)
		}
		rep.Resumed = true
	default:
		if s.From.IsZero() {
			return rep, fmt.Errorf("case %s is not under hold; --from and --to are required to place one", s.Case)
		}
		if err := s.Validate(); err != nil {
			return rep, err
		}
		pub, err := holds.Add(s.Case, now)
		if err != nil {
			return rep, err
		}
		if err := holds.Save(m.HoldPath); err != nil {
			return rep, fmt.Errorf("cannot save the hold keyring: %w", err)
		}
		m.crash("key")
		rec = &Record{Version: 1, Case: s.Case, Status: Active, From: s.From.UTC(), To: s.To.UTC(), Tenant: s.Tenant, Login: s.Login, IP: s.ip(),
			HoldKey: pub.Bytes(), PlacedAt: now, PlacedBy: m.Signer.ID}
		if err := m.writeRecord(ctx, rec); err != nil {
			return rep, fmt.Errorf("cannot record the hold: %w", err)
		}
		m.crash("record")
	}
	pub, err := keyring.ParsePublicKey(keyring.HoldKeyID(s.Case), rec.HoldKey)
	if err != nil {
		return rep, fmt.Errorf("hold record of %s: %w", s.Case, err)
	}
	if mine, _ := holds.Public(s.Case); !bytes.Equal(mine.Bytes(), rec.HoldKey) {
		return rep, fmt.Errorf("the hold record of %s names another key than the hold keyring's", s.Case)
	}
	f, err := rec.filter()
	if err != nil {
		return rep, err
	}
	var mu sync.Mutex // guards rep
	var legalOnce, escrowOnce sync.Once
	// hold puts one segment under the case's hold, unless its index rules
	// it out.
	hold := func(ctx context.Context, o store.Object) error {
		c := &capture{Set: m.Keys}
		r, _, err := query.OpenStored(ctx, m.Store, o, c, segment.ReaderOptions{MaxPlaintext: m.MaxSegmentBytes})
		var nf *keyring.NotFoundError
		switch {
		case errors.As(err, &nf):
			mu.Lock()
			rep.Shredded = append(rep.Shredded, o.Name)
			mu.Unlock()
			return nil
		case err != nil:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			mu.Lock()
			rep.Failed = append(rep.Failed, fmt.Sprintf("%s: %v", o.Name, err))
			mu.Unlock()
			return nil
		}
		h, ix := r.Header(), r.Index()
		r.Close()
		if f.RulesOut(h, ix) {
			mu.Lock()
			rep.Pruned++
			mu.Unlock()
			return nil
		}
		st, err := m.Store.Stat(ctx, o.Name)
		if err != nil {
			return err
		}
		// Legal hold first: an escrow object means its segment is held.
		if err := m.Store.SetLegalHold(ctx, o.Name, st.Version, true); err != nil {
			return err
		}
		legalOnce.Do(func() { m.crash("legal-hold") })
		es := Escrow{Version: 1, Case: s.Case, Segment: o.Name, SegmentVersion: st.Version, SegmentSize: st.Size, KeyID: h.KeyID}
		if h.Version >= segment.Version2 { // v2 and v3: the data key is sealed, escrow it sealed
			if es.SealedKey, err = pub.Seal(escrowInfo(s.Case, o.Name), c.dek); err != nil {
				return err
			}
		}
		b, err := json.Marshal(es)
		if err != nil {
			return err
		}
		if _, err := m.Store.Write(ctx, EscrowName(s.Case, o.Name), b, store.WriteOptions{LegalHold: true}); err != nil && !errors.Is(err, store.ErrExists) {
			return fmt.Errorf("cannot escrow the key of %s: %w", o.Name, err)
		}
		escrowOnce.Do(func() { m.crash("escrow") })
		mu.Lock()
		rep.Held++
		rep.New++
		if len(es.SealedKey) > 0 {
			rep.Escrowed++
		}
		mu.Unlock()
		return nil
	}
	err = eachHour(ctx, m.Store, m.Classes, rec.From, rec.To, func(prefix string, objs []store.Object) error {
		done, err := escrowed(ctx, m.Store, s.Case, prefix)
		if err != nil {
			return err
		}
		var todo []store.Object
		for _, o := range objs {
			sealed, ok := done[o.Name]
			switch {
			case !ok:
				todo = append(todo, o)
			case sealed:
				rep.Held++
				rep.Escrowed++
			default:
				rep.Held++
			}
		}
		return m.parallel(ctx, todo, hold)
	})
	if err != nil {
		return rep, fmt.Errorf("hold %s stopped part way (run the same command again to complete it): %w", s.Case, err)
	}
	rec.SweptAt, rec.Held, rec.Escrowed = now, rep.Held, rep.Escrowed
	if err := m.writeRecord(ctx, rec); err != nil {
		return rep, fmt.Errorf("cannot update the hold record: %w", err)
	}
	m.crash("swept")
	if m.Events != nil {
		err := m.Events.Announce(ctx, announce.Event{Action: "hold.place", Time: rec.PlacedAt, IDParts: []string{"hold.place", rec.Case},
			Login: rec.PlacedBy, Attrs: map[string]any{"case": rec.Case, "from": rec.From.Format(time.RFC3339), "to": rec.To.Format(time.RFC3339),
				"tenant": rec.Tenant, "login": rec.Login, "ip": rec.IP, "record": RecordName(rec.Case)}})
		if err != nil {
			return rep, fmt.Errorf("cannot announce the hold (run the same command again): %w", err)
		}
	}
	rep.Record = *rec
	return rep, nil
}

// parallel runs fn over objs with Concurrency workers and returns the
// first error, after every worker has stopped.
func (m *Manager) parallel(ctx context.Context, objs []store.Object, fn func(context.Context, store.Object) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan store.Object)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i := 0; i < max(1, m.Concurrency); i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range work {
				if err := fn(ctx, o); err != nil {
					once.Do(func() { first = err; cancel() })
					return
				}
			}
		}()
	}
feed:
	for _, o := range objs {
		select {
		case work <- o:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// ReleaseReport is what Release did.
type ReleaseReport struct {
	Record   Record
	Already  bool // released before this run
	Unheld   int  // segments whose legal hold was lifted
	KeptHeld int  // segments still held by another case
	Receipt  string
}

// Release ends a hold. Steps: the record goes to "releasing" (the
// intent); the case's key is destroyed, so every escrowed copy is
// unreadable from then on; the legal hold of each held segment is lifted
// unless another case under hold escrowed it too, and the escrow objects
// are removed; a signed receipt is stored under object lock; a
// hold.release event is announced; the record goes to "released".
func (m *Manager) Release(ctx context.Context, caseRef string) (ReleaseReport, error) {
	var rep ReleaseReport
	if err := keyring.ValidCase(caseRef); err != nil {
		return rep, err
	}
	rec, err := ReadRecord(ctx, m.Store, m.Keys.Public, caseRef)
	if err != nil {
		return rep, err
	}
	if rec == nil {
		return rep, fmt.Errorf("case %s has no hold record (%s)", caseRef, RecordName(caseRef))
	}
	rep.Receipt = ReceiptName(caseRef)
	if rec.Status == Released {
		rep.Already, rep.Record = true, *rec
		return rep, nil
	}
	if rec.Status == Active {
		rec.Status, rec.ReleasedAt = Releasing, m.Now().UTC().Truncate(time.Second)
		if err := m.writeRecord(ctx, rec); err != nil {
			return rep, fmt.Errorf("cannot record the release: %w", err)
		}
		m.crash("intent")
	}
	if _, err := keyring.RemoveHold(m.HoldPath, m.Passphrase, caseRef); err != nil {
		return rep, fmt.Errorf("cannot destroy the key of case %s: %w", caseRef, err)
	}
	m.crash("destroy")
	holds, err := keyring.LoadHolds(m.HoldPath, m.Passphrase)
	if err != nil {
		return rep, err
	}
	others := holds.Cases()
	prefix := EscrowPrefix + caseRef + "/"
	var names []string
	for o, err := range m.Store.List(ctx, prefix) {
		if err != nil {
			return rep, err
		}
		names = append(names, o.Name)
	}
	for i, name := range names {
		seg := strings.TrimSuffix(strings.TrimPrefix(name, prefix), ".key")
		e, err := readEscrow(ctx, m.Store, caseRef, seg)
		if err != nil {
			return rep, err
		}
		if e == nil {
			continue
		}
		kept := false
		for _, c := range others {
			if _, err := m.Store.Stat(ctx, EscrowName(c, seg)); err == nil {
				kept = true
				break
			} else if !errors.Is(err, store.ErrNotFound) {
				return rep, err
			}
		}
		if kept {
			rep.KeptHeld++
		} else {
			if err := m.Store.SetLegalHold(ctx, seg, e.SegmentVersion, false); err != nil && !errors.Is(err, store.ErrNotFound) {
				return rep, err
			}
			rep.Unheld++
		}
		if err := m.Store.SetLegalHold(ctx, name, "", false); err != nil && !errors.Is(err, store.ErrNotFound) {
			return rep, err
		}
		if err := m.Store.RemoveAll(ctx, name); err != nil {
			return rep, err
		}
		if i == 0 {
			m.crash("unhold")
		}
	}
	rc := ReleaseReceipt{Version: 1, Kind: "hold-release", Case: caseRef, HoldKeyID: keyring.HoldKeyID(caseRef), From: rec.From, To: rec.To,
		PlacedAt: rec.PlacedAt, ReleasedAt: rec.ReleasedAt, Runner: m.Signer.ID}
	b, err := signed.Encode(receiptLabel, rc, m.Signer)
	if err != nil {
		return rep, err
	}
	lock := &store.Lock{Mode: m.LockMode, Until: m.Now().UTC().AddDate(10, 0, 0)}
	if _, err := m.Store.Write(ctx, rep.Receipt, b, store.WriteOptions{Lock: lock}); err != nil && !errors.Is(err, store.ErrExists) {
		return rep, fmt.Errorf("cannot store the release receipt: %w", err)
	}
	m.crash("receipt")
	if m.Events != nil {
		err := m.Events.Announce(ctx, announce.Event{Action: "hold.release", Time: rec.ReleasedAt, IDParts: []string{"hold.release", caseRef},
			Login: m.Signer.ID, Attrs: map[string]any{"case": caseRef, "receipt": rep.Receipt, "record": RecordName(caseRef)}})
		if err != nil {
			return rep, fmt.Errorf("cannot announce the release (run the same command again): %w", err)
		}
	}
	m.crash("event")
	rec.Status = Released
	if err := m.writeRecord(ctx, rec); err != nil {
		return rep, fmt.Errorf("cannot record the release: %w", err)
	}
	rep.Record = *rec
	return rep, nil
}

// Listing is one hold in the register.
type Listing struct {
	Record Record
	// InForce: the case's key is in this host's hold keyring.
	InForce bool
	// Problem, if set, says why the record could not be used.
	Problem string
	Name    string
}

// List returns the register: every case's record, and whether its key is
// in force here.
func (m *Manager) List(ctx context.Context) ([]Listing, error) {
	holds, err := keyring.LoadHolds(m.HoldPath, m.Passphrase)
	if err != nil {
		return nil, err
	}
	inForce := map[string]bool{}
	for _, c := range holds.Cases() {
		inForce[c] = true
	}
	var out []Listing
	seen := map[string]bool{}
	for o, err := range m.Store.List(ctx, RecordPrefix) {
		if err != nil {
			return nil, err
		}
		c := strings.TrimSuffix(strings.TrimPrefix(o.Name, RecordPrefix), ".json")
		l := Listing{Name: o.Name, InForce: inForce[c]}
		r, err := ReadRecord(ctx, m.Store, m.Keys.Public, c)
		switch {
		case err != nil:
			l.Problem, l.Record.Case = err.Error(), c
		case r == nil:
			l.Problem, l.Record.Case = "the record was removed while listing", c
		default:
			l.Record = *r
		}
		seen[c] = true
		out = append(out, l)
	}
	for c := range inForce {
		if !seen[c] {
			out = append(out, Listing{Record: Record{Case: c}, InForce: true, Name: RecordName(c), Problem: "the hold keyring has this case but the bucket has no record of it"})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Record.Case < out[j].Record.Case })
	return out, nil
}

// HeldError is a period that cannot be shredded yet: a case under hold
// covers one of its segments whose key it has not escrowed.
type HeldError struct {
	Case, Segment, Class, Period string
	Reason                       string
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("%s/%s is under legal hold by case %s: %s (run `custody hold place --case %s` to escrow what it covers, or release the hold)",
		e.Class, e.Period, e.Case, e.Reason, e.Case)
}

// ShredCheck prepares retention's question for one run: it reads the hold
// keyring (a passphrase-sealed one costs an scrypt) and the records of the
// cases under hold once, and returns the check for each due period: nil
// when every segment of the class in the period that a case under hold
// covers has its data key escrowed for that case, else a *HeldError naming
// the case. The check must run while the period's private key still
// exists (it reads segments' indexes to tell which a hold covers).
func (m *Manager) ShredCheck(ctx context.Context) (func(ctx context.Context, class, period string, start, end time.Time) error, error) {
	holds, err := keyring.LoadHolds(m.HoldPath, m.Passphrase)
	if err != nil {
		return nil, err
	}
	type held struct {
		c   string
		rec *Record
		err error
	}
	var cases []held
	for _, c := range holds.Cases() {
		rec, err := ReadRecord(ctx, m.Store, m.Keys.Public, c)
		cases = append(cases, held{c, rec, err})
	}
	return func(ctx context.Context, class, period string, start, end time.Time) error {
		for _, h := range cases {
			if err := m.checkShred(ctx, h.c, h.rec, h.err, class, period, start, end); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

// checkShred is ShredCheck's question for one case and one period.
func (m *Manager) checkShred(ctx context.Context, c string, rec *Record, recErr error, class, period string, start, end time.Time) error {
	if recErr != nil || rec == nil {
		return &HeldError{Case: c, Class: class, Period: period, Reason: fmt.Sprintf("its record %s is missing or does not verify (%v), so what it covers is unknown", RecordName(c), recErr)}
	}
	from, to := maxTime(start, rec.From), minTime(end, rec.To)
	if !from.Before(to) {
		return nil
	}
	f, err := rec.filter()
	if err != nil {
		return err
	}
	f.From, f.To = from, to
	err = eachHour(ctx, m.Store, []string{class}, from, to, func(prefix string, objs []store.Object) error {
		done, err := escrowed(ctx, m.Store, c, prefix)
		if err != nil {
			return err
		}
		var todo []store.Object
		for _, o := range objs {
			if _, ok := done[o.Name]; !ok {
				todo = append(todo, o)
			}
		}
		return m.parallel(ctx, todo, func(ctx context.Context, o store.Object) error {
			r, _, err := query.OpenStored(ctx, m.Store, o, m.Keys, segment.ReaderOptions{MaxPlaintext: m.MaxSegmentBytes})
			var nf *keyring.NotFoundError
			if errors.As(err, &nf) {
				return nil // already unreadable: nothing left to hold
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return &HeldError{Case: c, Segment: o.Name, Class: class, Period: period, Reason: fmt.Sprintf("segment %s could not be checked: %v", o.Name, err)}
			}
			defer r.Close()
			if f.RulesOut(r.Header(), r.Index()) {
				return nil
			}
			return &HeldError{Case: c, Segment: o.Name, Class: class, Period: period, Reason: fmt.Sprintf("it covers segment %s, whose key is not escrowed", o.Name)}
		})
	})
	return err
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
