package main

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

func writeConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, "custody.yaml")
	doc := "s3:\n  access_key: a\n  secret_key: b\ncrypto:\n  keyring_file: keys/keyring.json\n" + extra
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeysCommands(t *testing.T) {
	t.Setenv(keyring.EnvKeyring, "")
	cfg := writeConfig(t, "")
	out, errOut, code := runCLI(t, "keys", "generate", "--config", cfg, "--from", "2026-01", "--to", "2026-03")
	if code != 0 || !strings.Contains(out, "added 3 keys, 2026-01.v1 to 2026-03.v1") {
		t.Fatalf("keys generate: code %d, out %q, err %q", code, out, errOut)
	}
	out, _, code = runCLI(t, "keys", "generate", "--config", cfg, "--from", "2026-01", "--to", "2026-03")
	if code != 0 || !strings.Contains(out, "already has a key") {
		t.Fatalf("keys generate again: code %d, out %q", code, out)
	}
	out, _, code = runCLI(t, "keys", "rotate", "--config", cfg, "--month", "2026-02")
	if code != 0 || !strings.Contains(out, "added 2026-02.v2") {
		t.Fatalf("keys rotate: code %d, out %q", code, out)
	}
	out, _, code = runCLI(t, "keys", "list", "--config", cfg)
	if code != 0 {
		t.Fatalf("keys list: code %d", code)
	}
	for _, want := range []string{"2026-02.v1  2026-02", "false", "2026-02.v2  2026-02", "true"} {
		if !strings.Contains(out, want) {
			t.Errorf("keys list lacks %q:\n%s", want, out)
		}
	}
	raw, _ := os.ReadFile(filepath.Join(filepath.Dir(cfg), "keys", "keyring.json"))
	kr, err := keyring.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range kr.Keys() {
		if strings.Contains(out, string(k.Material)) || strings.Contains(out, encodeB64(k.Material)) {
			t.Fatalf("keys list printed key material of %s", k.ID)
		}
	}
	if _, err := kr.Current(time.Date(2026, 2, 10, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	_, errOut, code = runCLI(t, "keys", "rotate", "--config", cfg, "--month", "2026-13")
	if code == 0 || !strings.Contains(errOut, `"2026-13" is not YYYY-MM`) {
		t.Errorf("rotate of a bad month: code %d, err %q", code, errOut)
	}
}

func TestArchiveInitCommand(t *testing.T) {
	st := stacktest.Get(t)
	bucket := stacktest.Name(t, "cli-init")
	cfg := writeConfig(t, "")
	t.Setenv("CUSTODY_S3_ENDPOINT", st.S3Endpoint)
	t.Setenv("CUSTODY_S3_ACCESS_KEY", st.S3AccessKey)
	t.Setenv("CUSTODY_S3_SECRET_KEY", st.S3SecretKey)
	t.Setenv("CUSTODY_S3_BUCKET", bucket)
	out, errOut, code := runCLI(t, "archive", "init", "--config", cfg)
	if code != 0 || !strings.Contains(out, "created bucket "+bucket+" with object lock") || !strings.Contains(out, "custody-security: status=Enabled") {
		t.Fatalf("archive init: code %d\nout: %s\nerr: %s", code, out, errOut)
	}
	// Retention lengthened in the config: --check reports drift and fails.
	cfg2 := writeConfig(t, "retention:\n  classes:\n    - name: security\n      days: 400\n")
	_, errOut, code = runCLI(t, "archive", "init", "--check", "--config", cfg2)
	if code == 0 || !strings.Contains(errOut, "drift: rule custody-security is {") || !strings.Contains(errOut, "expiration_days=400") {
		t.Fatalf("archive init --check with drift: code %d, err %q", code, errOut)
	}
	out, _, code = runCLI(t, "archive", "init", "--config", cfg2)
	if code != 0 || !strings.Contains(out, "corrected drift") {
		t.Fatalf("archive init fixing drift: code %d, out %q", code, out)
	}
}

func encodeB64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
