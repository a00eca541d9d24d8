package keyring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/internal/secret"
)

func TestPairsFilesAndRefusals(t *testing.T) {
	dir := t.TempDir()
	c := Config{PublicKeyringFile: filepath.Join(dir, "pub.json"), PrivateKeyringFile: filepath.Join(dir, "priv.json"),
		SigningKeyFile: filepath.Join(dir, "sign.json"), Period: PeriodDay, HorizonDays: 2}
	added, newSigner, err := c.Generate(now, []string{"security"}, 1, "archiver-a")
	if err != nil || len(added) != 4 || !newSigner {
		t.Fatalf("Generate = %v, %v, %v; want 4 pairs (1 day back to 2 ahead) and a new signer", added, newSigner, err)
	}
	w, err := c.LoadWriteKeys()
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.LoadReadKeys()
	if err != nil {
		t.Fatal(err)
	}
	pk, err := w.Public.Current("security", now)
	if err != nil || pk.ID != "security/2026-11-29.v1" {
		t.Fatalf("Current = %v, %v", pk.ID, err)
	}
	sealed, err := pk.Seal([]byte("info"), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	if dek, err := r.OpenKey(pk.ID, []byte("info"), sealed); err != nil || len(dek) != 32 {
		t.Fatalf("OpenKey = %v", err)
	}
	if _, err := r.OpenKey(pk.ID, []byte("other info"), sealed); !errors.Is(err, ErrAuth) {
		t.Errorf("OpenKey with other info = %v; want ErrAuth", err)
	}
	if _, err := (Set{Public: w.Public}).OpenKey(pk.ID, []byte("info"), sealed); !errors.Is(err, ErrNoPrivateKeyring) {
		t.Errorf("a public-only set opened a key: %v", err)
	}
	if _, err := w.Public.Current("analytics", now); err == nil || !strings.Contains(err.Error(), "keys generate") {
		t.Errorf("Current for a class without keys: %v", err)
	}
	// Idempotent: nothing new the second time.
	if added, newSigner, err := c.Generate(now, []string{"security"}, 1, "archiver-b"); err != nil || len(added) != 0 || newSigner {
		t.Errorf("second Generate = %v, %v, %v; want nothing new", added, newSigner, err)
	}
	// One kind of keyring where the other belongs is refused by name.
	if _, err := LoadPrivate(c.PublicKeyringFile, ""); err == nil || (!errors.Is(err, ErrNotPrivate) && !strings.Contains(err.Error(), "mode 0644")) {
		t.Errorf("public keyring as private: %v", err)
	}
	os.Chmod(c.PublicKeyringFile, 0o600)
	if _, err := LoadPrivate(c.PublicKeyringFile, ""); !errors.Is(err, ErrNotPrivate) {
		t.Errorf("public keyring (0600) as private: %v; want ErrNotPrivate", err)
	}
	if _, err := LoadPublic(c.PrivateKeyringFile); !errors.Is(err, ErrNotPublic) {
		t.Errorf("private keyring as public: %v; want ErrNotPublic", err)
	}
	os.Chmod(c.PrivateKeyringFile, 0o640)
	if _, err := c.LoadReadKeys(); err == nil || !strings.Contains(err.Error(), "mode 0640: readable by group or others") {
		t.Errorf("0640 private keyring: %v", err)
	}
	// Material never shows.
	os.Chmod(c.PrivateKeyringFile, 0o600)
	r, _ = c.LoadReadKeys()
	k := r.Private.Keys()[0]
	seed, _ := k.key.Bytes()
	for _, out := range []string{fmt.Sprintf("%v %+v %#v %x %s", k, k, k, k, k), fmt.Sprintf("%v %+v %x", w.Signer, w.Signer, w.Signer)} {
		if strings.Contains(out, fmt.Sprintf("%x", seed)) || strings.Contains(out, fmt.Sprintf("%x", w.Signer.key.Seed())) || !strings.Contains(out, "redacted") {
			t.Errorf("key formatting shows material or nothing: %q", out)
		}
	}

}

// The private keyring may be sealed with a passphrase (age, scrypt): it
// opens with the passphrase only, stays sealed across a rewrite, and a
// wrong or missing passphrase is a clear error.
func TestPrivateKeyringPassphrase(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(PassphraseEnv, "correct horse battery staple")
	c := Config{PublicKeyringFile: filepath.Join(dir, "pub.json"), PrivateKeyringFile: filepath.Join(dir, "priv.age"),
		SigningKeyFile: filepath.Join(dir, "sign.json"), Period: PeriodDay, HorizonDays: 1}
	if err := c.Resolve(dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Generate(now, []string{"security"}, 0, "a"); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(c.PrivateKeyringFile)
	if !strings.HasPrefix(string(raw), ageHeader) || strings.Contains(string(raw), "private_keys") {
		t.Fatal("the private keyring is not sealed")
	}
	r, err := c.LoadReadKeys()
	if err != nil || len(r.Private.Keys()) != 2 {
		t.Fatalf("LoadReadKeys with the passphrase: %v", err)
	}
	// A rewrite (shredding) keeps it sealed.
	if n, err := RemovePrivate(c.PrivateKeyringFile, c.Passphrase(), []string{r.Private.Keys()[0].ID}); err != nil || n != 1 {
		t.Fatalf("RemovePrivate = %d, %v", n, err)
	}
	raw, _ = os.ReadFile(c.PrivateKeyringFile)
	if !strings.HasPrefix(string(raw), ageHeader) {
		t.Fatal("the rewritten private keyring is not sealed")
	}
	for _, pass := range []string{"", "wrong"} {
		if _, err := LoadPrivate(c.PrivateKeyringFile, secret.String(pass)); !errors.Is(err, ErrPassphrase) {
			t.Errorf("LoadPrivate with passphrase %q: %v; want ErrPassphrase", pass, err)
		}
	}
}

func TestHorizon(t *testing.T) {
	now := time.Date(2026, 11, 29, 13, 0, 0, 0, time.UTC)
	pub, priv := NewPublic(), NewPrivate()
	// Days from the 28th to 2 December, then a month key for January
	// with a gap (December 3-31) between.
	if _, err := GeneratePairs(pub, priv, now, []string{"security"}, PeriodDay, now.AddDate(0, 0, -1), now.AddDate(0, 0, 3)); err != nil {
		t.Fatal(err)
	}
	if _, err := GeneratePairs(pub, priv, now, []string{"security"}, PeriodMonth, now.AddDate(0, 2, 0), now.AddDate(0, 2, 0)); err != nil {
		t.Fatal(err)
	}
	if h := pub.Horizon("security", now, 400); !h.Equal(time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Horizon = %v; want the end of 2 December (the gap stops it)", h)
	}
	if h := pub.Horizon("security", now, 2); !h.Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Horizon over 2 days = %v; want the end of 30 November", h)
	}
	if h := pub.Horizon("analytics", now, 400); !h.Equal(time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Horizon without keys = %v; want the start of today", h)
	}
	if h := pub.Horizon("security", now.AddDate(0, 2, 0), 400); !h.Equal(time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("Horizon in January = %v; want the month key's end", h)
	}
}

// TestPrivateTake: a keyring held by readers takes another's keys in
// place: a key removed stops opening what it sealed, a key added starts,
// and Take names both.
func TestPrivateTake(t *testing.T) {
	now := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	pub, priv := NewPublic(), NewPrivate()
	if _, err := GeneratePairs(pub, priv, now, []string{"security"}, PeriodDay, now, now.AddDate(0, 0, 1)); err != nil {
		t.Fatal(err)
	}
	held := NewPrivate()
	held.Take(priv)
	k0, err := pub.Current("security", now)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := k0.Seal([]byte("info"), []byte("a data key of 32 bytes, exactly!"))
	if err != nil {
		t.Fatal(err)
	}
	if dek, err := held.OpenKey(k0.ID, []byte("info"), sealed); err != nil || string(dek) != "a data key of 32 bytes, exactly!" || !held.Has(k0.ID) {
		t.Fatalf("before: %q, %v", dek, err)
	}
	// The file as custody retention run leaves it: day 0 shredded; and a
	// new day generated.
	next := NewPrivate()
	for _, k := range priv.Keys() {
		if k.ID != k0.ID {
			next.keys = append(next.keys, k)
		}
	}
	if _, err := GeneratePairs(NewPublic(), next, now, []string{"security"}, PeriodDay, now.AddDate(0, 0, 2), now.AddDate(0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	added, removed := held.Take(next)
	if len(removed) != 1 || removed[0] != k0.ID || len(added) != 1 || added[0] != "security/2026-12-01.v1" {
		t.Fatalf("Take: added %v, removed %v", added, removed)
	}
	var nf *NotFoundError
	if _, err := held.OpenKey(k0.ID, []byte("info"), sealed); !errors.As(err, &nf) || held.Has(k0.ID) {
		t.Errorf("a removed key: %v", err)
	}
	if !held.Has("security/2026-12-01.v1") || len(held.Keys()) != 2 {
		t.Errorf("after Take: %v", held.Keys())
	}
}
