package pipeline

import (
	"strings"
	"testing"
)

// segment_format takes the versions the archiver can write and names
// itself when refused (docs/CONFIG.md); the defaults pass.
func TestConfigSegmentFormat(t *testing.T) {
	c := Defaults()
	if err := c.Validate(); err != nil || c.SegmentFormat != 3 {
		t.Fatalf("defaults: format %d, %v", c.SegmentFormat, err)
	}
	for _, f := range []int{2, 3} {
		c.SegmentFormat = f
		if err := c.Validate(); err != nil {
			t.Errorf("segment_format %d: %v", f, err)
		}
	}
	for _, f := range []int{0, 1, 4} {
		c.SegmentFormat = f
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "segment_format:") {
			t.Errorf("segment_format %d: %v; want refused by name", f, err)
		}
	}
}
