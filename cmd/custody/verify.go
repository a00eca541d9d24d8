package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/query"
)

func newVerifyCmd(g *globals) *cobra.Command {
	var from, to, format string
	var grace time.Duration
	var concurrency int
	c := &cobra.Command{
		Use:   "verify [--from T] [--to T] [--format text|json]",
		Short: "Prove the archive complete and unaltered: check every partition's signed chain against the bucket",
		Long: `Reads every checkpoint of every partition's chain (_chain/), checking
signatures against the archivers' signing keys in the public keyring, the
hash links and the offset intervals; then lists the segments and checks
that every listed one is there with the SHA-256 its checkpoint records,
that none is unlisted, and that the segments hold as many records below
each checkpoint as it counts. --from/--to restrict the segments checked to
those event hours; the chains are always read whole.

Needs only read access to the bucket and the public keyring: no private
key. Each finding names its kind (missing, extra, modified, broken-link,
offset-gap, bad-signature, unsigned, invalid), the object, the partition
and offsets. The exit status is 1 on any finding. See docs/CHAIN.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadValid(cmd, g, sections["verify"])
			if err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			opts := chain.Options{Retention: cfg.Retention, Now: time.Now().UTC(), Grace: grace, Concurrency: concurrency}
			if from != "" {
				if opts.From, err = query.ParseTime(from, false); err != nil {
					return fmt.Errorf("--from: %w", err)
				}
			}
			if to != "" {
				if opts.To, err = query.ParseTime(to, true); err != nil {
					return fmt.Errorf("--to: %w", err)
				}
			}
			if opts.Trusted, err = keyring.LoadPublic(cfg.Crypto.PublicKeyringFile); err != nil {
				return err
			}
			st, err := store.New(cfg.S3)
			if err != nil {
				return err
			}
			rep, err := chain.Verify(cmd.Context(), st, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "json" {
				if rep.Findings == nil {
					rep.Findings = []chain.Finding{}
				}
				b, _ := json.MarshalIndent(rep, "", "  ")
				fmt.Fprintln(out, string(b))
			} else {
				for _, f := range rep.Findings {
					fmt.Fprintln(out, f)
				}
				fmt.Fprintf(out, "%d partitions, %d checkpoints accounting for %d offsets, %d segments checked (%d listed ones gone past retention): %d findings\n",
					rep.Partitions, rep.Checkpoints, rep.Records, rep.Segments, rep.Expired, len(rep.Findings))
			}
			if n := len(rep.Findings); n > 0 {
				cmd.SilenceUsage = true
				return fmt.Errorf("%d findings", n)
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&from, "from", "", "first event hour of the segments checked (RFC 3339 or YYYY-MM-DD)")
	f.StringVar(&to, "to", "", "end of the event hours checked (exclusive; a date includes that day)")
	f.StringVar(&format, "format", "text", "text or json")
	f.DurationVar(&grace, "grace", 10*time.Minute, "an unlisted segment newer than its partition's newest checkpoint and younger than this is in flight, not extra")
	f.IntVar(&concurrency, "concurrency", 8, "segments read at once")
	return c
}
