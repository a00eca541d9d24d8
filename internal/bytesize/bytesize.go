// Package bytesize reads sizes such as "16KiB" or "512MiB" from YAML.
package bytesize

import (
	"fmt"
	"math"

	"github.com/dustin/go-humanize"
	"go.yaml.in/yaml/v3"
)

// Size is a byte count. In YAML it is a plain integer or a string with an
// IEC or SI unit ("16KiB" is 16384, "16KB" is 16000).
type Size int64

// UnmarshalYAML accepts an integer or a string with a unit.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	var str string
	if err := n.Decode(&str); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	v, err := humanize.ParseBytes(str)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a size such as 16KiB: %w", n.Line, str, err)
	}
	if v > math.MaxInt64 {
		return fmt.Errorf("line %d: %q is too large", n.Line, str)
	}
	*s = Size(v)
	return nil
}

// MarshalYAML writes the IEC form.
func (s Size) MarshalYAML() (any, error) { return s.String(), nil }

func (s Size) String() string { return humanize.IBytes(uint64(s)) }
