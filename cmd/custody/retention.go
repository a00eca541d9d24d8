package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/retention"
	"github.com/custodylog/custody/serve"
)

func newRetentionCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "retention", Short: "Delete on time: crypto-shred the keys of periods past their retention"}
	var loop bool
	var interval time.Duration
	var testNow, crashAt string
	run := &cobra.Command{
		Use:   "run",
		Short: "Shred the private keys of every class's periods whose events are all past retention plus grace, with signed receipts",
		Long: `For every retention class, destroys the private keys of the periods (days)
whose events are all past the class's days plus retention.grace, so their
segments can never be read again, whatever happens to the bytes. Each
destruction leaves a signed receipt in the bucket under object lock
(_receipts/shred/<class>/<period>.json) and an event in the events topic.
Each run also seals the days past: a signed root over every partition's
chain head at the end of each day without one (_roots/<date>.json,
docs/CHAIN.md).
Order: intent, destroy, receipt, event; a run interrupted at any point is
completed by the next one. Runs once (for cron or a systemd timer) or, with
--loop, every --interval until SIGTERM. See docs/RETENTION.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd, g, sections["retention run"])
			if err != nil {
				return err
			}
			defer log.Sync()
			sk, err := keyring.LoadSigningKey(cfg.Crypto.SigningKeyFile)
			if err != nil {
				return fmt.Errorf("%w (receipts are signed; create it with `custody keys generate`)", err)
			}
			st, err := store.New(cfg.S3)
			if err != nil {
				return err
			}
			kc, err := cfg.Kafka.NewClient()
			if err != nil {
				return err
			}
			defer kc.Close()
			ann := announce.NewKafka(kc, cfg.Retention.DefaultClass, "retention@"+sk.ID)
			defer ann.Close()
			now := time.Now
			if testNow != "" {
				t, err := time.Parse(time.RFC3339, testNow)
				if err != nil {
					return fmt.Errorf("--test-now: %v", err)
				}
				now = func() time.Time { return t }
			}
			pub, err := keyring.LoadPublic(cfg.Crypto.PublicKeyringFile)
			if err != nil {
				return err
			}
			holds, _, err := holdManager(cfg, false)
			if err != nil {
				return err
			}
			holds.Now = now
			r := &retention.Runner{Retention: cfg.Retention, PrivatePath: cfg.Crypto.PrivateKeyringFile, Passphrase: cfg.Crypto.Passphrase(), Signer: sk, Store: st, Events: ann, Now: now,
				Holds: holds, Crash: testCrash(crashAt)}
			ctx := cmd.Context()
			for {
				rep, err := r.Run(ctx)
				if err != nil {
					log.Error("retention run failed", zap.Error(err))
					if !loop {
						return err
					}
				}
				for _, rf := range rep.Refused {
					log.Warn("not shredded: under legal hold", zap.String("period", rf.Period), zap.Error(rf.Err))
					fmt.Fprintf(cmd.ErrOrStderr(), "kept %s: %v\n", rf.Period, rf.Err)
				}
				for _, rc := range rep.Shredded {
					log.Info("shredded", zap.String("class", rc.Class), zap.String("period", rc.Period), zap.Strings("keys", rc.KeyIDs),
						zap.String("receipt", retention.ReceiptName(rc.Class, rc.Period)))
					fmt.Fprintf(cmd.OutOrStdout(), "shredded %s/%s: %d keys, receipt %s\n", rc.Class, rc.Period, len(rc.KeyIDs), retention.ReceiptName(rc.Class, rc.Period))
				}
				// Seal the days past: one signed root over every
				// partition's chain head per day (docs/CHAIN.md §5).
				roots, err := chain.WriteRoots(ctx, st, pub, sk, func(day time.Time) store.Lock {
					return store.Lock{Mode: cfg.Retention.Mode, Until: day.AddDate(0, 0, cfg.Retention.MaxDays()+2)}
				}, now())
				if err != nil {
					log.Error("cannot write the daily roots", zap.Error(err))
					if !loop {
						return err
					}
				}
				for _, name := range roots {
					log.Info("daily root written", zap.String("root", name))
					fmt.Fprintf(cmd.OutOrStdout(), "sealed the chains: %s\n", name)
				}
				// Rights requests a year past their reply go (docs/EXPORTS.md §7).
				gone, err := serve.NewRights(st, sk, pub, ann, cfg.Retention, now).Sweep(ctx)
				if err != nil {
					log.Error("cannot sweep the rights-request register", zap.Error(err))
					if !loop {
						return err
					}
				}
				for _, id := range gone {
					log.Info("rights request deleted", zap.String("request", id))
					fmt.Fprintf(cmd.OutOrStdout(), "deleted rights request %s: its reply is older than the rights retention\n", id)
				}
				if !loop {
					if len(rep.Refused) > 0 {
						return fmt.Errorf("%d due periods kept under legal hold", len(rep.Refused))
					}
					if len(rep.Shredded) == 0 {
						fmt.Fprintln(cmd.OutOrStdout(), "nothing due")
					}
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	f := run.Flags()
	f.BoolVar(&loop, "loop", false, "run every --interval until SIGTERM")
	f.DurationVar(&interval, "interval", time.Hour, "time between runs with --loop")
	f.StringVar(&testNow, "test-now", "", "tests only: the clock, RFC 3339")
	f.StringVar(&crashAt, "test-crash-at", "", "tests only: SIGKILL itself after this step (intent, destroy, receipt, event)")
	f.MarkHidden("test-now")
	f.MarkHidden("test-crash-at")
	c.AddCommand(run)
	return c
}
