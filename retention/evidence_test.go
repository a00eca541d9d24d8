package retention

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/testkit/memstore"
)

// TestShredded: the evidence verify accepts an expired chain start on —
// per class, a trusted receipt for the newest period ended by the day, or
// a reason to keep it — and each way it falls short, named.
func TestShredded(t *testing.T) {
	ctx := context.Background()
	sk, err := keyring.NewSigningKey("runner", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	other, err := keyring.NewSigningKey("runner", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pub := keyring.NewPublic()
	pub.AddSigner(sk.Public())
	ret := archive.Retention{Classes: []archive.Class{{Name: "security", Days: 365}, {Name: "web", Days: 30}}}
	put := func(ms *memstore.Store, class, period string, signer keyring.SigningKey, name string) {
		b, err := encodeReceipt(Receipt{Version: 1, Kind: "shred", Class: class, Period: period, KeyIDs: []string{class + "/" + period + ".v1"}, DestroyedAt: time.Now().UTC()}, signer)
		if err != nil {
			t.Fatal(err)
		}
		if name == "" {
			name = ReceiptName(class, period)
		}
		ms.Objects[name] = b
	}
	day := time.Date(2026, 3, 15, 0, 0, 0, 0, time.UTC)
	check := func(ms *memstore.Store, period string, day time.Time, kept Kept, want ...string) {
		t.Helper()
		err := Shredded(ctx, ms, pub, ret, period, day, kept)
		if len(want) == 0 {
			if err != nil {
				t.Errorf("Shredded(%s) = %v; want nil", day.Format("2006-01-02"), err)
			}
			return
		}
		for _, w := range want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("Shredded(%s) = %v; want it to say %q", day.Format("2006-01-02"), err, w)
			}
		}
	}

	ms := memstore.New()
	put(ms, "security", "2026-03-15", sk, "")
	check(ms, keyring.PeriodDay, day, nil, "web/2026-03-15 has no shred receipt (_receipts/shred/web/2026-03-15.json)")
	check(ms, keyring.PeriodDay, day, func(_ context.Context, class, period string, start, end time.Time) (string, error) {
		if class == "web" && period == "2026-03-15" && start.Equal(day) && end.Equal(day.AddDate(0, 0, 1)) {
			return "kept by the hold of case X", nil
		}
		return "", nil
	})
	put(ms, "web", "2026-03-15", sk, "")
	check(ms, keyring.PeriodDay, day.Add(23*time.Hour), nil)

	// Forged, or another period's receipt under this name.
	ms = memstore.New()
	put(ms, "security", "2026-03-15", other, "")
	put(ms, "web", "2026-03-14", sk, ReceiptName("web", "2026-03-15"))
	check(ms, keyring.PeriodDay, day, nil, "_receipts/shred/security/2026-03-15.json: shred receipt:", "_receipts/shred/web/2026-03-15.json: it is the receipt of web/2026-03-14")

	// Months: mid-March stands on February's receipts; March 31st on
	// March's.
	ms = memstore.New()
	put(ms, "security", "2026-02", sk, "")
	put(ms, "web", "2026-02", sk, "")
	check(ms, keyring.PeriodMonth, day, nil)
	check(ms, keyring.PeriodMonth, time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC), nil, "security/2026-03 has no shred receipt", "web/2026-03 has no shred receipt")
}
