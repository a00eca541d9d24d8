package main

import (
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/hold"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/config"
	"github.com/custodylog/custody/query"
)

// holdManager builds the hold manager of the reader's host: the private
// and public keyrings, the hold keyring, the signing key and the bucket.
// With announce set it also opens the events topic; the returned close
// func releases what it opened.
func holdManager(cfg *config.Config, withEvents bool) (*hold.Manager, func(), error) {
	keys, err := cfg.Crypto.LoadReadKeys()
	if err != nil {
		return nil, nil, err
	}
	sk, err := keyring.LoadSigningKey(cfg.Crypto.SigningKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (hold records and receipts are signed; create it with `custody keys generate`)", err)
	}
	st, err := store.New(cfg.S3)
	if err != nil {
		return nil, nil, err
	}
	m := &hold.Manager{Store: st, Keys: keys, HoldPath: cfg.Crypto.HoldKeyringFile, Passphrase: cfg.Crypto.Passphrase(), Signer: sk,
		Classes: cfg.Retention.Names(), LockMode: cfg.Retention.Mode, MaxSegmentBytes: int64(cfg.Query.MaxSegmentBytes), Concurrency: cfg.Query.Concurrency, Now: time.Now}
	closeAll := func() {}
	if withEvents {
		kc, err := cfg.Kafka.NewClient()
		if err != nil {
			return nil, nil, err
		}
		ann := announce.NewKafka(kc, cfg.Retention.DefaultClass, "hold@"+sk.ID)
		m.Events = ann
		closeAll = func() { ann.Close(); kc.Close() }
	}
	return m, closeAll, nil
}

