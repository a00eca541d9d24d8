// Package retention deletes on time: it crypto-shreds the private keys of
// the periods whose events are all past their class's retention, and
// leaves a signed receipt for each, in the bucket under object lock and as
// an event in the events topic. docs/RETENTION.md is its contract.
package retention

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/atomicfile"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/signed"
)

// ReceiptPrefix is where shred receipts live in the bucket:
// _receipts/shred/<class>/<period>.json.
const ReceiptPrefix = "_receipts/shred/"

// ReceiptName is the object name of the receipt of one class's period.
func ReceiptName(class, period string) string { return ReceiptPrefix + class + "/" + period + ".json" }

// receiptLock keeps receipts for ten years: they prove deletion, and
// outlive what they account for.
const receiptYears = 10

// Receipt is what a shred receipt says.
type Receipt struct {
	Version       int       `json:"version"`
	Kind          string    `json:"kind"` // "shred"
	Class         string    `json:"class"`
	Period        string    `json:"period"`
	KeyIDs        []string  `json:"key_ids"`
	RetentionDays int       `json:"retention_days"`
	Grace         string    `json:"grace"`
	DestroyedAt   time.Time `json:"destroyed_at"`
	Runner        string    `json:"runner"`
}

// receiptLabel is the signed label of shred receipts (internal/signed).
const receiptLabel = "custody shred receipt v1"

func encodeReceipt(r Receipt, sk keyring.SigningKey) ([]byte, error) {
	return signed.Encode(receiptLabel, r, sk)
}

// ParseReceipt checks a receipt's signature against the trusted signers
// and returns what it says.
func ParseReceipt(b []byte, trusted interface {
	Signer(id string) (ed25519.PublicKey, bool)
}) (Receipt, error) {
	var r Receipt
	if _, err := signed.Decode(b, receiptLabel, trusted, &r); err != nil {
		return Receipt{}, fmt.Errorf("shred receipt: %w", err)
	}
	return r, nil
}

// objects is what the runner needs from the bucket.
type objects interface {
	Put(ctx context.Context, name string, r io.Reader, size int64, lock store.Lock) error
}

// holds vetoes shredding a period that a legal hold still needs: once per
// run it prepares the check that then answers for each due period.
type holds interface {
	ShredCheck(ctx context.Context) (func(ctx context.Context, class, period string, start, end time.Time) error, error)
}

// announcer sends the receipt event to the events topic.
type announcer interface {
	Announce(ctx context.Context, e announce.Event) error
}

// Runner shreds due keys. Its steps, and what a crash at any of them
// leaves (docs/RETENTION.md §3):
//
//  1. intent: the list of due key IDs is written to the intent file
//     (<private keyring>.shred-intent, atomically) before anything is
//     destroyed;
//  2. destroy: the keys are removed from the private keyring (atomic
//     rewrite, fsynced);
//  3. receipt: one signed receipt per class and period is put in the
//     bucket under object lock (a receipt already there is kept);
//  4. event: each receipt is announced in the events topic (a repeat has
//     the same event ID, so it is harmless);
//  5. the intent file is removed.
//
// A run that finds an intent file first completes it (steps 2-5, each
// idempotent), so a kill -9 at any point ends, after the next run, in the
// same state as an uninterrupted run.
type Runner struct {
	Retention   archive.Retention
	PrivatePath string
	Passphrase  secret.String // of a passphrase-sealed private keyring
	Signer      keyring.SigningKey
	Store       objects
	Events      announcer
	// Holds, if set, is asked before a period's keys are destroyed; an
	// error (naming the case) keeps that period's keys for now.
	Holds holds
	// Now is the clock; tests inject one.
	Now func() time.Time
	// Crash, if set, is called after each step with its name: the kill -9
	// tests stop the process there.
	Crash func(step string)
}

type intent struct {
	Created time.Time           `json:"created"`
	Periods map[string][]string `json:"periods"` // "<class>/<period>" -> key IDs
}

// Report is what a run did.
type Report struct {
	Shredded []Receipt
	Resumed  bool
	// Refused are the due periods a legal hold keeps, each with why.
	Refused []Refusal
}

// Refusal is a due period whose keys were kept.
type Refusal struct {
	Period string // <class>/<period>
	Err    error
}

func (r *Runner) crash(step string) {
	if r.Crash != nil {
		r.Crash(step)
	}
}

func (r *Runner) intentPath() string { return r.PrivatePath + ".shred-intent" }

