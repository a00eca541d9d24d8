package keyring

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

var now = time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)

func TestGenerateRotateCurrent(t *testing.T) {
	t.Setenv(EnvKeyring, "")
	kr := New()
	added, err := kr.Generate(now, "2026-10", "2027-01")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(added, " "); got != "2026-10.v1 2026-11.v1 2026-12.v1 2027-01.v1" {
		t.Fatalf("Generate added %s", got)
	}
	if again, _ := kr.Generate(now, "2026-10", "2027-01"); len(again) != 0 {
		t.Fatalf("second Generate added %v; want nothing", again)
	}
	id, err := kr.Rotate(now, "2026-11")
	if err != nil || id != "2026-11.v2" {
		t.Fatalf("Rotate = %q, %v; want 2026-11.v2", id, err)
	}
	cur, err := kr.Current(time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC))
	if err != nil || cur.ID != "2026-11.v2" {
		t.Fatalf("Current(Nov 30) = %q, %v; want the rotated key", cur.ID, err)
	}
	if _, err := kr.Current(time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC)); err == nil || !strings.Contains(err.Error(), "no key for month 2027-02") {
		t.Errorf("Current(Feb 2027) error = %v; want one naming the month", err)
	}
	a, _ := kr.Get("2026-10.v1")
	b, _ := kr.Get("2026-11.v1")
	if bytes.Equal(a.Material, b.Material) || bytes.Equal(a.Material, make([]byte, KeySize)) {
		t.Fatal("keys are not independent random values")
	}

	path := filepath.Join(t.TempDir(), "sub", "keyring.json")
	if err := kr.Save(path); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("saved keyring mode = %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	back, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Keys()) != 5 {
		t.Fatalf("loaded %d keys; want 5", len(back.Keys()))
	}
	raw, _ := os.ReadFile(path)
	t.Setenv(EnvKeyring, string(raw))
	fromEnv, err := Load(filepath.Join(t.TempDir(), "absent.json"))
	if err != nil || len(fromEnv.Keys()) != 5 {
		t.Fatalf("Load from %s = %v; want the same 5 keys", EnvKeyring, err)
	}
}

func TestWrapUnwrap(t *testing.T) {
	kr := New()
	kr.Generate(now, "2026-11", "2026-12")
	k, _ := kr.Get("2026-11.v1")
	dek := make([]byte, KeySize)
	rand.Read(dek)
	w, err := Wrap(nil, k, dek)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != WrappedSize || bytes.Contains(w, dek) {
		t.Fatalf("wrapped key has %d bytes or contains the key", len(w))
	}
	got, err := kr.Unwrap("2026-11.v1", w)
	if err != nil || !bytes.Equal(got, dek) {
		t.Fatalf("Unwrap = %v; want the data key back", err)
	}
	// Relabelled under another ID of the same keyring: the AAD binds the ID.
	if _, err := kr.Unwrap("2026-12.v1", w); !errors.Is(err, ErrAuth) {
		t.Errorf("Unwrap under another key ID: %v; want ErrAuth", err)
	}
	for i := range w {
		bad := bytes.Clone(w)
		bad[i] ^= 1
		if _, err := kr.Unwrap("2026-11.v1", bad); !errors.Is(err, ErrAuth) {
			t.Fatalf("Unwrap with byte %d flipped: %v; want ErrAuth", i, err)
		}
	}
	var nf *NotFoundError
	if _, err := kr.Unwrap("2025-01.v1", w); !errors.As(err, &nf) || err.Error() != "key 2025-01.v1 not in keyring" {
		t.Errorf("Unwrap with an absent ID: %v; want key 2025-01.v1 not in keyring", err)
	}
}

