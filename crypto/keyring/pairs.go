package keyring

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"time"

	"filippo.io/age"
	"go.uber.org/zap/zapcore"

	"github.com/custodylog/custody/internal/atomicfile"
	"github.com/custodylog/custody/internal/secret"
)

// Format v2 keys (docs/FORMAT.md §v2): one HPKE key pair per (retention
// class, period of event time), so that a class's day can be shredded by
// destroying one private key. Writers hold the public keyring only and can
// never read; the one reader holds the private keyring. Archivers sign
// what they write with an ed25519 signing key whose public half is in the
// public keyring, so a write-only archiver can still tell its own segments
// from planted ones.

// Suite is the HPKE suite of format v2: hybrid post-quantum KEM, because
// these records have legal value for years and anything copied from the
// bucket today could be decrypted later.
const Suite = "MLKEM768X25519/HKDF-SHA256/AES-256-GCM"

var (
	suiteKEM  = hpke.MLKEM768X25519()
	suiteKDF  = hpke.HKDFSHA256()
	suiteAEAD = hpke.AES256GCM()
)

// Periods: one key pair per UTC day (the default) or calendar month.
const (
	PeriodDay   = "day"
	PeriodMonth = "month"
)

// PeriodOf names the period of t: "2026-11-29" for a day, "2026-11" for a
// month.
func PeriodOf(period string, t time.Time) string {
	if period == PeriodMonth {
		return t.UTC().Format("2006-01")
	}
	return t.UTC().Format("2006-01-02")
}

// pairID is "<class>/<period>.v<N>".
var pairID = regexp.MustCompile(`^([a-z][a-z0-9-]{0,31})/(\d{4}-\d{2}(?:-\d{2})?)\.v([1-9]\d{0,5})$`)

func parsePairID(id string) (class, period string, version int, ok bool) {
	m := pairID.FindStringSubmatch(id)
	if m == nil {
		return "", "", 0, false
	}
	v, _ := strconv.Atoi(m[3])
	return m[1], m[2], v, true
}

// PublicKey is one period's public key.
type PublicKey struct {
	ID, Class, Period string
	Created           time.Time
	key               hpke.PublicKey
}

// Seal seals a data key to k: HPKE base mode, info binding the caller's
// context (format version, key ID, object name). The result is the
// encapsulated key followed by the ciphertext (1,168 bytes for a 32-byte
// data key).
func (k PublicKey) Seal(info, dek []byte) ([]byte, error) {
	return hpke.Seal(k.key, suiteKDF, suiteAEAD, info, dek)
}

// Bytes is the encoded public key (the KEM's encoding).
func (k PublicKey) Bytes() []byte { return k.key.Bytes() }

// ParsePublicKey decodes a public key of the suite, as Bytes encodes it.
func ParsePublicKey(id string, b []byte) (PublicKey, error) {
	pk, err := suiteKEM.NewPublicKey(b)
	if err != nil {
		return PublicKey{}, fmt.Errorf("public key %s is not an %s public key", id, Suite)
	}
	return PublicKey{ID: id, key: pk}, nil
}

func hpkeOpen(k PrivateKey, info, sealed []byte) ([]byte, error) {
	return hpke.Open(k.key, suiteKDF, suiteAEAD, info, sealed)
}

// Signer is the public half of an archiver's signing key.
type Signer struct {
	ID      string
	Created time.Time
	Public  ed25519.PublicKey
}

// PublicKeyring is what writers hold: public keys and the signers readers
// trust. Safe for concurrent reads.
type PublicKeyring struct {
	keys    []PublicKey // sorted by class, period, version
	signers []Signer
}

type publicFile struct {
	Version int             `json:"version"`
	Suite   string          `json:"suite"`
	Keys    []publicFileKey `json:"keys"`
	Signers []signerFile    `json:"signers"`
}

type publicFileKey struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Public  []byte    `json:"public"`
}

type signerFile struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Public  []byte    `json:"public"`
}

// ErrNotPublic and ErrNotPrivate are returned when one kind of keyring is
// given where the other belongs.
var (
	ErrNotPublic  = errors.New("this is a private keyring; writers take the public keyring (crypto.public_keyring_file)")
	ErrNotPrivate = errors.New("this is a public keyring, which cannot read anything; readers take the private keyring (crypto.private_keyring_file)")
)

