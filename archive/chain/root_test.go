package chain

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/signed"
	"github.com/custodylog/custody/internal/testkit/memstore"
)

func TestMerkleRoot(t *testing.T) {
	h := func(parts ...[]byte) []byte {
		s := sha256.New()
		for _, p := range parts {
			s.Write(p)
		}
		return s.Sum(nil)
	}
	a := Leaf{"t", 0, 3, strings.Repeat("a", 64)}
	b := Leaf{"t", 1, 5, strings.Repeat("b", 64)}
	c := Leaf{"t", 2, 7, strings.Repeat("c", 64)}
	la, lb, lc := h([]byte{0}, a.bytes()), h([]byte{0}, b.bytes()), h([]byte{0}, c.bytes())
	for name, tc := range map[string]struct {
		leaves []Leaf
		want   []byte
	}{
		"empty": {nil, h()},
		"one":   {[]Leaf{a}, la},
		"two":   {[]Leaf{a, b}, h([]byte{1}, la, lb)},
		// RFC 6962: the left subtree is the largest power of two below n.
		"three": {[]Leaf{a, b, c}, h([]byte{1}, h([]byte{1}, la, lb), lc)},
	} {
		if got := MerkleRoot(tc.leaves); got != hex.EncodeToString(tc.want) {
			t.Errorf("%s: MerkleRoot = %s; want %x", name, got, tc.want)
		}
	}
}

// TestRoots: three days of checkpoints on two partitions, sealed by daily
// roots; then each way of rewriting history after a day was sealed.
func TestRoots(t *testing.T) {
	sk, pub := testSigner(t)
	ctx := context.Background()
	day0 := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	build := func() *memstore.Store {
		ms := memstore.New()
		for p := int32(0); p < 2; p++ {
			prev := ""
			for seq := uint64(0); seq < 6; seq++ { // two a day
				c := &Checkpoint{V: 1, Topic: "t", Partition: p, Seq: seq, Prev: prev, From: int64(seq) * 10, Offset: int64(seq+1) * 10,
					DeadLetters: []Range{{int64(seq) * 10, int64(seq)*10 + 9}}, Time: day0.Add(time.Duration(seq) * 12 * time.Hour).Add(time.Hour)}
				b, err := Encode(c, sk)
				if err != nil {
					t.Fatal(err)
				}
				ms.Objects[Name("t", p, seq)] = b
				prev = Hash(b)
			}
		}
		return ms
	}
	lock := func(time.Time) store.Lock { return store.Lock{Mode: "GOVERNANCE"} }
	seal := func(ms *memstore.Store, now time.Time) []string {
		names, err := WriteRoots(ctx, ms, pub, sk, lock, now)
		if err != nil {
			t.Fatal(err)
		}
		return names
	}
	verify := func(ms *memstore.Store, anchors ...string) *Report {
		rep, err := Verify(ctx, ms, Options{Trusted: pub, Retention: archive.Retention{}, Now: day0.AddDate(0, 0, 4), Concurrency: 1, Anchors: anchors})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}

	ms := build()
	if names := seal(ms, day0.AddDate(0, 0, 2).Add(time.Hour)); len(names) != 2 || names[0] != "_roots/2026-11-20.json" || names[1] != "_roots/2026-11-21.json" {
		t.Fatalf("first run wrote %v; want the roots of the 20th and 21st (the 22nd is not over)", names)
	}
	if names := seal(ms, day0.AddDate(0, 0, 2).Add(2*time.Hour)); len(names) != 0 {
		t.Fatalf("a second run the same day wrote %v", names)
	}
	if names := seal(ms, day0.AddDate(0, 0, 3).Add(time.Hour)); len(names) != 1 || names[0] != "_roots/2026-11-22.json" {
		t.Fatalf("the next day wrote %v", names)
	}
	r21, err := DecodeRoot(ms.Objects["_roots/2026-11-21.json"], pub)
	if err != nil || len(r21.Leaves) != 2 || r21.Leaves[0].Seq != 3 || r21.Leaves[1].Partition != 1 || r21.Prev != Hash(ms.Objects["_roots/2026-11-20.json"]) {
		t.Fatalf("root of the 21st: %+v, %v", r21, err)
	}
	if rep := verify(ms, Hash(ms.Objects["_roots/2026-11-21.json"])); len(rep.Findings) != 0 || rep.Roots != 3 {
		t.Fatalf("intact: %d roots, findings %v", rep.Roots, rep.Findings)
	}

	for name, tc := range map[string]struct {
		tamper func(ms *memstore.Store)
		object string
	}{
		// The chain cut back to before a sealed head: the newest two
		// checkpoints of partition 1 go, and nothing else shows it.
		"chain truncated": {func(ms *memstore.Store) { delete(ms.Objects, Name("t", 1, 5)); delete(ms.Objects, Name("t", 1, 4)) }, Name("t", 1, 5)},
		"sealed head rewritten": {func(ms *memstore.Store) {
			c, _, _ := Decode(ms.Objects[Name("t", 0, 3)], pub)
			c.Archiver = "someone else"
			ms.Objects[Name("t", 0, 3)], _ = Encode(c, sk)
		}, Name("t", 0, 3)},
		"a root deleted":  {func(ms *memstore.Store) { delete(ms.Objects, "_roots/2026-11-21.json") }, "_roots/2026-11-22.json"},
		"a root replaced": {func(ms *memstore.Store) { ms.Objects["_roots/2026-11-21.json"][10] ^= 1 }, "_roots/2026-11-21.json"},
	} {
		ms := build()
		seal(ms, day0.AddDate(0, 0, 3).Add(time.Hour))
		anchor := Hash(ms.Objects["_roots/2026-11-21.json"])
		tc.tamper(ms)
		rep := verify(ms, anchor)
		found := false
		for _, f := range rep.Findings {
			found = found || f.Object == tc.object
		}
		if !found {
			t.Errorf("%s: no finding names %s: %v", name, tc.object, rep.Findings)
		}
	}

	// A published anchor the bucket no longer holds.
	ms = build()
	seal(ms, day0.AddDate(0, 0, 3).Add(time.Hour))
	if rep := verify(ms, strings.Repeat("0", 64)); len(rep.Findings) != 1 || rep.Findings[0].Kind != BrokenLink {
		t.Errorf("unknown anchor: %v", rep.Findings)
	}
	if _, err := DecodeRoot(ms.Objects["_roots/2026-11-20.json"], keyring.NewPublic()); !errors.Is(err, ErrSignature) {
		t.Errorf("DecodeRoot without trusted keys = %v", err)
	}
}

