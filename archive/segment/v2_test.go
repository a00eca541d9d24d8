package segment

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/custodylog/custody/crypto/keyring"
)

// v2Keys makes a private and public keyring with security keys for the
// test hour's day and a trusted archiver signing key.
func v2Keys(t testing.TB) (*keyring.PrivateKeyring, *keyring.PublicKeyring, keyring.SigningKey) {
	t.Helper()
	priv, pub := keyring.NewPrivate(), keyring.NewPublic()
	if _, err := keyring.GeneratePairs(pub, priv, testHour, []string{"security"}, keyring.PeriodDay, testHour, testHour); err != nil {
		t.Fatal(err)
	}
	sk, err := keyring.NewSigningKey("archiver-a", testHour)
	if err != nil {
		t.Fatal(err)
	}
	pub.AddSigner(sk.Public())
	return priv, pub, sk
}

func writeV2(t testing.TB, evs []testEvent, pub *keyring.PublicKeyring, sk keyring.SigningKey) (string, []byte, string) {
	t.Helper()
	return writeVersion(t, evs, pub, sk, Version2)
}

// writeVersion writes a v2 or v3 segment of evs.
func writeVersion(t testing.TB, evs []testEvent, pub *keyring.PublicKeyring, sk keyring.SigningKey, version byte) (string, []byte, string) {
	t.Helper()
	ix := NewIndexBuilder()
	var plain strings.Builder
	for _, e := range evs {
		ix.AddIP(e.ip)
		ix.Add(FieldLogin, e.login)
		plain.WriteString(e.line)
	}
	m := metaFor(evs)
	pk, err := pub.Current(m.Class, m.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	newWriter := NewWriterV2
	if version == Version3 {
		newWriter = NewWriterV3
	}
	w, err := newWriter(&buf, m, ix, pk, sk)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		io.WriteString(w, e.line)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Name(), buf.Bytes(), plain.String()
}

func readV2(name string, b []byte, ks any) (string, *Reader, error) {
	r, err := Open(bytes.NewReader(b), name, ks, ReaderOptions{})
	if err != nil {
		return "", nil, err
	}
	defer r.Close()
	body, err := r.Body()
	if err != nil {
		return "", nil, err
	}
	out, err := io.ReadAll(body)
	return string(out), r, err
}

func TestV2RoundTrip(t *testing.T) {
	for _, v := range []byte{Version2, Version3} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { testRoundTrip(t, v) })
	}
}

func testRoundTrip(t *testing.T, version byte) {
	priv, pub, sk := v2Keys(t)
	evs := events(300, 11)
	name, b, plain := writeVersion(t, evs, pub, sk, version)
	got, r, err := readV2(name, b, keyring.Set{Private: priv, Public: pub})
	if err != nil {
		t.Fatal(err)
	}
	if got != plain {
		t.Fatal("body differs from what was written")
	}
	m := metaFor(evs)
	if h := r.Header(); h.Version != int(version) || !h.MinTime.Equal(m.MinTime) || !h.MaxTime.Equal(m.MaxTime) || h.Signer != "archiver-a" {
		t.Errorf("header = %+v; want v%d with the index's times", h, version)
	}
	if !r.Index().MayContain(FieldLogin, evs[0].login) {
		t.Error("index lost a login")
	}
	// Only the hour is in clear: no event time appears in the header.
	hb := b[preambleSize : preambleSize+int(binary.BigEndian.Uint32(b[len(Magic)+1:]))]
	if bytes.Contains(hb, []byte("min_time")) || bytes.Contains(hb, []byte(m.MinTime.Format("15:04:05.000000"))) {
		t.Error("event times are readable in the clear header")
	}
	// A write-only archiver checks what it stored without reading it.
	h, err := Verify(bytes.NewReader(b), name, pub)
	if err != nil || h.LastOffset != m.LastOffset || h.Count != m.Count {
		t.Fatalf("Verify = %+v, %v", h, err)
	}
}

// A process given only the public keyring, or nothing, cannot open any
// segment: writers never read.
func TestV2PublicKeysCannotRead(t *testing.T) {
	_, pub, sk := v2Keys(t)
	name, b, _ := writeV2(t, events(20, 3), pub, sk)
	for what, ks := range map[string]any{
		"public keyring":       pub,
		"set without private":  keyring.Set{Public: pub},
		"v1 keyring":           keyring.New(),
		"another private ring": func() any { p, _, _ := v2Keys(t); return keyring.Set{Private: p, Public: pub} }(),
	} {
		_, _, err := readV2(name, b, ks)
		if err == nil {
			t.Errorf("%s opened a v2 segment", what)
			continue
		}
		if what == "another private ring" {
			if !errors.Is(err, ErrAuth) && !strings.Contains(err.Error(), "not in keyring") {
				t.Errorf("%s: %v; want an authentication failure", what, err)
			}
		} else if !errors.Is(err, ErrNeedsPrivateKey) {
			t.Errorf("%s: %v; want ErrNeedsPrivateKey", what, err)
		}
	}
}

