// Package ingest is the producing side of Custody: event schema,
// validation and redaction, the HTTP endpoint, agents, spool and producer.
package ingest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/bytesize"
	"github.com/custodylog/custody/internal/keyerr"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/tlsconfig"
)

// Config is the `ingest` section.
type Config struct {
	// Listen is the address of the HTTP endpoint (POST /v1/events).
	Listen string `yaml:"listen"`
	// TLS is the endpoint's certificate (reloaded on SIGHUP) and optional
	// client authorities (mTLS). Without it the endpoint serves plain HTTP,
	// which is allowed only on loopback: requests carry bearer tokens.
	TLS tlsconfig.Server `yaml:"tls"`
	// MetricsListen serves /metrics, /healthz and /readyz.
	MetricsListen   string        `yaml:"metrics_listen"`
	MaxRequestBytes bytesize.Size `yaml:"max_request_bytes"`
	// SpoolDir holds the durable queue used while Kafka is unavailable.
	SpoolDir      string        `yaml:"spool_dir"`
	SpoolMaxBytes bytesize.Size `yaml:"spool_max_bytes"`
	Tokens        []Token       `yaml:"tokens"`
}

// Token authorises one service to write for the listed tenants, kinds and
// retention classes. Its value comes from CUSTODY_INGEST_TOKEN_<NAME>
// (upper case, '-' as '_'), from token_file, or from token.
type Token struct {
	Name      string        `yaml:"name"`
	Token     secret.String `yaml:"token"`
	TokenFile string        `yaml:"token_file"`
	Tenants   []string      `yaml:"tenants"`
	// Kinds the token may send; empty means every kind except
	// access_audit, which only Custody's own readers write, so that no
	// sender can forge an entry in the access log.
	Kinds []string `yaml:"kinds"`
	// Classes the token's events may go to; empty means only
	// retention.default_class, so a sender cannot shorten (or lengthen)
	// how long its events are kept unless it is allowed to.
	Classes []string `yaml:"classes"`
}

// AllowedKinds is the set of kinds t may send.
func (t Token) AllowedKinds() map[event.Kind]bool {
	m := map[event.Kind]bool{}
	if len(t.Kinds) == 0 {
		for _, k := range event.Kinds {
			m[k] = k != event.KindAccessAudit
		}
		return m
	}
	for _, k := range t.Kinds {
		m[event.Kind(k)] = true
	}
	return m
}

// AllowedClasses is the set of retention classes t may write to.
func (t Token) AllowedClasses(defaultClass string) map[string]bool {
	m := map[string]bool{}
	if len(t.Classes) == 0 {
		m[defaultClass] = true
		return m
	}
	for _, c := range t.Classes {
		m[c] = true
	}
	return m
}

// Defaults returns the configuration for the local stack.
func Defaults() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		MetricsListen:   "127.0.0.1:9464",
		MaxRequestBytes: 8 << 20,
		SpoolDir:        "../.stack/spool/ingest",
		SpoolMaxBytes:   1 << 30,
	}
}

var tokenName = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// TokenEnv is the environment variable that overrides the named token.
func TokenEnv(name string) string {
	return "CUSTODY_INGEST_TOKEN_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Resolve reads token values from the environment or files, and paths.
func (c *Config) Resolve(baseDir string) error {
	c.SpoolDir = secret.Path(baseDir, c.SpoolDir)
	c.TLS.ResolvePaths(baseDir)
	for i := range c.Tokens {
		t := &c.Tokens[i]
		v, err := secret.Resolve(t.Token, t.TokenFile, TokenEnv(t.Name), baseDir)
		if err != nil {
			return fmt.Errorf("tokens[%d].token_file: %w", i, err)
		}
		t.Token = v
	}
	return nil
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	for _, a := range []struct{ key, addr string }{{"listen", c.Listen}, {"metrics_listen", c.MetricsListen}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			errs = append(errs, fmt.Errorf("%s: %q is not host:port", a.key, a.addr))
		}
	}
	if c.Listen != "" && c.Listen == c.MetricsListen {
		errs = append(errs, errors.New("metrics_listen: must differ from listen"))
	}
	if err := c.TLS.Validate(c.Listen); err != nil {
		errs = append(errs, keyerr.Prefix("tls.", err))
	}
	if c.MaxRequestBytes < 256 {
		errs = append(errs, fmt.Errorf("max_request_bytes: %s is below the 256 B minimum", c.MaxRequestBytes))
	}
	if c.SpoolDir == "" {
		errs = append(errs, errors.New("spool_dir: is required"))
	} else if fi, err := os.Stat(c.SpoolDir); err == nil && !fi.IsDir() {
		errs = append(errs, fmt.Errorf("spool_dir: %s is not a directory", c.SpoolDir))
	}
	if c.SpoolMaxBytes < c.MaxRequestBytes {
		errs = append(errs, fmt.Errorf("spool_max_bytes: %s is smaller than max_request_bytes %s", c.SpoolMaxBytes, c.MaxRequestBytes))
	}
	names := map[string]int{}
	values := map[string]int{}
	for i, t := range c.Tokens {
		if !tokenName.MatchString(t.Name) {
			errs = append(errs, fmt.Errorf("tokens[%d].name: %q must match %s", i, t.Name, tokenName))
		}
		if j, dup := names[t.Name]; dup {
			errs = append(errs, fmt.Errorf("tokens[%d].name: %q is already used by tokens[%d]", i, t.Name, j))
		}
		names[t.Name] = i
		switch {
		case t.Token == "":
			errs = append(errs, fmt.Errorf("tokens[%d].token: is empty (set token_file or %s)", i, TokenEnv(t.Name)))
		case len(t.Token) < 16:
			errs = append(errs, fmt.Errorf("tokens[%d].token: is %d characters; at least 16 are required", i, len(t.Token)))
		default:
			if j, dup := values[t.Token.Reveal()]; dup {
				errs = append(errs, fmt.Errorf("tokens[%d].token: has the same value as tokens[%d]; each service needs its own", i, j))
			}
			values[t.Token.Reveal()] = i
		}
		if len(t.Tenants) == 0 {
			errs = append(errs, fmt.Errorf("tokens[%d].tenants: at least one tenant is required", i))
		}
		for k, tn := range t.Tenants {
			if strings.TrimSpace(tn) == "" {
				errs = append(errs, fmt.Errorf("tokens[%d].tenants[%d]: is empty", i, k))
			}
		}
		for k, kind := range t.Kinds {
			if !slices.Contains(event.Kinds, event.Kind(kind)) {
				errs = append(errs, fmt.Errorf("tokens[%d].kinds[%d]: %q is not one of %s", i, k, kind, kindNames()))
			}
		}
		for k, class := range t.Classes {
			if strings.TrimSpace(class) == "" {
				errs = append(errs, fmt.Errorf("tokens[%d].classes[%d]: is empty", i, k))
			}
		}
	}
	return errors.Join(errs...)
}

func kindNames() string {
	var out []string
	for _, k := range event.Kinds {
		out = append(out, string(k))
	}
	return strings.Join(out, ", ")
}

// CheckClasses reports token classes that are not configured retention
// classes: a cross-section check the composer runs when both the ingest
// and retention sections are in use.
func (c *Config) CheckClasses(configured map[string]bool) error {
	var errs []error
	for i, t := range c.Tokens {
		for k, class := range t.Classes {
			if class != "" && !configured[class] {
				errs = append(errs, fmt.Errorf("tokens[%d].classes[%d]: %q is not a retention class", i, k, class))
			}
		}
	}
	return errors.Join(errs...)
}
