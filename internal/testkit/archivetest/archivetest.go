// Package archivetest reads a whole archive back for tests that compare
// it with what was sent: every segment authenticated and decoded, every
// event counted by ID.
package archivetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// NewStore returns a store on a fresh bucket of the stack, initialised as
// `custody archive init` does, with its configuration.
func NewStore(t testing.TB, st stacktest.Stack, r archive.Retention) (*store.Store, store.Config) {
	t.Helper()
	cfg := store.Config{Endpoint: st.S3Endpoint, Bucket: stacktest.Name(t, "arch"), Region: "us-east-1",
		AccessKey: secret.String(st.S3AccessKey), SecretKey: secret.String(st.S3SecretKey), TLS: st.S3TLS()}
	s, err := store.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Init(ctx, r, "us-east-1", true); err != nil {
		t.Fatal(err)
	}
	return s, cfg
}

// Keys is a test archive's key material: format v2 key pairs for the
// classes of the tests ("security", "short") over the days around now, and
// a trusted signing key.
type Keys struct {
	Public  *keyring.PublicKeyring
	Private *keyring.PrivateKeyring
	Signer  keyring.SigningKey
}

// Keyring returns key material for the 100 days before now to a month
// ahead.
func Keyring(t testing.TB) Keys {
	t.Helper()
	return KeysAt(t, time.Now().UTC())
}

// KeysAt is Keyring around another day, for tests on a simulated clock.
func KeysAt(t testing.TB, now time.Time) Keys {
	t.Helper()
	k := Keys{Public: keyring.NewPublic(), Private: keyring.NewPrivate()}
	if _, err := keyring.GeneratePairs(k.Public, k.Private, now, []string{"security", "short"}, keyring.PeriodDay, now.AddDate(0, 0, -100), now.AddDate(0, 1, 0)); err != nil {
		t.Fatal(err)
	}
	var err error
	if k.Signer, err = keyring.NewSigningKey("test-archiver", now); err != nil {
		t.Fatal(err)
	}
	k.Public.AddSigner(k.Signer.Public())
	return k
}

// Write is what an archiver holds.
func (k Keys) Write() keyring.WriteKeys { return keyring.WriteKeys{Public: k.Public, Signer: k.Signer} }

// Read is what the reader holds.
func (k Keys) Read() keyring.Set { return keyring.Set{Private: k.Private, Public: k.Public} }

// Save writes the three files into dir, as keys generate would, and returns
// the crypto section that names them.
func (k Keys) Save(t testing.TB, dir string) string {
	t.Helper()
	for _, err := range []error{
		k.Public.Save(filepath.Join(dir, "public-keyring.json")),
		k.Private.Save(filepath.Join(dir, "private-keyring.json")),
		k.Signer.Save(filepath.Join(dir, "signing-key.json")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return fmt.Sprintf("crypto:\n  public_keyring_file: %s/public-keyring.json\n  private_keyring_file: %s/private-keyring.json\n  signing_key_file: %s/signing-key.json\n  hold_keyring_file: %s/hold-keyring.json\n", dir, dir, dir, dir)
}

// Contents is what an archive holds.
type Contents struct {
	IDs      map[string]int // event ID -> times stored
	Segments int
	Events   int
	Bytes    int64
	// Ranges maps "topic/partition/first" to the segment name, to catch two
	// segments of one offset range.
	Ranges map[string]string
}

// Read decodes every segment in the bucket, checking that each reads back
// cleanly and that no offset range is stored twice; then it verifies the
// partitions' chains against the segments (archive/chain.Verify), wanting
// no finding: every archive a test builds proves itself complete.
func Read(t testing.TB, s *store.Store, keys Keys) Contents {
	t.Helper()
	ctx := context.Background()
	c := Contents{IDs: map[string]int{}, Ranges: map[string]string{}}
	classes := map[string]bool{}
	for o, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(o.Name, "_") {
			continue // _chain/, _receipts/, _holds/, _cases/: not segments
		}
		classes[o.Name[:strings.IndexByte(o.Name+"/", '/')]] = true
		rc, err := s.Get(ctx, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		r, err := segment.Open(bytes.NewReader(raw), o.Name, keys.Read(), segment.ReaderOptions{})
		if err != nil {
			t.Fatalf("archive holds an unreadable segment: %v", err)
		}
		h := r.Header()
		rk := fmt.Sprintf("%s/%d/%d", h.Topic, h.Partition, h.FirstOffset)
		if prev, dup := c.Ranges[rk]; dup {
			t.Errorf("segments %s and %s both start at %s", prev, o.Name, rk)
		}
		c.Ranges[rk] = o.Name
		body, err := r.Body()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(body)
		r.Close()
		if err != nil {
			t.Fatalf("segment %s: %v", o.Name, err)
		}
		kinds := map[string]int64{}
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
			e, err := event.Parse(line)
			if err != nil {
				t.Fatalf("segment %s holds a bad event: %v", o.Name, err)
			}
			if e.Time.Before(h.Hour) || !e.Time.Before(h.Hour.Add(time.Hour)) || !h.Has(string(e.Kind)) || e.Class != h.Class {
				t.Errorf("event %s (%s %s %s) is in segment %s of another class, kind or hour", e.ID, e.Class, e.Kind, e.Time, o.Name)
			}
			kinds[string(e.Kind)]++
			c.IDs[e.ID]++
			c.Events++
		}
		if h.Kind == "" && !maps.Equal(kinds, h.Kinds) {
			t.Errorf("segment %s holds %v events by kind; its header says %v", o.Name, kinds, h.Kinds)
		}
		c.Segments++
		c.Bytes += int64(len(raw))
	}
	// Every class seen, with a retention long enough that nothing listed
	// counts as expired: a test archive loses nothing to lifecycle. No
	// grace: callers read an archive whose archivers have stopped, so
	// every segment must be listed.
	ret := archive.Retention{Mode: "GOVERNANCE"}
	for cl := range classes {
		ret.Classes = append(ret.Classes, archive.Class{Name: cl, Days: 36500})
	}
	rep, err := chain.Verify(ctx, s, chain.Options{Trusted: keys.Public, Retention: ret, Now: time.Now(), Concurrency: 4})
	if err != nil {
		t.Fatalf("cannot verify the archive's chains: %v", err)
	}
	for _, f := range rep.Findings {
		t.Errorf("verify: %s", f)
	}
	return c
}

// Compare reports lost and duplicated IDs between want (ID -> times sent
// to Kafka) and the archive.
func Compare(want map[string]int, got Contents) (lost, doubled []string) {
	for id, n := range want {
		if got.IDs[id] < n {
			lost = append(lost, id)
		}
		if got.IDs[id] > n {
			doubled = append(doubled, id)
		}
	}
	for id := range got.IDs {
		if want[id] == 0 {
			doubled = append(doubled, id+" (never sent)")
		}
	}
	return lost, doubled
}

// Lines decrypts one segment of s with keys (a keyring.Set or another
// segment.Open key source) and returns its events, one canonical JSON line
// each, without the newline.
func Lines(t testing.TB, s *store.Store, keys any, name string) [][]byte {
	t.Helper()
	rc, err := s.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := segment.Open(bytes.NewReader(raw), name, keys, segment.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	body, err := r.Body()
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for l := range bytes.Lines(data) {
		out = append(out, bytes.TrimSuffix(l, []byte("\n")))
	}
	return out
}
