package main

import (
	"testing"

	"github.com/custodylog/custody/internal/bytesize"
	"github.com/custodylog/custody/pipeline"
)

// The archiver's heap limit keeps its RSS within memory_cap + 128 MiB
// with format 3 (buffers of encoded blocks); format 2's raw buffers get
// the old, wider margin.
func TestMemoryLimit(t *testing.T) {
	for _, c := range []struct {
		format int
		cap    int64
		want   int64
	}{{3, 128 << 20, 224 << 20}, {3, 512 << 20, 608 << 20}, {3, 4 << 30, 4<<30 + 96<<20}, {2, 512 << 20, 1 << 30}} {
		cfg := pipeline.Defaults()
		cfg.SegmentFormat, cfg.MemoryCap = c.format, bytesize.Size(c.cap)
		if got := memoryLimit(cfg); got != c.want {
			t.Errorf("format %d, cap %d MiB: limit %d MiB; want %d", c.format, c.cap>>20, got>>20, c.want>>20)
		}
	}
}
