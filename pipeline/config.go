// Package pipeline is the archiver: a Kafka consumer group that cuts the
// event stream into time-partitioned encrypted segments.
package pipeline

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/custodylog/custody/internal/bytesize"
)

// Config is the `archive` section, read by `custody archive run`.
type Config struct {
	GroupID       string `yaml:"group_id"`
	MetricsListen string `yaml:"metrics_listen"`
	// A buffer (one per retention class and event hour, and kind under
	// format 2) is cut into a segment when it reaches FlushBytes of
	// plaintext or FlushEvents events, and by the clock (docs/PIPELINE.md
	// section 1): HourCloseDelay after its hour ends, or FlushAge after
	// its first event when that comes first (0: no such limit).
	FlushBytes     bytesize.Size `yaml:"flush_bytes"`
	FlushEvents    int           `yaml:"flush_events"`
	FlushAge       time.Duration `yaml:"flush_age"`
	HourCloseDelay time.Duration `yaml:"hour_close_delay"`
	// LateFlushAge replaces both for a buffer opened after its hour closed
	// (late data), so that an old hour gets few segments.
	LateFlushAge time.Duration `yaml:"late_flush_age"`
	// MemoryCap bounds all open buffers together; at the cap the oldest
	// buffers are flushed early.
	MemoryCap bytesize.Size `yaml:"memory_cap"`
	// ShutdownTimeout bounds the flush and commit done on SIGTERM.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout"`
	// SegmentFormat is the format version written: 3 (columnar body), or
	// 2 while readers that know only v2 are still running.
	SegmentFormat int `yaml:"segment_format"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{
		GroupID:         "custody-archiver",
		MetricsListen:   "127.0.0.1:9465",
		FlushBytes:      64 << 20,
		FlushEvents:     500000,
		HourCloseDelay:  5 * time.Minute,
		LateFlushAge:    time.Hour,
		MemoryCap:       512 << 20,
		ShutdownTimeout: 30 * time.Second,
		SegmentFormat:   3,
	}
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	if c.GroupID == "" {
		errs = append(errs, errors.New("group_id: is required"))
	}
	if _, _, err := net.SplitHostPort(c.MetricsListen); err != nil {
		errs = append(errs, fmt.Errorf("metrics_listen: %q is not host:port", c.MetricsListen))
	}
	if c.FlushBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("flush_bytes: %s is below the 1 KiB minimum", c.FlushBytes))
	}
	if c.FlushEvents < 1 {
		errs = append(errs, fmt.Errorf("flush_events: %d is not a positive count", c.FlushEvents))
	}
	if c.FlushAge != 0 && c.FlushAge < time.Second {
		errs = append(errs, fmt.Errorf("flush_age: %s is below the 1s minimum (0: cut at the hour's close only)", c.FlushAge))
	}
	if c.HourCloseDelay < 0 || c.HourCloseDelay > time.Hour {
		errs = append(errs, fmt.Errorf("hour_close_delay: %s is outside 0-1h", c.HourCloseDelay))
	}
	if c.LateFlushAge < time.Second {
		errs = append(errs, fmt.Errorf("late_flush_age: %s is below the 1s minimum", c.LateFlushAge))
	} else if c.LateFlushAge < c.FlushAge {
		errs = append(errs, fmt.Errorf("late_flush_age: %s is shorter than flush_age %s", c.LateFlushAge, c.FlushAge))
	}
	if c.MemoryCap < c.FlushBytes {
		errs = append(errs, fmt.Errorf("memory_cap: %s is smaller than flush_bytes %s", c.MemoryCap, c.FlushBytes))
	}
	if c.SegmentFormat != 2 && c.SegmentFormat != 3 {
		errs = append(errs, fmt.Errorf("segment_format: %d is not 2 or 3", c.SegmentFormat))
	}
	if c.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("shutdown_timeout: %s is not a positive duration", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// due is when the clock cuts a buffer of the given hour opened at opened
// (docs/PIPELINE.md section 1). A buffer opened before its hour closed
// (ended, plus HourCloseDelay for events still on their way) is cut at
// the close, so steady traffic gets one segment per hour and partition,
// or FlushAge after it opened if that is sooner. A buffer opened after
// the close holds late data and is cut LateFlushAge after it opened, so
// an old hour gets few segments however long late events trickle in.
func (c *Config) due(hour, opened time.Time) time.Time {
	closes := hour.Add(time.Hour + c.HourCloseDelay)
	if !opened.Before(closes) {
		return opened.Add(c.LateFlushAge)
	}
	if c.FlushAge > 0 && opened.Add(c.FlushAge).Before(closes) {
		return opened.Add(c.FlushAge)
	}
	return closes
}
