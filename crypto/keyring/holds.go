package keyring

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/custodylog/custody/internal/secret"
)

// Legal holds (docs/HOLDS.md): each case under hold has its own HPKE key
// pair, same suite as the period keys. A held segment's data key is
// escrowed, sealed to the case's public key, so that shredding the
// segment's period key leaves it readable while the case is open; release
// destroys the case's private key, and with it every escrowed copy.
//
// The hold keyring is the reader's file of case private keys. A case is
// under hold exactly while its key is in this file: the bucket's register
// says what each hold covers, this file says which are in force.

// caseID is what a case reference may look like: it appears in object
// names and file names.
var caseID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidCase reports why a case ID cannot be used, or nil.
func ValidCase(id string) error {
	if !caseID.MatchString(id) {
		return fmt.Errorf("case %q: want 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return nil
}

// HoldKeyID is the key ID of a case's hold key pair.
func HoldKeyID(caseRef string) string { return "hold/" + caseRef }

// HoldKeyring is the private keys of the cases under hold. Not safe for
// concurrent mutation; reads are safe.
type HoldKeyring struct {
	mu   sync.RWMutex // guards keys; a running reader replaces them (Take)
	keys []PrivateKey // ID hold/<case>, sorted
	pass secret.String
}

// Take replaces kr's keys with other's, for every holder of kr at once:
// a released case's key stops opening its escrow, a new hold's starts.
// It returns the cases added and removed.
func (kr *HoldKeyring) Take(other *HoldKeyring) (added, removed []string) {
	keys := other.snapshot()
	kr.mu.Lock()
	defer kr.mu.Unlock()
	added, removed = changedIDs(kr.keys, keys)
	for _, ids := range [][]string{added, removed} {
		for i, id := range ids {
			ids[i] = strings.TrimPrefix(id, "hold/")
		}
	}
	kr.keys = keys
	return added, removed
}

// snapshot is the keys now; Take replaces the slice, never its elements.
func (kr *HoldKeyring) snapshot() []PrivateKey {
	if kr == nil {
		return nil
	}
	kr.mu.RLock()
	defer kr.mu.RUnlock()
	return kr.keys
}

type holdFile struct {
	Version int              `json:"version"`
	Kind    string           `json:"kind"`
	Suite   string           `json:"suite"`
	Keys    []privateFileKey `json:"hold_keys"`
}

// NewHolds returns an empty hold keyring that Save seals with pass.
func NewHolds(pass secret.String) *HoldKeyring { return &HoldKeyring{pass: pass} }

// LoadHolds reads the hold keyring; a missing file is an empty keyring
// (no case is under hold). Like the private keyring it must be mode 0600
// and may be sealed with the passphrase.
func LoadHolds(path string, pass secret.String) (*HoldKeyring, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return &HoldKeyring{pass: pass}, nil
	}
	b, err := readPrivateFile(path, "hold keyring")
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(b, []byte(ageHeader)) {
		if b, err = openSealed(b, pass); err != nil {
			return nil, fmt.Errorf("hold keyring %s: %w", path, err)
		}
	}
	kr, err := ParseHolds(b)
	if err != nil {
		return nil, fmt.Errorf("hold keyring %s: %w", path, err)
	}
	kr.pass = pass
	return kr, nil
}

// ParseHolds decodes a hold keyring document (not sealed).
func ParseHolds(b []byte) (*HoldKeyring, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f holdFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("cannot parse: %w", err)
	}
	if f.Kind != "hold" || f.Version != 1 || f.Suite != Suite {
		return nil, fmt.Errorf("kind %q, version %d, suite %q: want a version 1 hold keyring, suite %s", f.Kind, f.Version, f.Suite, Suite)
	}
	kr := &HoldKeyring{}
	seen := map[string]bool{}
	for i, k := range f.Keys {
		c, ok := strings.CutPrefix(k.ID, "hold/")
		if !ok || ValidCase(c) != nil {
			return nil, fmt.Errorf("hold_keys[%d].id: %q is not hold/<case>", i, k.ID)
		}
		if seen[k.ID] {
			return nil, fmt.Errorf("hold_keys[%d].id: %s appears twice", i, k.ID)
		}
		seen[k.ID] = true
		sk, err := suiteKEM.NewPrivateKey(k.Seed)
		if err != nil {
			return nil, fmt.Errorf("hold_keys[%d].seed: not an %s private key", i, Suite)
		}
		kr.keys = append(kr.keys, PrivateKey{ID: k.ID, Created: k.Created, key: sk})
	}
	sort.Slice(kr.keys, func(i, j int) bool { return kr.keys[i].ID < kr.keys[j].ID })
	return kr, nil
}

