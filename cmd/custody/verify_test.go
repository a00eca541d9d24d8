package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/pipelinetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/retention"
)

// TestVerifyCommand archives events with the real archiver, then runs
// `custody verify` as an auditor would: clean, then with a segment
// deleted (exit 1, the finding names it, in text and in JSON).
func TestVerifyCommand(t *testing.T) {
	st := stacktest.Get(t)
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	topic := stacktest.Topic(t, st, 2)
	archivetest.Produce(t, st, topic, archivetest.Events(500, "vc", []string{"security"}, time.Now().UTC()))
	s, sc := archivetest.NewStore(t, st, ret)
	keys := archivetest.Keyring(t)
	group := pipelinetest.Archive(t, st, topic, s, ret, keys.Write(), 50)

	cfg := stackConfig(t, st, topic, keys.Save(t, t.TempDir())+"retention:\n  mode: GOVERNANCE\n  classes: [{name: security, days: 30}]\narchive:\n  group_id: "+group+"\n")
	t.Setenv("CUSTODY_S3_BUCKET", sc.Bucket)
	t.Setenv("CUSTODY_S3_ENDPOINT", st.S3Endpoint)
	t.Setenv("CUSTODY_S3_ACCESS_KEY", st.S3AccessKey)
	t.Setenv("CUSTODY_S3_SECRET_KEY", st.S3SecretKey)

	out, errOut, code := runCLI(t, "verify", "--config", cfg)
	if code != 0 || !strings.Contains(out, "2 partitions") || !strings.Contains(out, "accounting for 500 offsets") || !strings.HasSuffix(strings.TrimSpace(out), ": 0 findings") {
		t.Fatalf("verify of an intact archive: code %d\n%s%s", code, out, errOut)
	}

	// With Kafka: every partition's committed offset names its newest
	// checkpoint, which is there.
	out, errOut, code = runCLI(t, "verify", "--config", cfg, "--kafka")
	if code != 0 || !strings.HasSuffix(strings.TrimSpace(out), ": 0 findings") {
		t.Fatalf("verify --kafka of an intact archive: code %d\n%s%s", code, out, errOut)
	}

	archived := archivetest.Read(t, s, keys).Events // 500 less those past retention (dead-lettered)
	out, errOut, code = runCLI(t, "verify", "--config", cfg, "--deep")
	if code != 0 || !strings.Contains(out, fmt.Sprintf(", %d events decrypted and checked", archived)) {
		t.Fatalf("verify --deep of an intact archive: code %d\n%s%s", code, out, errOut)
	}

	// Seal the day (as custody retention run does each run) and publish
	// the root: verify takes it as an anchor.
	roots, err := chain.WriteRoots(context.Background(), s, keys.Public, keys.Signer, func(time.Time) store.Lock {
		return store.Lock{Mode: "GOVERNANCE", Until: time.Now().AddDate(0, 0, 2)}
	}, time.Now().AddDate(0, 0, 1))
	if err != nil || len(roots) == 0 {
		t.Fatalf("WriteRoots = %v, %v", roots, err)
	}
	out, _, code = runCLI(t, "verify", "roots", "--config", cfg)
	f := strings.Fields(out)
	if code != 0 || len(f) < 5 || f[0] != "custody" || f[1] != "root" || f[3] != "sha256" {
		t.Fatalf("verify roots: code %d\n%s", code, out)
	}
	anchor := f[4]
	if out, errOut, code := runCLI(t, "verify", "--config", cfg, "--anchor", anchor); code != 0 || !strings.Contains(out, "daily roots") {
		t.Fatalf("verify --anchor %s: code %d\n%s%s", anchor, code, out, errOut)
	}
	if out, _, code := runCLI(t, "verify", "--config", cfg, "--anchor", strings.Repeat("0", 64)); code != 1 || !strings.Contains(out, "is not in the bucket") {
		t.Fatalf("verify with an anchor the bucket lacks: code %d\n%s", code, out)
	}

	var victim string
	for o, err := range s.List(context.Background(), "security/") {
		if err != nil {
			t.Fatal(err)
		}
		victim = o.Name
		break
	}
	mc := st.MinIO(t)
	if err := mc.RemoveObject(context.Background(), sc.Bucket, victim, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, "missing: ") || !strings.Contains(out, victim) || !strings.Contains(errOut, "1 findings") {
		t.Fatalf("verify with %s deleted: code %d\n%s%s", victim, code, out, errOut)
	}
	out, _, code = runCLI(t, "verify", "--config", cfg, "--format", "json")
	var rep chain.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || len(rep.Findings) != 1 || rep.Findings[0].Kind != chain.Missing || rep.Findings[0].Object != victim {
		t.Fatalf("verify --format json: code %d, %v\n%s", code, err, out)
	}
	// --from/--to outside the deleted segment's hour: nothing to find.
	vm, err := segment.ParseName(victim)
	if err != nil {
		t.Fatal(err)
	}
	m := vm.Hour
	if out, _, code := runCLI(t, "verify", "--config", cfg, "--to", m.Add(-48*time.Hour).Format("2006-01-02")); code != 0 {
		t.Errorf("verify before the deleted segment's hour: code %d\n%s", code, out)
	}

	// The newest checkpoint of partition 0 deleted minutes after it was
	// written: its segments are within the flush window, so before the
	// day's root (sealed early above) only Kafka's commit names it.
	var head string
	for o, err := range s.List(context.Background(), chain.Prefix+topic+"/0/") {
		if err != nil {
			t.Fatal(err)
		}
		head = max(head, o.Name)
	}
	if err := mc.RemoveObject(context.Background(), sc.Bucket, head, minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCLI(t, "verify", "--config", cfg, "--kafka", "--to", m.Add(-48*time.Hour).Format("2006-01-02"))
	if code != 1 || !strings.Contains(out, head+": Kafka's committed offset") || !strings.Contains(out, "names this checkpoint, and it is not in the bucket") {
		t.Fatalf("verify --kafka with the newest checkpoint %s deleted: code %d\n%s%s", head, code, out, errOut)
	}
}

// TestVerifyExpiredChainStart: a chain whose first checkpoints lifecycle
// removed (here: deleted) long after a root sealed them verifies once
// custody retention run has shredded their day, and not before: the
// finding names the period without a receipt.
func TestVerifyExpiredChainStart(t *testing.T) {
	st := stacktest.Get(t)
	ctx := context.Background()
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}, Grace: time.Hour}
	s, sc := archivetest.NewStore(t, st, ret)
	day0 := time.Now().UTC().AddDate(0, 0, -200).Truncate(24 * time.Hour)
	keys := archivetest.KeysAt(t, day0)
	lock := store.Lock{Mode: "GOVERNANCE", Until: time.Now().Add(time.Hour)}
	prev := ""
	for seq := uint64(0); seq < 6; seq++ { // one checkpoint a day, nothing archived
		c := &chain.Checkpoint{V: 1, Topic: "x", Partition: 0, Seq: seq, Prev: prev, From: int64(seq) * 10, Offset: int64(seq+1) * 10,
			DeadLetters: []chain.Range{{First: int64(seq) * 10, Last: int64(seq)*10 + 9}}, Time: day0.AddDate(0, 0, int(seq)).Add(time.Hour)}
		b, err := chain.Encode(c, keys.Signer)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, chain.Name("x", 0, seq), bytes.NewReader(b), int64(len(b)), lock); err != nil {
			t.Fatal(err)
		}
		prev = chain.Hash(b)
	}
	if _, err := chain.WriteRoots(ctx, s, keys.Public, keys.Signer, func(time.Time) store.Lock { return lock }, day0.AddDate(0, 0, 6)); err != nil {
		t.Fatal(err)
	}
	mc := st.MinIO(t)
	for seq := uint64(0); seq < 3; seq++ { // what lifecycle does, 32 days on
		if err := mc.RemoveObject(ctx, sc.Bucket, chain.Name("x", 0, seq), minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	cfg := stackConfig(t, st, "unused", keys.Save(t, dir)+"retention:\n  mode: GOVERNANCE\n  classes: [{name: security, days: 30}]\n")
	t.Setenv("CUSTODY_S3_BUCKET", sc.Bucket)
	t.Setenv("CUSTODY_S3_ENDPOINT", st.S3Endpoint)
	t.Setenv("CUSTODY_S3_ACCESS_KEY", st.S3AccessKey)
	t.Setenv("CUSTODY_S3_SECRET_KEY", st.S3SecretKey)

	day2 := day0.AddDate(0, 0, 2).Format("2006-01-02")
	out, errOut, code := runCLI(t, "verify", "--config", cfg)
	if code != 1 || !strings.Contains(out, chain.Name("x", 0, 3)+": the chain starts at seq 3: checkpoints 0 to 2 are missing") ||
		!strings.Contains(out, "security/"+day2+" has no shred receipt") || !strings.Contains(errOut, "1 findings") {
		t.Fatalf("verify before the shredding: code %d\n%s%s", code, out, errOut)
	}

	r := retention.Runner{Retention: ret, PrivatePath: filepath.Join(dir, "private-keyring.json"), Signer: keys.Signer, Store: s, Now: time.Now}
	if rep, err := r.Run(ctx); err != nil || len(rep.Shredded) == 0 {
		t.Fatalf("retention run = %+v, %v", rep, err)
	}
	out, errOut, code = runCLI(t, "verify", "--config", cfg)
	if code != 0 || !strings.Contains(out, "(3 older ones gone past retention)") {
		t.Fatalf("verify after the shredding: code %d\n%s%s", code, out, errOut)
	}
}
