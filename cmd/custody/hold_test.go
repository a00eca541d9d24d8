package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/archive/store"

	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/hold"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// run runs the custody binary and returns its combined output and exit
// code (-1 when killed by a signal).
func (r *shredRig) run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(custodyBin(t), append(args, "--config", r.cfg)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	default:
		t.Fatalf("custody %v: %v", args, err)
		return "", 0
	}
}

func (r *shredRig) legalHold(t *testing.T, name string) bool {
	t.Helper()
	on, err := r.s.LegalHold(context.Background(), name, "")
	if err != nil {
		t.Fatalf("legal hold of %s: %v", name, err)
	}
	return on
}

func (r *shredRig) holdCases(t *testing.T) []string {
	t.Helper()
	kr, err := keyring.LoadHolds(filepath.Join(r.dir, "holds.json"), "")
	if err != nil {
		t.Fatal(err)
	}
	return kr.Cases()
}

func (r *shredRig) escrows(t *testing.T, caseRef string) []string {
	t.Helper()
	var out []string
	for o, err := range r.s.List(context.Background(), hold.EscrowPrefix+caseRef+"/") {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, o.Name)
	}
	return out
}

// queryIDs runs a query over days from..to and returns the event IDs it
// printed, its output and its exit code.
func (r *shredRig) queryIDs(t *testing.T, from, to int, extra ...string) ([]string, string, int) {
	t.Helper()
	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	out, code := r.run(t, append([]string{"query", "--local", "--from", day(from), "--to", day(to), "--purpose", "hold test"}, extra...)...)
	var ids []string
	for _, m := range regexp.MustCompile(`"id":"([^"]+)"`).FindAllStringSubmatch(out, -1) {
		ids = append(ids, m[1])
	}
	return ids, out, code
}

