package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/internal/testkit/stacktest"
)

func httpCode(url string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// Regression test: /readyz answered 200 from the metrics listener while
// custody ingest was still creating the topic and its own port refused
// connections (9.5 s with Kafka frozen at start). Readiness now means the
// service serves: whenever /readyz says 200, a POST is accepted.
func TestIngestReadyOnlyWhenServing(t *testing.T) {
	st := stacktest.Get(t)
	bin := custodyBin(t)
	g := stacktest.NewGate(t, st.KafkaBrokers[0])
	topic := stacktest.Name(t, "ready")
	listen, metrics := stacktest.FreePort(t), stacktest.FreePort(t)
	dir := t.TempDir()
	const token = "ready-test-token-0123456789"
	doc := fmt.Sprintf("kafka:\n  brokers: [%s]\n  topic: %s\n  dial_timeout: 1s\ningest:\n  listen: %s\n  metrics_listen: %s\n  spool_dir: %s/spool\n  tokens:\n    - name: web\n      token: %s\n      tenants: [acme]\n",
		g.Addr(), topic, listen, metrics, dir, token)
	_, logs := startIngest(t, bin, dir, doc)
	post := func() int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+listen+"/v1/events", strings.NewReader(`{"id":"r-1","kind":"login","tenant":"acme","login":"a","ip":"192.0.2.1","action":"success"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// Kafka unreachable: alive, not ready, for as long as it lasts.
	waitFor(t, 60*time.Second, "healthz 200", func() bool { return httpCode("http://"+metrics+"/healthz") == 200 }, logs.String)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		if c := httpCode("http://" + metrics + "/readyz"); c != http.StatusServiceUnavailable {
			t.Fatalf("/readyz = %d with Kafka unreachable; want 503\n%s", c, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Kafka back: ready within the metadata refresh, and then serving.
	g.Open()
	waitFor(t, 60*time.Second, "readyz 200 after Kafka came back", func() bool { return httpCode("http://"+metrics+"/readyz") == 200 }, func() string {
		return httpBody("http://"+metrics+"/readyz") + "\n" + logs.String()
	})
	if c := post(); c != http.StatusAccepted {
		t.Fatalf("POST right after /readyz said 200: %d; want 202\n%s", c, logs.String())
	}
	if n := len(stacktest.ReadAll(t, st, topic, 1, 30*time.Second)); n != 1 {
		t.Fatalf("topic %s holds %d events; want 1 (created by ingest once Kafka answered)", topic, n)
	}
}

// startIngest writes doc as the configuration and runs custody ingest on
// it until the test ends (SIGTERM, then wait). logs collects its stderr.
func startIngest(t *testing.T, bin, dir, doc string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cfg := filepath.Join(dir, "custody.yaml")
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "ingest", "--config", cfg)
	cmd.Env = append(os.Environ(), "CUSTODY_KAFKA_BROKERS=")
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return cmd, logs
}

func httpBody(url string) string {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool, explain func() string) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not reached after %s\n%s", what, d, explain())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
