package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest"
	"github.com/custodylog/custody/ingest/agent"
	"github.com/custodylog/custody/ingest/spool"
	"github.com/custodylog/custody/internal/config"
	"github.com/custodylog/custody/internal/telemetry"
)

func newAgentCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "agent",
		Short: "Tail log files (JSON lines, combined access logs, sshd auth logs) into Kafka",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd, g, sections["agent"])
			if err != nil {
				return err
			}
			defer log.Sync()
			return runService(cmd.Context(), log, g, cfg.Agent.MetricsListen, func(ctx context.Context, tel *telemetry.Server) error {
				kc, err := cfg.Kafka.NewClient()
				if err != nil {
					return err
				}
				defer kc.Close()
				sp, err := spool.Open(cfg.Agent.SpoolDir, int64(cfg.Agent.SpoolMaxBytes))
				if err != nil {
					return err
				}
				defer sp.Close()
				sink, err := ingest.NewSink(kc, sp, log, ingest.SinkOptions{Registerer: tel.Registry, Name: "agent"})
				if err != nil {
					return err
				}
				defer sink.Close()
				a, err := agent.New(cfg.Agent, senderOptions(cfg, cfg.Agent.Name), sink, log, tel.Registry)
				if err != nil {
					return err
				}
				tel.AddCheck("kafka", kc.Ping)
				log.Info("agent tailing", zap.Int("files", len(cfg.Agent.Files)), zap.String("spool", cfg.Agent.SpoolDir))
				var wg sync.WaitGroup
				drainErr := make(chan error, 1)
				dctx, stopDrain := context.WithCancel(context.Background())
				wg.Add(1)
				go func() {
					defer wg.Done()
					drainErr <- sink.Run(dctx)
				}()
				tel.Serving()
				runErr := a.Run(ctx)
				stopDrain()
				wg.Wait()
				if err := <-drainErr; err != nil && runErr == nil {
					runErr = err
				}
				return runErr
			})
		},
	}
}

// submitOutbox delivers recs from a one-shot command: to Kafka, or to the
// outbox spool when Kafka does not take them in time. It waits while
// another one-shot command holds the outbox, first sends what earlier runs
// left there, and returns the bytes still waiting there.
func submitOutbox(ctx context.Context, cfg *config.Config, log *zap.Logger, recs []ingest.Record) (int64, error) {
	var sp *spool.Spool
	var err error
	for {
		sp, err = spool.Open(cfg.Agent.OutboxDir, int64(cfg.Agent.SpoolMaxBytes))
		if !errors.Is(err, spool.ErrLocked) {
			break
		}
		select {
		case <-ctx.Done():
			return 0, err
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		return 0, err
	}
	defer sp.Close()
	kc, err := cfg.Kafka.NewClient()
	if err != nil {
		return 0, err
	}
	defer kc.Close()
	sink, err := ingest.NewSink(kc, sp, log, ingest.SinkOptions{Name: "outbox", WriteTimeout: 3 * time.Second})
	if err != nil {
		return 0, err
	}
	defer sink.Close()
	if err := sink.Flush(ctx); err != nil {
		log.Warn("earlier events stay in the outbox", zap.String("outbox", cfg.Agent.OutboxDir), zap.Error(err))
	}
	if err := sink.Submit(ctx, recs); err != nil {
		return sp.Size(), err
	}
	return sp.Size(), nil
}

func newSendCmd(g *globals) *cobra.Command {
	var source string
	c := &cobra.Command{
		Use:   "send",
		Short: "Send v1 events (NDJSON on stdin) to Kafka, through the local outbox",
		Long: `Reads NDJSON events from standard input, validates and redacts them like the
HTTP endpoint, and writes them to Kafka. What Kafka does not acknowledge is
kept in agent.outbox_dir and sent by the next custody send or custody hook.
Bad lines are reported on stderr by line number; the others are sent. Exits
1 if any line was rejected.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd, g, sections["send"])
			if err != nil {
				return err
			}
			if source == "" {
				source = "send@" + cfg.Agent.Name
			}
			o := senderOptions(cfg, source)
			recs, rejected, err := readEvents(cmd.InOrStdin(), cmd.ErrOrStderr(), o)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Minute)
			defer cancel()
			waiting, err := submitOutbox(ctx, cfg, log, recs)
			if err != nil {
				return fmt.Errorf("%d events not kept: %w", len(recs), err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "custody send: %d events kept (%d bytes wait in the outbox), %d lines rejected\n", len(recs), waiting, rejected)
			if rejected > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	c.Flags().StringVar(&source, "source", "", `source name written in the events (default "send@<agent.name>")`)
	return c
}

// readEvents decodes NDJSON from r, reporting bad lines to errw.
func readEvents(r io.Reader, errw io.Writer, o event.Options) ([]ingest.Record, int, error) {
	br := bufio.NewReader(r)
	var recs []ingest.Record
	rejected := 0
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(strings.TrimSpace(string(line))) > 0 {
			e, derr := event.Decode(line, o)
			if derr != nil {
				fmt.Fprintf(errw, "line %d: %v\n", n, derr)
				rejected++
			} else {
				recs = append(recs, ingest.RecordOf(e))
			}
		}
		if err == io.EOF {
			return recs, rejected, nil
		}
		if err != nil {
			return nil, 0, fmt.Errorf("cannot read stdin: %w", err)
		}
	}
}
