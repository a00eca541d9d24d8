package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"go.uber.org/zap"

	"github.com/custodylog/custody/ingest"
	"github.com/custodylog/custody/ingest/spool"
	"github.com/custodylog/custody/ingest/syslogd"
	"github.com/custodylog/custody/internal/telemetry"
	"github.com/custodylog/custody/internal/tlsconfig"
)

func newIngestCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ingest",
		Short: "Run the HTTP ingest endpoint (POST /v1/events) in front of Kafka",
		Long: `Accepts NDJSON events from services over HTTP, validates and redacts them,
and answers 202 only once Kafka acknowledged every event (acks=all) or the
event is fsynced in the disk spool. Tokens (ingest.tokens) are bound to
the tenants, kinds and retention classes they may write. See docs/EVENTS.md
§8 for the API and docs/CONFIG.md for the configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, log, err := setup(cmd, g, sections["ingest"])
			if err != nil {
				return err
			}
			defer log.Sync()
			return runService(cmd.Context(), log, g, cfg.Ingest.MetricsListen, func(ctx context.Context, tel *telemetry.Server) error {
				kc, err := cfg.Kafka.NewClient()
				if err != nil {
					return err
				}
				defer kc.Close()
				tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if err := kc.EnsureTopic(tctx, cfg.Kafka.Topic); err != nil {
					// Not fatal: events are spooled, and the sink ensures the
					// topic again before its next write.
					log.Warn("cannot ensure the events topic yet; events will be spooled until Kafka answers", zap.Error(err))
				}
				cancel()
				sp, err := spool.Open(cfg.Ingest.SpoolDir, int64(cfg.Ingest.SpoolMaxBytes))
				if err != nil {
					return err
				}
				defer sp.Close()
				sink, err := ingest.NewSink(kc, sp, log, ingest.SinkOptions{Registerer: tel.Registry, Name: "ingest"})
				if err != nil {
					return err
				}
				defer sink.Close()
				srv, err := ingest.NewServer(cfg.Ingest, cfg.EventOptions(""), sink, log, tel.Registry)
				if err != nil {
					return err
				}
				tel.AddCheck("kafka", kc.Ping)
				tel.AddCheck("spool", func(context.Context) error {
					if sz := sp.Size(); sz > sp.MaxBytes()*9/10 {
						return fmt.Errorf("spool holds %d of %d bytes", sz, sp.MaxBytes())
					}
					return nil
				})
				var wg sync.WaitGroup
				hctx, stopHUP := context.WithCancel(ctx)
				defer stopHUP()
				ln, scheme, err := listenTLS(hctx, log, &wg, "ingest", cfg.Ingest.Listen, cfg.Ingest.TLS)
				if err != nil {
					return err
				}
				hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
				log.Info("ingest listening", zap.String("url", scheme+"://"+ln.Addr().String()+"/v1/events"), zap.Bool("mtls", cfg.Ingest.TLS.ClientCAFile != ""), zap.String("topic", cfg.Kafka.Topic), zap.String("spool", cfg.Ingest.SpoolDir))

				errc := make(chan error, 3)
				// The syslog listener (ingest.syslog in docs/CONFIG.md), if
				// configured: its connections feed the same sink.
				slctx, stopSyslog := context.WithCancel(context.Background())
				defer stopSyslog()
				syslogDone := make(chan struct{})
				if cfg.Syslog.Enabled() {
					sl, err := syslogd.New(cfg.Syslog, cfg.EventOptions(""), sink, log, tel.Registry)
					if err != nil {
						return err
					}
					sln, sscheme, err := listenTLS(hctx, log, &wg, "syslog", cfg.Syslog.Listen, cfg.Syslog.TLS)
					if err != nil {
						return err
					}
					log.Info("syslog listening", zap.String("addr", sln.Addr().String()), zap.Bool("tls", sscheme == "https"), zap.Int("rules", len(cfg.Syslog.Rules)))
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer close(syslogDone)
						if err := sl.Serve(slctx, sln); err != nil {
							errc <- err
						}
					}()
				} else {
					close(syslogDone)
				}
				dctx, stopDrain := context.WithCancel(context.Background())
				wg.Add(2)
				go func() {
					defer wg.Done()
					if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
						errc <- fmt.Errorf("http server: %w", err)
					}
				}()
				go func() {
					defer wg.Done()
					if err := sink.Run(dctx); err != nil {
						errc <- err
					}
				}()
				// The listener is bound (connections queue until Serve
				// accepts them) and the sink is set up: from here /readyz
				// reports the Kafka and spool checks.
				tel.Serving()
				var runErr error
				select {
				case <-ctx.Done():
				case runErr = <-errc:
				}
				// Stop taking requests, let in-flight ones finish (each ends
				// acknowledged by Kafka or the spool), then stop draining.
				sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				if err := hs.Shutdown(sctx); err != nil {
					log.Warn("http shutdown", zap.Error(err))
				}
				// Syslog connections are read for what their senders
				// already wrote, submitted, then closed.
				stopSyslog()
				<-syslogDone
				stopDrain()
				stopHUP()
				wg.Wait()
				return runErr
			})
		},
	}
}

// listenTLS listens on addr, with the certificate of t (reloaded on every
// SIGHUP until ctx ends, by a goroutine wg waits for) or, when t has none,
// in plain HTTP, which Validate allows only on loopback. It returns the
// listener and its URL scheme.
func listenTLS(ctx context.Context, log *zap.Logger, wg *sync.WaitGroup, what, addr string, t tlsconfig.Server) (net.Listener, string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	if !t.Enabled() {
		log.Warn(what+" serves without TLS: allowed on loopback only; set "+what+".tls for any other address", zap.String("addr", ln.Addr().String()))
		return ln, "http", nil
	}
	rl, err := tlsconfig.NewReloader(t)
	if err != nil {
		ln.Close()
		return nil, "", err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		reloadOnHUP(ctx, log, rl)
	}()
	return tls.NewListener(ln, rl.Config()), "https", nil
}

// reloadOnHUP reloads the listener certificate on every SIGHUP until ctx
// ends. A failed reload is logged and the certificate in use stays.
func reloadOnHUP(ctx context.Context, log *zap.Logger, rl *tlsconfig.Reloader) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := rl.Reload(); err != nil {
				log.Error("certificate reload failed; the previous certificate stays in use", zap.Error(err))
				continue
			}
			log.Info("certificate reloaded")
		}
	}
}

// runService runs a long-running command: the telemetry server alongside
// run, both stopped when ctx ends (SIGTERM or SIGINT). It returns after
// both have stopped.
//
// /readyz says "starting" until run calls tel.Serving.
func runService(ctx context.Context, log *zap.Logger, g *globals, metricsAddr string, run func(ctx context.Context, tel *telemetry.Server) error) error {
	tel, err := telemetry.NewServer(metricsAddr, telemetry.Options{Pprof: g.pprof})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	telDone := make(chan error, 1)
	go func() { telDone <- tel.Serve(ctx) }()
	log.Info("serving /metrics, /healthz and /readyz", zap.String("addr", tel.Addr()))
	start := time.Now()
	err = run(ctx, tel)
	cancel()
	if terr := <-telDone; terr != nil && err == nil {
		err = terr
	}
	if err != nil {
		log.Error("stopped with error", zap.Error(err), zap.Duration("uptime", time.Since(start)))
		return err
	}
	log.Info("stopped cleanly", zap.Duration("uptime", time.Since(start)))
	return nil
}
