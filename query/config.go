// Package query answers investigators' questions over the archive.
package query

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/custodylog/custody/internal/bytesize"
)

// Config is the `query` section.
type Config struct {
	// Concurrency bounds how many segments are fetched and decoded at once.
	Concurrency int `yaml:"concurrency"`
	// MaxSegmentBytes caps the decompressed size of one segment, so a
	// decompression bomb cannot exhaust memory.
	MaxSegmentBytes bytesize.Size `yaml:"max_segment_bytes"`
	// MemoryBudget bounds the matches one query holds in memory (the hour
	// being emitted and the next, read meanwhile); past it
	// they are sorted into temporary files and merged from there.
	MemoryBudget bytesize.Size `yaml:"memory_budget"`
	// HeadCache keeps segments' heads on local disk (custody serve).
	HeadCache HeadCacheConfig `yaml:"head_cache"`
}

// Defaults returns the documented defaults.
func Defaults() Config {
	return Config{Concurrency: 4, MaxSegmentBytes: 1 << 30, MemoryBudget: 256 << 20, HeadCache: HeadCacheConfig{MaxBytes: 2 << 30}}
}

// ResolvePaths makes the head cache's directory relative to baseDir.
func (c *Config) ResolvePaths(baseDir string) {
	if c.HeadCache.Dir != "" && !filepath.IsAbs(c.HeadCache.Dir) && baseDir != "" {
		c.HeadCache.Dir = filepath.Join(baseDir, c.HeadCache.Dir)
	}
}

// Validate reports each problem as "key: reason".
func (c *Config) Validate() error {
	var errs []error
	if c.Concurrency < 1 || c.Concurrency > 256 {
		errs = append(errs, fmt.Errorf("concurrency: %d is outside 1-256", c.Concurrency))
	}
	if c.MaxSegmentBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("max_segment_bytes: %s is below the 1 MiB minimum", c.MaxSegmentBytes))
	}
	if c.MemoryBudget < 1<<20 {
		errs = append(errs, fmt.Errorf("memory_budget: %s is below the 1 MiB minimum", c.MemoryBudget))
	}
	errs = append(errs, c.HeadCache.Validate())
	return errors.Join(errs...)
}
