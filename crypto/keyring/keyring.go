// Package keyring holds Custody's key-encryption keys (KEKs) and wraps the
// per-segment data keys with them.
//
// There is one KEK per calendar month of event time, so that a month can be
// crypto-shredded by deleting its keys once its retention has passed. A
// month may have several versions: `custody keys rotate` adds one, new
// segments use the newest, and older versions stay for reading. Key IDs are
// "YYYY-MM.vN". All key material comes from crypto/rand.
package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"time"

	"go.uber.org/zap/zapcore"

	"github.com/custodylog/custody/crypto/seal"
	"github.com/custodylog/custody/internal/atomicfile"
)

// KeySize is the size of KEKs and data keys (AES-256).
const KeySize = 32

// ErrAuth means a wrapped key did not authenticate under its KEK. It does
// not say why. It is seal.ErrAuth, the one authentication sentinel.
var ErrAuth = seal.ErrAuth

// NotFoundError reports a key ID that the keyring does not hold, either
// never generated here or already shredded.
type NotFoundError struct{ ID string }

func (e *NotFoundError) Error() string { return fmt.Sprintf("key %s not in keyring", e.ID) }

// Key is one KEK. Its material never leaves through formatting or
// logging: String, GoString, Format (every fmt verb), MarshalJSON and
// zap's MarshalLogObject all show the ID and month only. The keyring file
// is written through fileKey, the one place the material is encoded.
type Key struct {
	ID       string
	Month    string
	Created  time.Time
	Material []byte
}

// fileKey is a Key as the keyring file stores it.
type fileKey struct {
	ID       string    `json:"id"`
	Month    string    `json:"month"`
	Created  time.Time `json:"created"`
	Material []byte    `json:"key"`
}

// String names the key without its material.
func (k Key) String() string {
	return fmt.Sprintf("key %s (month %s, material redacted)", k.ID, k.Month)
}

// GoString is String, so %#v does not reveal the material either.
func (k Key) GoString() string { return k.String() }

// Format prints String for every verb (%v, %+v, %s, %x, %q ...).
func (k Key) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// MarshalJSON writes the key without its material.
func (k Key) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		ID       string `json:"id"`
		Month    string `json:"month"`
		Material string `json:"key"`
	}{k.ID, k.Month, "REDACTED"})
}

// MarshalLogObject makes zap.Any and zap.Object log the ID and month only.
func (k Key) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddString("id", k.ID)
	enc.AddString("month", k.Month)
	enc.AddString("key", "REDACTED")
	return nil
}

// Keyring is the set of KEKs. It is not safe for concurrent modification;
// concurrent reads (Current, Unwrap) are safe.
type Keyring struct {
	keys []Key // sorted by month, then version
}

type fileFormat struct {
	Version int       `json:"version"`
	Keys    []fileKey `json:"keys"`
}

var idPattern = regexp.MustCompile(`^(\d{4}-\d{2})\.v([1-9]\d{0,5})$`)

// MonthOf is the KEK period of an event time.
func MonthOf(t time.Time) string { return t.UTC().Format("2006-01") }

// Load reads the keyring from CUSTODY_KEYRING if set, else from path.
func Load(path string) (*Keyring, error) {
	if v := os.Getenv(EnvKeyring); v != "" {
		k, err := Parse([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvKeyring, err)
		}
		return k, nil
	}
	// Keys readable by other users are keys already leaked: refused, as
	// for the private keyring and the signing key.
	b, err := readPrivateFile(path, "keyring")
	if err != nil {
		return nil, err
	}
	k, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("keyring %s: %w", path, err)
	}
	return k, nil
}

// Parse decodes and checks a keyring document.
func Parse(b []byte) (*Keyring, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f fileFormat
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("cannot parse: %w", err)
	}
	if f.Version != 1 {
		return nil, fmt.Errorf("unsupported keyring version %d", f.Version)
	}
	seen := map[string]bool{}
	keys := make([]Key, len(f.Keys))
	for i, fk := range f.Keys {
		k := Key(fk)
		keys[i] = k
		m := idPattern.FindStringSubmatch(k.ID)
		if m == nil {
			return nil, fmt.Errorf("keys[%d].id: %q is not YYYY-MM.vN", i, k.ID)
		}
		if m[1] != k.Month {
			return nil, fmt.Errorf("keys[%d].month: %q does not match id %s", i, k.Month, k.ID)
		}
		if _, err := time.Parse("2006-01", k.Month); err != nil {
			return nil, fmt.Errorf("keys[%d].month: %q is not a month", i, k.Month)
		}
		if len(k.Material) != KeySize {
			return nil, fmt.Errorf("keys[%d].key: %s holds %d bytes; want %d", i, k.ID, len(k.Material), KeySize)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("keys[%d].id: %s appears twice", i, k.ID)
		}
		seen[k.ID] = true
	}
	kr := &Keyring{keys: keys}
	kr.sort()
	return kr, nil
}

func version(id string) int {
	m := idPattern.FindStringSubmatch(id)
	n, _ := strconv.Atoi(m[2])
	return n
}

func (kr *Keyring) sort() {
	sort.Slice(kr.keys, func(i, j int) bool {
		a, b := kr.keys[i], kr.keys[j]
		if a.Month != b.Month {
			return a.Month < b.Month
		}
		return version(a.ID) < version(b.ID)
	})
}

