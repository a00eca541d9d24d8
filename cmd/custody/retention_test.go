package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/retention"
)

// shredRig is an archive of a 1-day class with one segment on each of
// three days, its keys, and a configuration for the custody binary.
type shredRig struct {
	st    stacktest.Stack
	s     *store.Store
	dir   string
	cfg   string
	topic string
	days  []time.Time
	pub   *keyring.PublicKeyring
	priv  *keyring.PrivateKeyring
	sk    keyring.SigningKey
	names []string
	next  int64 // offset of the next segment written
}

// addSegment writes, as an archiver would, a segment of the 1-day class
// holding one login event of day i, and returns its name.
func (r *shredRig) addSegment(t *testing.T, i int, id, tenant, ip string) string {
	t.Helper()
	hour := r.days[i].Add(5 * time.Hour)
	e := event.Event{ID: id, Time: hour.Add(time.Minute), Kind: event.KindLogin, Class: "short", Tenant: tenant,
		IP: netip.MustParseAddr(ip), Login: "alice", Action: "success"}
	ix := segment.NewIndexBuilder()
	ix.AddIP(e.IP.String())
	ix.Add(segment.FieldTenant, tenant)
	ix.Add(segment.FieldLogin, e.Login)
	off := r.next
	r.next++
	m := segment.Meta{Class: "short", Kind: "login", Hour: hour, Topic: "t", Partition: 0, FirstOffset: off, LastOffset: off, Count: 1, MinTime: e.Time, MaxTime: e.Time}
	pk, err := r.pub.Current("short", hour)
	if err != nil {
		t.Fatal(err)
	}
	var seg bytes.Buffer
	w, err := segment.NewWriterV2(&seg, m, ix, pk, r.sk)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(event.AppendJSON(nil, &e))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.s.Put(context.Background(), w.Name(), &seg, int64(seg.Len()), store.Lock{Mode: "GOVERNANCE", Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	r.names = append(r.names, w.Name())
	return w.Name()
}

// addToday adds today's key pairs to the rig's keyrings: an export seals
// its package to the current key.
func (r *shredRig) addToday(t *testing.T) {
	t.Helper()
	priv, err := keyring.LoadPrivate(filepath.Join(r.dir, "private.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if _, err := keyring.GeneratePairs(r.pub, priv, now, []string{"security", "short"}, keyring.PeriodDay, now, now); err != nil {
		t.Fatal(err)
	}
	if err := priv.Save(filepath.Join(r.dir, "private.json")); err != nil {
		t.Fatal(err)
	}
	if err := r.pub.Save(filepath.Join(r.dir, "public.json")); err != nil {
		t.Fatal(err)
	}
}

func newShredRig(t *testing.T, st stacktest.Stack) *shredRig {
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Grace: 6 * time.Hour,
		Classes: []archive.Class{{Name: "security", Days: 30}, {Name: "short", Days: 1}}}
	s, sc := archivetest.NewStore(t, st, ret)
	r := &shredRig{st: st, s: s, dir: t.TempDir(), topic: stacktest.Topic(t, st, 1)}
	d0 := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -3)
	r.days = []time.Time{d0, d0.AddDate(0, 0, 1), d0.AddDate(0, 0, 2)}
	priv, pub := keyring.NewPrivate(), keyring.NewPublic()
	if _, err := keyring.GeneratePairs(pub, priv, d0, []string{"security", "short"}, keyring.PeriodDay, d0, r.days[2]); err != nil {
		t.Fatal(err)
	}
	sk, _ := keyring.NewSigningKey("archiver-t", d0)
	pub.AddSigner(sk.Public())
	r.pub = pub
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(priv.Save(filepath.Join(r.dir, "private.json")))
	must(pub.Save(filepath.Join(r.dir, "public.json")))
	must(sk.Save(filepath.Join(r.dir, "signing.json")))
	r.priv, r.sk = priv, sk
	for i := range r.days {
		r.addSegment(t, i, fmt.Sprintf("short-%d", i), "acme", "203.0.113.9")
	}
	r.cfg = filepath.Join(r.dir, "custody.yaml")
	doc := fmt.Sprintf("kafka:\n  brokers: [%s]\n  topic: %s\ns3:\n  endpoint: %s\n  bucket: %s\ncrypto:\n  public_keyring_file: public.json\n  private_keyring_file: private.json\n  signing_key_file: signing.json\n  hold_keyring_file: holds.json\nagent:\n  outbox_dir: %s/outbox\nretention:\n  mode: GOVERNANCE\n  grace: 6h\n  classes: [{name: security, days: 30}, {name: short, days: 1}]\n",
		strings.Join(st.KafkaBrokers, ","), r.topic, st.S3Endpoint, sc.Bucket, r.dir)
	must(os.WriteFile(r.cfg, []byte(doc), 0o600))
	t.Setenv("CUSTODY_KAFKA_BROKERS", "")
	t.Setenv("CUSTODY_S3_ENDPOINT", "")
	t.Setenv("CUSTODY_S3_BUCKET", "")
	t.Setenv("CUSTODY_S3_ACCESS_KEY", st.S3AccessKey)
	t.Setenv("CUSTODY_S3_SECRET_KEY", st.S3SecretKey)
	return r
}

// dueAt is when day i of the 1-day class is due: its end, plus one day,
// plus the 6-hour grace, plus a minute.
func (r *shredRig) dueAt(i int) string {
	return r.days[i].AddDate(0, 0, 2).Add(6*time.Hour + time.Minute).Format(time.RFC3339)
}

func (r *shredRig) privateIDs(t *testing.T) map[string]bool {
	priv, err := keyring.LoadPrivate(filepath.Join(r.dir, "private.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, k := range priv.Keys() {
		ids[k.ID] = true
	}
	return ids
}

// Events across three days of a 1-day class: at day + 1 + grace that day's
// key is gone, its segment cannot be read, and the query names the receipt;
// the next day stays readable until its own time.
func TestRetentionShredsOnTime(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	bin := custodyBin(t)
	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	// Just before day 0 is due: nothing happens.
	early := r.days[0].AddDate(0, 0, 2).Add(5 * time.Hour).Format(time.RFC3339)
	out, err := exec.Command(bin, "retention", "run", "--config", r.cfg, "--test-now", early).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "nothing due") {
		t.Fatalf("retention run before time: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "retention", "run", "--config", r.cfg, "--test-now", r.dueAt(0)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "shredded short/"+day(0)+": 1 keys, receipt _receipts/shred/short/"+day(0)+".json") {
		t.Fatalf("retention run at day 0's time: %v\n%s", err, out)
	}
	ids := r.privateIDs(t)
	if ids["short/"+day(0)+".v1"] || !ids["short/"+day(1)+".v1"] || !ids["security/"+day(0)+".v1"] {
		t.Fatalf("private keys after the run: %v; want only short/%s gone", ids, day(0))
	}
	out, err = exec.Command(bin, "keys", "list", "--config", r.cfg).CombinedOutput()
	if err != nil || !regexp.MustCompile(`short/`+day(0)+`\.v1\s+short\s+`+day(0)+`\s+shredded`).Match(out) ||
		regexp.MustCompile(`short/`+day(1)+`\.v1\s+short\s+`+day(1)+`\s+shredded`).Match(out) {
		t.Errorf("keys list after the run: %v\n%s", err, out)
	}
	// The receipt is signed, locked, and says what was destroyed.
	rc, err := r.s.Get(context.Background(), retention.ReceiptName("short", day(0)))
	if err != nil {
		t.Fatal(err)
	}
	b := readAll(t, rc)
	rec, err := retention.ParseReceipt(b, r.pub)
	if err != nil || rec.Class != "short" || rec.Period != day(0) || len(rec.KeyIDs) != 1 || rec.RetentionDays != 1 {
		t.Fatalf("receipt: %+v, %v", rec, err)
	}
	if l, err := r.s.Retention(context.Background(), retention.ReceiptName("short", day(0))); err != nil || l.Until.Before(time.Now().AddDate(9, 0, 0)) {
		t.Errorf("receipt lock %+v, %v; want about ten years", l, err)
	}
	// The query: day 0 reports the shredding with its receipt; day 1 reads.
	q := func(i int) (string, int) {
		cmd := exec.Command(bin, "query", "--local", "--config", r.cfg, "--from", day(i), "--to", day(i), "--purpose", "retention test")
		cmd.Env = os.Environ()
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if err != nil {
			code = cmd.ProcessState.ExitCode()
		}
		return o.String() + e.String(), code
	}
	if out, code := q(0); code != 1 || !strings.Contains(out, "was shredded on ") || !strings.Contains(out, "(receipt _receipts/shred/short/"+day(0)+".json)") {
		t.Errorf("query of the shredded day: code %d\n%s", code, out)
	}
	if out, code := q(1); code != 0 || !strings.Contains(out, `"id":"short-1"`) {
		t.Errorf("query of the next day: code %d\n%s", code, out)
	}
	// The receipt event is in the events topic.
	msgs := stacktest.ReadUntil(t, r.st, r.topic, func(ms []kafka.Message) bool {
		for _, m := range ms {
			if bytes.Contains(m.Value, []byte(`"action":"key.shred"`)) {
				return true
			}
		}
		return false
	}, 30*time.Second)
	if len(msgs) == 0 {
		t.Fatal("no receipt event in the topic")
	}
}

// kill -9 of retention run after each step: the next run ends in the same
// state as an uninterrupted one (key gone, receipt stored, intent cleared,
// one event ID announced).
func TestRetentionKill9(t *testing.T) {
	st := stacktest.Get(t)
	r := newShredRig(t, st)
	bin := custodyBin(t)
	for i, step := range []string{"intent", "destroy", "receipt", "event"} {
		d := r.days[i%3]
		if i == 3 {
			// All three days are shredded by now; start over on a fresh rig.
			r = newShredRig(t, st)
			d = r.days[0]
		}
		now := d.AddDate(0, 0, 2).Add(6*time.Hour + time.Minute).Format(time.RFC3339)
		cmd := exec.Command(bin, "retention", "run", "--config", r.cfg, "--test-now", now, "--test-crash-at", step)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Fatalf("run killed after %s: %v\n%s", step, err, out)
		}
		if out, err := exec.Command(bin, "retention", "run", "--config", r.cfg, "--test-now", now).CombinedOutput(); err != nil {
			t.Fatalf("run after a kill at %s: %v\n%s", step, err, out)
		}
		p := d.Format("2006-01-02")
		if r.privateIDs(t)["short/"+p+".v1"] {
			t.Errorf("after a kill at %s: key short/%s still there", step, p)
		}
		if _, err := os.Stat(filepath.Join(r.dir, "private.json.shred-intent")); !os.IsNotExist(err) {
			t.Errorf("after a kill at %s: the intent file is still there (%v)", step, err)
		}
		rc, err := r.s.Get(context.Background(), retention.ReceiptName("short", p))
		if err != nil {
			t.Fatalf("after a kill at %s: no receipt: %v", step, err)
		}
		if _, err := retention.ParseReceipt(readAll(t, rc), r.pub); err != nil {
			t.Errorf("after a kill at %s: receipt: %v", step, err)
		}
		// A third run has nothing left to do for that day.
		out, _ = exec.Command(bin, "retention", "run", "--config", r.cfg, "--test-now", now).CombinedOutput()
		if strings.Contains(string(out), "short/"+p) {
			t.Errorf("after a kill at %s: a third run shredded %s again:\n%s", step, p, out)
		}
	}
}

func readAll(t *testing.T, rc io.ReadCloser) []byte {
	t.Helper()
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
