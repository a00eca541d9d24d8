package signed

import (
	"bytes"
	"testing"
	"time"

	"github.com/custodylog/custody/crypto/keyring"
)

type doc struct {
	Case string `json:"case"`
	N    int    `json:"n"`
}

func newSigner(t testing.TB) (keyring.SigningKey, *keyring.PublicKeyring) {
	sk, err := keyring.NewSigningKey("reader-1", time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	pub := keyring.NewPublic()
	pub.AddSigner(sk.Public())
	return sk, pub
}

func TestEncodeDecode(t *testing.T) {
	sk, pub := newSigner(t)
	b, err := Encode("custody test v1", doc{"LE-114", 3}, sk)
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	if who, err := Decode(b, "custody test v1", pub, &d); err != nil || who != "reader-1" || d != (doc{"LE-114", 3}) {
		t.Fatalf("Decode = %q, %+v, %v", who, d, err)
	}
	other, _ := keyring.NewSigningKey("reader-2", time.Now())
	for name, bad := range map[string]struct {
		b       []byte
		label   string
		trusted *keyring.PublicKeyring
	}{
		"payload changed":   {bytes.Replace(b, []byte(`"n":3`), []byte(`"n":4`), 1), "custody test v1", pub},
		"other label":       {b, "custody other v1", pub},
		"untrusted signer":  {b, "custody test v1", keyring.NewPublic()},
		"signature removed": {bytes.SplitN(b, []byte("\n"), 2)[0], "custody test v1", pub},
		"signed by another": {func() []byte { x, _ := Encode("custody test v1", doc{"LE-114", 3}, other); return x }(), "custody test v1", pub},
	} {
		if _, err := Decode(bad.b, bad.label, bad.trusted, &d); err == nil {
			t.Errorf("%s: Decode accepted it", name)
		}
	}
}

func FuzzDecode(f *testing.F) {
	sk, pub := newSigner(f)
	b, _ := Encode("custody test v1", doc{"LE-114", 3}, sk)
	signedLine := bytes.SplitN(b, []byte("\n"), 2)[0]
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var d doc
		if _, err := Decode(b, "custody test v1", pub, &d); err != nil {
			return
		}
		// The fuzzer cannot sign: whatever verifies carries the one payload
		// line that was signed, byte for byte.
		if line := bytes.SplitN(b, []byte("\n"), 2)[0]; !bytes.Equal(line, signedLine) {
			t.Fatalf("Decode accepted payload %q, which was never signed", line)
		}
	})
}
