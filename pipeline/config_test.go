package pipeline

import (
	"strings"
	"testing"
	"time"
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

// due is docs/PIPELINE.md section 1's clock cut, case by case: a buffer
// opened before its hour closed is cut at the close (hour end plus
// hour_close_delay), or flush_age after it opened when that is sooner; a
// buffer opened at or after the close holds late data and is cut
// late_flush_age after it opened.
func TestDue(t *testing.T) {
	h := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	at := func(m int) time.Time { return h.Add(time.Duration(m) * time.Minute) }
	for _, c := range []struct {
		name     string
		flushAge time.Duration
		opened   time.Time
		want     time.Time
	}{
		{"opened at the hour's start: the close", 0, at(0), at(65)},
		{"opened in the close delay: the close", 0, at(63), at(65)},
		{"opened before the hour (clock skew): the close", 0, at(-3), at(65)},
		{"opened at the close: late, late_flush_age", 0, at(65), at(125)},
		{"opened days later: late", 0, at(3 * 24 * 60), at(3*24*60 + 60)},
		{"flush_age sooner than the close", 5 * time.Minute, at(10), at(15)},
		{"flush_age past the close: the close", 5 * time.Minute, at(62), at(65)},
		{"flush_age does not shorten late data", 5 * time.Minute, at(70), at(130)},
	} {
		cfg := Defaults()
		cfg.FlushAge = c.flushAge
		if got := cfg.due(h, c.opened); !got.Equal(c.want) {
			t.Errorf("%s: due %s; want %s", c.name, got.Format("15:04"), c.want.Format("15:04"))
		}
	}
}
