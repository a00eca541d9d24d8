// Package keyerr prefixes configuration problems with the YAML key path
// they belong to, so that each line of `custody config check` names its key.
package keyerr

import (
	"errors"
	"fmt"
)

// Prefix prepends p (such as "kafka.") to every error joined in err.
func Prefix(p string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Prefix(p, e))
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s%w", p, err)
}

// Flatten returns the leaf errors of a tree built with errors.Join.
func Flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e)...)
		}
		return out
	}
	return []error{err}
}