func TestParseErrors(t *testing.T) {
	key := `"` + strings.Repeat("A", 43) + `="`
	f := func(doc, want string) {
		t.Helper()
		_, err := Parse([]byte(doc))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%s) error = %v; want it to contain %q", doc, err, want)
		}
	}
	f(`{"version":2,"keys":[]}`, "unsupported keyring version 2")
	f(`{"version":1,"keys":[{"id":"2026-11","month":"2026-11","key":`+key+`}]}`, `keys[0].id: "2026-11" is not YYYY-MM.vN`)
	f(`{"version":1,"keys":[{"id":"2026-11.v1","month":"2026-12","key":`+key+`}]}`, `keys[0].month: "2026-12" does not match id 2026-11.v1`)
	f(`{"version":1,"keys":[{"id":"2026-11.v1","month":"2026-11","key":"AAAA"}]}`, "holds 3 bytes; want 32")
	f(`{"version":1,"keys":[{"id":"2026-11.v1","month":"2026-11","key":`+key+`},{"id":"2026-11.v1","month":"2026-11","key":`+key+`}]}`, "keys[1].id: 2026-11.v1 appears twice")
	f(`{"version":1,"extra":true}`, `unknown field "extra"`)
	f(`not json`, "cannot parse")
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"version":1,"keys":[{"id":"2026-11.v1","month":"2026-11","created":"2026-11-29T06:00:00Z","key":"` + strings.Repeat("A", 43) + `="}]}`))
	f.Add([]byte(`{"version":1,"keys":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		kr, err := Parse(b)
		if err != nil {
			return
		}
		for _, k := range kr.Keys() {
			if len(k.Material) != KeySize || !idPattern.MatchString(k.ID) {
				t.Fatalf("Parse accepted key %q with %d bytes", k.ID, len(k.Material))
			}
		}
	})
}

// Regression test: Key used to print its raw material under %v and
// zap.Any, so one careless log line would leak a KEK.
func TestKeyNeverShowsMaterial(t *testing.T) {
	kr := New()
	if _, err := kr.Generate(time.Now(), "2026-11", "2026-11"); err != nil {
		t.Fatal(err)
	}
	k := kr.Keys()[0]
	hexM, b64M := hex.EncodeToString(k.Material), base64.StdEncoding.EncodeToString(k.Material)
	var logs bytes.Buffer
	zl := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&logs), zap.DebugLevel))
	zl.Info("k", zap.Any("any", k), zap.Object("obj", k), zap.Reflect("reflect", k), zap.Stringer("str", k))
	zl.Sync()
	js, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	outs := map[string]string{
		"%v": fmt.Sprintf("%v", k), "%+v": fmt.Sprintf("%+v", k), "%#v": fmt.Sprintf("%#v", k),
		"%s": fmt.Sprintf("%s", k), "%x": fmt.Sprintf("%x", k), "%q": fmt.Sprintf("%q", k),
		"in a slice": fmt.Sprintf("%v", []Key{k}), "pointer": fmt.Sprintf("%+v", &k),
		"json": string(js), "zap": logs.String(),
	}
	for how, out := range outs {
		if !strings.Contains(out, k.ID) {
			t.Errorf("%s = %q; want the key ID %s in it", how, out, k.ID)
		}
		if strings.Contains(out, hexM) || strings.Contains(out, b64M) || strings.Contains(out, string(k.Material)) ||
			strings.Contains(out, fmt.Sprint([]byte(k.Material))) {
			t.Errorf("%s shows the key material: %q", how, out)
		}
	}
	// The keyring file is the one place the material is written.
	p := filepath.Join(t.TempDir(), "kr.json")
	if err := kr.Save(p); err != nil {
		t.Fatal(err)
	}
	back, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Keys()[0].Material; !bytes.Equal(got, k.Material) {
		t.Fatal("keyring file does not round-trip the material")
	}
}

// docs/CONFIG.md: the keyring file must be mode 0600 or stricter; a
// readable one refuses to load with a clear error.
func TestLoadRefusesOpenPermissions(t *testing.T) {
	t.Setenv(EnvKeyring, "")
	kr := New()
	if _, err := kr.Generate(now, "2026-11", "2026-11"); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "keyring.json")
	if err := kr.Save(p); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err != nil {
		t.Fatalf("Load of a 0600 keyring: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Load(p)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("mode %04o: readable by group or others", mode)) {
			t.Errorf("Load of a %04o keyring: %v; want a refusal naming the mode", mode, err)
		}
	}
	os.Chmod(p, 0o400)
	if _, err := Load(p); err != nil {
		t.Errorf("Load of a 0400 keyring: %v", err)
	}
}