// LoadPublic reads a public keyring file.
func LoadPublic(path string) (*PublicKeyring, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read public keyring: %w", err)
	}
	kr, err := ParsePublic(b)
	if err != nil {
		return nil, fmt.Errorf("public keyring %s: %w", path, err)
	}
	return kr, nil
}

// ParsePublic decodes a public keyring document.
func ParsePublic(b []byte) (*PublicKeyring, error) {
	var probe struct {
		Kind string `json:"kind"`
	}
	json.Unmarshal(b, &probe)
	if probe.Kind == "private" {
		return nil, ErrNotPublic
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f publicFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("cannot parse: %w", err)
	}
	if f.Version != 2 || f.Suite != Suite {
		return nil, fmt.Errorf("version %d, suite %q: want version 2, suite %s", f.Version, f.Suite, Suite)
	}
	kr := &PublicKeyring{}
	seen := map[string]bool{}
	for i, k := range f.Keys {
		class, period, _, ok := parsePairID(k.ID)
		if !ok {
			return nil, fmt.Errorf("keys[%d].id: %q is not <class>/<period>.vN", i, k.ID)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("keys[%d].id: %s appears twice", i, k.ID)
		}
		seen[k.ID] = true
		pk, err := suiteKEM.NewPublicKey(k.Public)
		if err != nil {
			return nil, fmt.Errorf("keys[%d].public: %s is not an %s public key", i, k.ID, Suite)
		}
		kr.keys = append(kr.keys, PublicKey{ID: k.ID, Class: class, Period: period, Created: k.Created, key: pk})
	}
	for i, s := range f.Signers {
		if s.ID == "" || len(s.Public) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("signers[%d]: want an id and a %d-byte ed25519 public key", i, ed25519.PublicKeySize)
		}
		kr.signers = append(kr.signers, Signer{ID: s.ID, Created: s.Created, Public: ed25519.PublicKey(s.Public)})
	}
	kr.sort()
	return kr, nil
}

func (kr *PublicKeyring) sort() {
	sort.Slice(kr.keys, func(i, j int) bool { return pairLess(kr.keys[i].ID, kr.keys[j].ID) })
}

func pairLess(a, b string) bool {
	ca, pa, va, _ := parsePairID(a)
	cb, pb, vb, _ := parsePairID(b)
	if ca != cb {
		return ca < cb
	}
	if pa != pb {
		return pa < pb
	}
	return va < vb
}

// Keys returns the public keys in class, period and version order.
func (kr *PublicKeyring) Keys() []PublicKey { return append([]PublicKey(nil), kr.keys...) }

// Signers returns the trusted signers.
func (kr *PublicKeyring) Signers() []Signer { return append([]Signer(nil), kr.signers...) }

// Signer returns the public key of the signer id.
func (kr *PublicKeyring) Signer(id string) (ed25519.PublicKey, bool) {
	for _, s := range kr.signers {
		if s.ID == id {
			return s.Public, true
		}
	}
	return nil, false
}

// Current returns the key new segments of class with events at t use:
// the newest version of t's day, or else of t's month.
func (kr *PublicKeyring) Current(class string, t time.Time) (PublicKey, error) {
	for _, p := range []string{PeriodOf(PeriodDay, t), PeriodOf(PeriodMonth, t)} {
		for i := len(kr.keys) - 1; i >= 0; i-- {
			if k := kr.keys[i]; k.Class == class && k.Period == p {
				return k, nil
			}
		}
	}
	return PublicKey{}, fmt.Errorf("no public key for class %s on %s in the public keyring; run `custody keys generate`", class, PeriodOf(PeriodDay, t))
}

// Horizon returns how far ahead new segments of class can be sealed from
// now on: the end of the last UTC day d such that every day from now's to
// d has a key (its own or its month's). It returns the start of now's day
// when today has none. It looks at most maxDays ahead.
func (kr *PublicKeyring) Horizon(class string, now time.Time, maxDays int) time.Time {
	day := now.UTC().Truncate(24 * time.Hour)
	for i := 0; i < maxDays; i++ {
		if _, err := kr.Current(class, day); err != nil {
			break
		}
		day = day.AddDate(0, 0, 1)
	}
	return day
}

