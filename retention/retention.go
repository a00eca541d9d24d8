// Package retention deletes on time: it crypto-shreds the private keys of
// the periods whose events are all past their class's retention, and
// leaves a signed receipt for each, in the bucket under object lock and as
// an event in the events topic. docs/RETENTION.md is its contract.
package retention

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
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
	"github.com/custodylog/custody/internal/atomicfile"
	"github.com/custodylog/custody/internal/secret"
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

const receiptLabel = "custody shred receipt v1\x00"

// encodeReceipt is the receipt object: the payload JSON on one line, then a
// line {"signer":…,"signature":…} whose Ed25519 signature covers
// "custody shred receipt v1" ‖ 0x00 ‖ the first line's bytes.
func encodeReceipt(r Receipt, sk keyring.SigningKey) ([]byte, error) {
	p, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	sig, err := json.Marshal(struct {
		Signer    string `json:"signer"`
		Signature string `json:"signature"`
	}{sk.ID, base64.StdEncoding.EncodeToString(sk.Sign(append([]byte(receiptLabel), p...)))})
	if err != nil {
		return nil, err
	}
	return append(append(append(p, '\n'), sig...), '\n'), nil
}

// ParseReceipt checks a receipt's signature against the trusted signers
// and returns what it says.
func ParseReceipt(b []byte, trusted interface {
	Signer(id string) (ed25519.PublicKey, bool)
}) (Receipt, error) {
	var r Receipt
	lines := bytes.SplitN(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"), 2)
	if len(lines) != 2 {
		return r, errors.New("receipt is not two lines")
	}
	var s struct {
		Signer    string `json:"signer"`
		Signature string `json:"signature"`
	}
	if err := json.Unmarshal(lines[1], &s); err != nil {
		return r, fmt.Errorf("receipt signature line: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(s.Signature)
	pub, ok := trusted.Signer(s.Signer)
	if err != nil || !ok || !ed25519.Verify(pub, append([]byte(receiptLabel), lines[0]...), sig) {
		return r, fmt.Errorf("receipt signature by %q does not verify", s.Signer)
	}
	if err := json.Unmarshal(lines[0], &r); err != nil {
		return r, err
	}
	return r, nil
}

// objects is what the runner needs from the bucket.
type objects interface {
	Put(ctx context.Context, name string, r io.Reader, size int64, lock store.Lock) error
}

// announcer sends the receipt event to the events topic.
type announcer interface {
	Announce(ctx context.Context, r Receipt, receiptName string) error
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

	periods := make([]string, 0, len(in.Periods))
	for p := range in.Periods {
		periods = append(periods, p)
	}
	sort.Strings(periods)
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
			if err := r.Events.Announce(ctx, rc, ReceiptName(rc.Class, rc.Period)); err != nil {
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