// A hold placed before the shredding keeps the held events readable after
// it, and only those; a segment written into the held range later keeps
// its period from being shredded, naming the case, until the hold is swept
// again; after release the held events are gone, with a receipt.
func TestHoldOutlivesShredding(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	ctx := context.Background()
	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	// Day 0 also holds another tenant's event, which the hold must not keep.
	other := r.addSegment(t, 0, "globex-0", "globex", "198.51.100.1")

	out, code := r.run(t, "hold", "place", "--case", "LE-114", "--from", day(0), "--to", day(1), "--tenant", "acme")
	if code != 0 || !strings.Contains(out, "hold LE-114 placed") || !strings.Contains(out, "2 segments held (2 new), 2 data keys escrowed, 1 ruled out by their index") {
		t.Fatalf("hold place: code %d\n%s", code, out)
	}
	for i, want := range []bool{true, true, false} {
		if got := r.legalHold(t, r.names[i]); got != want {
			t.Errorf("legal hold of day %d's segment = %t; want %t", i, got, want)
		}
	}
	if r.legalHold(t, other) {
		t.Errorf("the other tenant's segment %s is under legal hold", other)
	}
	if e := r.escrows(t, "LE-114"); len(e) != 2 {
		t.Errorf("escrow objects %v; want 2", e)
	}
	// The escrow objects themselves cannot be deleted while held.
	if err := r.s.RemoveAll(ctx, hold.EscrowName("LE-114", r.names[0])); err == nil {
		t.Error("an escrow object under legal hold was deleted")
	}

	// Written into the held range after the hold: day 1 cannot be shredded
	// until the hold covers it; day 0 can.
	late := r.addSegment(t, 1, "short-1-late", "acme", "203.0.113.9")
	out, code = r.run(t, "retention", "run", "--test-now", r.dueAt(1))
	if code == 0 || !strings.Contains(out, "shredded short/"+day(0)) || !strings.Contains(out, "kept short/"+day(1)+": short/"+day(1)+" is under legal hold by case LE-114") ||
		!strings.Contains(out, late) {
		t.Fatalf("retention run with an unescrowed held segment: code %d\n%s", code, out)
	}
	if !r.privateIDs(t)["short/"+day(1)+".v1"] {
		t.Fatal("the held day's key was destroyed")
	}
	out, code = r.run(t, "hold", "place", "--case", "LE-114")
	if code != 0 || !strings.Contains(out, "hold LE-114 swept again") || !strings.Contains(out, "3 segments held (1 new)") {
		t.Fatalf("hold place again: code %d\n%s", code, out)
	}
	out, code = r.run(t, "retention", "run", "--test-now", r.dueAt(1))
	if code != 0 || !strings.Contains(out, "shredded short/"+day(1)) {
		t.Fatalf("retention run once escrowed: code %d\n%s", code, out)
	}

	// Both days' keys are gone; the held events read through the escrow,
	// the other tenant's did not survive.
	ids, out, code := r.queryIDs(t, 0, 1)
	if strings.Join(ids, ",") != "short-0,short-1,short-1-late" || code != 1 || !strings.Contains(out, "receipt _receipts/shred/short/"+day(0)+".json") {
		t.Fatalf("query after shredding, under hold: ids %v, code %d\n%s", ids, code, out)
	}
	// keys list --bucket tells shredded (when, receipt) and held periods.
	out, code = r.run(t, "keys", "list", "--bucket")
	line := func(id string) string {
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, id+" ") {
				return l
			}
		}
		return ""
	}
	if l := line("short/" + day(0) + ".v1"); code != 0 || !strings.Contains(l, "shredded") || !strings.Contains(l, "receipt _receipts/shred/short/"+day(0)+".json") || !strings.Contains(l, "held by LE-114") {
		t.Errorf("keys list --bucket, day 0: code %d, %q\n%s", code, l, out)
	}
	if l := line("short/" + day(2) + ".v1"); l == "" || strings.Contains(l, "held by") || strings.Contains(l, "shredded") {
		t.Errorf("keys list --bucket, day 2: %q\n%s", l, out)
	}

	// Lifecycle expiration puts a delete marker over a held segment: it is
	// no longer listed, and the query reads the held version.
	hidden, err := r.s.Stat(ctx, r.names[1])
	if err != nil {
		t.Fatal(err)
	}
	mc := r.st.MinIO(t)
	if err := mc.RemoveObject(ctx, r.s.Bucket(), r.names[1], minio.RemoveObjectOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.s.Stat(ctx, r.names[1]); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the delete marker did not hide %s: %v", r.names[1], err)
	}
	if ids, out, code := r.queryIDs(t, 0, 1); strings.Join(ids, ",") != "short-0,short-1,short-1-late" || code != 1 {
		t.Fatalf("query with a held segment behind a delete marker: ids %v, code %d\n%s", ids, code, out)
	}
	out, code = r.run(t, "hold", "list")
	if code != 0 || !regexp.MustCompile(`LE-114\s+active\s+true\s+3\s+3\s+`).MatchString(out) || !strings.Contains(out, "--tenant acme") {
		t.Errorf("hold list: code %d\n%s", code, out)
	}

	// Release: the case key goes, the legal holds are lifted, a receipt is
	// left, and the events are deleted.
	out, code = r.run(t, "hold", "release", "--case", "LE-114")
	if code != 0 || !strings.Contains(out, "hold LE-114 released: case key destroyed, 3 segments' legal holds lifted, 0 still held by other cases, receipt _receipts/hold/LE-114.json") {
		t.Fatalf("hold release: code %d\n%s", code, out)
	}
	if on, err := r.s.LegalHold(ctx, r.names[1], hidden.Version); err != nil || on {
		t.Errorf("after release, the hidden held version's legal hold: %t, %v", on, err)
	}
	if len(r.holdCases(t)) != 0 || len(r.escrows(t, "LE-114")) != 0 || r.legalHold(t, r.names[0]) || r.legalHold(t, late) {
		t.Errorf("after release: hold keys %v, escrows %v, legal holds %t %t", r.holdCases(t), r.escrows(t, "LE-114"), r.legalHold(t, r.names[0]), r.legalHold(t, late))
	}
	rc, err := r.s.Get(ctx, hold.ReceiptName("LE-114"))
	if err != nil {
		t.Fatal(err)
	}
	rec, err := hold.ParseReceipt(readAll(t, rc), r.pub)
	if err != nil || rec.Case != "LE-114" || rec.HoldKeyID != "hold/LE-114" || rec.ReleasedAt.IsZero() {
		t.Errorf("release receipt %+v, %v", rec, err)
	}
	if l, err := r.s.Retention(ctx, hold.ReceiptName("LE-114")); err != nil || l.Until.Before(time.Now().AddDate(9, 0, 0)) {
		t.Errorf("release receipt lock %+v, %v", l, err)
	}
	ids, out, code = r.queryIDs(t, 0, 1)
	if len(ids) != 0 || code != 1 || !strings.Contains(out, "was shredded on") {
		t.Errorf("query after release: ids %v, code %d\n%s", ids, code, out)
	}
	if out, code = r.run(t, "hold", "release", "--case", "LE-114"); code != 0 || !strings.Contains(out, "was already released") {
		t.Errorf("second release: code %d\n%s", code, out)
	}
	if out, code = r.run(t, "hold", "place", "--case", "LE-114", "--from", day(0), "--to", day(1)); code == 0 || !strings.Contains(out, "was released") {
		t.Errorf("placing a released case again: code %d\n%s", code, out)
	}
	msgs := stacktest.ReadUntil(t, r.st, r.topic, func(ms []kafka.Message) bool {
		n := 0
		for _, m := range ms {
			if bytes.Contains(m.Value, []byte(`"action":"hold.place"`)) || bytes.Contains(m.Value, []byte(`"action":"hold.release"`)) {
				n++
			}
		}
		return n >= 2
	}, 30*time.Second)
	if len(msgs) == 0 {
		t.Error("no hold events in the topic")
	}
}

