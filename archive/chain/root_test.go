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
		for p := int32(0); p < 2; p++ { // two a day
			putChain(t, ms, p, 6, func(uint64) keyring.SigningKey { return sk }, func(seq uint64) time.Time {
				return day0.Add(time.Duration(seq) * 12 * time.Hour).Add(time.Hour)
			})
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

// putChain stores checkpoints 0 to n-1 of t/partition, each accounting for
// ten dead-lettered offsets, signed by sign(seq) and written at at(seq).
func putChain(t *testing.T, ms *memstore.Store, partition int32, n uint64, sign func(seq uint64) keyring.SigningKey, at func(seq uint64) time.Time) {
	t.Helper()
	prev := ""
	for seq := uint64(0); seq < n; seq++ {
		c := &Checkpoint{V: 1, Topic: "t", Partition: partition, Seq: seq, Prev: prev, From: int64(seq) * 10, Offset: int64(seq+1) * 10,
			DeadLetters: []Range{{int64(seq) * 10, int64(seq)*10 + 9}}, Time: at(seq)}
		b, err := Encode(c, sign(seq))
		if err != nil {
			t.Fatal(err)
		}
		ms.Objects[Name("t", partition, seq)] = b
		prev = Hash(b)
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
	putChain(t, ms, 0, 4, func(seq uint64) keyring.SigningKey {
		if seq >= 2 {
			return newKey
		}
		return oldKey
	}, func(seq uint64) time.Time { return time.Date(2026, 11, 20, int(seq), 0, 0, 0, time.UTC) })
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

// TestVerifyExpiredStart: a chain whose first checkpoints lifecycle has
// removed is complete only when a root sealed them on a day now past
// their lifetime and retention's shredding of that day is on record; any
// other missing start is a finding naming the first checkpoint left.
func TestVerifyExpiredStart(t *testing.T) {
	sk, pub := testSigner(t)
	ctx := context.Background()
	day0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ret := archive.Retention{Classes: []archive.Class{{Name: "security", Days: 3}}} // checkpoints live 5 days
	build := func() *memstore.Store {
		ms := memstore.New()
		putChain(t, ms, 0, 10, func(uint64) keyring.SigningKey { return sk }, func(seq uint64) time.Time { // one a day
			return day0.AddDate(0, 0, int(seq)).Add(time.Hour)
		})
		if _, err := WriteRoots(ctx, ms, pub, sk, func(time.Time) store.Lock { return store.Lock{Mode: "GOVERNANCE"} }, day0.AddDate(0, 0, 10)); err != nil {
			t.Fatal(err)
		}
		for seq := uint64(0); seq < 4; seq++ { // lifecycle's work: days 0-3
			delete(ms.Objects, Name("t", 0, seq))
		}
		return ms
	}
	var asked []time.Time
	receipts := func(err error) func(context.Context, time.Time) error {
		return func(_ context.Context, day time.Time) error { asked = append(asked, day); return err }
	}
	verify := func(ms *memstore.Store, now time.Time, shredded func(context.Context, time.Time) error) *Report {
		rep, err := Verify(ctx, ms, Options{Trusted: pub, Retention: ret, Now: now, Concurrency: 1, Shredded: shredded})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	first := Name("t", 0, 4)
	one := func(name string, rep *Report, detail string) {
		t.Helper()
		if len(rep.Findings) != 1 || rep.Findings[0].Object != first || rep.Findings[0].Kind != BrokenLink || !strings.Contains(rep.Findings[0].Detail, detail) {
			t.Errorf("%s: findings %v; want one broken link at %s saying %q", name, rep.Findings, first, detail)
		}
	}

	// The root of day 3 sealed checkpoint 3 as its head: the lifecycle may
	// remove it from day 3 + 5 days on.
	rep := verify(build(), day0.AddDate(0, 0, 8), receipts(nil))
	if len(rep.Findings) != 0 || rep.ExpiredCheckpoints != 4 || rep.Checkpoints != 6 || len(asked) != 1 || !asked[0].Equal(day0.AddDate(0, 0, 3)) {
		t.Fatalf("expired start: %d expired checkpoints, %d read, receipts asked for %v, findings %v", rep.ExpiredCheckpoints, rep.Checkpoints, asked, rep.Findings)
	}
	// A second too early, and the root of day 3's sealed head is missing
	// too.
	if got := findings(verify(build(), day0.AddDate(0, 0, 8).Add(-time.Second), receipts(nil))); !strings.Contains(got, first+": the chain starts at seq 4: checkpoints 0 to 3 are missing, and the root of 2026-03-04 shows the last of them existed that day: lifecycle keeps them until at least 2026-03-09") ||
		!strings.Contains(got, Name("t", 0, 3)+": the root of 2026-03-04 seals this checkpoint") {
		t.Errorf("not yet past their lifetime: %s", got)
	}
	one("no shred receipt", verify(build(), day0.AddDate(0, 0, 9), receipts(errors.New("security/2026-03-04 has no shred receipt"))), "security/2026-03-04 has no shred receipt")
	one("receipts not consulted", verify(build(), day0.AddDate(0, 0, 9), nil), "no shred receipts were consulted")

	ms := build()
	for name := range ms.Objects {
		if strings.HasPrefix(name, RootPrefix) {
			delete(ms.Objects, name)
		}
	}
	one("no root", verify(ms, day0.AddDate(0, 0, 30), receipts(nil)), "no daily root names any of them")

	// Retention cannot take a checkpoint the lifecycle has not: one too
	// many gone is the same finding, one later.
	ms = build()
	delete(ms.Objects, first)
	if rep := verify(ms, day0.AddDate(0, 0, 8), receipts(nil)); len(rep.Findings) == 0 || !strings.Contains(findings(rep), "lifecycle keeps them until at least 2026-03-10") {
		t.Errorf("checkpoint 4 deleted too: %v", rep.Findings)
	}
	// The first checkpoint left rewritten to link elsewhere, by a key holder.
	ms = build()
	c, _, _ := Decode(ms.Objects[first], pub)
	c.Prev = strings.Repeat("0", 64)
	ms.Objects[first], _ = Encode(c, sk)
	if rep := verify(ms, day0.AddDate(0, 0, 9), receipts(nil)); !strings.Contains(findings(rep), "its prev hash is not the SHA-256 the root of 2026-03-04 seals for checkpoint 3") {
		t.Errorf("first checkpoint relinked: %v", rep.Findings)
	}
}

func findings(rep *Report) string {
	var b strings.Builder
	for _, f := range rep.Findings {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// TestVerifyCommits: Kafka's committed offsets name the chain's head, so
// the newest checkpoints deleted before any root sealed them are found,
// which the bucket alone cannot show.
func TestVerifyCommits(t *testing.T) {
	sk, pub := testSigner(t)
	ctx := context.Background()
	build := func() *memstore.Store {
		ms := memstore.New()
		putChain(t, ms, 0, 6, func(uint64) keyring.SigningKey { return sk }, func(seq uint64) time.Time { return time.Date(2026, 11, 20, int(seq), 0, 0, 0, time.UTC) })
		return ms
	}
	verify := func(ms *memstore.Store, commits ...Commit) string {
		rep, err := Verify(ctx, ms, Options{Trusted: pub, Now: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), Concurrency: 1, Commits: commits})
		if err != nil {
			t.Fatal(err)
		}
		return findings(rep)
	}
	ms := build()
	head := Commit{Topic: "t", Partition: 0, Offset: 60, Metadata: "v2 " + Hint(5, Hash(ms.Objects[Name("t", 0, 5)]))}
	if got := verify(ms, head); got != "" {
		t.Fatalf("intact, with the commit naming the head: %s", got)
	}
	delete(ms.Objects, Name("t", 0, 5))
	delete(ms.Objects, Name("t", 0, 4))
	if got := verify(ms); got != "" {
		t.Fatalf("the bucket alone shows the newest checkpoints deleted: %s", got)
	}
	for name, tc := range map[string]struct {
		ms     *memstore.Store
		commit Commit
		want   string
	}{
		"head deleted":      {ms, head, Name("t", 0, 5) + ": Kafka's committed offset 60 names this checkpoint, and it is not in the bucket"},
		"head rewritten":    {build(), Commit{"t", 0, 60, Hint(5, strings.Repeat("a", 64))}, "names this checkpoint with SHA-256 aaaa"},
		"other offset":      {build(), Commit{"t", 0, 55, head.Metadata}, "Kafka's committed offset 55 names this checkpoint, which ends at 60"},
		"no hint, cut":      {ms, Commit{"t", 0, 60, "v2"}, Name("t", 0, 3) + ": Kafka's committed offset 60 is past the newest checkpoint, 3, which ends at 40"},
		"no hint, no chain": {memstore.New(), Commit{"t", 0, 60, ""}, "Kafka's committed offset 60 has no checkpoint in the bucket"},
	} {
		if got := verify(tc.ms, tc.commit); strings.Count(got, "\n") != 1 || !strings.Contains(got, tc.want) {
			t.Errorf("%s: findings %q; want one saying %q", name, got, tc.want)
		}
	}
}
