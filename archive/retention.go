// Package archive holds what is common to the archive's writers and readers:
// retention classes and how long their segments are kept.
package archive

import (
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/custodylog/custody/archive/segment"
)

// Retention is the `retention` section.
type Retention struct {
	// DefaultClass is used for events that name no class.
	DefaultClass string `yaml:"default_class"`
	// Mode is the object-lock mode put on every segment: COMPLIANCE (no one,
	// root included, can delete early) or GOVERNANCE (a privileged user can).
	Mode    string  `yaml:"mode"`
	Classes []Class `yaml:"classes"`
	// Grace is how long after a period's last event passed its class's
	// retention `custody retention run` waits before shredding its keys: a
	// margin for clocks and late runs, never more than a day.
	Grace time.Duration `yaml:"grace"`
}

// Class is one retention class. Its name is the first element of every
// object key, so that one lifecycle rule per prefix can expire it.
type Class struct {
	Name string `yaml:"name"`
	Days int    `yaml:"days"`
}

// DefaultRetention keeps security data for one year under COMPLIANCE lock.
func DefaultRetention() Retention {
	return Retention{DefaultClass: "security", Mode: "COMPLIANCE", Classes: []Class{{Name: "security", Days: 365}}, Grace: 6 * time.Hour}
}

var className = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)

// maxDays bounds retention at ten years: a typo of 36500 days under a
// COMPLIANCE lock would make data undeletable for a century.
const maxDays = 3650

// Validate reports each problem as "key: reason".
func (r *Retention) Validate() error {
	var errs []error
	if r.Mode != "COMPLIANCE" && r.Mode != "GOVERNANCE" {
		errs = append(errs, fmt.Errorf("mode: %q is not COMPLIANCE or GOVERNANCE", r.Mode))
	}
	if len(r.Classes) == 0 {
		errs = append(errs, errors.New("classes: at least one class is required"))
	}
	seen := map[string]int{}
	for i, c := range r.Classes {
		if !className.MatchString(c.Name) {
			errs = append(errs, fmt.Errorf("classes[%d].name: %q must match %s", i, c.Name, className))
		}
		if j, dup := seen[c.Name]; dup {
			errs = append(errs, fmt.Errorf("classes[%d].name: %q is already defined at classes[%d]", i, c.Name, j))
		}
		seen[c.Name] = i
		if c.Days < 1 || c.Days > maxDays {
			errs = append(errs, fmt.Errorf("classes[%d].days: %d is outside 1-%d", i, c.Days, maxDays))
		}
	}
	if r.Grace < 0 || r.Grace > 24*time.Hour {
		errs = append(errs, fmt.Errorf("grace: %s is outside 0-24h", r.Grace))
	}
	if _, ok := seen[r.DefaultClass]; !ok {
		errs = append(errs, fmt.Errorf("default_class: %q is not one of the classes", r.DefaultClass))
	}
	return errors.Join(errs...)
}

// Names lists the class names in configuration order.
func (r *Retention) Names() []string {
	out := make([]string, len(r.Classes))
	for i, c := range r.Classes {
		out[i] = c.Name
	}
	return out
}

// NameSet is the set of class names.
func (r *Retention) NameSet() map[string]bool {
	m := make(map[string]bool, len(r.Classes))
	for _, c := range r.Classes {
		m[c.Name] = true
	}
	return m
}

// Class returns the class named name.
func (r *Retention) Class(name string) (Class, bool) {
	for _, c := range r.Classes {
		if c.Name == name {
			return c, true
		}
	}
	return Class{}, false
}

// RetainUntil is when a segment of the given event hour may be deleted: the
// end of that hour plus the class's retention period.
func (c Class) RetainUntil(hour time.Time) time.Time {
	return hour.UTC().Truncate(time.Hour).Add(time.Hour).AddDate(0, 0, c.Days)
}

// SegmentRetainUntil is RetainUntil for the segment of the given object
// name, from its class and hour. A name that is not a segment's, or of no
// configured class, gives the zero time: nothing says to keep it.
func (r Retention) SegmentRetainUntil(name string) time.Time {
	m, err := segment.ParseName(name)
	if err != nil {
		return time.Time{}
	}
	c, ok := r.Class(m.Class)
	if !ok {
		return time.Time{}
	}
	return c.RetainUntil(m.Hour)
}

// MaxDays is the longest retention of the configured classes.
func (r Retention) MaxDays() int {
	n := 0
	for _, c := range r.Classes {
		n = max(n, c.Days)
	}
	return n
}

// CheckpointDays is how long the chain's checkpoints (docs/CHAIN.md) are
// kept after they are written, by lifecycle: two days more than the
// longest class, so that every segment a checkpoint lists, stored before
// it, is gone before it.
func (r Retention) CheckpointDays() int { return r.MaxDays() + 2 }
