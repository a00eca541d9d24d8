package chain

import (
	"bytes"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/crypto/keyring"
)

var update = flag.Bool("update", false, "rewrite the golden checkpoint in testdata/")

// golden is the checkpoint of testdata/checkpoint-v1.json: a second link
// with two segments, dead letters and absent offsets.
func golden() *Checkpoint {
	return &Checkpoint{V: 1, Topic: "custody.events", Partition: 3, Seq: 7,
		Prev: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", From: 1000, Offset: 1010,
		Counts:      map[string]int64{"security/login/2026112905": 5, "security/connection/2026112905": 2},
		DeadLetters: []Range{{1003, 1003}}, Absent: []Range{{1008, 1009}},
		Segments: []Segment{
			{Name: "security/login/2026/11/29/05/custody.events+3+00000000000000000990.cseg", SHA256: strings.Repeat("ab", 32), First: 990, Last: 1006, Count: 9},
			{Name: "security/connection/2026/11/29/05/custody.events+3+00000000000000001001.cseg", SHA256: strings.Repeat("cd", 32), First: 1001, Last: 1007, Count: 2},
		},
		Archiver: "custody-archive/member-1", Generation: 4, Time: time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)}
}

// testSigner is the test key of testdata/signer.seed (hex Ed25519 seed).
func testSigner(t testing.TB) (keyring.SigningKey, *keyring.PublicKeyring) {
	t.Helper()
	raw, err := os.ReadFile("testdata/signer.seed")
	if err != nil {
		t.Fatal(err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	sk, err := keyring.SigningKeyFromSeed("test-archiver", time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), seed)
	if err != nil {
		t.Fatal(err)
	}
	pub := keyring.NewPublic()
	pub.AddSigner(sk.Public())
	return sk, pub
}

// TestGolden: the golden vector decodes to the golden checkpoint, and
// encoding it again gives the same bytes (Ed25519 is deterministic), so a
// third-party reader can test itself against the file.
func TestGolden(t *testing.T) {
	sk, pub := testSigner(t)
	b, err := Encode(golden(), sk)
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("testdata/checkpoint-v1.json", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile("testdata/checkpoint-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("encoding changed:\n%s\nwant\n%s", b, want)
	}
	c, who, err := Decode(want, pub)
	if err != nil || who != "test-archiver" {
		t.Fatalf("Decode = %q, %v", who, err)
	}
	if Hash(want) != Hash(b) || c.Seq != 7 || len(c.Segments) != 2 || c.DeadLetters[0] != (Range{1003, 1003}) {
		t.Fatalf("decoded %+v", c)
	}
}

func TestDecodeRefuses(t *testing.T) {
	sk, pub := testSigner(t)
	other, _ := keyring.NewSigningKey("test-archiver", time.Now())
	enc := func(mod func(*Checkpoint), k keyring.SigningKey) []byte {
		c := golden()
		mod(c)
		b, err := Encode(c, k)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := enc(func(*Checkpoint) {}, sk)
	for name, tc := range map[string]struct {
		b    []byte
		want error
	}{
		"unknown key":          {enc(func(*Checkpoint) {}, other), ErrSignature},
		"payload changed":      {bytes.Replace(good, []byte(`"seq":7`), []byte(`"seq":8`), 1), ErrSignature},
		"no signature":         {bytes.SplitAfter(good, []byte("\n"))[0], ErrSignature},
		"does not add up":      {enc(func(c *Checkpoint) { c.Offset++ }, sk), ErrInvalid},
		"range outside":        {enc(func(c *Checkpoint) { c.Absent = []Range{{1009, 1010}}; c.Counts["security/login/2026112905"] = 6 }, sk), ErrInvalid},
		"seq 0 with prev":      {enc(func(c *Checkpoint) { c.Seq = 0 }, sk), ErrInvalid},
		"prev not a hash":      {enc(func(c *Checkpoint) { c.Prev = "xyz" }, sk), ErrInvalid},
		"version 2":            {enc(func(c *Checkpoint) { c.V = 2 }, sk), ErrInvalid},
		"segment count > span": {enc(func(c *Checkpoint) { c.Segments[1].Count = 8 }, sk), ErrInvalid},
		"negative count":       {enc(func(c *Checkpoint) { c.Counts["x"] = -1; c.Counts["security/login/2026112905"] = 6 }, sk), ErrInvalid},
	} {
		if _, _, err := Decode(tc.b, pub); !errors.Is(err, tc.want) {
			t.Errorf("%s: Decode = %v; want %v", name, err, tc.want)
		}
	}
}

func TestNames(t *testing.T) {
	n := Name("custody.events", 3, 42)
	if n != "_chain/custody.events/3/00000000000000000042.json" {
		t.Fatalf("Name = %q", n)
	}
	if topic, p, seq, err := ParseName(n); err != nil || topic != "custody.events" || p != 3 || seq != 42 {
		t.Fatalf("ParseName = %q %d %d %v", topic, p, seq, err)
	}
	for _, bad := range []string{"_chain/t/3/42.json", "_chain/t/-1/00000000000000000042.json", "_chain/t/03/00000000000000000042.json",
		"chain/t/3/00000000000000000042.json", "_chain//3/00000000000000000042.json", "_chain/t/3/00000000000000000042.jsn", "_chain/a/b/3/00000000000000000042.json"} {
		if _, _, _, err := ParseName(bad); err == nil {
			t.Errorf("ParseName(%q) accepted it", bad)
		}
	}
}

// FuzzDecode: whatever the bytes, Decode does not panic, and what it
// accepts was signed by the test key and adds up (Validate).
func FuzzDecode(f *testing.F) {
	sk, pub := testSigner(f)
	b, _ := Encode(golden(), sk)
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, _, err := Decode(b, pub)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Decode accepted a checkpoint Validate refuses: %v", err)
		}
	})
}

// FuzzParseName: a name ParseName accepts is the one Name makes.
func FuzzParseName(f *testing.F) {
	f.Add(Name("custody.events", 3, 42))
	f.Fuzz(func(t *testing.T, s string) {
		topic, p, seq, err := ParseName(s)
		if err != nil {
			return
		}
		if Name(topic, p, seq) != s {
			t.Fatalf("ParseName(%q) = %q %d %d, which Name renders as %q", s, topic, p, seq, Name(topic, p, seq))
		}
	})
}
