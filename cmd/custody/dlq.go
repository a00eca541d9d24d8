package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/spf13/cobra"

	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/pipeline/dlq"
)

func newDLQCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "dlq list|replay",
		Short: "Inspect the records the archiver dead-lettered, and replay them once the cause is fixed",
	}
	c.AddCommand(newDLQListCmd(g), newDLQReplayCmd(g))
	return c
}

func newDLQListCmd(g *globals) *cobra.Command {
	var format, reason string
	c := &cobra.Command{
		Use:   "list [--reason TEXT] [--format text|json]",
		Short: "List the dead letters with their reasons: partition, offset, time, source record, event ID, tenant, kind",
		Long: `Reads the dead-letter topic (kafka.dlq_topic) from its first record to its
end and prints one line per record: where it is, when it was dead-lettered,
the reason the archiver gave, the record it came from, and the event's ID,
tenant and kind when its value names them. The events themselves are not
printed: they are plaintext. --reason keeps the letters whose reason
contains TEXT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			cfg, err := loadValid(cmd, g, sections["dlq"])
			if err != nil {
				return err
			}
			kc, err := cfg.Kafka.NewClient()
			if err != nil {
				return err
			}
			defer kc.Close()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			n := 0
			err = dlq.List(cmd.Context(), kc, cfg.Kafka.DLQTopic, func(l dlq.Letter) error {
				if !strings.Contains(l.Reason, reason) {
					return nil
				}
				n++
				if format == "json" {
					return enc.Encode(l)
				}
				_, err := fmt.Fprintf(out, "%d/%d\t%s\t%s\tid=%s tenant=%s kind=%s bytes=%d\t%s\n", l.Partition, l.Offset, l.Time.Format(time.RFC3339), l.Source,
					dash(l.ID), dash(l.Tenant), dash(l.Kind), l.Bytes, l.Reason)
				return err
			})
			if err != nil {
				return err
			}
			if format == "text" {
				fmt.Fprintf(cmd.ErrOrStderr(), "%d dead letters in %s\n", n, cfg.Kafka.DLQTopic)
			}
			return nil
		},
	}
	c.Flags().StringVar(&format, "format", "text", "text or json (one object per line)")
	c.Flags().StringVar(&reason, "reason", "", "only letters whose reason contains this text")
	return c
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newDLQReplayCmd(g *globals) *cobra.Command {
	var group, operator, why string
	var dryRun bool
	c := &cobra.Command{
		Use:   "replay --why TEXT [--group NAME] [--dry-run]",
		Short: "Produce every dead letter not yet replayed back to the events topic, audited",
		Long: `Replays the dead letters past the replay group's committed offsets into the
events topic (kafka.topic), with the keys, values and headers the senders
wrote, and commits each batch once Kafka has acknowledged it. Run it once
the cause is fixed (a retention class added, keys generated): letters whose
cause remains come back to the dead-letter topic with their reason, at new
offsets, for a later replay.

Replay is idempotent by event ID: a crash between the produce and the
commit replays a batch again, and readers keep one event per (tenant, ID).
Before it produces anything, an activity event (action dlq.replay) naming
the operator, the reason given with --why and the offsets is acknowledged by
Kafka; a second one records the outcome. --dry-run prints what would be
replayed and writes nothing. The Kafka principal needs Read on the
dead-letter topic and the replay group, and Write on the events topic
(docs/DEPLOY.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if why == "" && !dryRun {
				return fmt.Errorf("--why is required: say what was fixed, for the audit record")
			}
			cfg, err := loadValid(cmd, g, sections["dlq"])
			if err != nil {
				return err
			}
			if group == "" {
				group = cfg.Archive.GroupID + "-dlq-replay"
			}
			if operator == "" {
				operator = osUser()
			}
			kc, err := cfg.Kafka.NewClient()
			if err != nil {
				return err
			}
			defer kc.Close()
			ctx := cmd.Context()
			spans, err := dlq.Pending(ctx, kc, cfg.Kafka.DLQTopic, group)
			if err != nil {
				return err
			}
			var n int64
			for _, sp := range spans {
				n += sp.To - sp.From
				fmt.Fprintf(cmd.ErrOrStderr(), "%s/%d: offsets %d to %d pending\n", cfg.Kafka.DLQTopic, sp.Partition, sp.From, sp.To-1)
			}
			if dryRun || n == 0 {
				note := ""
				if dryRun {
					note = "; dry run: nothing written"
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d dead letters to replay (group %s)%s\n", n, group, note)
				return nil
			}
			host, _ := os.Hostname()
			ann := announce.NewKafka(kc, cfg.Retention.DefaultClass, "dlq@"+host)
			defer ann.Close()
			start := time.Now().UTC()
			id := []string{"dlq-replay", group, start.Format(time.RFC3339Nano)}
			if err := replayAudit(ctx, ann, start, append(id, "request"), operator, map[string]any{"phase": "request", "why": why, "group": group,
				"topic": cfg.Kafka.DLQTopic, "spans": spans, "letters": n}); err != nil {
				return fmt.Errorf("the replay was not recorded, so nothing was replayed: %w", err)
			}
			w := &kafka.Writer{Addr: kafka.TCP(cfg.Kafka.Brokers...), Topic: cfg.Kafka.Topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{},
				Transport: kc.Transport(), BatchSize: 500, BatchTimeout: 5 * time.Millisecond}
			defer w.Close()
			res, runErr := dlq.Replay(ctx, kc, w, cfg.Kafka.DLQTopic, group, spans)
			outcome := map[string]any{"phase": "result", "group": group, "replayed": res.Replayed, "spans": res.Spans, "duration_ms": time.Since(start).Milliseconds()}
			if runErr != nil {
				outcome["error"] = runErr.Error()
			}
			// The outcome is recorded whatever happened, and even if the
			// command was interrupted.
			octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if err := replayAudit(octx, ann, time.Now().UTC(), append(id, "result"), operator, outcome); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: the outcome of the replay was not recorded: %v\n", err)
			}
			if runErr != nil {
				return runErr
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d dead letters replayed to %s (group %s)\n", res.Replayed, cfg.Kafka.Topic, group)
			return nil
		},
	}
	c.Flags().StringVar(&group, "group", "", "the consumer group whose commits mark what was replayed (default: archive.group_id + \"-dlq-replay\")")
	c.Flags().StringVar(&operator, "operator", "", "who replays, for the audit record (default: the OS user)")
	c.Flags().StringVar(&why, "why", "", "what was fixed, for the audit record (required)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what would be replayed; write nothing")
	return c
}

func replayAudit(ctx context.Context, ann *announce.Kafka, at time.Time, id []string, operator string, attrs map[string]any) error {
	return ann.Announce(ctx, announce.Event{Action: "dlq.replay", Time: at, IDParts: id, Login: operator, Attrs: attrs})
}

// osUser is the operator when none is named.
func osUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "unknown"
}