// Two cases hold the same segment: releasing one keeps its legal hold and
// its escrow readable for the other.
func TestHoldSharedSegment(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	for _, c := range []string{"A-1", "B-2"} {
		if out, code := r.run(t, "hold", "place", "--case", c, "--from", day(0), "--to", day(0)); code != 0 {
			t.Fatalf("hold place %s: code %d\n%s", c, code, out)
		}
	}
	if out, code := r.run(t, "retention", "run", "--test-now", r.dueAt(0)); code != 0 {
		t.Fatalf("retention run: code %d\n%s", code, out)
	}
	out, code := r.run(t, "hold", "release", "--case", "A-1")
	if code != 0 || !strings.Contains(out, "0 segments' legal holds lifted, 1 still held by other cases") {
		t.Fatalf("release A-1: code %d\n%s", code, out)
	}
	if !r.legalHold(t, r.names[0]) {
		t.Error("releasing A-1 lifted the legal hold B-2 still needs")
	}
	if ids, out, code := r.queryIDs(t, 0, 0); strings.Join(ids, ",") != "short-0" || code != 0 {
		t.Errorf("query under B-2 alone: ids %v, code %d\n%s", ids, code, out)
	}
}

// kill -9 of hold place and hold release after each step: running the same
// command again ends in the state an uninterrupted run reaches.
func TestHoldKill9(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	ctx := context.Background()
	for _, step := range []string{"key", "record", "legal-hold", "escrow", "swept"} {
		c := "P-" + step
		place := []string{"hold", "place", "--case", c, "--from", day(0), "--to", day(2)}
		if out, code := r.run(t, append(place, "--test-crash-at", step)...); code != -1 {
			t.Fatalf("place killed after %s: code %d\n%s", step, code, out)
		}
		if out, code := r.run(t, place...); code != 0 || !strings.Contains(out, "3 segments held") || !strings.Contains(out, "3 data keys escrowed") {
			t.Fatalf("place after a kill at %s: code %d\n%s", step, code, out)
		}
		if len(r.escrows(t, c)) != 3 {
			t.Errorf("after a kill at %s: escrows %v", step, r.escrows(t, c))
		}
		rec, err := hold.ReadRecord(ctx, r.s, r.pub, c)
		if err != nil || rec == nil || rec.Status != hold.Active || rec.Held != 3 {
			t.Errorf("after a kill at %s: record %+v, %v", step, rec, err)
		}
	}
	for _, step := range []string{"intent", "destroy", "unhold", "receipt", "event"} {
		c := "P-" + map[string]string{"intent": "key", "destroy": "record", "unhold": "legal-hold", "receipt": "escrow", "event": "swept"}[step]
		if out, code := r.run(t, "hold", "release", "--case", c, "--test-crash-at", step); code != -1 {
			t.Fatalf("release killed after %s: code %d\n%s", step, code, out)
		}
		if out, code := r.run(t, "hold", "release", "--case", c); code != 0 || !strings.Contains(out, "hold "+c+" released") {
			t.Fatalf("release after a kill at %s: code %d\n%s", step, code, out)
		}
		rec, err := hold.ReadRecord(ctx, r.s, r.pub, c)
		if err != nil || rec == nil || rec.Status != hold.Released {
			t.Errorf("after a kill at %s: record %+v, %v", step, rec, err)
		}
		if e := r.escrows(t, c); len(e) != 0 {
			t.Errorf("after a kill at %s: escrows left %v", step, e)
		}
		if _, err := r.s.Stat(ctx, hold.ReceiptName(c)); err != nil {
			t.Errorf("after a kill at %s: no receipt: %v", step, err)
		}
		for _, cc := range r.holdCases(t) {
			if cc == c {
				t.Errorf("after a kill at %s: the key of %s is still in the hold keyring", step, c)
			}
		}
	}
	// Every case released: nothing is under legal hold any more.
	for _, n := range r.names {
		if r.legalHold(t, n) {
			t.Errorf("%s is still under legal hold after every case was released", n)
		}
	}
	if _, err := os.Stat(filepath.Join(r.dir, "holds.json")); err != nil {
		t.Errorf("hold keyring: %v", err)
	}
}

