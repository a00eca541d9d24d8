// Package serve is the one reader of the archive (`custody serve`): an
// HTTP API that authenticates every request, authorises it by role and
// tenant, binds every read of event content to an open case, and answers
// only after Kafka has acknowledged the access_audit event. docs/SERVE.md
// is its contract and api/openapi.yaml its API.
package serve

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/custodylog/custody/internal/bytesize"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/tlsconfig"
)

// Config is the `serve` section.
type Config struct {
	// Listen is the API address. Without TLS it must be loopback: requests
	// carry bearer tokens.
	Listen string           `yaml:"listen"`
	TLS    tlsconfig.Server `yaml:"tls"`
	// MetricsListen serves /metrics, /healthz and /readyz.
	MetricsListen string `yaml:"metrics_listen"`
	// Tokens are the API tokens, each stored as the SHA-256 of its value
	// only: the file never holds a usable credential.
	Tokens []Token `yaml:"tokens"`
	// OIDC accepts bearer JWTs from an identity provider (serve/oidc.go).
	OIDC OIDC `yaml:"oidc"`
	// Certificates map verified client certificates (tls.client_ca_file)
	// to identities, by the certificate's subject common name.
	Certificates []Certificate `yaml:"certificates"`
	// Roles override max_range and max_results per role.
	Roles map[Role]Limits `yaml:"roles"`
	// MaxRange is the longest time range one query may cover.
	MaxRange time.Duration `yaml:"max_range"`
	// MaxConcurrent bounds queries running at once, overall and per
	// identity; more are answered 429.
	MaxConcurrent            int `yaml:"max_concurrent"`
	MaxConcurrentPerIdentity int `yaml:"max_concurrent_per_identity"`
	// MaxResults bounds the events one query returns (0: no bound).
	MaxResults int `yaml:"max_results"`
	// MaxRequestBytes bounds a request body.
	MaxRequestBytes bytesize.Size `yaml:"max_request_bytes"`
	// QueryTimeout bounds one query from request to trailer.
	QueryTimeout time.Duration `yaml:"query_timeout"`
	// AccessLogRecent is how far back the access log also reads Kafka, for
	// events the archiver has not stored yet; it must exceed the
	// archiver's flush ages.
	AccessLogRecent time.Duration `yaml:"access_log_recent"`
	// Exports shapes disclosure exports (docs/EXPORTS.md).
	Exports ExportsConfig `yaml:"exports"`
	// Console is the web console at / (docs/CONSOLE.md).
	Console ConsoleConfig `yaml:"console"`
}

// ConsoleConfig is serve.console.
type ConsoleConfig struct {
	// Disabled serves the API alone.
	Disabled bool `yaml:"disabled"`
	// SessionKeyFile holds the 64 hex digits of the key that seals session
	// cookies (CUSTODY_CONSOLE_SESSION_KEY overrides it). Every instance
	// behind one address needs the same key. Without one, each start
	// draws a key of its own: sessions then end with the process and do
	// not cross instances.
	SessionKeyFile string `yaml:"session_key_file"`
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration `yaml:"session_ttl"`

	sessionKey []byte // resolved; nil: draw one
}

// ExportsConfig is serve.exports.
type ExportsConfig struct {
	// Approvals is how many distinct legal identities an export needs,
	// its requester's included: 2 is the four-eyes rule.
	Approvals int `yaml:"approvals"`
	// MaxEvents bounds one export; past it the export fails and says so.
	MaxEvents int `yaml:"max_events"`
	// TempDir holds the sealed temporary files of running exports ("":
	// the system's).
	TempDir string `yaml:"temp_dir"`
	// MemoryBudget replaces query.memory_budget for exports: an export runs
	// in the background, where a small footprint matters more than speed.
	MemoryBudget bytesize.Size `yaml:"memory_budget"`
	// TakeoverAfter is how long a running export's heartbeat may be silent
	// before another instance takes it over (its own died).
	TakeoverAfter time.Duration `yaml:"takeover_after"`
}

// Token is one API token: for automation, or for the local stack's demo.
type Token struct {
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the token's value
	// (`custody serve token` prints a new token and its hash).
	SHA256 string `yaml:"sha256"`
	// SHA256File holds SHA256 instead (the local stack generates its demo
	// tokens and writes their hashes there).
	SHA256File string `yaml:"sha256_file"`
	Role       Role   `yaml:"role"`
	// Tenants the identity may read; empty means every tenant.
	Tenants []string `yaml:"tenants"`
}

