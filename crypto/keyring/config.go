package keyring

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/custodylog/custody/internal/secret"
)

// Config is the `crypto` section. Writers (archivers) use the public
// keyring and their signing key; the one reader uses the private and
// public keyrings; keys generate writes all three. keyring_file is the
// format v1 keyring, read only, for segments written before format v2.
type Config struct {
	PublicKeyringFile  string `yaml:"public_keyring_file"`
	PrivateKeyringFile string `yaml:"private_keyring_file"`
	SigningKeyFile     string `yaml:"signing_key_file"`
	// HoldKeyringFile holds the private keys of the cases under legal
	// hold (docs/HOLDS.md); only the reader has it. Absent means no hold.
	HoldKeyringFile string `yaml:"hold_keyring_file"`
	// KeyringFile is the v1 (symmetric) keyring; CUSTODY_KEYRING (the
	// file's content) takes precedence. Optional.
	KeyringFile string `yaml:"keyring_file"`
	// Period is how event time maps to a key pair: "day" (one per UTC day
	// and class, so a day is shredded when its retention ends) or "month".
	Period string `yaml:"period"`
	// HorizonDays is how far ahead of today keys generate creates pairs.
	HorizonDays int `yaml:"horizon_days"`
	// PrivateKeyringPassphraseFile holds the passphrase that seals the
	// private keyring with age (scrypt); CUSTODY_KEYRING_PASSPHRASE
	// overrides. Without one the file is plain JSON, mode 0600.
	PrivateKeyringPassphraseFile string `yaml:"private_keyring_passphrase_file"`
	passphrase                   secret.String
}

// PassphraseEnv names the variable that may hold the private keyring's
// passphrase.
const PassphraseEnv = "CUSTODY_KEYRING_PASSPHRASE"

// Resolve resolves paths against baseDir and reads the passphrase.
func (c *Config) Resolve(baseDir string) error {
	c.ResolvePaths(baseDir)
	p, err := secret.Resolve("", c.PrivateKeyringPassphraseFile, PassphraseEnv, baseDir)
	if err != nil {
		return fmt.Errorf("private_keyring_passphrase_file: %w", err)
	}
	c.passphrase = p
	return nil
}

// Passphrase is the private keyring's resolved passphrase ("" for none).
func (c *Config) Passphrase() secret.String { return c.passphrase }

// EnvKeyring names the variable that may hold the whole v1 keyring.
const EnvKeyring = "CUSTODY_KEYRING"

// Defaults returns the configuration for the local stack.
func Defaults() Config {
	return Config{
		PublicKeyringFile:  "../.stack/keys/public-keyring.json",
		PrivateKeyringFile: "../.stack/keys/private-keyring.json",
		SigningKeyFile:     "../.stack/keys/signing-key.json",
		HoldKeyringFile:    "../.stack/keys/hold-keyring.json",
		Period:             PeriodDay,
		HorizonDays:        45,
	}
}

// ResolvePaths makes the file names relative to baseDir.
func (c *Config) ResolvePaths(baseDir string) {
	for _, p := range []*string{&c.PublicKeyringFile, &c.PrivateKeyringFile, &c.SigningKeyFile, &c.KeyringFile, &c.HoldKeyringFile} {
		*p = secret.Path(baseDir, *p)
	}
}

// Validate reports each problem as "key: reason". Files that do not exist
// yet are not problems (keys generate creates them); files that hold
// secrets must not be readable by group or others.
func (c *Config) Validate() error {
	var errs []error
	for _, f := range []struct{ key, path string }{{"public_keyring_file", c.PublicKeyringFile}, {"private_keyring_file", c.PrivateKeyringFile}, {"signing_key_file", c.SigningKeyFile}, {"hold_keyring_file", c.HoldKeyringFile}} {
		if f.path == "" {
			errs = append(errs, fmt.Errorf("%s: is required", f.key))
		}
	}
	for _, f := range []struct{ key, path string }{{"private_keyring_file", c.PrivateKeyringFile}, {"signing_key_file", c.SigningKeyFile}, {"keyring_file", c.KeyringFile}, {"hold_keyring_file", c.HoldKeyringFile}} {
		if fi, err := os.Stat(f.path); f.path != "" && err == nil && fi.Mode().Perm()&0o077 != 0 {
			errs = append(errs, fmt.Errorf("%s: %s has mode %04o; it holds keys and must not be readable by group or others (chmod 600)", f.key, f.path, fi.Mode().Perm()))
		}
	}
	if c.Period != PeriodDay && c.Period != PeriodMonth {
		errs = append(errs, fmt.Errorf("period: %q is not day or month", c.Period))
	}
	if c.HorizonDays < 1 || c.HorizonDays > 366 {
		errs = append(errs, fmt.Errorf("horizon_days: %d is outside 1-366", c.HorizonDays))
	}
	return errors.Join(errs...)
}

// WriteKeys are what a writer holds: public keys, its signing key, and
// the v1 keyring if segments written before format v2 may need checking.
type WriteKeys struct {
	Public *PublicKeyring
	Signer SigningKey
	V1     *Keyring
}

