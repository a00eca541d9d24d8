package telemetry

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServerEndpointsAndShutdown(t *testing.T) {
	s, err := NewServer("127.0.0.1:0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "custody_test_events_total", Help: "test"})
	s.Registry.MustRegister(c)
	c.Add(3)
	var broken atomic.Bool
	broken.Store(true)
	s.AddCheck("kafka", func(context.Context) error {
		if broken.Load() {
			return errors.New("broker 127.0.0.1:9092 unreachable")
		}
		return nil
	})
	s.AddCheck("s3", func(context.Context) error { return nil })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/healthz"); code != 200 || strings.TrimSpace(body) != "ok" {
		t.Errorf("/healthz = %d %q; want 200 ok", code, body)
	}
	broken.Store(false)
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("/readyz before Serving, checks passing = %d %q; want 503 starting", code, body)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without Options.Pprof = %d; want 404", code)
	}
	s.Serving()
	broken.Store(true)
	code, body := get(t, base+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "kafka: not ready: broker 127.0.0.1:9092 unreachable") || !strings.Contains(body, "s3: ok") {
		t.Errorf("/readyz with a failing check = %d %q; want 503 naming kafka", code, body)
	}
	broken.Store(false)
	if code, body := get(t, base+"/readyz"); code != 200 || strings.Contains(body, "not ready") {
		t.Errorf("/readyz with passing checks = %d %q; want 200", code, body)
	}
	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "custody_test_events_total 3") || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics = %d, body lacks the registered counter or Go metrics:\n%s", code, body)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after cancel = %v; want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after its context ended")
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}

func TestNewServerPortConflict(t *testing.T) {
	a, err := NewServer("127.0.0.1:0", Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer a.ln.Close()
	if _, err := NewServer(a.Addr(), Options{}); err == nil || !strings.Contains(err.Error(), a.Addr()) {
		t.Errorf("NewServer on a busy port: error %v; want one naming %s", err, a.Addr())
	}
}

func TestNewLogger(t *testing.T) {
	for _, f := range []string{"json", "console"} {
		if _, err := NewLogger(f, "info"); err != nil {
			t.Errorf("NewLogger(%q, info) = %v", f, err)
		}
	}
	if _, err := NewLogger("xml", "info"); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("NewLogger(xml) error = %v; want one naming --log-format", err)
	}
	if _, err := NewLogger("json", "loud"); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("NewLogger(json, loud) error = %v; want one naming --log-level", err)
	}
}

func TestPprofOnlyWhenEnabled(t *testing.T) {
	s, err := NewServer("127.0.0.1:0", Options{Pprof: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	if code, body := get(t, "http://"+s.Addr()+"/debug/pprof/"); code != 200 || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ with Options.Pprof = %d; want 200 with the profile index", code)
	}
}