// Due lists, by "<class>/<period>", the key IDs whose every event is past
// its class's retention plus grace at now.
func Due(priv *keyring.PrivateKeyring, ret archive.Retention, now time.Time) map[string][]string {
	due := map[string][]string{}
	for _, k := range priv.Keys() {
		c, ok := ret.Class(k.Class)
		if !ok {
			continue
		}
		if end, ok := periodEnd(k.Period); ok && !now.Before(end.AddDate(0, 0, c.Days).Add(ret.Grace)) {
			p := k.Class + "/" + k.Period
			due[p] = append(due[p], k.ID)
		}
	}
	return due
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// periodStart is the first instant of a period.
func periodStart(p string) (time.Time, bool) {
	end, ok := periodEnd(p)
	if !ok {
		return time.Time{}, false
	}
	if len(p) == len("2006-01") {
		return end.AddDate(0, -1, 0), true
	}
	return end.AddDate(0, 0, -1), true
}

// periodEnd is the first instant after a period ("2026-11-29" or "2026-11").
func periodEnd(p string) (time.Time, bool) {
	if t, err := time.Parse("2006-01-02", p); err == nil {
		return t.AddDate(0, 0, 1), true
	}
	if t, err := time.Parse("2006-01", p); err == nil {
		return t.AddDate(0, 1, 0), true
	}
	return time.Time{}, false
}

// Run shreds what is due, completing an interrupted run first.
func (r *Runner) Run(ctx context.Context) (Report, error) {
	var rep Report
	var in intent
	b, err := os.ReadFile(r.intentPath())
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &in); err != nil {
			return rep, fmt.Errorf("shred intent %s is corrupt: %w", r.intentPath(), err)
		}
		rep.Resumed = true
	case errors.Is(err, os.ErrNotExist):
		priv, err := keyring.LoadPrivate(r.PrivatePath, r.Passphrase)
		if err != nil {
			return rep, err
		}
		in = intent{Created: r.Now().UTC(), Periods: Due(priv, r.Retention, r.Now().UTC())}
		if r.Holds != nil && len(in.Periods) > 0 {
			check, err := r.Holds.ShredCheck(ctx)
			if err != nil {
				return rep, fmt.Errorf("cannot read the legal holds, so nothing is shredded: %w", err)
			}
			for _, p := range sortedKeys(in.Periods) {
				class, period, _ := strings.Cut(p, "/")
				start, _ := periodStart(period)
				end, _ := periodEnd(period)
				if err := check(ctx, class, period, start, end); err != nil {
					rep.Refused = append(rep.Refused, Refusal{Period: p, Err: err})
					delete(in.Periods, p)
				}
			}
		}
		if len(in.Periods) == 0 {
			return rep, nil
		}
		b, err := json.Marshal(in)
		if err != nil {
			return rep, err
		}
		if err := atomicfile.Write(r.intentPath(), b, 0o600); err != nil {
			return rep, fmt.Errorf("cannot record the shred intent: %w", err)
		}
		r.crash("intent")
	default:
		return rep, fmt.Errorf("cannot read the shred intent: %w", err)
	}

	// Destroy: one rewrite of the private keyring without the due keys.
	var ids []string
	for _, v := range in.Periods {
		ids = append(ids, v...)
	}
	if _, err := keyring.RemovePrivate(r.PrivatePath, r.Passphrase, ids); err != nil {
		return rep, fmt.Errorf("cannot destroy keys: %w", err)
	}
	r.crash("destroy")

	periods := sortedKeys(in.Periods)
	var receipts []Receipt
	for _, p := range periods {
		class, period, _ := strings.Cut(p, "/")
		c, _ := r.Retention.Class(class)
		keyIDs := slices.Clone(in.Periods[p])
		sort.Strings(keyIDs)
		rc := Receipt{Version: 1, Kind: "shred", Class: class, Period: period, KeyIDs: keyIDs, RetentionDays: c.Days,
			Grace: r.Retention.Grace.String(), DestroyedAt: in.Created, Runner: r.Signer.ID}
		b, err := encodeReceipt(rc, r.Signer)
		if err != nil {
			return rep, err
		}
		lock := store.Lock{Mode: r.Retention.Mode, Until: r.Now().UTC().AddDate(receiptYears, 0, 0)}
		err = r.Store.Put(ctx, ReceiptName(class, period), bytes.NewReader(b), int64(len(b)), lock)
		if err != nil && !errors.Is(err, store.ErrExists) {
			return rep, fmt.Errorf("cannot store the receipt of %s: %w", p, err)
		}
		receipts = append(receipts, rc)
	}
	r.crash("receipt")
	for _, rc := range receipts {
		if r.Events != nil {
			ids := make([]any, len(rc.KeyIDs))
			for i, id := range rc.KeyIDs {
				ids[i] = id
			}
			err := r.Events.Announce(ctx, announce.Event{Action: "key.shred", Time: rc.DestroyedAt, IDParts: []string{"shred", rc.Class, rc.Period},
				Login: rc.Runner, Attrs: map[string]any{"class": rc.Class, "period": rc.Period, "key_ids": ids, "receipt": ReceiptName(rc.Class, rc.Period)}})
			if err != nil {
				return rep, fmt.Errorf("cannot announce the receipt of %s/%s: %w", rc.Class, rc.Period, err)
			}
		}
	}
	r.crash("event")
	if err := os.Remove(r.intentPath()); err != nil {
		return rep, fmt.Errorf("cannot clear the shred intent: %w", err)
	}
	if err := atomicfile.SyncDir(dirOf(r.intentPath())); err != nil {
		return rep, err
	}
	rep.Shredded = receipts
	return rep, nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "."
}
