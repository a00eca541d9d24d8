package keyring

import (
	"errors"
	"fmt"
	"os"

	"github.com/custodylog/custody/internal/secret"
)

// Config is the `crypto` section. The keyring itself is secret: it is read
// from the file named here, or from CUSTODY_KEYRING (the file's content)
// which takes precedence.
type Config struct {
	KeyringFile string `yaml:"keyring_file"`
	// Period is how event time maps to a key-encryption key: "month" gives
	// one KEK per calendar month, so a month can be crypto-shredded.
	Period string `yaml:"period"`
}

// EnvKeyring names the variable that may hold the whole keyring.
const EnvKeyring = "CUSTODY_KEYRING"

// Defaults returns the configuration for the local stack.
func Defaults() Config { return Config{KeyringFile: "../.stack/keyring.json", Period: "month"} }

// ResolvePaths makes the keyring path relative to baseDir.
func (c *Config) ResolvePaths(baseDir string) { c.KeyringFile = secret.Path(baseDir, c.KeyringFile) }

// Validate reports each problem as "key: reason". A keyring file that does
// not exist yet is not a problem, since `custody keys generate` creates it.
func (c *Config) Validate() error {
	var errs []error
	if c.KeyringFile == "" && os.Getenv(EnvKeyring) == "" {
		errs = append(errs, fmt.Errorf("keyring_file: is required unless %s is set", EnvKeyring))
	}
	if fi, err := os.Stat(c.KeyringFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		errs = append(errs, fmt.Errorf("keyring_file: %s has mode %v; it holds keys and must not be readable by group or others (chmod 600)", c.KeyringFile, fi.Mode().Perm()))
	}
	if c.Period != "month" {
		errs = append(errs, fmt.Errorf("period: %q is not supported; the only period is month", c.Period))
	}
	return errors.Join(errs...)
}
