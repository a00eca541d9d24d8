package main

import (
	"context"
	"errors"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/ingest/normalize"
	"github.com/custodylog/custody/internal/telemetry"
)

func newNormalizeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "normalize",
		Short: "Turn raw log records in Kafka (rsyslog omkafka, syslog-ng kafka-c, ...) into events",
		Long: `Runs a consumer group on the raw topics of normalize.inputs. Each record is
read in its input's format (json, combined, sshd or rfc5424), validated and
redacted as custody ingest does, given an ID derived from its topic,
partition and offset, and produced to the events topic; records that are
not valid go to normalize.dlq_topic with the reason. Offsets are committed
only after Kafka acknowledged what was produced (acks=all), so a crash
redoes a batch with the same IDs. See docs/EVENTS.md §8.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd, g, sections["normalize"])
			if err != nil {
				return err
			}
			defer log.Sync()
			if len(cfg.Normalize.Inputs) == 0 {
				return errors.New("normalize.inputs: none configured, so there is nothing to read")
			}
			return runService(cmd.Context(), log, g, cfg.Normalize.MetricsListen, func(ctx context.Context, tel *telemetry.Server) error {
				kc, err := cfg.Kafka.NewClient()
				if err != nil {
					return err
				}
				defer kc.Close()
				tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				for _, topic := range []string{cfg.Kafka.Topic, cfg.Normalize.DLQTopic} {
					if err := kc.EnsureTopic(tctx, topic); err != nil {
						log.Warn("cannot ensure topic; continuing", zap.String("topic", topic), zap.Error(err))
					}
				}
				cancel()
				n, err := normalize.New(cfg.Normalize, cfg.Kafka, cfg.EventOptions(""), log, tel.Registry)
				if err != nil {
					return err
				}
				tel.AddCheck("kafka", kc.Ping)
				tel.AddCheck("normalize", n.Ready)
				log.Info("normalize running", zap.String("group", cfg.Normalize.GroupID), zap.Int("inputs", len(cfg.Normalize.Inputs)), zap.String("topic", cfg.Kafka.Topic))
				tel.Serving()
				return n.Run(ctx)
			})
		},
	}
}