// Certificate admits the holder of a client certificate whose subject
// common name is Subject, issued by one of tls.client_ca_file.
type Certificate struct {
	Subject string   `yaml:"subject"`
	Role    Role     `yaml:"role"`
	Tenants []string `yaml:"tenants"`
}

// Limits bound one role's queries and exports; zero keeps the section's
// value.
type Limits struct {
	MaxRange   time.Duration `yaml:"max_range"`
	MaxResults int           `yaml:"max_results"`
	// MaxExportEvents bounds one export by this role, below
	// exports.max_events.
	MaxExportEvents int `yaml:"max_export_events"`
}

// exportLimit is the most events one export by role r may hold.
func (c *Config) exportLimit(r Role) int {
	if l, ok := c.Roles[r]; ok && l.MaxExportEvents > 0 {
		return min(l.MaxExportEvents, c.Exports.MaxEvents)
	}
	return c.Exports.MaxEvents
}

// limits are the bounds of a role's queries.
func (c *Config) limits(r Role) (time.Duration, int) {
	maxRange, maxResults := c.MaxRange, c.MaxResults
	if l, ok := c.Roles[r]; ok {
		if l.MaxRange > 0 {
			maxRange = l.MaxRange
		}
		if l.MaxResults > 0 {
			maxResults = l.MaxResults
		}
	}
	return maxRange, maxResults
}

// Role is what an identity may do (docs/SERVE.md §3).
type Role string

// The roles. Deny by default: a role may do only what its row allows.
const (
	Investigator Role = "investigator" // query, scoped to tenants
	Legal        Role = "legal"        // query, cases (and, later, exports and holds)
	Auditor      Role = "auditor"      // the access log; never event content
	Admin        Role = "admin"        // keys and retention; never event content
)

var roles = map[Role]bool{Investigator: true, Legal: true, Auditor: true, Admin: true}

// Defaults are the local stack's: loopback, no tokens.
func Defaults() Config {
	return Config{
		Listen: "127.0.0.1:8480", MetricsListen: "127.0.0.1:9482",
		MaxRange: 31 * 24 * time.Hour, MaxConcurrent: 8, MaxConcurrentPerIdentity: 2,
		MaxRequestBytes: 64 << 10, QueryTimeout: 10 * time.Minute, AccessLogRecent: 3 * time.Hour,
		Exports: ExportsConfig{Approvals: 1, MaxEvents: 10_000_000, TakeoverAfter: 2 * time.Minute, MemoryBudget: 32 << 20},
		Console: ConsoleConfig{SessionTTL: 8 * time.Hour},
	}
}

// Resolve makes paths relative to baseDir and reads the token hashes kept
// in files.
func (c *Config) Resolve(baseDir string) error {
	c.TLS.ResolvePaths(baseDir)
	if c.Exports.TempDir != "" {
		c.Exports.TempDir = secret.Path(baseDir, c.Exports.TempDir)
	}
	if err := c.OIDC.resolve(baseDir); err != nil {
		return err
	}
	key, err := secret.Resolve("", c.Console.SessionKeyFile, "CUSTODY_CONSOLE_SESSION_KEY", baseDir)
	if err != nil {
		return fmt.Errorf("console.session_key_file: %w", err)
	}
	if key != "" {
		if c.Console.sessionKey, err = parseSessionKey(key.Reveal()); err != nil {
			return fmt.Errorf("console.session_key_file (or CUSTODY_CONSOLE_SESSION_KEY): %w", err)
		}
	}
	for i := range c.Tokens {
		t := &c.Tokens[i]
		if t.SHA256File == "" {
			continue
		}
		if t.SHA256 != "" {
			return fmt.Errorf("tokens[%d].sha256_file: set sha256 or sha256_file, not both", i)
		}
		b, err := os.ReadFile(secret.Path(baseDir, t.SHA256File))
		if err != nil {
			return fmt.Errorf("tokens[%d].sha256_file: %w", i, err)
		}
		t.SHA256 = strings.TrimSpace(string(b))
	}
	return nil
}

