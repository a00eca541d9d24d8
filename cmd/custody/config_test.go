package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
