// Package secret holds configuration values that must never be printed,
// logged or marshalled, and resolves them from the environment or files.
package secret

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

const redacted = "[redacted]"

// String is a secret value. Every way of formatting it prints a placeholder,
// so a config dump or a log line can never leak it. Use Reveal to get the
// value at the single place that needs it.
type String string

// String implements fmt.Stringer without revealing the value.
func (s String) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString implements fmt.GoStringer without revealing the value.
func (s String) GoString() string { return s.String() }

// MarshalYAML keeps the value out of YAML dumps.
func (s String) MarshalYAML() (any, error) { return s.String(), nil }

// MarshalText keeps the value out of JSON and other text encodings.
func (s String) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret value.
func (s String) Reveal() string { return string(s) }

// Resolve returns the secret from, in order of precedence, the environment
// variable env, the file named by file (relative to baseDir), or inline.
// A file's trailing newline is removed, since editors and `echo` add one.
func Resolve(inline String, file, env, baseDir string) (String, error) {
	if env != "" {
		if v, ok := os.LookupEnv(env); ok && v != "" {
			return String(v), nil
		}
	}
	if file != "" {
		b, err := os.ReadFile(Path(baseDir, file))
		if err != nil {
			return "", fmt.Errorf("cannot read secret file: %w", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", file)
		}
		return String(v), nil
	}
	return inline, nil
}

// Path resolves p relative to baseDir unless it is absolute or empty.
func Path(baseDir, p string) string {
	if p == "" || filepath.IsAbs(p) || baseDir == "" {
		return p
	}
	return filepath.Join(baseDir, p)
}
