package secret

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestStringNeverPrints(t *testing.T) {
	const v = "hunter2-very-secret"
	s := String(v)
	type holder struct {
		Key String `yaml:"key" json:"key"`
	}
	y, err := yaml.Marshal(holder{s})
	if err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(holder{s})
	if err != nil {
		t.Fatal(err)
	}
	outs := []string{fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, holder{s}, holder{s}, s), string(y), string(j)}
	for _, out := range outs {
		if strings.Contains(out, v) {
			t.Errorf("formatted output %q contains the secret", out)
		}
		if !strings.Contains(out, redacted) {
			t.Errorf("formatted output %q lacks the placeholder", out)
		}
	}
	if s.Reveal() != v {
		t.Errorf("Reveal() = %q; want %q", s.Reveal(), v)
	}
}

func TestResolvePrecedence(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "k"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := func(inline String, file, env, want string) {
		t.Helper()
		got, err := Resolve(inline, file, env, dir)
		if err != nil {
			t.Fatalf("Resolve(%q, %q, %q) error: %v", inline, file, env, err)
		}
		if got.Reveal() != want {
			t.Errorf("Resolve(%q, %q, %q) = %q; want %q", inline, file, env, got.Reveal(), want)
		}
	}
	f("inline", "", "", "inline")
	f("inline", "k", "", "from-file")
	t.Setenv("CUSTODY_TEST_SECRET", "from-env")
	f("inline", "k", "CUSTODY_TEST_SECRET", "from-env")
	f("inline", "k", "CUSTODY_TEST_UNSET", "from-file")

	if _, err := Resolve("", "missing", "", dir); err == nil {
		t.Error("Resolve with a missing file: no error")
	}
	if err := os.WriteFile(filepath.Join(dir, "empty"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Resolve("", "empty", "", dir); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("Resolve with an empty file: error %v; want one saying it is empty", err)
	}
}
