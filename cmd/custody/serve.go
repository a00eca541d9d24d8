package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/hold"
	"github.com/custodylog/custody/internal/announce"
	"github.com/custodylog/custody/internal/telemetry"
	"github.com/custodylog/custody/query"
	"github.com/custodylog/custody/serve"
)

func newServeCmd(g *globals) *cobra.Command {
	var crashAt string
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the one reader: the authenticated, case-bound, audited query API",
		Long: `Serves the archive to investigators and legal staff over HTTPS (plain HTTP
only on loopback): every request is authenticated (serve.tokens), authorised
by role and tenant, and every read of event content names an open case and
a purpose. The access_audit event is acknowledged by Kafka (acks=all) before
the first event is read; if Kafka cannot take it the answer is 503. This is
the only process that holds the private keyring. See docs/SERVE.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd, g, sections["serve"])
			if err != nil {
				return err
			}
			defer log.Sync()
			return runService(cmd.Context(), log, g, cfg.Serve.MetricsListen, func(ctx context.Context, tel *telemetry.Server) error {
				keys, err := cfg.Crypto.LoadReadKeys()
				if err != nil {
					return err
				}
				sk, err := keyring.LoadSigningKey(cfg.Crypto.SigningKeyFile)
				if err != nil {
					return fmt.Errorf("%w (case records are signed; create it with `custody keys generate`)", err)
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
				host, _ := os.Hostname()
				audit := announce.NewKafka(kc, cfg.Retention.DefaultClass, "serve@"+host)
				defer audit.Close()
				eng := query.NewEngine(cfg.Query, st, keys, cfg.Retention.Names())
				eng.UseEscrow(hold.NewVault(st, keys.Holds, keys.Public))
				if hc := cfg.Query.HeadCache; hc.Dir != "" {
					heads, err := query.OpenHeadCache(hc, cfg.Retention.SegmentRetainUntil)
					if err != nil {
						return err
					}
					if err := heads.Register(tel.Registry); err != nil {
						return err
					}
					eng.UseHeadCache(heads)
					st := heads.Stats()
					log.Info("head cache open", zap.String("dir", hc.Dir), zap.Int("heads", st.Heads), zap.Int64("bytes", st.Bytes))
				}
				v, _ := buildVersion()
				days := map[string]int{}
				for _, c := range cfg.Retention.Classes {
					days[c.Name] = c.Days
				}
				exports := serve.NewExports(cfg.Serve.Exports, serve.ExportDeps{Store: st, Signer: sk, Trusted: keys.Public, Keys: keys,
					Class: cfg.Retention.DefaultClass, Mode: cfg.Retention.Mode, Instance: "serve@" + host, Software: "custody " + v, TempDir: cfg.Serve.Exports.TempDir, RetentionDays: days,
					Crash: testCrash(crashAt)})
				srv, err := serve.New(ctx, cfg.Serve, serve.Deps{Engine: eng, Cases: serve.NewCases(st, sk, keys.Public, audit, time.Now), Exports: exports,
					Rights: serve.NewRights(st, sk, keys.Public, audit, cfg.Retention, time.Now), Audit: audit, Log: log, Registerer: tel.Registry, Recent: kc, Topic: cfg.Kafka.Topic})
				if err != nil {
					return err
				}
				tel.AddCheck("kafka", kc.Ping)
				tel.AddCheck("s3", st.Ping)
				var wg sync.WaitGroup
				// A shredded key stops opening anything, and a new period's
				// key starts, without a restart (docs/SERVE.md).
				kctx, stopKeys := context.WithCancel(ctx)
				defer stopKeys()
				wg.Add(2)
				go func() {
					defer wg.Done()
					watchPrivateKeyring(kctx, log, cfg.Crypto, keys.Private)
				}()
				go func() {
					defer wg.Done()
					watchHoldKeyring(kctx, log, cfg.Crypto, keys.Holds)
				}()
				hctx, stopHUP := context.WithCancel(ctx)
				defer stopHUP()
				ln, scheme, err := listenTLS(hctx, log, &wg, "serve", cfg.Serve.Listen, cfg.Serve.TLS)
				if err != nil {
					return err
				}
				// No WriteTimeout: a query streams for as long as it reads
				// (bounded by serve.query_timeout); a client that goes away
				// cancels it.
				hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
				log.Info("serve listening", zap.String("url", scheme+"://"+ln.Addr().String()+"/v1/"), zap.Int("tokens", len(cfg.Serve.Tokens)))
				errc := make(chan error, 1)
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
						errc <- fmt.Errorf("http server: %w", err)
					}
				}()
				// Exports run in the background until shutdown; one
				// interrupted is taken over after a restart (its attempt
				// goes silent).
				xctx, stopExports := context.WithCancel(ctx)
				defer stopExports()
				wg.Add(1)
				go func() {
					defer wg.Done()
					srv.RunExports(xctx)
				}()
				tel.Serving()
				var runErr error
				select {
				case <-ctx.Done():
				case runErr = <-errc:
				}
				// Let running queries finish, each with its outcome event.
				sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				if err := hs.Shutdown(sctx); err != nil {
					log.Warn("http shutdown", zap.Error(err))
				}
				stopHUP()
				stopExports()
				stopKeys()
				wg.Wait()
				return runErr
			})
		},
	}
	c.Flags().StringVar(&crashAt, "test-crash-at", "", "tests only: SIGKILL itself at the Nth time it reaches an export step, STEP[:N] (export.claimed, export.stored, export.recorded)")
	c.Flags().MarkHidden("test-crash-at")
	c.AddCommand(&cobra.Command{
		Use:   "token NAME",
		Short: "Print a new API token and the serve.tokens entry that admits it (only its hash)",
		Long: `Prints a fresh random token (give it to its holder; it is not stored
anywhere) and the YAML entry for serve.tokens, which holds only its SHA-256.
Set the role (investigator, legal, auditor, admin) and tenants in the entry.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tok, err := newToken()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "token: %s\n\nserve:\n  tokens:\n    - name: %s\n      sha256: %s\n      role: investigator\n      tenants: []\n", tok, args[0], serve.HashToken(tok))
			return nil
		},
	})
	return c
}