// testCrash makes a command SIGKILL itself after the named step (tests
// only), as `kill -9` would.
// testCrash returns a hook that kills the process with SIGKILL the Nth
// time it reaches step, given as "STEP" (N = 1) or "STEP:N"; nil for "".
// The hooks may be called from several goroutines.
func testCrash(step string) func(string) {
	if step == "" {
		return nil
	}
	n := int64(1)
	if s, count, ok := strings.Cut(step, ":"); ok {
		if v, err := strconv.ParseInt(count, 10, 64); err == nil && v > 0 {
			step, n = s, v
		}
	}
	var seen atomic.Int64
	return func(s string) {
		if s == step && seen.Add(1) == n {
			syscall.Kill(syscall.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
}

func newHoldCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "hold", Short: "Legal holds: keep a case's events from deletion and readable past their retention"}
	var from, to, tenant, login, ip, crashAt string
	place := &cobra.Command{
		Use:   "place --case ID --from T --to T [--tenant T] [--login L] [--ip ADDR|CIDR]",
		Short: "Put every segment that may hold the case's events under legal hold, with its data key escrowed",
		Long: `Finds the segments that may hold events in [--from, --to) matching the
filters (pruning on each segment's index, as a query does), then for each:
sets S3 object legal hold on it, so that neither lifecycle nor anyone can
delete it, and escrows its data key, sealed to the case's own key pair, in
_holds/keys/<case>/<segment>.key, so that shredding its period key later
leaves it readable. The hold is recorded, signed, in _holds/records/<case>.json.

Run it again with just --case to hold what was written since (retention
refuses to shred a period while a hold covers a segment not yet escrowed).
Interrupted, it completes when run again. See docs/HOLDS.md.`,
		Example: `  custody hold place --case LE-2026-114 --from 2026-11-01 --to 2026-11-29 --ip 203.0.113.7
  custody hold place --case LE-2026-114`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			caseRef, _ := cmd.Flags().GetString("case")
			s := hold.Spec{Case: caseRef, Tenant: tenant, Login: login}
			var err error
			if from != "" || to != "" {
				if s.From, err = query.ParseTime(from, false); err != nil {
					return fmt.Errorf("--from: %v", err)
				}
				if s.To, err = query.ParseTime(to, true); err != nil {
					return fmt.Errorf("--to: %v", err)
				}
			} else if tenant != "" || login != "" || ip != "" {
				return fmt.Errorf("--tenant, --login and --ip need --from and --to")
			}
			if ip != "" {
				p, err := query.ParseIP(ip)
				if err != nil {
					return fmt.Errorf("--ip: %v", err)
				}
				s.IP = &p
			}
			cfg, log, err := setup(cmd, g, sections["hold"])
			if err != nil {
				return err
			}
			defer log.Sync()
			m, done, err := holdManager(cfg, true)
			if err != nil {
				return err
			}
			defer done()
			m.Crash = testCrash(crashAt)
			rep, err := m.Place(cmd.Context(), s)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			verb := "placed"
			if rep.Resumed {
				verb = "swept again"
			}
			fmt.Fprintf(out, "hold %s %s: %s\n", s.Case, verb, rep.Record.Describe())
			fmt.Fprintf(out, "%d segments held (%d new), %d data keys escrowed, %d ruled out by their index\n", rep.Held, rep.New, rep.Escrowed, rep.Pruned)
			log.Info("hold placed", zap.String("case", s.Case), zap.Int("held", rep.Held), zap.Int("new", rep.New), zap.Int("escrowed", rep.Escrowed))
			for _, n := range rep.Shredded {
				fmt.Fprintf(out, "already deleted (period key shredded), cannot be held: %s\n", n)
			}
			for _, f := range rep.Failed {
				fmt.Fprintf(cmd.ErrOrStderr(), "not held, unreadable: %s\n", f)
			}
			if len(rep.Failed) > 0 {
				return fmt.Errorf("%d segments in the range could not be read, so are not held", len(rep.Failed))
			}
			return nil
		},
	}
	pf := place.Flags()
	pf.String("case", "", "case reference (letters, digits, '.', '_', '-'; required)")
	pf.StringVar(&from, "from", "", "start, inclusive: RFC 3339 or YYYY-MM-DD")
	pf.StringVar(&to, "to", "", "end, exclusive: RFC 3339, or YYYY-MM-DD meaning the end of that day")
	pf.StringVar(&tenant, "tenant", "", "only segments that may hold this tenant")
	pf.StringVar(&login, "login", "", "only segments that may hold this login")
	pf.StringVar(&ip, "ip", "", "only segments that may hold this address or CIDR prefix")
	pf.StringVar(&crashAt, "test-crash-at", "", "tests only: SIGKILL itself after this step")
	pf.MarkHidden("test-crash-at")
	place.MarkFlagRequired("case")

	var relCrash string
	release := &cobra.Command{
		Use:   "release --case ID",
		Short: "End a hold: destroy the case key, lift the legal holds, leave a signed receipt",
		Long: `Destroys the case's key in the hold keyring, so every escrowed data key of
the case is unreadable from then on; lifts the legal hold of each segment
the case held (unless another case under hold holds it too) and removes the
escrow objects; stores a signed receipt, under object lock, in
_receipts/hold/<case>.json, and announces it in the events topic. Segments
whose period keys were shredded while held are then deleted for good.
Interrupted, it completes when run again. See docs/HOLDS.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			caseRef, _ := cmd.Flags().GetString("case")
			cfg, log, err := setup(cmd, g, sections["hold"])
			if err != nil {
				return err
			}
			defer log.Sync()
			m, done, err := holdManager(cfg, true)
			if err != nil {
				return err
			}
			defer done()
			m.Crash = testCrash(relCrash)
			rep, err := m.Release(cmd.Context(), caseRef)
			if err != nil {
				return err
			}
			if rep.Already {
				fmt.Fprintf(cmd.OutOrStdout(), "hold %s was already released on %s (receipt %s)\n", caseRef, rep.Record.ReleasedAt.Format(time.RFC3339), rep.Receipt)
				return nil
			}
			log.Info("hold released", zap.String("case", caseRef), zap.Int("unheld", rep.Unheld), zap.String("receipt", rep.Receipt))
			fmt.Fprintf(cmd.OutOrStdout(), "hold %s released: case key destroyed, %d segments' legal holds lifted, %d still held by other cases, receipt %s\n",
				caseRef, rep.Unheld, rep.KeptHeld, rep.Receipt)
			return nil
		},
	}
	release.Flags().String("case", "", "case reference (required)")
	release.Flags().StringVar(&relCrash, "test-crash-at", "", "tests only: SIGKILL itself after this step")
	release.Flags().MarkHidden("test-crash-at")
	release.MarkFlagRequired("case")

	list := &cobra.Command{
		Use:   "list",
		Short: "List the holds in the register, and whether each is in force here",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadValid(cmd, g, sections["hold"])
			if err != nil {
				return err
			}
			m, done, err := holdManager(cfg, false)
			if err != nil {
				return err
			}
			defer done()
			ls, err := m.List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "CASE\tSTATUS\tIN FORCE\tHELD\tESCROWED\tPLACED\tCOVERS")
			for _, l := range ls {
				r := l.Record
				if l.Problem != "" {
					fmt.Fprintf(tw, "%s\t?\t%t\t\t\t\t%s\n", r.Case, l.InForce, l.Problem)
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%t\t%d\t%d\t%s\t%s\n", r.Case, r.Status, l.InForce, r.Held, r.Escrowed, r.PlacedAt.Format(time.RFC3339), r.Describe())
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if len(ls) == 0 {
				fmt.Fprintln(cmd.ErrOrStderr(), "no holds")
			}
			return nil
		},
	}
	c.AddCommand(place, release, list)
	return c
}