// Save writes the keyring to path with mode 0600. It survives a crash at
// any point: the new content goes to a temporary file that is fsynced, then
// renamed over path, then the directory is fsynced, so path holds either
// the old or the new keyring, never a mix.
func (kr *Keyring) Save(path string) error {
	f := fileFormat{Version: 1, Keys: make([]fileKey, len(kr.keys))}
	for i, k := range kr.keys {
		f.Keys[i] = fileKey(k)
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("cannot create keyring directory: %w", err)
	}
	return atomicfile.Write(path, append(b, '\n'), 0o600)
}

// New returns an empty keyring.
func New() *Keyring { return &Keyring{} }

// Keys returns the keys in month and version order. The slice is a copy;
// the material is shared and must not be modified.
func (kr *Keyring) Keys() []Key { return append([]Key(nil), kr.keys...) }

// Generate adds a first key for every month from..to (inclusive, "YYYY-MM")
// that has none, and returns the IDs added.
func (kr *Keyring) Generate(now time.Time, from, to string) ([]string, error) {
	f, err := time.Parse("2006-01", from)
	if err != nil {
		return nil, fmt.Errorf("--from: %q is not YYYY-MM", from)
	}
	t, err := time.Parse("2006-01", to)
	if err != nil {
		return nil, fmt.Errorf("--to: %q is not YYYY-MM", to)
	}
	if t.Before(f) {
		return nil, fmt.Errorf("--to %s is before --from %s", to, from)
	}
	var added []string
	for m := f; !m.After(t); m = m.AddDate(0, 1, 0) {
		month := m.Format("2006-01")
		if _, ok := kr.newest(month); ok {
			continue
		}
		k, err := newKey(now, month, 1)
		if err != nil {
			return added, err
		}
		kr.keys = append(kr.keys, k)
		added = append(added, k.ID)
	}
	kr.sort()
	return added, nil
}

// Rotate adds the next version for month; it becomes the one new segments
// of that month use. Older versions stay for reading.
func (kr *Keyring) Rotate(now time.Time, month string) (string, error) {
	if _, err := time.Parse("2006-01", month); err != nil {
		return "", fmt.Errorf("%q is not YYYY-MM", month)
	}
	v := 1
	if k, ok := kr.newest(month); ok {
		v = version(k.ID) + 1
	}
	k, err := newKey(now, month, v)
	if err != nil {
		return "", err
	}
	kr.keys = append(kr.keys, k)
	kr.sort()
	return k.ID, nil
}

func newKey(now time.Time, month string, v int) (Key, error) {
	m := make([]byte, KeySize)
	if _, err := rand.Read(m); err != nil {
		return Key{}, fmt.Errorf("cannot read random key: %w", err)
	}
	return Key{ID: fmt.Sprintf("%s.v%d", month, v), Month: month, Created: now.UTC().Truncate(time.Second), Material: m}, nil
}

func (kr *Keyring) newest(month string) (Key, bool) {
	for i := len(kr.keys) - 1; i >= 0; i-- {
		if kr.keys[i].Month == month {
			return kr.keys[i], true
		}
	}
	return Key{}, false
}

// Current returns the KEK that new segments with events at t use.
func (kr *Keyring) Current(t time.Time) (Key, error) {
	m := MonthOf(t)
	k, ok := kr.newest(m)
	if !ok {
		return Key{}, fmt.Errorf("no key for month %s in keyring; run `custody keys generate`", m)
	}
	return k, nil
}

// Get returns the key with the given ID.
func (kr *Keyring) Get(id string) (Key, error) {
	for _, k := range kr.keys {
		if k.ID == id {
			return k, nil
		}
	}
	return Key{}, &NotFoundError{ID: id}
}

// WrappedSize is the size of a wrapped data key: nonce, key, tag.
const WrappedSize = 12 + KeySize + 16

func kekAEAD(k Key) (cipher.AEAD, error) {
	b, err := aes.NewCipher(k.Material)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func wrapAAD(id string) []byte { return []byte("custody-kek-v1\x00" + id) }

// Wrap seals dek under k: AES-256-GCM with a random 96-bit nonce from
// random (crypto/rand when nil) and the key ID as associated data, so a
// wrapped key cannot be relabelled with another ID. The result is
// nonce ‖ ciphertext ‖ tag.
func Wrap(random io.Reader, k Key, dek []byte) ([]byte, error) {
	if len(dek) != KeySize {
		return nil, fmt.Errorf("data key is %d bytes; want %d", len(dek), KeySize)
	}
	if random == nil {
		random = rand.Reader
	}
	a, err := kekAEAD(k)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 12, WrappedSize)
	if _, err := io.ReadFull(random, out); err != nil {
		return nil, fmt.Errorf("cannot read random nonce: %w", err)
	}
	return a.Seal(out, out[:12], dek, wrapAAD(k.ID)), nil
}

// Unwrap recovers a data key wrapped under the key named id.
func (kr *Keyring) Unwrap(id string, wrapped []byte) ([]byte, error) {
	k, err := kr.Get(id)
	if err != nil {
		return nil, err
	}
	if len(wrapped) != WrappedSize {
		return nil, ErrAuth
	}
	a, err := kekAEAD(k)
	if err != nil {
		return nil, err
	}
	dek, err := a.Open(nil, wrapped[:12], wrapped[12:], wrapAAD(id))
	if err != nil {
		return nil, ErrAuth
	}
	return dek, nil
}