// newToken is 32 random bytes, URL-safe base64, with a recognisable
// prefix (secret scanners and the redaction of ingest know "cst_").
func newToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return "cst_" + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// privateKeyringPoll is how often a running custody serve reads its
// private keyring again; SIGHUP reads it at once.
var privateKeyringPoll = time.Minute

// watchPrivateKeyring gives kr, the keyring every reader in the process
// holds, the keys of the private keyring file each time it changes
// (watchKeyring): the keys `custody retention run` shredded stop opening
// anything and the keys `custody keys generate` added start.
func watchPrivateKeyring(ctx context.Context, log *zap.Logger, c keyring.Config, kr *keyring.PrivateKeyring) {
	watchKeyring(ctx, log, c.PrivateKeyringFile, "private keyring", privateKeyringPoll, func([]byte) error {
		now, err := keyring.LoadPrivate(c.PrivateKeyringFile, c.Passphrase())
		if err != nil {
			return err
		}
		added, removed := kr.Take(now)
		log.Info("private keyring reloaded", zap.String("path", c.PrivateKeyringFile), zap.Int("keys", len(now.Keys())),
			zap.Strings("added", added), zap.Strings("removed", removed))
		return nil
	})
}

// watchHoldKeyring does the same for the hold keyring
// (crypto.hold_keyring_file): a case `custody hold place` put under hold
// has its escrow read, and one released no longer does. A missing file is
// an empty keyring: no case under hold.
func watchHoldKeyring(ctx context.Context, log *zap.Logger, c keyring.Config, kr *keyring.HoldKeyring) {
	watchKeyring(ctx, log, c.HoldKeyringFile, "hold keyring", privateKeyringPoll, func([]byte) error {
		now, err := keyring.LoadHolds(c.HoldKeyringFile, c.Passphrase())
		if err != nil {
			return err
		}
		added, removed := kr.Take(now)
		log.Info("hold keyring reloaded", zap.String("path", c.HoldKeyringFile), zap.Strings("cases_added", added), zap.Strings("cases_removed", removed))
		return nil
	})
}