// Bad input gets a clear error and changes nothing; a hold that matches
// nothing is fine.
func TestHoldBadInput(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"hold", "release", "--case", "NOPE-1"}, "case NOPE-1 has no hold record (_holds/records/NOPE-1.json)"},
		{[]string{"hold", "place", "--case", "a b", "--from", day(0), "--to", day(1)}, `case "a b": want 1-64 letters, digits`},
		{[]string{"hold", "place", "--case", "X-1", "--from", day(1), "--to", day(0)}, "is not before --to"},
		{[]string{"hold", "place", "--case", "X-1", "--tenant", "acme"}, "--tenant, --login and --ip need --from and --to"},
		{[]string{"hold", "place", "--case", "X-1"}, "case X-1 is not under hold; --from and --to are required"},
		{[]string{"hold", "place", "--case", "X-1", "--from", day(0), "--to", day(1), "--ip", "300.1.2.3"}, "--ip:"},
		{[]string{"hold", "place"}, `required flag(s) "case" not set`},
	} {
		out, code := r.run(t, c.args...)
		if code != 1 || !strings.Contains(out, c.want) {
			t.Errorf("custody %v: code %d; want 1 and %q\n%s", c.args, code, c.want, out)
		}
	}
	if cs := r.holdCases(t); len(cs) != 0 {
		t.Errorf("refused commands left hold keys %v", cs)
	}
	out, code := r.run(t, "hold", "place", "--case", "EMPTY-1", "--from", day(0), "--to", day(2), "--tenant", "nobody")
	if code != 0 || !strings.Contains(out, "0 segments held (0 new), 0 data keys escrowed, 3 ruled out by their index") {
		t.Errorf("a hold that matches nothing: code %d\n%s", code, out)
	}
	out, code = r.run(t, "hold", "place", "--case", "EMPTY-1", "--from", day(0), "--to", day(2), "--tenant", "acme")
	if code != 1 || !strings.Contains(out, "case EMPTY-1 is already under hold with --from") {
		t.Errorf("the same case with other filters: code %d\n%s", code, out)
	}
}

// A case in the hold keyring whose record is gone from the bucket keeps
// every due period it overlaps: what it covers is unknown.
func TestHoldWithoutRecordKeepsPeriods(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	if out, code := r.run(t, "hold", "place", "--case", "GONE-1", "--from", day(0), "--to", day(0)); code != 0 {
		t.Fatalf("hold place: code %d\n%s", code, out)
	}
	if err := r.s.RemoveAll(context.Background(), hold.RecordName("GONE-1")); err != nil {
		t.Fatal(err)
	}
	out, code := r.run(t, "retention", "run", "--test-now", r.dueAt(0))
	if code != 1 || !strings.Contains(out, "kept short/"+day(0)) || !strings.Contains(out, "its record _holds/records/GONE-1.json is missing") {
		t.Fatalf("retention run with a hold whose record is gone: code %d\n%s", code, out)
	}
	if !r.privateIDs(t)["short/"+day(0)+".v1"] {
		t.Error("the key was destroyed although a hold of unknown extent is in force")
	}
}
