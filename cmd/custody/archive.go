package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/telemetry"
	"github.com/custodylog/custody/pipeline"
)

func newArchiveCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "archive", Short: "The encrypted segment archive on S3"}
	var check bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create the bucket with object lock and converge its lifecycle rules on the retention classes",
		Long: `Creates the bucket if absent, with object lock (and so versioning), then sets
two lifecycle rules per retention class prefix: expiration after the class's
days with noncurrent versions removed a day later, and removal of expired
delete markers. Rules it does not own are kept. The rules are read back and
verified; drift on an existing bucket is reported, and corrected unless
--check is given, in which case drift makes the command exit non-zero.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadValid(cmd, g, sections["archive init"])
			if err != nil {
				return err
			}
			s, err := store.New(cfg.S3)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Minute)
			defer cancel()
			rep, err := s.Init(ctx, cfg.Retention, cfg.S3.Region, !check)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if rep.Created {
				fmt.Fprintf(out, "created bucket %s with object lock\n", s.Bucket())
			}
			for _, d := range rep.Drift {
				if check {
					fmt.Fprintf(cmd.ErrOrStderr(), "drift: %s\n", d)
				} else {
					fmt.Fprintf(out, "corrected drift: %s\n", d)
				}
			}
			for _, r := range rep.Rules {
				fmt.Fprintf(out, "lifecycle %s\n", r)
			}
			if check && len(rep.Drift) > 0 {
				return exitError{1}
			}
			fmt.Fprintf(out, "bucket %s ready\n", s.Bucket())
			return nil
		},
	}
	initCmd.Flags().BoolVar(&check, "check", false, "only report drift; exit 1 if there is any")
	c.AddCommand(initCmd, newArchiveRunCmd(g))
	return c
}

func newArchiveRunCmd(g *globals) *cobra.Command {
	var crashAt string
	c := &cobra.Command{
		Use:   "run",
		Short: "Archive the events topic into encrypted segments (a consumer group member)",
		Long: `Joins the consumer group archive.group_id on kafka.topic and cuts each
assigned partition into segments per retention class, event kind and event
hour, stored on S3 under object lock. Offsets are committed only after the
segments holding the records below them are stored; after a crash at any
point, a restart stores every event exactly once. See docs/PIPELINE.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd, g, sections["archive run"])
			if err != nil {
				return err
			}
			defer log.Sync()
			// Public keys and the signing key only: an archiver writes
			// what it can never read.
			keys, err := cfg.Crypto.LoadWriteKeys()
			if err != nil {
				return err
			}
			st, err := store.New(cfg.S3)
			if err != nil {
				return err
			}
			if os.Getenv("GOMEMLIMIT") == "" {
				// Open buffers are capped at archive.memory_cap; this keeps the
				// whole heap (buffers, segments being built, fetch buffers and
				// garbage) within a fixed margin of it: with format 3, the
				// process's RSS within memory_cap + 128 MiB (the rest is the
				// runtime's own).
				debug.SetMemoryLimit(memoryLimit(cfg.Archive))
			}
			return runService(cmd.Context(), log, g, cfg.Archive.MetricsListen, func(ctx context.Context, tel *telemetry.Server) error {
				kc, err := cfg.Kafka.NewClient()
				if err != nil {
					return err
				}
				defer kc.Close()
				tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				for _, topic := range []string{cfg.Kafka.Topic, cfg.Kafka.DLQTopic} {
					if err := kc.EnsureTopic(tctx, topic); err != nil {
						log.Warn("cannot ensure topic; continuing", zap.String("topic", topic), zap.Error(err))
					}
				}
				cancel()
				a, err := pipeline.New(cfg.Archive, cfg.Kafka, cfg.Retention, st, keys, log, tel.Registry)
				if err != nil {
					return err
				}
				defer a.Close()
				a.Crash = testCrash(crashAt)
				tel.AddCheck("kafka", kc.Ping)
				tel.AddCheck("s3", st.Ping)
				tel.AddCheck("archiver", a.Ready)
				var wg sync.WaitGroup
				defer wg.Wait()
				wctx, stop := context.WithCancel(ctx)
				defer stop() // runs before wg.Wait
				wg.Add(1)
				go func() {
					defer wg.Done()
					watchPublicKeyring(wctx, log, cfg.Crypto.PublicKeyringFile, a)
				}()
				log.Info("archiver running", zap.String("group", cfg.Archive.GroupID), zap.String("topic", cfg.Kafka.Topic), zap.String("bucket", st.Bucket()))
				tel.Serving()
				return a.Run(ctx)
			})
		},
	}
	c.Flags().StringVar(&crashAt, "test-crash-at", "", "tests only: SIGKILL itself at the Nth time it reaches a step, STEP[:N] (after-upload, after-checkpoint, after-commit)")
	c.Flags().MarkHidden("test-crash-at")
	return c
}

// publicKeyringPoll is how often a running archiver looks for keys that
// `custody keys generate` added; SIGHUP looks at once.
var publicKeyringPoll = time.Minute

// watchPublicKeyring hands the archiver the public keyring at path each
// time its content changes, until ctx ends (watchKeyring). A file that
// does not parse, or no longer trusts the archiver's signing key, is
// logged and the keyring in use stays.
func watchPublicKeyring(ctx context.Context, log *zap.Logger, path string, a *pipeline.Archiver) {
	watchKeyring(ctx, log, path, "public keyring", publicKeyringPoll, func(b []byte) error {
		kr, err := keyring.ParsePublic(b)
		if err == nil {
			err = a.SetPublic(kr)
		}
		if err == nil {
			log.Info("public keyring reloaded", zap.String("path", path), zap.Int("keys", len(kr.Keys())))
		}
		return err
	})
}

// watchKeyring calls take with the file at path each time its content
// changes, until ctx ends: on SIGHUP and every poll. The content read at
// start counts as taken; a missing file reads as empty (take decides
// what that means). When take fails, the error is logged once for that
// content and the keyring in use stays.
func watchKeyring(ctx context.Context, log *zap.Logger, path, what string, poll time.Duration, take func(b []byte) error) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	t := time.NewTicker(poll)
	defer t.Stop()
	read := func() ([]byte, error) {
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return []byte{}, nil
		}
		return b, err
	}
	last, _ := read()  // what the command loaded at start
	var refused []byte // logged once, not at every poll
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
		case <-t.C:
		}
		b, err := read()
		if err != nil {
			log.Error("cannot read the "+what+"; the one in use stays", zap.String("path", path), zap.Error(err))
			continue
		}
		if bytes.Equal(b, last) || refused != nil && bytes.Equal(b, refused) {
			continue
		}
		if err := take(b); err != nil {
			log.Error(what+" not taken; the one in use stays", zap.String("path", path), zap.Error(err))
			refused = b
			continue
		}
		last, refused = b, nil
	}
}

// memoryLimit is the archiver's Go memory limit: memory_cap plus 96 MiB
// for format 3, whose buffers are encoded blocks, plus 512 MiB for format
// 2, whose buffers hold raw lines: a tight limit over those cost 23-45%
// more CPU in garbage collection (docs/BENCHMARKS.md).
func memoryLimit(c pipeline.Config) int64 {
	if c.SegmentFormat == 2 {
		return int64(c.MemoryCap) + 512<<20
	}
	return int64(c.MemoryCap) + 96<<20
}
