package main

import (
	"encoding/base64"
	"encoding/json"
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
	doc := "s3:\n  access_key: a\n  secret_key: b\ncrypto:\n  public_keyring_file: keys/public.json\n  private_keyring_file: keys/private.json\n  signing_key_file: keys/signing.json\n  horizon_days: 3\n" + extra
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestKeysCommands(t *testing.T) {
	t.Setenv(keyring.EnvKeyring, "")
	cfg := writeConfig(t, "retention:\n  classes: [{name: security, days: 10}, {name: analytics, days: 5}]\n")
	out, errOut, code := runCLI(t, "keys", "generate", "--config", cfg, "--signer", "archiver-test")
	// security: 10 days back to 3 ahead (14 days); analytics: 5 back to 3
	// ahead... both classes cover the longest retention, 10 days back.
	if code != 0 || !strings.Contains(out, "added 28 key pairs") || !strings.Contains(out, "new signing key archiver-test") {
		t.Fatalf("keys generate: code %d, out %q, err %q", code, out, errOut)
	}
	out, _, code = runCLI(t, "keys", "generate", "--config", cfg)
	if code != 0 || !strings.Contains(out, "every class has its keys") || strings.Contains(out, "signing key") {
		t.Fatalf("keys generate again (idempotent): code %d, out %q", code, out)
	}
	dir := filepath.Join(filepath.Dir(cfg), "keys")
	for _, f := range []string{"private.json", "signing.json"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, %v; want 0600", f, fi.Mode().Perm(), err)
		}
	}
	out, _, code = runCLI(t, "keys", "list", "--config", cfg)
	today := time.Now().UTC().Format("2006-01-02")
	states := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 5 {
			states[f[0]] = f[3]
		}
	}
	if code != 0 || states["security/"+today+".v1"] != "active" || states["analytics/"+today+".v1"] != "active" ||
		!strings.Contains(out, "future") || !strings.Contains(out, "past") || states["archiver-test"] != "signer" {
		t.Fatalf("keys list: code %d\n%s", code, out)
	}
	priv, err := keyring.LoadPrivate(filepath.Join(dir, "private.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "private.json"))
	var f struct {
		Keys []struct {
			Seed []byte `json:"seed"`
		} `json:"private_keys"`
	}
	json.Unmarshal(raw, &f)
	if len(f.Keys) != len(priv.Keys()) || len(f.Keys) != 28 {
		t.Fatalf("private keyring holds %d keys", len(f.Keys))
	}
	for _, k := range f.Keys {
		if strings.Contains(out, encodeB64(k.Seed)) {
			t.Fatal("keys list printed private key material")
		}
	}
	// Rotation adds a second version of today's pair; writers use it.
	out, errOut, code = runCLI(t, "keys", "rotate", "--config", cfg, "--class", "security")
	if code != 0 || !strings.Contains(out, "added security/"+today+".v2") {
		t.Fatalf("keys rotate: code %d, %q %q", code, out, errOut)
	}
	pub, err := keyring.LoadPublic(filepath.Join(dir, "public.json"))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := pub.Current("security", time.Now()); err != nil || k.ID != "security/"+today+".v2" {
		t.Errorf("Current after rotate = %v, %v; want v2", k.ID, err)
	}
	if _, errOut, code = runCLI(t, "keys", "rotate", "--config", cfg, "--class", "security", "--period", "1999-01-01"); code == 0 || !strings.Contains(errOut, "no key pair for security/1999-01-01") {
		t.Errorf("rotate of a period without keys: code %d, %q", code, errOut)
	}
	if _, errOut, code = runCLI(t, "keys", "rotate", "--config", cfg, "--class", "marketing"); code == 0 || !strings.Contains(errOut, `--class "marketing" is not a retention class`) {
		t.Errorf("rotate of an unknown class: code %d, %q", code, errOut)
	}
	// A private keyring readable by others is refused by name.
	os.Chmod(filepath.Join(dir, "private.json"), 0o644)
	_, errOut, code = runCLI(t, "keys", "generate", "--config", cfg)
	if code == 0 || !strings.Contains(errOut, "private_keyring_file") || !strings.Contains(errOut, "must not be readable by group or others") {
		t.Errorf("generate with a 0644 private keyring: code %d, %q", code, errOut)
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
