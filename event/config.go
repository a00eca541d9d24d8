package event

import (
	"errors"
	"fmt"
	"time"

	"github.com/custodylog/custody/internal/bytesize"
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
	return errors.Join(errs...)
}