// Any change to a v2 object is detected: by authentication, by the
// signature, or by both.
func TestV2Tampering(t *testing.T) {
	for _, v := range []byte{Version2, Version3} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) { testTampering(t, v) })
	}
}

func testTampering(t *testing.T, version byte) {
	priv, pub, sk := v2Keys(t)
	ks := keyring.Set{Private: priv, Public: pub}
	name, good, _ := writeVersion(t, events(200, 5), pub, sk, version)
	for _, off := range []int{len(Magic), 20, 200, len(good) / 2, len(good) - 70, len(good) - 10, len(good) - 1} {
		b := bytes.Clone(good)
		b[off] ^= 1
		if _, _, err := readV2(name, b, ks); err == nil {
			t.Errorf("byte %d flipped: read without error", off)
		}
		if _, err := Verify(bytes.NewReader(b), name, pub); err == nil {
			t.Errorf("byte %d flipped: Verify passed", off)
		}
	}
	if _, _, err := readV2(name, good[:len(good)-sigSize], ks); !errors.Is(err, ErrTruncated) {
		t.Errorf("signature cut off: %v; want ErrTruncated (the reader withholds the last 64 bytes)", err)
	}
	if _, err := Verify(bytes.NewReader(good[:len(good)-sigSize]), name, pub); err == nil {
		t.Error("Verify passed with the signature cut off")
	}
	// Planted: a key holder writes a valid segment and signs it with a key
	// the readers do not trust. It decrypts, but is refused.
	rogue, err := keyring.NewSigningKey("archiver-a", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, planted, _ := writeVersion(t, events(200, 5), pub, rogue, version)
	if _, _, err := readV2(name, planted, ks); !errors.Is(err, ErrSignature) {
		t.Errorf("planted segment: %v; want ErrSignature", err)
	}
	if _, err := Verify(bytes.NewReader(planted), name, pub); !errors.Is(err, ErrSignature) {
		t.Errorf("Verify of a planted segment: %v; want ErrSignature", err)
	}
	unknown, _ := keyring.NewSigningKey("stranger", time.Now())
	_, planted, _ = writeVersion(t, events(200, 5), pub, unknown, version)
	if _, err := Verify(bytes.NewReader(planted), name, pub); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), `signer "stranger" is not in the public keyring`) {
		t.Errorf("Verify with an unknown signer: %v", err)
	}
	// Verify refuses v1: it has no signature to check.
	v1name, v1, _ := writeSegment(t, events(5, 1), nil)
	if _, err := Verify(bytes.NewReader(v1), v1name, pub); !errors.Is(err, ErrVersion1) {
		t.Errorf("Verify of v1: %v; want ErrVersion1", err)
	}
}

// One reader reads both formats with keyring.Set.
func TestV1AndV2WithOneSet(t *testing.T) {
	priv, pub, sk := v2Keys(t)
	v1kr, _ := testKeyring(t)
	ks := keyring.Set{V1: v1kr, Private: priv, Public: pub}
	n1, b1, p1 := writeSegment(t, events(50, 1), nil)
	n2, b2, p2 := writeV2(t, events(50, 2), pub, sk)
	if got, _, err := readV2(n1, b1, ks); err != nil || got != p1 {
		t.Errorf("v1 through the set: %v", err)
	}
	if got, _, err := readV2(n2, b2, ks); err != nil || got != p2 {
		t.Errorf("v2 through the set: %v", err)
	}
}

const goldenV2Dir = "testdata/golden-v2"

type v2Vector struct {
	File   string `json:"file"`
	Change string `json:"change"`
	Offset int    `json:"offset"` // the one byte flipped
	Error  string `json:"error"`
}

// TestGoldenV2 pins format v2 byte for byte: with crypto/rand made
// deterministic (testing/cryptotest), the same keys, events and writer give
// the same object. A third party checks a reader against golden.cseg,
// private-keyring.json and public-keyring.json; the invalid vectors each
// flip one byte and name where.
func TestGoldenV2(t *testing.T) { testGolden(t, goldenV2Dir, Version2) }

// TestGoldenV3 pins format v3 the same way: golden-v3/golden.cseg holds
// the same events as golden-v2's, in a columnar body.
func TestGoldenV3(t *testing.T) { testGolden(t, "testdata/golden-v3", Version3) }