var tokenName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	if err := c.TLS.Validate(c.Listen); err != nil {
		errs = append(errs, err)
	}
	if c.MetricsListen == "" {
		errs = append(errs, errors.New("metrics_listen: is required"))
	}
	names, hashes := map[string]int{}, map[string]int{}
	for i, t := range c.Tokens {
		if !tokenName.MatchString(t.Name) {
			errs = append(errs, fmt.Errorf("tokens[%d].name: %q must match %s", i, t.Name, tokenName))
		}
		if j, dup := names[t.Name]; dup {
			errs = append(errs, fmt.Errorf("tokens[%d].name: %q is already used by tokens[%d]", i, t.Name, j))
		}
		names[t.Name] = i
		if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
			errs = append(errs, fmt.Errorf("tokens[%d].sha256: want the 64 hex digits of the token's SHA-256 (never the token itself)", i))
		} else if j, dup := hashes[t.SHA256]; dup {
			errs = append(errs, fmt.Errorf("tokens[%d].sha256: the same token as tokens[%d]", i, j))
		} else {
			hashes[t.SHA256] = i
		}
		if !roles[t.Role] {
			errs = append(errs, fmt.Errorf("tokens[%d].role: %q is not investigator, legal, auditor or admin", i, t.Role))
		}
	}
	for i, ct := range c.Certificates {
		if ct.Subject == "" {
			errs = append(errs, fmt.Errorf("certificates[%d].subject: is required", i))
		}
		if !roles[ct.Role] {
			errs = append(errs, fmt.Errorf("certificates[%d].role: %q is not investigator, legal, auditor or admin", i, ct.Role))
		}
	}
	if len(c.Certificates) > 0 && c.TLS.ClientCAFile == "" {
		errs = append(errs, errors.New("certificates: need tls.client_ca_file, the authorities that issue them"))
	}
	for r, l := range c.Roles {
		if !roles[r] {
			errs = append(errs, fmt.Errorf("roles.%s: is not investigator, legal, auditor or admin", r))
		}
		if l.MaxRange < 0 || l.MaxRange > 0 && l.MaxRange < time.Hour || l.MaxResults < 0 || l.MaxExportEvents < 0 {
			errs = append(errs, fmt.Errorf("roles.%s: max_range %s must be 0 or at least 1h, max_results %d and max_export_events %d not negative", r, l.MaxRange, l.MaxResults, l.MaxExportEvents))
		}
	}
	if err := c.OIDC.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxRange < time.Hour {
		errs = append(errs, fmt.Errorf("max_range: %s is below 1h", c.MaxRange))
	}
	if c.MaxConcurrent < 1 || c.MaxConcurrentPerIdentity < 1 || c.MaxConcurrentPerIdentity > c.MaxConcurrent {
		errs = append(errs, fmt.Errorf("max_concurrent: %d and max_concurrent_per_identity: %d must be at least 1, the second at most the first", c.MaxConcurrent, c.MaxConcurrentPerIdentity))
	}
	if c.MaxResults < 0 {
		errs = append(errs, fmt.Errorf("max_results: %d is negative", c.MaxResults))
	}
	if c.MaxRequestBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("max_request_bytes: %s is below 1 KiB", c.MaxRequestBytes))
	}
	if c.AccessLogRecent < time.Minute || c.AccessLogRecent > 7*24*time.Hour {
		errs = append(errs, fmt.Errorf("access_log_recent: %s is outside 1m-168h", c.AccessLogRecent))
	}
	if c.QueryTimeout < time.Second {
		errs = append(errs, fmt.Errorf("query_timeout: %s is below 1s", c.QueryTimeout))
	}
	if c.Exports.Approvals < 1 || c.Exports.Approvals > 5 {
		errs = append(errs, fmt.Errorf("exports.approvals: %d is outside 1-5 (2 is the four-eyes rule)", c.Exports.Approvals))
	}
	if c.Exports.TakeoverAfter < time.Second || c.Exports.TakeoverAfter > time.Hour {
		errs = append(errs, fmt.Errorf("exports.takeover_after: %s is outside 1s-1h", c.Exports.TakeoverAfter))
	}
	if c.Exports.MemoryBudget < 1<<20 {
		errs = append(errs, fmt.Errorf("exports.memory_budget: %s is below 1 MiB", c.Exports.MemoryBudget))
	}
	if !c.Console.Disabled && (c.Console.SessionTTL < time.Minute || c.Console.SessionTTL > 7*24*time.Hour) {
		errs = append(errs, fmt.Errorf("console.session_ttl: %s is outside 1m-168h", c.Console.SessionTTL))
	}
	if c.Exports.MaxEvents < 1 {
		errs = append(errs, fmt.Errorf("exports.max_events: %d must be at least 1", c.Exports.MaxEvents))
	}
	return errors.Join(errs...)
}

// HashToken is what a token's sha256 entry holds.
func HashToken(token string) string {
	s := sha256.Sum256([]byte(token))
	return hex.EncodeToString(s[:])
}
