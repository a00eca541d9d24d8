package archive

import (
	"strings"
	"testing"
	"time"
)

func TestRetainUntil(t *testing.T) {
	c := Class{Name: "security", Days: 365}
	f := func(event, want string) {
		t.Helper()
		e, _ := time.Parse(time.RFC3339Nano, event)
		if got := c.RetainUntil(e).Format(time.RFC3339); got != want {
			t.Errorf("RetainUntil(%s) = %s; want %s", event, got, want)
		}
	}
	// End of the event hour plus 365 days; 2028 is a leap year.
	f("2026-11-29T05:12:00.5Z", "2027-11-29T06:00:00Z")
	f("2026-11-29T05:00:00Z", "2027-11-29T06:00:00Z")
	f("2027-12-31T23:59:59.999999999Z", "2028-12-31T00:00:00Z") // 365 days, not a calendar year
	f("2026-11-29T07:30:00+02:00", "2027-11-29T06:00:00Z")
}

func TestRetentionValidate(t *testing.T) {
	r := DefaultRetention()
	if err := r.Validate(); err != nil {
		t.Fatalf("default retention invalid: %v", err)
	}
	r = Retention{DefaultClass: "x", Mode: "COMPLIANCE", Classes: []Class{{Name: "Bad Name", Days: 36500}}}
	err := r.Validate()
	for _, want := range []string{`classes[0].name: "Bad Name" must match`, "classes[0].days: 36500 is outside 1-3650", `default_class: "x" is not one of the classes`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate error %v lacks %q", err, want)
		}
	}
}

func TestSegmentRetainUntil(t *testing.T) {
	r := Retention{DefaultClass: "security", Classes: []Class{{Name: "security", Days: 365}, {Name: "analytics", Days: 30}}}
	for name, want := range map[string]time.Time{
		"security/2026/11/29/05/events+3+00000000000000000042.cseg":        time.Date(2027, 11, 29, 6, 0, 0, 0, time.UTC),
		"analytics/login/2026/11/29/05/events+0+00000000000000000000.cseg": time.Date(2026, 12, 29, 6, 0, 0, 0, time.UTC),
		"other/2026/11/29/05/events+0+00000000000000000000.cseg":           {},
		"security/2026/11/29/05/not-a-segment.json":                        {},
		"security/chain/events+0+00000000000000000000.json":                {},
	} {
		if got := r.SegmentRetainUntil(name); !got.Equal(want) {
			t.Errorf("%s: %v; want %v", name, got, want)
		}
	}
}
