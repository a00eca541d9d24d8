package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runCLI runs the command tree in-process, as a user would from a shell.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRoot()
	var o, e bytes.Buffer
	root.SetOut(&o)
	root.SetErr(&e)
	root.SetArgs(args)
	err := root.Execute()
	var ee exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.code
	default:
		e.WriteString(err.Error())
		code = 1
	}
	return o.String(), e.String(), code
}

func TestConfigCheck(t *testing.T) {
	t.Setenv("CUSTODY_S3_ACCESS_KEY", "")
	t.Setenv("CUSTODY_S3_SECRET_KEY", "")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("s3:\n  access_key: a\n  secret_key: b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("s3:\n  access_key: a\n  secret_key: b\nkafka:\n  partitions: -1\nretention:\n  mode: lax\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code := runCLI(t, "config", "check", "--config", good)
	if code != 0 || !strings.Contains(out, "ok") {
		t.Errorf("config check on a valid file: code %d, stdout %q; want 0 and ok", code, out)
	}
	_, errOut, code := runCLI(t, "config", "check", "--config", bad)
	if code == 0 {
		t.Errorf("config check on a broken file exited 0")
	}
	for _, w := range []string{
		bad + ": kafka.partitions: -1 is not a positive count\n",
		bad + `: retention.mode: "lax" is not COMPLIANCE or GOVERNANCE` + "\n",
		bad + ": 2 problem(s)\n",
	} {
		if !strings.Contains(errOut, w) {
			t.Errorf("config check stderr lacks %q; got:\n%s", w, errOut)
		}
	}
	_, errOut, code = runCLI(t, "config", "check", "--config", filepath.Join(dir, "absent.yaml"))
	if code == 0 || !strings.Contains(errOut, "absent.yaml") {
		t.Errorf("config check on a missing file: code %d, stderr %q; want non-zero naming the file", code, errOut)
	}
}

// Regression test: `custody ingest --help` cited docs/INGEST.md, which
// does not exist. Every docs/ file any help text names must exist.
func TestHelpCitesExistingDocs(t *testing.T) {
	re := regexp.MustCompile(`docs/[A-Za-z0-9_./-]+\.md`)
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, ref := range re.FindAllString(c.Long+c.Short+c.Example, -1) {
			n++
			if _, err := os.Stat(filepath.Join("..", "..", ref)); err != nil {
				t.Errorf("`%s --help` cites %s: %v", c.CommandPath(), ref, err)
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRoot())
	if n == 0 {
		t.Fatal("no help text cites docs/; the check checked nothing")
	}
}

// Each command checks only its own sections: the hook runs on a git
// server with no S3 credentials, keyring or ingest tokens.
func TestConfigCheckFor(t *testing.T) {
	t.Setenv("CUSTODY_S3_ACCESS_KEY", "")
	t.Setenv("CUSTODY_S3_SECRET_KEY", "")
	dir := t.TempDir()
	p := filepath.Join(dir, "git-server.yaml")
	doc := "s3:\n  secret_key_file: /absent/s3\ningest:\n  tokens:\n    - name: web\n      token_file: /absent/tok\n      tenants: [acme]\nagent:\n  outbox_dir: " + dir + "/outbox\n"
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, errOut, code := runCLI(t, "config", "check", "--for", "hook", "--config", p); code != 0 {
		t.Errorf("config check --for hook: code %d, %s%s; want ok (s3 and ingest are not the hook's)", code, out, errOut)
	}
	_, errOut, code := runCLI(t, "config", "check", "--config", p)
	if code == 0 || !strings.Contains(errOut, "s3.secret_key_file") || !strings.Contains(errOut, "ingest.tokens[0].token_file") {
		t.Errorf("config check (all sections): code %d, %s; want the s3 and ingest problems", code, errOut)
	}
	_, errOut, code = runCLI(t, "config", "check", "--for", "nonsense", "--config", p)
	if code == 0 || !strings.Contains(errOut, `--for "nonsense" is not one of`) {
		t.Errorf("config check --for nonsense: code %d, %s", code, errOut)
	}
}
