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
	// A buffer (one per retention class, kind and event hour) is cut into a
	// segment when it reaches FlushBytes of plaintext or FlushEvents events,
	// or FlushAge after its first event.
	FlushBytes  bytesize.Size `yaml:"flush_bytes"`
	FlushEvents int           `yaml:"flush_events"`
	FlushAge    time.Duration `yaml:"flush_age"`
	// LateFlushAge replaces FlushAge for buffers of hours before the
	// previous one (late data), so that an old hour gets few segments.
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
		FlushAge:        5 * time.Minute,
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
	if c.FlushAge < time.Second {
		errs = append(errs, fmt.Errorf("flush_age: %s is below the 1s minimum", c.FlushAge))
	}
	if c.LateFlushAge < c.FlushAge {
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
