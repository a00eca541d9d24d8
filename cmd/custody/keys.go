package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/hold"
	"github.com/custodylog/custody/internal/config"
	"github.com/custodylog/custody/retention"
)

func newKeysCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "keys", Short: "Manage the key pairs (one per retention class and day of event time) and the archiver signing key"}

	var signer string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Create the key pairs every class needs, from its oldest kept day to crypto.horizon_days ahead, and a signing key",
		Long: `Idempotent. For every retention class, creates an HPKE key pair (format v2,
` + keyring.Suite + `) for each period (crypto.period: day or month) from
the oldest event the class still keeps to crypto.horizon_days ahead that has
none. Writes the private keyring (mode 0600; the one reader holds it), the
public keyring (writers hold it; it also lists the signers readers trust),
and, if there is none, the archiver's ed25519 signing key (mode 0600),
adding its public half to the public keyring.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadValid(cmd, g, sections["keys"])
			if err != nil {
				return err
			}
			maxDays := 0
			for _, cl := range cfg.Retention.Classes {
				maxDays = max(maxDays, cl.Days)
			}
			if signer == "" {
				host, _ := os.Hostname()
				signer = "archiver-" + host
			}
			added, newSigner, err := cfg.Crypto.Generate(time.Now(), cfg.Retention.Names(), maxDays, signer)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if len(added) == 0 {
				fmt.Fprintf(out, "%s: every class has its keys from %d days back to %d days ahead\n", cfg.Crypto.PrivateKeyringFile, maxDays, cfg.Crypto.HorizonDays)
			} else {
				fmt.Fprintf(out, "%s: added %d key pairs, %s to %s\n", cfg.Crypto.PrivateKeyringFile, len(added), added[0], added[len(added)-1])
			}
			if newSigner {
				fmt.Fprintf(out, "%s: new signing key %s, trusted in %s\n", cfg.Crypto.SigningKeyFile, signer, cfg.Crypto.PublicKeyringFile)
			}
			return nil
		},
	}
	gen.Flags().StringVar(&signer, "signer", "", `name of a new signing key (default "archiver-<hostname>")`)

	var fromBucket bool
	list := &cobra.Command{
		Use:   "list [--bucket]",
		Short: "List key IDs, classes, periods, states and creation times (never key material)",
		Long: `Lists every key pair with its state: active (today's), future, past, or
shredded (on the reader's host: the public key is there, the private one is
gone). With --bucket it also reads the bucket (the s3 section): each
shredded period's receipt (when, and its name, signature checked) and the
legal holds that cover each period.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			use := sections["keys"]
			if fromBucket {
				use = sections["keys list --bucket"]
			}
			cfg, err := loadValid(cmd, g, use)
			if err != nil {
				return err
			}
			pub, err := keyring.LoadPublic(cfg.Crypto.PublicKeyringFile)
			if err != nil {
				return fmt.Errorf("%w (create it with `custody keys generate`)", err)
			}
			// On the reader's host, a public key whose private half is gone
			// was shredded (its receipt is in the bucket).
			private := map[string]bool{}
			priv, perr := keyring.LoadPrivate(cfg.Crypto.PrivateKeyringFile, cfg.Crypto.Passphrase())
			if perr == nil {
				for _, k := range priv.Keys() {
					private[k.ID] = true
				}
			}
			var bk bucketState
			if fromBucket {
				if bk, err = readBucketState(cmd.Context(), cfg, pub); err != nil {
					return err
				}
			}
			now := time.Now().UTC()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCLASS\tPERIOD\tSTATE\tCREATED\tNOTES")
			for _, k := range pub.Keys() {
				state := "past"
				switch cur := keyring.PeriodOf(periodKind(k.Period), now); {
				case priv != nil && !private[k.ID]:
					state = "shredded"
				case k.Period == cur:
					state = "active"
				case k.Period > cur:
					state = "future"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", k.ID, k.Class, k.Period, state, k.Created.Format(time.RFC3339), bk.notes(k))
			}
			for _, s := range pub.Signers() {
				fmt.Fprintf(tw, "%s\t-\t-\tsigner\t%s\t\n", s.ID, s.Created.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	list.Flags().BoolVar(&fromBucket, "bucket", false, "also read shred receipts and legal holds from the bucket (needs the s3 section)")
	var class, period string
	rot := &cobra.Command{
		Use:   "rotate",
		Short: "Add the next key pair version of a class's period (default: today); new segments use it, older versions stay readable",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadValid(cmd, g, sections["keys"])
			if err != nil {
				return err
			}
			if _, ok := cfg.Retention.Class(class); !ok {
				return fmt.Errorf("--class %q is not a retention class", class)
			}
			if period == "" {
				period = keyring.PeriodOf(cfg.Crypto.Period, time.Now())
			}
			id, err := cfg.Crypto.Rotate(time.Now(), class, period)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: added %s; new segments of %s/%s use it (archivers pick it up at restart)\n", cfg.Crypto.PrivateKeyringFile, id, class, period)
			return nil
		},
	}
	rot.Flags().StringVar(&class, "class", "security", "retention class")
	rot.Flags().StringVar(&period, "period", "", "period, YYYY-MM-DD (or YYYY-MM with crypto.period: month); default today's")
	c.AddCommand(gen, rot, list)
	return c
}

// periodKind tells a day period ("2026-11-29") from a month ("2026-11").
func periodKind(p string) string {
	if len(p) == len("2006-01") {
		return keyring.PeriodMonth
	}
	return keyring.PeriodDay
}

// bucketState is what keys list --bucket reads: shred receipts by key ID
// and the holds in the register.
type bucketState struct {
	receipts map[string]string // key ID -> "shredded <date>, receipt <name>"
	holds    []hold.Record
}

func readBucketState(ctx context.Context, cfg *config.Config, pub *keyring.PublicKeyring) (bucketState, error) {
	bk := bucketState{receipts: map[string]string{}}
	st, err := store.New(cfg.S3)
	if err != nil {
		return bk, err
	}
	for o, err := range st.List(ctx, retention.ReceiptPrefix) {
		if err != nil {
			return bk, err
		}
		rc, err := st.Get(ctx, o.Name)
		if err != nil {
			return bk, err
		}
		b, err := io.ReadAll(io.LimitReader(rc, 64<<10))
		rc.Close()
		if err != nil {
			return bk, err
		}
		r, err := retention.ParseReceipt(b, pub)
		if err != nil {
			return bk, fmt.Errorf("%s: %w", o.Name, err)
		}
		for _, id := range r.KeyIDs {
			bk.receipts[id] = fmt.Sprintf("shredded %s, receipt %s", r.DestroyedAt.Format("2006-01-02"), o.Name)
		}
	}
	records, err := hold.Records(ctx, st, pub)
	if err != nil {
		return bk, err
	}
	for _, r := range records {
		if r.Status != hold.Released {
			bk.holds = append(bk.holds, r)
		}
	}
	return bk, nil
}

// notes says what the bucket says of a key's period.
func (bk bucketState) notes(k keyring.PublicKey) string {
	var n []string
	if s, ok := bk.receipts[k.ID]; ok {
		n = append(n, s)
	}
	start, end := periodBounds(k.Period)
	for _, h := range bk.holds {
		if h.From.Before(end) && start.Before(h.To) {
			n = append(n, "held by "+h.Case)
		}
	}
	return strings.Join(n, "; ")
}

// periodBounds is [start, end) of a day or month period.
func periodBounds(p string) (time.Time, time.Time) {
	if t, err := time.Parse("2006-01-02", p); err == nil {
		return t, t.AddDate(0, 0, 1)
	}
	t, _ := time.Parse("2006-01", p)
	return t, t.AddDate(0, 1, 0)
}