// Save writes the public keyring (mode 0644: it holds nothing secret).
func (kr *PublicKeyring) Save(path string) error {
	f := publicFile{Version: 2, Suite: Suite, Keys: []publicFileKey{}, Signers: []signerFile{}}
	for _, k := range kr.keys {
		f.Keys = append(f.Keys, publicFileKey{ID: k.ID, Created: k.Created, Public: k.key.Bytes()})
	}
	for _, s := range kr.signers {
		f.Signers = append(f.Signers, signerFile{ID: s.ID, Created: s.Created, Public: s.Public})
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o644)
}

// PrivateKey is one period's private key. Its material never leaves
// through formatting or logging.
type PrivateKey struct {
	ID, Class, Period string
	Created           time.Time
	key               hpke.PrivateKey
}

// String names the key without its material.
func (k PrivateKey) String() string { return "private key " + k.ID + " (material redacted)" }

// Format prints String for every verb.
func (k PrivateKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalLogObject logs the ID only.
func (k PrivateKey) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("id", k.ID)
	return nil
}

// PrivateKeyring is what the one reader holds. Safe for concurrent use:
// a running reader replaces its keys (Take) when the file changes, so
// that a shredded key stops opening anything and a new period's key
// starts, without a restart.
type PrivateKeyring struct {
	mu   sync.RWMutex // guards keys
	keys []PrivateKey
	pass secret.String // when set, Save seals the file with age (scrypt)
}

// Take replaces kr's keys with other's, for every holder of kr at once.
// It returns the IDs added and removed.
func (kr *PrivateKeyring) Take(other *PrivateKeyring) (added, removed []string) {
	other.mu.RLock()
	keys := append([]PrivateKey(nil), other.keys...)
	other.mu.RUnlock()
	kr.mu.Lock()
	defer kr.mu.Unlock()
	added, removed = changedIDs(kr.keys, keys)
	kr.keys = keys
	return added, removed
}

// changedIDs are the IDs of next not in was, and of was not in next.
func changedIDs(was, next []PrivateKey) (added, removed []string) {
	had := map[string]bool{}
	for _, k := range was {
		had[k.ID] = true
	}
	for _, k := range next {
		if !had[k.ID] {
			added = append(added, k.ID)
		}
		delete(had, k.ID)
	}
	for _, k := range was {
		if had[k.ID] {
			removed = append(removed, k.ID)
		}
	}
	return added, removed
}

// Has reports whether kr holds the key named id.
func (kr *PrivateKeyring) Has(id string) bool {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	for _, k := range kr.keys {
		if k.ID == id {
			return true
		}
	}
	return false
}

// SetPassphrase makes Save seal the file with age's scrypt recipient
// under pass ("" saves it as plain JSON).
func (kr *PrivateKeyring) SetPassphrase(pass secret.String) { kr.pass = pass }

// ageHeader starts every age file.
const ageHeader = "age-encryption.org/v1\n"

// ErrPassphrase means a passphrase-sealed private keyring could not be
// opened with the passphrase given (or none was given).
var ErrPassphrase = errors.New("the private keyring is sealed with a passphrase, and the one given does not open it (set CUSTODY_KEYRING_PASSPHRASE or crypto.private_keyring_passphrase_file)")

type privateFile struct {
	Version int              `json:"version"`
	Kind    string           `json:"kind"`
	Suite   string           `json:"suite"`
	Keys    []privateFileKey `json:"private_keys"`
}

type privateFileKey struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Seed    []byte    `json:"seed"`
}

// LoadPrivate reads a private keyring file, refusing one that group or
// others may read. A file sealed with age (scrypt) is opened with pass,
// which Save then uses again.
func LoadPrivate(path string, pass secret.String) (*PrivateKeyring, error) {
	b, err := readPrivateFile(path, "private keyring")
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(b, []byte(ageHeader)) {
		if b, err = openSealed(b, pass); err != nil {
			return nil, fmt.Errorf("private keyring %s: %w", path, err)
		}
	}
	kr, err := ParsePrivate(b)
	if err != nil {
		return nil, fmt.Errorf("private keyring %s: %w", path, err)
	}
	kr.pass = pass
	return kr, nil
}

func openSealed(b []byte, pass secret.String) ([]byte, error) {
	if pass == "" {
		return nil, ErrPassphrase
	}
	id, err := age.NewScryptIdentity(pass.Reveal())
	if err != nil {
		return nil, err
	}
	r, err := age.Decrypt(bytes.NewReader(b), id)
	if err != nil {
		return nil, ErrPassphrase
	}
	return io.ReadAll(r)
}

