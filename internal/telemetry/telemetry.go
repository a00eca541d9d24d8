// Package telemetry gives every long-running Custody command the same
// operational surface: zap logs, and an HTTP server with Prometheus
// /metrics, /healthz (the process is alive) and /readyz (its dependencies
// answer).
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// NewLogger builds a logger writing JSON ("json") or human-readable
// ("console") lines to stderr at the given level.
func NewLogger(format, level string) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	var cfg zap.Config
	switch format {
	case "json":
		cfg = zap.NewProductionConfig()
		cfg.EncoderConfig.TimeKey = "ts"
		cfg.EncoderConfig.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	case "console":
		cfg = zap.NewDevelopmentConfig()
	default:
		return nil, fmt.Errorf("--log-format: %q is not json or console", format)
	}
	cfg.Level = zap.NewAtomicLevelAt(lvl)
	cfg.Sampling = nil
	return cfg.Build()
}

// Check reports whether one dependency is usable; nil means ready.
type Check func(ctx context.Context) error

// Server serves the operational endpoints. Register checks before Serve.
//
// /readyz answers 503 "starting" until the command calls Serving: the
// metrics listener is up from the first moment (so a port conflict shows
// at once), but the service itself is ready only when its own listener is
// bound and its dependencies are set up. Readiness then also needs every
// registered check to pass.
type Server struct {
	Registry *prometheus.Registry

	mu      sync.Mutex
	checks  map[string]Check
	ln      net.Listener
	pprof   bool
	serving atomic.Bool
}

// Options tune a Server.
type Options struct {
	// Pprof serves /debug/pprof/ beside the metrics. Off by default: the
	// endpoints are unauthenticated, and a CPU profile or trace costs the
	// process real work, so anyone who can reach the address could load it.
	Pprof bool
}

// NewServer listens on addr at once, so that a port conflict is reported at
// start-up rather than after the service is already doing work.
func NewServer(addr string, o Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen for metrics on %s: %w", addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Server{Registry: reg, checks: map[string]Check{}, ln: ln, pprof: o.Pprof}, nil
}

// Serving marks the service as serving: from now on /readyz reports the
// checks instead of "starting".
func (s *Server) Serving() { s.serving.Store(true) }

// Addr is the address actually listened on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// AddCheck registers a readiness check under name.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Handler returns the mux; exported for tests and for embedding.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{Registry: s.Registry}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", s.ready)
	if s.pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	if !s.serving.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "starting: not serving yet")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make([]Check, len(names))
	sort.Strings(names)
	for i, n := range names {
		checks[i] = s.checks[n]
	}
	s.mu.Unlock()

	var b strings.Builder
	failed := false
	for i, n := range names {
		if err := checks[i](ctx); err != nil {
			failed = true
			fmt.Fprintf(&b, "%s: not ready: %v\n", n, err)
		} else {
			fmt.Fprintf(&b, "%s: ok\n", n)
		}
	}
	if failed {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprint(w, b.String())
}

// Serve runs until ctx ends, then shuts down, giving in-flight scrapes a
// second to finish. It closes the listener in every case.
func (s *Server) Serve(ctx context.Context) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server stopped: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
