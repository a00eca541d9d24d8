// Package tlsconfig turns the TLS section shared by the Kafka and S3
// configuration into a *tls.Config.
package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"

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

// Validate reports each problem as "key: reason". addrs are the
// host:port addresses the configuration connects to: verification may be
// turned off only when every one of them is on loopback.
func (c *Config) Validate(addrs ...string) error {
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
	if c.InsecureSkipVerify {
		for _, a := range addrs {
			if !IsLoopback(a) {
				errs = append(errs, fmt.Errorf("insecure_skip_verify: is allowed only when every address is on loopback, and %s is not (set ca_file to the authority that signed it)", a))
				break
			}
		}
	}
	for _, f := range []struct{ key, path string }{{"ca_file", c.CAFile}, {"cert_file", c.CertFile}, {"key_file", c.KeyFile}} {
		if f.path == "" {
			continue
		}
		fh, err := os.Open(f.path)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: cannot read %s: %w", f.key, f.path, errors.Unwrap(err)))
			continue
		}
		fi, err := fh.Stat()
		fh.Close()
		if err == nil && f.key == "key_file" && fi.Mode().Perm()&0o077 != 0 {
			errs = append(errs, fmt.Errorf("key_file: %s has mode %04o; a private key must not be readable by group or others (chmod 600)", f.path, fi.Mode().Perm()))
		}
	}
	return errors.Join(errs...)
}

// IsLoopback reports whether a host:port (or bare host) is on loopback:
// "localhost" or a loopback IP. Names are not resolved.
func IsLoopback(addr string) bool {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
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

// Server is the YAML form of a listener's TLS: a certificate and key, and
// optionally the authorities whose client certificates are required (mTLS).
type Server struct {
	CertFile     string `yaml:"cert_file"`
	KeyFile      string `yaml:"key_file"`
	ClientCAFile string `yaml:"client_ca_file"`
}

// Enabled reports whether a certificate is configured.
func (s *Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" }

// ResolvePaths makes the file names relative to baseDir.
func (s *Server) ResolvePaths(baseDir string) {
	s.CertFile = secret.Path(baseDir, s.CertFile)
	s.KeyFile = secret.Path(baseDir, s.KeyFile)
	s.ClientCAFile = secret.Path(baseDir, s.ClientCAFile)
}

// Validate checks the listener's TLS for the address it listens on: plain
// HTTP is allowed only on loopback, since the requests carry bearer tokens.
func (s *Server) Validate(listen string) error {
	var errs []error
	if !s.Enabled() {
		if !IsLoopback(listen) {
			errs = append(errs, fmt.Errorf("cert_file: listening on %s, which is not loopback, needs TLS (cert_file and key_file): plain HTTP would carry bearer tokens in clear", listen))
		}
		if s.ClientCAFile != "" {
			errs = append(errs, errors.New("client_ca_file: needs cert_file and key_file"))
		}
		return errors.Join(errs...)
	}
	if s.CertFile == "" || s.KeyFile == "" {
		errs = append(errs, errors.New("cert_file: cert_file and key_file must be set together"))
	}
	c := Config{Enabled: true, CAFile: s.ClientCAFile, CertFile: s.CertFile, KeyFile: s.KeyFile}
	errs = append(errs, c.Validate())
	return errors.Join(errs...)
}

// Reloader serves a listener's certificate and reloads it from its files
// on demand (SIGHUP), so certificates rotate without a restart. A failed
// reload keeps the certificate in use. Safe for concurrent use.
type Reloader struct {
	cfg  Server
	cert atomic.Pointer[tls.Certificate]
	pool *x509.CertPool
}

// NewReloader loads the certificate, key and client authorities.
func NewReloader(s Server) (*Reloader, error) {
	r := &Reloader{cfg: s}
	if err := r.Reload(); err != nil {
		return nil, err
	}
	if s.ClientCAFile != "" {
		pem, err := os.ReadFile(s.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("cannot read client_ca_file: %w", err)
		}
		r.pool = x509.NewCertPool()
		if !r.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file %s holds no PEM certificate", s.ClientCAFile)
		}
	}
	return r, nil
}

// Reload reads the certificate and key files again.
func (r *Reloader) Reload() error {
	cert, err := tls.LoadX509KeyPair(r.cfg.CertFile, r.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("cannot load certificate %s: %w", r.cfg.CertFile, err)
	}
	r.cert.Store(&cert)
	return nil
}

// Config is the listener's tls.Config: the current certificate on every
// handshake, client certificates required when client_ca_file is set.
func (r *Reloader) Config() *tls.Config {
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return r.cert.Load(), nil },
	}
	if r.pool != nil {
		tc.ClientCAs = r.pool
		tc.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return tc
}
