package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/hold"
	"github.com/custodylog/custody/internal/config"
	"github.com/custodylog/custody/query"
	"github.com/custodylog/custody/retention"
)

func newVerifyCmd(g *globals) *cobra.Command {
	var from, to, format string
	var grace time.Duration
	var concurrency int
	var anchors []string
	var deep, withKafka bool
	c := &cobra.Command{
		Use:   "verify [--from T] [--to T] [--deep] [--kafka] [--anchor SHA256] [--format text|json]",
		Short: "Prove the archive complete and unaltered: check every partition's signed chain against the bucket",
		Long: `Reads every checkpoint of every partition's chain (_chain/), checking
signatures against the archivers' signing keys in the public keyring, the
hash links and the offset intervals; then lists the segments and checks
that every listed one is there with the SHA-256 its checkpoint records,
that none is unlisted, and that the segments hold as many records below
each checkpoint as it counts. --from/--to restrict the segments checked to
those event hours; the chains are always read whole.

Needs only read access to the bucket and the public keyring: no private
key. With --kafka it also reads the archivers' committed offsets (the
kafka and archive sections: brokers and group), which name each
partition's newest checkpoint: deleting the newest checkpoints before a
daily root sealed them is then found too. Each finding names its kind (missing, extra, modified, broken-link,
offset-gap, bad-signature, unsigned, invalid), the object, the partition
and offsets. The exit status is 1 on any finding. See docs/CHAIN.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			use := sections["verify"]
			if withKafka {
				use = sections["verify --kafka"]
			}
			cfg, err := loadValid(cmd, g, use)
			if err != nil {
				return err
			}
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			opts := chain.Options{Retention: cfg.Retention, Now: time.Now().UTC(), Grace: grace, Concurrency: concurrency, Anchors: anchors}
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
			if deep {
				// The private keyring: --deep reads event content, so it
				// is for the reader's host (custody serve's), not an
				// auditor's.
				keys, err := cfg.Crypto.LoadReadKeys()
				if err != nil {
					return fmt.Errorf("--deep decrypts: %w", err)
				}
				opts.Deep = keys
			}
			if withKafka {
				// Before the chains are read: a commit names a checkpoint
				// written before it, so it is in any later listing.
				if opts.Commits, err = commits(cmd.Context(), cfg); err != nil {
					return err
				}
			}
			st, err := store.New(cfg.S3)
			if err != nil {
				return err
			}
			// A chain whose first checkpoints expired is accepted on the
			// shred receipts of the day they were sealed (or a hold that
			// kept it): docs/CHAIN.md §6.
			var records []hold.Record // read once, at the first chain that needs them
			read := false
			opts.Shredded = func(ctx context.Context, day time.Time) error {
				if !read {
					if records, err = hold.Records(ctx, st, opts.Trusted); err != nil {
						return err
					}
					read = true
				}
				return retention.Shredded(ctx, st, opts.Trusted, cfg.Retention, cfg.Crypto.Period, day,
					func(_ context.Context, class, period string, start, end time.Time) (string, error) {
						for _, r := range records {
							if r.Keeps(start, end) {
								return "kept by the hold of case " + r.Case, nil
							}
						}
						return "", nil
					})
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
				deepNote := ""
				if deep {
					deepNote = fmt.Sprintf(", %d events decrypted and checked", rep.Events)
				}
				fmt.Fprintf(out, "%d partitions, %d checkpoints accounting for %d offsets (%d older ones gone past retention), %d daily roots, %d segments checked%s (%d listed ones gone past retention): %d findings\n",
					rep.Partitions, rep.Checkpoints, rep.Records, rep.ExpiredCheckpoints, rep.Roots, rep.Segments, deepNote, rep.Expired, len(rep.Findings))
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
	f.BoolVar(&withKafka, "kafka", false, "also check each partition's newest checkpoint against the archivers' committed offsets in Kafka")
	f.BoolVar(&deep, "deep", false, "also decrypt every segment checked (private keyring) and check its events: count, IDs, class, kind and hour")
	f.StringSliceVar(&anchors, "anchor", nil, "SHA-256 of a daily root published outside the system (custody verify roots); it must be in the bucket (repeatable)")
	c.AddCommand(newVerifyRootsCmd(g))
	return c
}

func newVerifyRootsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "roots",
		Short: "Print the daily roots, one line each, to publish outside the system (a mail, a ticket, a register)",
		Long: `Prints each daily root in the bucket (_roots/<date>.json, written by
custody retention run): its date, the SHA-256 of the root object, the
Merkle root over the partitions' chain heads, and how many partitions it
seals, after checking its signature. Publish the lines somewhere the
archive's administrators cannot rewrite; later, custody verify --anchor
<sha256> proves the bucket still holds that root and every chain it
sealed. See docs/CHAIN.md §5.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadValid(cmd, g, sections["verify"])
			if err != nil {
				return err
			}
			pub, err := keyring.LoadPublic(cfg.Crypto.PublicKeyringFile)
			if err != nil {
				return err
			}
			st, err := store.New(cfg.S3)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			bad := 0
			for o, err := range st.List(ctx, chain.RootPrefix) {
				if err != nil {
					return err
				}
				rc, err := st.Get(ctx, o.Name)
				if err != nil {
					return err
				}
				b, err := io.ReadAll(rc)
				rc.Close()
				if err != nil {
					return err
				}
				r, err := chain.DecodeRoot(b, pub)
				if err != nil {
					bad++
					fmt.Fprintf(cmd.OutOrStdout(), "%s  INVALID: %v\n", o.Name, err)
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "custody root %s sha256 %s merkle %s partitions %d\n", r.Date, chain.Hash(b), r.Merkle, len(r.Leaves))
			}
			if bad > 0 {
				cmd.SilenceUsage = true
				return fmt.Errorf("%d roots do not verify", bad)
			}
			return nil
		},
	}
}

// commits reads the archivers' committed offsets.
func commits(ctx context.Context, cfg *config.Config) ([]chain.Commit, error) {
	kc, err := cfg.Kafka.NewClient()
	if err != nil {
		return nil, err
	}
	defer kc.Close()
	cs, err := kc.Commits(ctx, cfg.Archive.GroupID)
	if err != nil {
		return nil, err
	}
	out := make([]chain.Commit, len(cs))
	for i, c := range cs {
		out[i] = chain.Commit{Topic: c.Topic, Partition: int32(c.Partition), Offset: c.Offset, Metadata: c.Metadata}
	}
	return out, nil
}