// seedRoot is a signed root of one leaf.
func seedRoot(sk keyring.SigningKey) []byte {
	r := Root{V: 1, Date: "2026-11-20", Leaves: []Leaf{{"t", 0, 3, strings.Repeat("a", 64)}}, Time: time.Date(2026, 11, 21, 1, 0, 0, 0, time.UTC)}
	r.Merkle = MerkleRoot(r.Leaves)
	b, _ := signed.Encode(RootLabel, &r, sk)
	return b
}

// FuzzDecodeRoot: whatever the bytes, DecodeRoot does not panic, and what
// it accepts carries a Merkle root that matches its leaves.
func FuzzDecodeRoot(f *testing.F) {
	sk, pub := testSigner(f)
	b := seedRoot(sk)
	if *update {
		os.MkdirAll("testdata/fuzz/FuzzDecodeRoot", 0o755)
		for name, v := range map[string][]byte{"signed": b, "unsigned": bytes.SplitAfter(b, []byte("\n"))[0],
			"wrong-merkle": bytes.Replace(b, []byte(`"merkle":"`), []byte(`"merkle":"0`), 1)} {
			os.WriteFile("testdata/fuzz/FuzzDecodeRoot/"+name, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", v), 0o644)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRoot(b, pub)
		if err != nil {
			return
		}
		if MerkleRoot(r.Leaves) != r.Merkle {
			t.Fatalf("DecodeRoot accepted a root whose Merkle root does not match")
		}
	})
}

// TestVerifyAcrossSignerRotation: an archiver's signing key is rotated
// mid-chain; while the public keyring lists both signers the chain
// verifies, and without the old one its checkpoints are named.
func TestVerifyAcrossSignerRotation(t *testing.T) {
	oldKey, _ := testSigner(t)
	newKey, err := keyring.NewSigningKey("test-archiver-2", time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	ms := memstore.New()
	prev := ""
	for seq := uint64(0); seq < 4; seq++ {
		sk := oldKey
		if seq >= 2 {
			sk = newKey
		}
		c := &Checkpoint{V: 1, Topic: "t", Partition: 0, Seq: seq, Prev: prev, From: int64(seq) * 10, Offset: int64(seq+1) * 10,
			DeadLetters: []Range{{int64(seq) * 10, int64(seq)*10 + 9}}, Time: time.Date(2026, 11, 20, int(seq), 0, 0, 0, time.UTC)}
		b, err := Encode(c, sk)
		if err != nil {
			t.Fatal(err)
		}
		ms.Objects[Name("t", 0, seq)] = b
		prev = Hash(b)
	}
	verify := func(signers ...keyring.SigningKey) *Report {
		pub := keyring.NewPublic()
		for _, s := range signers {
			pub.AddSigner(s.Public())
		}
		rep, err := Verify(context.Background(), ms, Options{Trusted: pub, Now: time.Now(), Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	if rep := verify(oldKey, newKey); len(rep.Findings) != 0 || rep.Records != 40 {
		t.Fatalf("both signers trusted: %d records, findings %v", rep.Records, rep.Findings)
	}
	rep := verify(newKey)
	bad := map[string]bool{}
	for _, f := range rep.Findings {
		if f.Kind == BadSignature {
			bad[f.Object] = true
		}
	}
	if !bad[Name("t", 0, 0)] || !bad[Name("t", 0, 1)] || bad[Name("t", 0, 2)] {
		t.Errorf("old signer dropped: findings %v", rep.Findings)
	}
}
