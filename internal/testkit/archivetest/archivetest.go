// Package archivetest reads a whole archive back for tests that compare
// it with what was sent: every segment authenticated and decoded, every
// event counted by ID.
package archivetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
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
		AccessKey: secret.String(st.S3AccessKey), SecretKey: secret.String(st.S3SecretKey)}
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

// Keyring returns a keyring with keys for the months around now.
func Keyring(t testing.TB) *keyring.Keyring {
	t.Helper()
	kr := keyring.New()
	now := time.Now().UTC()
	if _, err := kr.Generate(now, now.AddDate(0, -3, 0).Format("2006-01"), now.AddDate(0, 1, 0).Format("2006-01")); err != nil {
		t.Fatal(err)
	}
	return kr
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
// cleanly and that no offset range is stored twice.
func Read(t testing.TB, s *store.Store, kr *keyring.Keyring) Contents {
	t.Helper()
	ctx := context.Background()
	c := Contents{IDs: map[string]int{}, Ranges: map[string]string{}}
	for o, err := range s.List(ctx, "") {
		if err != nil {
			t.Fatal(err)
		}
		rc, err := s.Get(ctx, o.Name)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		r, err := segment.Open(bytes.NewReader(raw), o.Name, kr, segment.ReaderOptions{})
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
		for _, line := range bytes.Split(bytes.TrimSuffix(data, []byte{'\n'}), []byte{'\n'}) {
			e, err := event.Parse(line)
			if err != nil {
				t.Fatalf("segment %s holds a bad event: %v", o.Name, err)
			}
			if e.Time.Before(h.Hour) || !e.Time.Before(h.Hour.Add(time.Hour)) || string(e.Kind) != h.Kind || e.Class != h.Class {
				t.Errorf("event %s (%s %s %s) is in segment %s of another class, kind or hour", e.ID, e.Class, e.Kind, e.Time, o.Name)
			}
			c.IDs[e.ID]++
			c.Events++
		}
		c.Segments++
		c.Bytes += int64(len(raw))
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
