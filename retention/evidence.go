package retention

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
)

// reader is what checking receipts needs from the bucket.
type reader interface {
	Get(ctx context.Context, name string) (io.ReadCloser, error)
}

// maxReceipt bounds a receipt read: they are a few hundred bytes.
const maxReceipt = 64 << 10

// Kept says why a class's period was not shredded though due ("" if no
// reason is known): a legal hold, in practice.
type Kept func(ctx context.Context, class, period string, start, end time.Time) (string, error)

// Shredded checks that retention's deletion of every class's data through
// the end of day is on record: for each class, the newest key period (of
// the given kind, keyring.PeriodDay or PeriodMonth) that ends by then has
// a shred receipt signed by a trusted key, or kept, if set, gives the
// reason it was not shredded. Retention shreds every due period of every
// class in one run, so a receipt for the newest one stands for the ones
// before. It is what `custody verify` accepts a chain's expired start on
// (docs/CHAIN.md §6); the error names each class and period at fault.
func Shredded(ctx context.Context, src reader, trusted interface {
	Signer(id string) (ed25519.PublicKey, bool)
}, ret archive.Retention, period string, day time.Time, kept Kept) error {
	end := day.UTC().Truncate(24*time.Hour).AddDate(0, 0, 1)
	last := end.Add(-time.Nanosecond)
	if period == keyring.PeriodMonth && end.Day() != 1 {
		// The month of day has not ended: the month before.
		last = time.Date(end.Year(), end.Month(), 1, 0, 0, 0, 0, time.UTC).Add(-time.Nanosecond)
	}
	p := keyring.PeriodOf(period, last)
	pend, _ := periodEnd(p)
	var pstart time.Time
	if period == keyring.PeriodMonth {
		pstart = pend.AddDate(0, -1, 0)
	} else {
		pstart = pend.AddDate(0, 0, -1)
	}
	var errs []error
	for _, c := range ret.Classes {
		name := ReceiptName(c.Name, p)
		b, err := readSmall(ctx, src, name)
		if err == nil {
			var r Receipt
			if r, err = ParseReceipt(b, trusted); err == nil && (r.Class != c.Name || r.Period != p) {
				err = fmt.Errorf("it is the receipt of %s/%s", r.Class, r.Period)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
			}
			continue
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("cannot read %s: %w", name, err)
		}
		why := ""
		if kept != nil {
			if why, err = kept(ctx, c.Name, p, pstart, pend); err != nil {
				return err
			}
		}
		if why == "" {
			errs = append(errs, fmt.Errorf("%s/%s has no shred receipt (%s)", c.Name, p, name))
		}
	}
	return errors.Join(errs...)
}

func readSmall(ctx context.Context, src reader, name string) ([]byte, error) {
	rc, err := src.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxReceipt+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxReceipt {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, maxReceipt)
	}
	return b, nil
}
