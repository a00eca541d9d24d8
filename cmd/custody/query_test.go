package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// TestQueryCommand writes a few segments straight into a fresh bucket and
// queries them through the CLI, as an investigator would.
func TestQueryCommand(t *testing.T) {
	st := stacktest.Get(t)
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	s, sc := archivetest.NewStore(t, st, ret)
	// Format v2 keys, and a v1 keyring: the login segment is written in
	// v1 (as before format v2), the connection segment in v2, and one query
	// reads both.
	keys := archivetest.Keyring(t)
	dir := t.TempDir()
	crypto := keys.Save(t, dir)
	v1 := keyring.New()
	if _, err := v1.Generate(time.Now(), time.Now().AddDate(0, -1, 0).Format("2006-01"), time.Now().Format("2006-01")); err != nil {
		t.Fatal(err)
	}
	if err := v1.Save(filepath.Join(dir, "keyring.json")); err != nil {
		t.Fatal(err)
	}
	hour := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	for k, kind := range []event.Kind{event.KindLogin, event.KindConnection} {
		var body bytes.Buffer
		ix := segment.NewIndexBuilder()
		for i := 0; i < 3; i++ {
			e := event.Event{ID: fmt.Sprintf("%s-%d", kind, i), Time: hour.Add(time.Duration(i) * time.Minute), Kind: kind, Class: "security", Tenant: "acme",
				IP: netip.MustParseAddr(fmt.Sprintf("203.0.113.%d", i)), Login: fmt.Sprintf("user%d", i), Action: "success"}
			body.Write(event.AppendJSON(nil, &e))
			ix.AddIP(e.IP.String())
			ix.Add(segment.FieldLogin, e.Login)
			ix.Add(segment.FieldTenant, e.Tenant)
		}
		m := segment.Meta{Class: "security", Kind: string(kind), Hour: hour, Topic: "q", Partition: int32(k), FirstOffset: 0, LastOffset: 2, Count: 3,
			MinTime: hour, MaxTime: hour.Add(2 * time.Minute)}
		var seg bytes.Buffer
		var w *segment.Writer
		var err error
		if kind == event.KindLogin {
			kek, _ := v1.Current(hour)
			w, err = segment.NewWriter(&seg, m, ix, kek, segment.WriterOptions{})
		} else {
			pk, _ := keys.Public.Current("security", hour)
			w, err = segment.NewWriterV2(&seg, m, ix, pk, keys.Signer)
		}
		if err != nil {
			t.Fatal(err)
		}
		w.Write(body.Bytes())
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		lock, _ := store.LockFor(ret, "security", hour)
		if err := s.Put(context.Background(), w.Name(), &seg, int64(seg.Len()), lock); err != nil {
			t.Fatal(err)
		}
	}
	topic := stacktest.Topic(t, st, 1)
	cfg := stackConfig(t, st, topic, crypto+fmt.Sprintf("  keyring_file: %s/keyring.json\nretention:\n  mode: GOVERNANCE\n  classes: [{name: security, days: 30}]\n", dir))
	t.Setenv("CUSTODY_S3_BUCKET", sc.Bucket)
	t.Setenv("CUSTODY_S3_ENDPOINT", st.S3Endpoint)
	t.Setenv("CUSTODY_S3_ACCESS_KEY", st.S3AccessKey)
	t.Setenv("CUSTODY_S3_SECRET_KEY", st.S3SecretKey)
	day := hour.Format("2006-01-02")

	_, errOut, code := runCLI(t, "query", "--local", "--config", cfg, "--from", day, "--to", day)
	if code == 0 || !strings.Contains(errOut, "--purpose is required") {
		t.Fatalf("query without --purpose: code %d, %q", code, errOut)
	}
	_, errOut, code = runCLI(t, "query", "--local", "--config", cfg, "--from", "2026-12-01", "--to", "2026-11-01", "--purpose", "x")
	if code == 0 || !strings.Contains(errOut, "is not before --to") {
		t.Fatalf("reversed range: code %d, %q", code, errOut)
	}
	_, errOut, code = runCLI(t, "query", "--local", "--config", cfg, "--from", "yesterday", "--to", day, "--purpose", "x")
	if code == 0 || !strings.Contains(errOut, `--from: "yesterday" is neither RFC 3339`) {
		t.Fatalf("bad --from: code %d, %q", code, errOut)
	}

	out, errOut, code := runCLI(t, "query", "--local", "--config", cfg, "--from", day, "--to", day, "--ip", "203.0.113.0/31", "--purpose", "case 42", "--operator", "inspector")
	if code != 0 {
		t.Fatalf("query: code %d, %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	// Event-time order; login-i and connection-i share a time, and ties
	// sort by ID.
	want := []string{`"id":"connection-0"`, `"id":"login-0"`, `"id":"connection-1"`, `"id":"login-1"`}
	if len(lines) != 4 {
		t.Fatalf("query --ip 203.0.113.0/31 returned %d lines; want 4:\n%s", len(lines), out)
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d is %s; want %s", i, lines[i], w)
		}
	}
	out, _, code = runCLI(t, "query", "--local", "--config", cfg, "--from", day, "--to", day, "--login", "user2", "--format", "csv", "--purpose", "case 42")
	if code != 0 || !strings.HasPrefix(out, "time,id,kind,") || strings.Count(out, "\n") != 3 || !strings.Contains(out, ",203.0.113.2,") {
		t.Fatalf("csv: code %d\n%s", code, out)
	}
	out, _, code = runCLI(t, "query", "--local", "--config", cfg, "--from", day, "--to", day, "--kind", "login", "--format", "table", "--limit", "2", "--purpose", "case 42")
	if code != 0 || !strings.HasPrefix(out, "TIME") || strings.Count(out, "\n") != 3 || strings.Contains(out, "connection") {
		t.Fatalf("table with limit: code %d\n%s", code, out)
	}
	// Every query was recorded before it ran, with who and why.
	audits := stacktest.ReadAll(t, st, topic, 3, 30*time.Second)
	if len(audits) != 3 || !bytes.Contains(audits[0].Value, []byte(`"kind":"access_audit"`)) ||
		!bytes.Contains(audits[0].Value, []byte(`"login":"inspector"`)) || !bytes.Contains(audits[0].Value, []byte(`"purpose":"case 42"`)) {
		t.Fatalf("access audit events: %d, first %s", len(audits), audits[0].Value)
	}
}
