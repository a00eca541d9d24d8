// Package tlsconfig turns the TLS section shared by the Kafka and S3
// configuration into a *tls.Config.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/custodylog/custody/internal/secret"
)

// Config is the YAML form of a client TLS setup.
type Config struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the authorities to trust instead of the
	// system pool.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are an optional client certificate (mTLS).
	CertFile   string `yaml:"cert_file"`
	KeyFile    string `yaml:"key_file"`
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify exists for lab setups only; Validate refuses it
	// together with a CA file because that combination is always a mistake.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// ResolvePaths makes the file names relative to baseDir.
func (c *Config) ResolvePaths(baseDir string) {
	c.CAFile = secret.Path(baseDir, c.CAFile)
	c.CertFile = secret.Path(baseDir, c.CertFile)
	c.KeyFile = secret.Path(baseDir, c.KeyFile)
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	if !c.Enabled {
		if c.CAFile != "" || c.CertFile != "" || c.KeyFile != "" {
			errs = append(errs, errors.New("enabled: is false but TLS files are set; set enabled: true or remove them"))
		}
		return errors.Join(errs...)
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		errs = append(errs, errors.New("cert_file: cert_file and key_file must be set together"))
	}
	if c.InsecureSkipVerify && c.CAFile != "" {
		errs = append(errs, errors.New("insecure_skip_verify: cannot be combined with ca_file"))
	}
	for _, f := range []struct{ key, path string }{{"ca_file", c.CAFile}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.key, err))
		}
	}
	return errors.Join(errs...)
}

// Build returns nil when TLS is disabled.
func (c *Config) Build() (*tls.Config, error) {
	if !c.Enabled {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", c.CAFile)
		}
		tc.RootCAs = pool
	}
	if c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("cannot load client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}
