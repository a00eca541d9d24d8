package main

import (
	"archive/zip"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/export"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/pipelinetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// TestExportVerifyCommand: a package of a real archive's events, with its
// provenance, verifies with the key custody export pubkey prints; a file
// added is named; --against-archive finds its sources in the bucket, then
// names the one deleted.
func TestExportVerifyCommand(t *testing.T) {
	st := stacktest.Get(t)
	ctx := context.Background()
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	topic := stacktest.Topic(t, st, 2)
	archivetest.Produce(t, st, topic, archivetest.Events(300, "ex", []string{"security"}, time.Now().UTC()))
	s, sc := archivetest.NewStore(t, st, ret)
	keys := archivetest.Keyring(t)
	pipelinetest.Archive(t, st, topic, s, ret, keys.Write(), 40)

	// What a query for everything would give: every event, in time order,
	// and the segments it came from.
	contributed := map[string]int64{}
	var lines [][]byte
	for o, err := range s.List(ctx, "security/") {
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range archivetest.Lines(t, s, keys.Read(), o.Name) {
			lines = append(lines, l)
			contributed[o.Name]++
		}
	}
	timeOf := func(l []byte) time.Time { e, _ := event.Parse(l); return e.Time }
	slices.SortStableFunc(lines, func(a, b []byte) int { return timeOf(a).Compare(timeOf(b)) })
	src, err := export.Sources(ctx, s, keys.Public, contributed)
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range src {
		if x.Checkpoint == "" {
			t.Fatalf("segment %s: no checkpoint lists it after the archiver stopped", x.Segment)
		}
	}
	var buf bytes.Buffer
	w, err := export.NewWriter(&buf, t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if err := w.Add(l); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Close(export.Manifest{Kind: "disclosure", ID: "exp-t", Request: export.Request{Case: "LE-1", Purpose: "test", Requester: "alice"}, Provenance: src, Software: "custody test"}, keys.Signer); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pkg := filepath.Join(dir, "exp-t.zip")
	if err := os.WriteFile(pkg, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	cfg := stackConfig(t, st, topic, keys.Save(t, dir)+"retention:\n  mode: GOVERNANCE\n  classes: [{name: security, days: 30}]\n")
	t.Setenv("CUSTODY_S3_BUCKET", sc.Bucket)
	t.Setenv("CUSTODY_S3_ENDPOINT", st.S3Endpoint)
	t.Setenv("CUSTODY_S3_ACCESS_KEY", st.S3AccessKey)
	t.Setenv("CUSTODY_S3_SECRET_KEY", st.S3SecretKey)
	pem, errOut, code := runCLI(t, "export", "pubkey", "--config", cfg)
	if code != 0 || !strings.Contains(pem, "BEGIN PUBLIC KEY") {
		t.Fatalf("export pubkey: code %d\n%s%s", code, pem, errOut)
	}
	pemFile := filepath.Join(dir, "key.pem")
	os.WriteFile(pemFile, []byte(pem), 0o600)

	// Offline: no configuration at all.
	out, errOut, code := runCLI(t, "export", "verify", pkg, "--pubkey", pemFile)
	if code != 0 || !strings.Contains(out, "disclosure exp-t: case LE-1, "+strconv.Itoa(len(lines))+" events") || !strings.HasSuffix(strings.TrimSpace(out), "0 findings") {
		t.Fatalf("export verify: code %d\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "export", "verify", pkg, "--pubkey", pemFile, "--against-archive", "--config", cfg)
	if code != 0 || !strings.Contains(out, "against the archive: "+strconv.Itoa(len(src))+" segments found as recorded, 0 gone past retention") {
		t.Fatalf("export verify --against-archive: code %d\n%s%s", code, out, errOut)
	}

	// A file slipped into the package.
	zr, _ := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	var added bytes.Buffer
	zw := zip.NewWriter(&added)
	for _, f := range zr.File {
		if err := zw.Copy(f); err != nil {
			t.Fatal(err)
		}
	}
	nw, _ := zw.Create("note.txt")
	nw.Write([]byte("added later"))
	zw.Close()
	os.WriteFile(pkg+".added.zip", added.Bytes(), 0o600)
	out, _, code = runCLI(t, "export", "verify", pkg+".added.zip", "--pubkey", pemFile)
	if code != 1 || !strings.Contains(out, "added: note.txt: in the package and not listed by the manifest") {
		t.Fatalf("export verify of a package with a file added: code %d\n%s", code, out)
	}

	// A source segment deleted from the bucket.
	mc := st.MinIO(t)
	if err := mc.RemoveObject(ctx, sc.Bucket, src[0].Segment, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	out, _, code = runCLI(t, "export", "verify", pkg, "--pubkey", pemFile, "--against-archive", "--config", cfg)
	if code != 1 || !strings.Contains(out, "missing: "+src[0].Segment+": named by the manifest") {
		t.Fatalf("export verify --against-archive with a source deleted: code %d\n%s", code, out)
	}
}