func sealWithPassphrase(b []byte, pass secret.String) ([]byte, error) {
	rcpt, err := age.NewScryptRecipient(pass.Reveal())
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w, err := age.Encrypt(&out, rcpt)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// readPrivateFile reads a file that holds keys, checking the mode on the
// open file (so the mode checked is that of the bytes read) and refusing
// one that group or others may read.
func readPrivateFile(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", what, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %w", what, err)
	}
	if m := fi.Mode().Perm(); m&0o077 != 0 {
		return nil, fmt.Errorf("%s %s is mode %04o: readable by group or others; run chmod 600 %s (and consider the keys exposed)", what, path, m, path)
	}
	return io.ReadAll(f)
}

// ParsePrivate decodes a private keyring document.
func ParsePrivate(b []byte) (*PrivateKeyring, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f privateFile
	if err := dec.Decode(&f); err != nil {
		var probe publicFile
		if json.Unmarshal(b, &probe) == nil && len(probe.Keys) > 0 {
			return nil, ErrNotPrivate
		}
		return nil, fmt.Errorf("cannot parse: %w", err)
	}
	if f.Kind != "private" || f.Version != 2 || f.Suite != Suite {
		return nil, fmt.Errorf("kind %q, version %d, suite %q: want a version 2 private keyring, suite %s", f.Kind, f.Version, f.Suite, Suite)
	}
	kr := &PrivateKeyring{}
	seen := map[string]bool{}
	for i, k := range f.Keys {
		class, period, _, ok := parsePairID(k.ID)
		if !ok {
			return nil, fmt.Errorf("private_keys[%d].id: %q is not <class>/<period>.vN", i, k.ID)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("private_keys[%d].id: %s appears twice", i, k.ID)
		}
		seen[k.ID] = true
		sk, err := suiteKEM.NewPrivateKey(k.Seed)
		if err != nil {
			return nil, fmt.Errorf("private_keys[%d].seed: %s is not an %s private key", i, k.ID, Suite)
		}
		kr.keys = append(kr.keys, PrivateKey{ID: k.ID, Class: class, Period: period, Created: k.Created, key: sk})
	}
	sort.Slice(kr.keys, func(i, j int) bool { return pairLess(kr.keys[i].ID, kr.keys[j].ID) })
	return kr, nil
}

// Keys returns the private keys, without their material.
func (kr *PrivateKeyring) Keys() []PrivateKey {
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return append([]PrivateKey(nil), kr.keys...)
}

// OpenKey opens a data key sealed to the key named id. A missing key is a
// *NotFoundError; anything else that fails is ErrAuth.
func (kr *PrivateKeyring) OpenKey(id string, info, sealed []byte) ([]byte, error) {
	kr.mu.RLock()
	keys := kr.keys
	kr.mu.RUnlock()
	for _, k := range keys {
		if k.ID == id {
			dek, err := hpkeOpen(k, info, sealed)
			if err != nil {
				return nil, ErrAuth
			}
			return dek, nil
		}
	}
	return nil, &NotFoundError{ID: id}
}

// Save writes the private keyring with mode 0600, atomically.
func (kr *PrivateKeyring) Save(path string) error {
	keys, err := fileKeys(kr.Keys())
	if err != nil {
		return err
	}
	return savePrivate(path, "private keyring", privateFile{Version: 2, Kind: "private", Suite: Suite, Keys: keys}, kr.pass)
}

// fileKeys are keys as the files hold them (their seeds).
func fileKeys(keys []PrivateKey) ([]privateFileKey, error) {
	out := []privateFileKey{}
	for _, k := range keys {
		seed, err := k.key.Bytes()
		if err != nil {
			return nil, err
		}
		out = append(out, privateFileKey{ID: k.ID, Created: k.Created, Seed: seed})
	}
	return out, nil
}

