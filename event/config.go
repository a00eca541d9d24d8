package event

import (
	"errors"
	"fmt"
	"time"

	"github.com/custodylog/custody/internal/bytesize"
	"github.com/custodylog/custody/internal/secret"
)

// Config is the `events` section: the limits every producer (ingest, the
// agent, custody send, the git hook) applies to the events it accepts.
type Config struct {
	// MaxEventBytes bounds one event as sent.
	MaxEventBytes bytesize.Size `yaml:"max_event_bytes"`
	// MaxFutureSkew rejects events stamped further ahead than this.
	MaxFutureSkew time.Duration `yaml:"max_future_skew"`
	// LateAfter marks events older than this as late; they are still kept.
	LateAfter time.Duration `yaml:"late_after"`
	// Minimise lists, per retention class, what is kept of the members
	// that identify a person (docs/EVENTS.md §5a).
	Minimise []Minimise `yaml:"minimise"`
}

// Resolve reads the pseudonym keys from the environment or files.
func (c *Config) Resolve(baseDir string) error {
	for i := range c.Minimise {
		m := &c.Minimise[i]
		k, err := secret.Resolve(m.PseudonymKey, m.PseudonymKeyFile, PseudonymKeyEnv(m.Class), baseDir)
		if err != nil {
			return fmt.Errorf("minimise[%d].pseudonym_key_file: %w", i, err)
		}
		m.PseudonymKey = k
	}
	return nil
}

// DefaultConfig returns the documented defaults (docs/EVENTS.md §2).
func DefaultConfig() Config {
	return Config{MaxEventBytes: 16 << 10, MaxFutureSkew: 5 * time.Minute, LateAfter: time.Hour}
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	if c.MaxEventBytes < 256 || c.MaxEventBytes > 1<<20 {
		errs = append(errs, fmt.Errorf("max_event_bytes: %s is outside 256 B-1 MiB", c.MaxEventBytes))
	}
	if c.MaxFutureSkew <= 0 {
		errs = append(errs, fmt.Errorf("max_future_skew: %s is not a positive duration", c.MaxFutureSkew))
	}
	if c.LateAfter <= 0 {
		errs = append(errs, fmt.Errorf("late_after: %s is not a positive duration", c.LateAfter))
	}
	seen := map[string]int{}
	for i := range c.Minimise {
		m := &c.Minimise[i]
		if m.Class == "" {
			errs = append(errs, fmt.Errorf("minimise[%d].class: is required", i))
		} else if j, dup := seen[m.Class]; dup {
			errs = append(errs, fmt.Errorf("minimise[%d].class: %q already has rules at minimise[%d]", i, m.Class, j))
		}
		seen[m.Class] = i
		if err := m.validate(); err != nil {
			for _, e := range flatten(err) {
				errs = append(errs, fmt.Errorf("minimise[%d].%w", i, e))
			}
		}
	}
	return errors.Join(errs...)
}

// CheckClasses reports minimisation rules for classes that are not
// configured: a cross-section check with the retention section.
func (c *Config) CheckClasses(configured map[string]bool) error {
	var errs []error
	for i, m := range c.Minimise {
		if m.Class != "" && !configured[m.Class] {
			errs = append(errs, fmt.Errorf("minimise[%d].class: %q is not a retention class", i, m.Class))
		}
	}
	return errors.Join(errs...)
}

func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
