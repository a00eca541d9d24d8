package retention

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/crypto/keyring"
)

func TestDue(t *testing.T) {
	d := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	priv, pub := keyring.NewPrivate(), keyring.NewPublic()
	if _, err := keyring.GeneratePairs(pub, priv, d, []string{"short", "security"}, keyring.PeriodDay, d, d.AddDate(0, 0, 2)); err != nil {
		t.Fatal(err)
	}
	ret := archive.Retention{Grace: 6 * time.Hour, Classes: []archive.Class{{Name: "short", Days: 1}, {Name: "security", Days: 365}}}
	f := func(now time.Time, want ...string) {
		t.Helper()
		due := Due(priv, ret, now)
		var got []string
		for p := range due {
			got = append(got, p)
		}
		slices.Sort(got)
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("Due at %s = %v; want %v", now, got, want)
		}
	}
	// Day 1 of the 1-day class ends 11-02 00:00; + 1 day + 6 h grace.
	f(time.Date(2026, 11, 3, 5, 59, 59, 0, time.UTC))
	f(time.Date(2026, 11, 3, 6, 0, 0, 0, time.UTC), "short/2026-11-01")
	f(time.Date(2026, 11, 4, 6, 0, 0, 0, time.UTC), "short/2026-11-01", "short/2026-11-02")
	f(time.Date(2027, 11, 2, 6, 0, 0, 0, time.UTC), "security/2026-11-01", "short/2026-11-01", "short/2026-11-02", "short/2026-11-03")
}

func TestReceiptSignature(t *testing.T) {
	sk, err := keyring.NewSigningKey("runner", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pub := keyring.NewPublic()
	pub.AddSigner(sk.Public())
	r := Receipt{Version: 1, Kind: "shred", Class: "short", Period: "2026-11-01", KeyIDs: []string{"short/2026-11-01.v1"}, RetentionDays: 1, Grace: "6h0m0s", DestroyedAt: time.Now().UTC().Truncate(time.Second), Runner: "runner"}
	b, err := encodeReceipt(r, sk)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseReceipt(b, pub)
	if err != nil || got.Period != r.Period || got.KeyIDs[0] != r.KeyIDs[0] {
		t.Fatalf("ParseReceipt = %+v, %v", got, err)
	}
	changed := strings.Replace(string(b), `"period":"2026-11-01"`, `"period":"2026-11-02"`, 1)
	if _, err := ParseReceipt([]byte(changed), pub); err == nil {
		t.Error("a changed receipt verified")
	}
	if _, err := ParseReceipt(b, keyring.NewPublic()); err == nil {
		t.Error("a receipt by an untrusted signer verified")
	}
}