// savePrivate writes a file of private keys: JSON, sealed with age
// (scrypt) under pass when there is one, mode 0600, atomically (after a
// crash the file holds the old keys or the new ones, never a mix).
func savePrivate(path, what string, doc any, pass secret.String) error {
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if pass != "" {
		if b, err = sealWithPassphrase(b, pass); err != nil {
			return fmt.Errorf("cannot seal the %s: %w", what, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// GeneratePairs adds version 1 of a key pair for every class and every
// period from..to (inclusive) that has none, to both keyrings, and returns
// the IDs added. Keys come from crypto/rand.
func GeneratePairs(pub *PublicKeyring, priv *PrivateKeyring, now time.Time, classes []string, period string, from, to time.Time) ([]string, error) {
	have := map[string]bool{}
	for _, k := range priv.keys {
		have[k.Class+"/"+k.Period] = true
	}
	var added []string
	step := func(t time.Time) time.Time {
		if period == PeriodMonth {
			return t.AddDate(0, 1, 0)
		}
		return t.AddDate(0, 0, 1)
	}
	start := from.UTC().Truncate(24 * time.Hour)
	if period == PeriodMonth {
		start = time.Date(start.Year(), start.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	for _, class := range classes {
		for t := start; !t.After(to); t = step(t) {
			p := PeriodOf(period, t)
			if have[class+"/"+p] {
				continue
			}
			sk, err := suiteKEM.GenerateKey()
			if err != nil {
				return added, fmt.Errorf("cannot generate key pair: %w", err)
			}
			id := class + "/" + p + ".v1"
			created := now.UTC().Truncate(time.Second)
			priv.keys = append(priv.keys, PrivateKey{ID: id, Class: class, Period: p, Created: created, key: sk})
			pub.keys = append(pub.keys, PublicKey{ID: id, Class: class, Period: p, Created: created, key: sk.PublicKey()})
			have[class+"/"+p] = true
			added = append(added, id)
		}
	}
	sort.Slice(priv.keys, func(i, j int) bool { return pairLess(priv.keys[i].ID, priv.keys[j].ID) })
	pub.sort()
	return added, nil
}

// SigningKey is an archiver's ed25519 signing key. Its material never
// leaves through formatting or logging.
type SigningKey struct {
	ID      string
	Created time.Time
	key     ed25519.PrivateKey
}

type signingFile struct {
	Version int       `json:"version"`
	Kind    string    `json:"kind"`
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
	Seed    []byte    `json:"seed"`
}

var signerID = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

// NewSigningKey makes a signing key named id from crypto/rand.
func NewSigningKey(id string, now time.Time) (SigningKey, error) {
	if !signerID.MatchString(id) {
		return SigningKey{}, fmt.Errorf("signer id %q must be 1-64 characters of A-Z a-z 0-9 . _ -", id)
	}
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return SigningKey{}, err
	}
	return SigningKey{ID: id, Created: now.UTC().Truncate(time.Second), key: k}, nil
}

// SigningKeyFromSeed is the signing key with the given Ed25519 seed: for
// test vectors, whose signatures must be reproducible.
func SigningKeyFromSeed(id string, created time.Time, seed []byte) (SigningKey, error) {
	if !signerID.MatchString(id) || len(seed) != ed25519.SeedSize {
		return SigningKey{}, fmt.Errorf("signer id %q or a %d-byte seed is not valid", id, len(seed))
	}
	return SigningKey{ID: id, Created: created.UTC(), key: ed25519.NewKeyFromSeed(seed)}, nil
}

// String names the key without its material.
func (s SigningKey) String() string { return "signing key " + s.ID + " (material redacted)" }

// Format prints String for every verb.
func (s SigningKey) Format(f fmt.State, _ rune) { io.WriteString(f, s.String()) }

// Public is the signer entry for the public keyring.
func (s SigningKey) Public() Signer {
	return Signer{ID: s.ID, Created: s.Created, Public: s.key.Public().(ed25519.PublicKey)}
}

// Sign signs msg.
func (s SigningKey) Sign(msg []byte) []byte { return ed25519.Sign(s.key, msg) }

// LoadSigningKey reads a signing key file, refusing one that group or
// others may read.
func LoadSigningKey(path string) (SigningKey, error) {
	b, err := readPrivateFile(path, "signing key")
	if err != nil {
		return SigningKey{}, err
	}
	var f signingFile
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil || f.Kind != "signing" || f.Version != 1 || len(f.Seed) != ed25519.SeedSize || !signerID.MatchString(f.ID) {
		return SigningKey{}, fmt.Errorf("signing key %s: not a version 1 signing key file", path)
	}
	return SigningKey{ID: f.ID, Created: f.Created, key: ed25519.NewKeyFromSeed(f.Seed)}, nil
}

// Save writes the signing key with mode 0600, atomically.
func (s SigningKey) Save(path string) error {
	b, err := json.MarshalIndent(signingFile{Version: 1, Kind: "signing", ID: s.ID, Created: s.Created, Seed: s.key.Seed()}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// AddSigner puts s in the public keyring (replacing one of the same ID).
func (kr *PublicKeyring) AddSigner(s Signer) {
	for i := range kr.signers {
		if kr.signers[i].ID == s.ID {
			kr.signers[i] = s
			return
		}
	}
	kr.signers = append(kr.signers, s)
}

// NewPublic and NewPrivate return empty keyrings.
func NewPublic() *PublicKeyring { return &PublicKeyring{} }

// NewPrivate returns an empty private keyring.
func NewPrivate() *PrivateKeyring { return &PrivateKeyring{} }

// ErrNoPrivateKeyring is what a Set without private keys answers to a v2
// data key: the process holds public keys only and can never read.
var ErrNoPrivateKeyring = errors.New("no private keyring: this process holds public keys only and cannot read the archive")

// Set is what a reader holds: the v1 keyring for segments written before
// format v2 (optional), the private keyring that opens v2 data keys, and
// the public keyring whose signers it trusts. segment.Open takes it.
type Set struct {
	V1      *Keyring
	Private *PrivateKeyring
	Public  *PublicKeyring
	// Holds are the cases under legal hold, whose escrowed data keys
	// outlive the period keys (docs/HOLDS.md). Optional.
	Holds *HoldKeyring
}

// Unwrap opens a v1 wrapped data key.
func (s Set) Unwrap(id string, wrapped []byte) ([]byte, error) {
	if s.V1 == nil {
		return nil, fmt.Errorf("key %s: a format v1 segment needs the v1 keyring (crypto.keyring_file): %w", id, &NotFoundError{ID: id})
	}
	return s.V1.Unwrap(id, wrapped)
}

// OpenKey opens a v2 sealed data key.
func (s Set) OpenKey(id string, info, sealed []byte) ([]byte, error) {
	if s.Private == nil {
		return nil, ErrNoPrivateKeyring
	}
	return s.Private.OpenKey(id, info, sealed)
}

// Signer resolves a trusted signer.
func (s Set) Signer(id string) (ed25519.PublicKey, bool) {
	if s.Public == nil {
		return nil, false
	}
	return s.Public.Signer(id)
}

// RemovePrivate destroys the keys ids in the private keyring file: it
// rewrites the file without them (atomically, fsynced: after a crash the
// file holds either all of them or none). Absent IDs are not an error, so
// a repeat after a crash is a no-op. It returns how many it removed.
func RemovePrivate(path string, pass secret.String, ids []string) (int, error) {
	kr, err := LoadPrivate(path, pass)
	if err != nil {
		return 0, err
	}
	drop := map[string]bool{}
	for _, id := range ids {
		drop[id] = true
	}
	keep := kr.keys[:0]
	n := 0
	for _, k := range kr.keys {
		if drop[k.ID] {
			n++
			continue
		}
		keep = append(keep, k)
	}
	if n == 0 {
		return 0, nil
	}
	kr.keys = keep
	return n, kr.Save(path)
}

// RotatePair adds the next version of the key pair of class's period to
// both keyrings: new segments of that period use it; older versions stay
// for reading (and are shredded together with it). It returns the new ID.
func RotatePair(pub *PublicKeyring, priv *PrivateKeyring, now time.Time, class, period string) (string, error) {
	if _, _, _, ok := parsePairID(class + "/" + period + ".v1"); !ok {
		return "", fmt.Errorf("%s/%s is not <class>/<YYYY-MM-DD or YYYY-MM>", class, period)
	}
	v := 0
	for _, k := range priv.keys {
		if k.Class == class && k.Period == period {
			_, _, kv, _ := parsePairID(k.ID)
			v = max(v, kv)
		}
	}
	if v == 0 {
		return "", fmt.Errorf("no key pair for %s/%s to rotate; keys generate creates the first", class, period)
	}
	sk, err := suiteKEM.GenerateKey()
	if err != nil {
		return "", err
	}
	id := fmt.Sprintf("%s/%s.v%d", class, period, v+1)
	created := now.UTC().Truncate(time.Second)
	priv.keys = append(priv.keys, PrivateKey{ID: id, Class: class, Period: period, Created: created, key: sk})
	pub.keys = append(pub.keys, PublicKey{ID: id, Class: class, Period: period, Created: created, key: sk.PublicKey()})
	sort.Slice(priv.keys, func(i, j int) bool { return pairLess(priv.keys[i].ID, priv.keys[j].ID) })
	pub.sort()
	return id, nil
}