// Cases lists the cases under hold, sorted.
func (kr *HoldKeyring) Cases() []string {
	if kr == nil {
		return nil
	}
	keys := kr.snapshot()
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.ID[len("hold/"):])
	}
	return out
}

func (kr *HoldKeyring) find(caseRef string) (PrivateKey, bool) {
	for _, k := range kr.snapshot() {
		if k.ID == HoldKeyID(caseRef) {
			return k, true
		}
	}
	return PrivateKey{}, false
}

// Add creates the case's key pair unless it has one, and returns its
// public key. The caller saves the keyring.
func (kr *HoldKeyring) Add(caseRef string, now time.Time) (PublicKey, error) {
	if err := ValidCase(caseRef); err != nil {
		return PublicKey{}, err
	}
	k, ok := kr.find(caseRef)
	if !ok {
		sk, err := suiteKEM.GenerateKey()
		if err != nil {
			return PublicKey{}, err
		}
		k = PrivateKey{ID: HoldKeyID(caseRef), Created: now.UTC().Truncate(time.Second), key: sk}
		kr.mu.Lock()
		keys := append(append([]PrivateKey(nil), kr.keys...), k) // a new slice: readers hold the old
		sort.Slice(keys, func(i, j int) bool { return keys[i].ID < keys[j].ID })
		kr.keys = keys
		kr.mu.Unlock()
	}
	return PublicKey{ID: k.ID, Created: k.Created, key: k.key.PublicKey()}, nil
}

// Public returns the public half of the case's key pair.
func (kr *HoldKeyring) Public(caseRef string) (PublicKey, bool) {
	k, ok := kr.find(caseRef)
	if !ok {
		return PublicKey{}, false
	}
	return PublicKey{ID: k.ID, Created: k.Created, key: k.key.PublicKey()}, true
}

// Open opens what was sealed to the case's public key. A case not under
// hold is a *NotFoundError; anything else that fails is ErrAuth.
func (kr *HoldKeyring) Open(caseRef string, info, sealed []byte) ([]byte, error) {
	k, ok := kr.find(caseRef)
	if !ok {
		return nil, &NotFoundError{ID: HoldKeyID(caseRef)}
	}
	b, err := hpkeOpen(k, info, sealed)
	if err != nil {
		return nil, ErrAuth
	}
	return b, nil
}

// Save writes the hold keyring with mode 0600, atomically (sealed with the
// passphrase when there is one).
func (kr *HoldKeyring) Save(path string) error {
	keys, err := fileKeys(kr.snapshot())
	if err != nil {
		return err
	}
	return savePrivate(path, "hold keyring", holdFile{Version: 1, Kind: "hold", Suite: Suite, Keys: keys}, kr.pass)
}

// RemoveHold destroys the case's key in the hold keyring file (atomic
// rewrite, fsynced). A case not there is not an error, so a repeat after
// a crash is a no-op; it reports whether it removed anything.
func RemoveHold(path string, pass secret.String, caseRef string) (bool, error) {
	kr, err := LoadHolds(path, pass)
	if err != nil {
		return false, err
	}
	keep := kr.keys[:0]
	removed := false
	for _, k := range kr.keys {
		if k.ID == HoldKeyID(caseRef) {
			removed = true
			continue
		}
		keep = append(keep, k)
	}
	if !removed {
		return false, nil
	}
	kr.keys = keep
	return true, kr.Save(path)
}