func testGolden(t *testing.T, goldenV2Dir string, version byte) {
	cryptotest.SetGlobalRandom(t, 2026)
	priv, pub, sk := v2Keys(t)
	evs := events(5, 42)
	name, b, plain := writeVersion(t, evs, pub, sk, version)
	_, hb, _ := readHeaderV2(b[:preambleSize], bytes.NewReader(b[preambleSize:]))
	head, _ := HeadLen(b)
	vectors := []v2Vector{
		{"sealed-key.cseg", "one byte of the HPKE-sealed data key (base64 in the header) changed", preambleSize + bytes.Index(hb, []byte(`"sealed_key":"`)) + 40, "ErrAuth"},
		{"index-byte.cseg", "one byte of the sealed index flipped", head - 20, "ErrAuth"},
		{"body-byte.cseg", "one byte of the body ciphertext flipped", head + 30, "ErrAuth"},
		{"signature.cseg", "one byte of the signature flipped", len(b) - 10, "ErrSignature"},
	}
	if *update {
		os.MkdirAll(filepath.Join(goldenV2Dir, "invalid"), 0o755)
		must(t, priv.Save(filepath.Join(goldenV2Dir, "private-keyring.json")))
		must(t, pub.Save(filepath.Join(goldenV2Dir, "public-keyring.json")))
		must(t, os.WriteFile(filepath.Join(goldenV2Dir, "golden.cseg"), b, 0o644))
		must(t, os.WriteFile(filepath.Join(goldenV2Dir, "golden.name"), []byte(name+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(goldenV2Dir, "golden.jsonl"), []byte(plain), 0o644))
		for _, v := range vectors {
			c := bytes.Clone(b)
			c[v.Offset] ^= 1
			if v.File == "sealed-key.cseg" {
				c[v.Offset] ^= 1
				c[v.Offset] = map[bool]byte{true: 'A', false: 'B'}[c[v.Offset] != 'A'] // stays base64
			}
			must(t, os.WriteFile(filepath.Join(goldenV2Dir, "invalid", v.File), c, 0o644))
		}
		m, _ := json.MarshalIndent(vectors, "", "  ")
		must(t, os.WriteFile(filepath.Join(goldenV2Dir, "invalid", "manifest.json"), append(m, '\n'), 0o644))
	}
	stored, err := os.ReadFile(filepath.Join(goldenV2Dir, "golden.cseg"))
	must(t, err)
	if !bytes.Equal(stored, b) {
		t.Fatalf("v%d writer output differs from %s/golden.cseg (%d vs %d bytes): format v%d changed", version, goldenV2Dir, len(b), len(stored), version)
	}
	// The reader, with the keyring files a third party would use.
	privFile, err := os.ReadFile(filepath.Join(goldenV2Dir, "private-keyring.json"))
	must(t, err)
	pubFile, err := os.ReadFile(filepath.Join(goldenV2Dir, "public-keyring.json"))
	must(t, err)
	rpriv, err := keyring.ParsePrivate(privFile)
	must(t, err)
	rpub, err := keyring.ParsePublic(pubFile)
	must(t, err)
	ks := keyring.Set{Private: rpriv, Public: rpub}
	want, err := os.ReadFile(filepath.Join(goldenV2Dir, "golden.jsonl"))
	must(t, err)
	if got, _, err := readV2(name, stored, ks); err != nil || got != string(want) {
		t.Fatalf("golden v%d read: %v", version, err)
	}
	mb, err := os.ReadFile(filepath.Join(goldenV2Dir, "invalid", "manifest.json"))
	must(t, err)
	var vs []v2Vector
	must(t, json.Unmarshal(mb, &vs))
	if len(vs) != len(vectors) {
		t.Fatalf("manifest lists %d vectors; want %d", len(vs), len(vectors))
	}
	for _, v := range vs {
		c, err := os.ReadFile(filepath.Join(goldenV2Dir, "invalid", v.File))
		must(t, err)
		diff := 0
		for i := range c {
			if c[i] != stored[i] {
				diff++
				if i != v.Offset {
					t.Errorf("%s differs at byte %d; the manifest says %d", v.File, i, v.Offset)
				}
			}
		}
		if len(c) != len(stored) || diff != 1 {
			t.Errorf("%s: %d bytes differ; want exactly one", v.File, diff)
		}
		_, _, err = readV2(name, c, ks)
		if want := map[string]error{"ErrAuth": ErrAuth, "ErrSignature": ErrSignature}[v.Error]; !errors.Is(err, want) {
			t.Errorf("%s (%s): %v; want %s", v.File, v.Change, err, v.Error)
		}
	}
}