// LoadWriteKeys reads what an archiver needs. The v1 keyring is optional.
func (c *Config) LoadWriteKeys() (WriteKeys, error) {
	var w WriteKeys
	var err error
	if w.Public, err = LoadPublic(c.PublicKeyringFile); err != nil {
		return w, fmt.Errorf("%w (create it with `custody keys generate`)", err)
	}
	if w.Signer, err = LoadSigningKey(c.SigningKeyFile); err != nil {
		return w, fmt.Errorf("%w (create it with `custody keys generate`)", err)
	}
	if _, ok := w.Public.Signer(w.Signer.ID); !ok {
		return w, fmt.Errorf("signing key %s is not a signer of the public keyring %s: readers would refuse what this archiver writes (run `custody keys generate`)", w.Signer.ID, c.PublicKeyringFile)
	}
	if w.V1, err = c.loadV1(); err != nil {
		return w, err
	}
	return w, nil
}

// LoadReadKeys reads what the reader needs: the private and public
// keyrings, and the v1 keyring when there is one.
func (c *Config) LoadReadKeys() (Set, error) {
	var s Set
	var err error
	if s.Private, err = LoadPrivate(c.PrivateKeyringFile, c.passphrase); err != nil {
		return s, err
	}
	if s.Public, err = LoadPublic(c.PublicKeyringFile); err != nil {
		return s, err
	}
	if s.V1, err = c.loadV1(); err != nil {
		return s, err
	}
	if s.Holds, err = LoadHolds(c.HoldKeyringFile, c.passphrase); err != nil {
		return s, err
	}
	return s, nil
}

// loadV1 loads the v1 keyring if one is configured and present.
func (c *Config) loadV1() (*Keyring, error) {
	if os.Getenv(EnvKeyring) == "" {
		if c.KeyringFile == "" {
			return nil, nil
		}
		if _, err := os.Stat(c.KeyringFile); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	}
	return Load(c.KeyringFile)
}

// Generate makes the key material idempotently: key pairs for every class
// from the oldest event a class still keeps (maxDays back) to HorizonDays
// ahead, and a signing key named signer if there is none; it saves the
// three files and returns the pair IDs it added.
func (c *Config) Generate(now time.Time, classes []string, maxDays int, signer string) ([]string, bool, error) {
	priv, pub := NewPrivate(), NewPublic()
	priv.SetPassphrase(c.passphrase)
	var err error
	if _, serr := os.Stat(c.PrivateKeyringFile); serr == nil {
		if priv, err = LoadPrivate(c.PrivateKeyringFile, c.passphrase); err != nil {
			return nil, false, err
		}
		if pub, err = LoadPublic(c.PublicKeyringFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, false, err
		}
		if pub == nil {
			pub = NewPublic()
		}
	}
	added, err := GeneratePairs(pub, priv, now, classes, c.Period, now.AddDate(0, 0, -maxDays), now.AddDate(0, 0, c.HorizonDays))
	if err != nil {
		return nil, false, err
	}
	// A public keyring rebuilt from the private one never loses a key.
	for _, k := range priv.keys {
		found := false
		for _, p := range pub.keys {
			found = found || p.ID == k.ID
		}
		if !found {
			pub.keys = append(pub.keys, PublicKey{ID: k.ID, Class: k.Class, Period: k.Period, Created: k.Created, key: k.key.PublicKey()})
		}
	}
	pub.sort()
	newSigner := false
	sk, err := LoadSigningKey(c.SigningKeyFile)
	if errors.Is(err, os.ErrNotExist) {
		if sk, err = NewSigningKey(signer, now); err != nil {
			return nil, false, err
		}
		if err := sk.Save(c.SigningKeyFile); err != nil {
			return nil, false, err
		}
		newSigner = true
	} else if err != nil {
		return nil, false, err
	}
	pub.AddSigner(sk.Public())
	if err := os.MkdirAll(filepath.Dir(c.PrivateKeyringFile), 0o700); err != nil {
		return nil, false, err
	}
	if err := priv.Save(c.PrivateKeyringFile); err != nil {
		return nil, false, err
	}
	if err := pub.Save(c.PublicKeyringFile); err != nil {
		return nil, false, err
	}
	return added, newSigner, nil
}

// Rotate adds the next version of class's period to the key files.
func (c *Config) Rotate(now time.Time, class, period string) (string, error) {
	priv, err := LoadPrivate(c.PrivateKeyringFile, c.passphrase)
	if err != nil {
		return "", err
	}
	pub, err := LoadPublic(c.PublicKeyringFile)
	if err != nil {
		return "", err
	}
	id, err := RotatePair(pub, priv, now, class, period)
	if err != nil {
		return "", err
	}
	// Private first: a crash between the two leaves a pair no writer uses
	// yet, never a public key whose private half is missing.
	if err := priv.Save(c.PrivateKeyringFile); err != nil {
		return "", err
	}
	return id, pub.Save(c.PublicKeyringFile)
}
