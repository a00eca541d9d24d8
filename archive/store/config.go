package store

import (
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/custodylog/custody/internal/keyerr"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/tlsconfig"
)

// Config is the `s3` section. Credentials may come from
// CUSTODY_S3_ACCESS_KEY / CUSTODY_S3_SECRET_KEY or from files.
type Config struct {
	// Endpoint is host:port without a scheme; TLS decides https.
	Endpoint      string           `yaml:"endpoint"`
	Bucket        string           `yaml:"bucket"`
	Region        string           `yaml:"region"`
	AccessKey     secret.String    `yaml:"access_key"`
	AccessKeyFile string           `yaml:"access_key_file"`
	SecretKey     secret.String    `yaml:"secret_key"`
	SecretKeyFile string           `yaml:"secret_key_file"`
	TLS           tlsconfig.Config `yaml:"tls"`
	// Credentials is "static" (the default: access_key and secret_key) or
	// "chain": minio-go's provider chain, first that answers wins —
	// MINIO_ACCESS_KEY/MINIO_SECRET_KEY, AWS_ACCESS_KEY_ID/
	// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), the shared credentials
	// file (AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE), then IAM: a web
	// identity token (AWS_WEB_IDENTITY_TOKEN_FILE with AWS_ROLE_ARN, as
	// Kubernetes service accounts get) or the instance's role. Temporary
	// credentials are refreshed before they expire.
	Credentials string `yaml:"credentials"`
}

// Defaults returns the configuration for the local stack.
func Defaults() Config {
	return Config{Endpoint: "127.0.0.1:9000", Bucket: "custody-archive", Region: "us-east-1", Credentials: "static"}
}

// Resolve reads the credentials from the environment or files.
func (c *Config) Resolve(baseDir string) error {
	c.TLS.ResolvePaths(baseDir)
	var err error
	if c.AccessKey, err = secret.Resolve(c.AccessKey, c.AccessKeyFile, "CUSTODY_S3_ACCESS_KEY", baseDir); err != nil {
		return fmt.Errorf("access_key_file: %w", err)
	}
	if c.SecretKey, err = secret.Resolve(c.SecretKey, c.SecretKeyFile, "CUSTODY_S3_SECRET_KEY", baseDir); err != nil {
		return fmt.Errorf("secret_key_file: %w", err)
	}
	return nil
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	switch {
	case c.Endpoint == "":
		errs = append(errs, errors.New("endpoint: is required"))
	case strings.Contains(c.Endpoint, "://"):
		errs = append(errs, fmt.Errorf("endpoint: %q must be host:port without a scheme; set tls.enabled for https", c.Endpoint))
	default:
		if _, _, err := net.SplitHostPort(c.Endpoint); err != nil {
			errs = append(errs, fmt.Errorf("endpoint: %q is not host:port", c.Endpoint))
		}
	}
	if err := validateBucket(c.Bucket); err != nil {
		errs = append(errs, fmt.Errorf("bucket: %w", err))
	}
	switch c.Credentials {
	case "static":
		if c.AccessKey == "" {
			errs = append(errs, errors.New("access_key: is required (set access_key_file or CUSTODY_S3_ACCESS_KEY)"))
		}
		if c.SecretKey == "" {
			errs = append(errs, errors.New("secret_key: is required (set secret_key_file or CUSTODY_S3_SECRET_KEY)"))
		}
	case "chain":
		if c.AccessKey != "" || c.SecretKey != "" {
			errs = append(errs, errors.New("credentials: is chain, but access_key or secret_key is set too; use one or the other"))
		}
	default:
		errs = append(errs, fmt.Errorf("credentials: %q is not static or chain", c.Credentials))
	}
	if err := c.TLS.Validate(c.Endpoint); err != nil {
		errs = append(errs, keyerr.Prefix("tls.", err))
	}
	return errors.Join(errs...)
}

// validateBucket applies the S3 bucket naming rules.
func validateBucket(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("%q must be 3-63 characters long", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("%q has %q at byte %d; only lowercase letters, digits, '-' and '.' are allowed", b, c, i)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return fmt.Errorf("%q must start and end with a letter or digit", b)
	}
	if net.ParseIP(b) != nil {
		return fmt.Errorf("%q must not be an IP address", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }
