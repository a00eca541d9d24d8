package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/internal/testkit/testca"
)

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestIngestTLS runs custody ingest with a certificate and client
// authorities: HTTPS with mTLS serves, a client without a certificate is
// refused, and SIGHUP puts a rotated certificate in service without a
// restart. Kafka is unreachable on purpose: accepted events are spooled.
func TestIngestTLS(t *testing.T) {
	stacktest.Get(t) // integration: builds and runs the binary
	bin := custodyBin(t)
	dir := t.TempDir()
	ca := testca.New(t, "custody test CA")
	caFile := ca.WritePEM(t, dir)
	// The served certificate lives at fixed paths: rotation rewrites them.
	first, second := ca.Issue(t, "127.0.0.1", true, time.Time{}), ca.Issue(t, "127.0.0.1", true, time.Time{})
	srvCert, srvKey := testca.WriteFiles(t, dir, "server", first)
	cliCert, cliKey := testca.WriteFiles(t, dir, "client", ca.Issue(t, "client", false, time.Time{}))
	listen, metrics := stacktest.FreePort(t), stacktest.FreePort(t)
	const token = "tls-test-token-0123456789abc"
	doc := fmt.Sprintf("kafka:\n  brokers: [127.0.0.1:1]\n  dial_timeout: 1s\ningest:\n  listen: %s\n  metrics_listen: %s\n  spool_dir: %s/spool\n  tls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n  tokens: [{name: web, token: %s, tenants: [acme]}]\n",
		listen, metrics, dir, srvCert, srvKey, caFile, token)
	cmd, logs := startIngest(t, bin, dir, doc)

	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	clientPair, err := tls.LoadX509KeyPair(cliCert, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	client := func(withCert bool) *http.Client {
		tc := &tls.Config{RootCAs: pool}
		if withCert {
			tc.Certificates = []tls.Certificate{clientPair}
		}
		return &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	}
	post := func(c *http.Client) (int, *tls.ConnectionState, error) {
		req, _ := http.NewRequest(http.MethodPost, "https://"+listen+"/v1/events", strings.NewReader(`{"kind":"login","tenant":"acme","login":"a","ip":"192.0.2.1","action":"success"}`))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := c.Do(req)
		if err != nil {
			return 0, nil, err
		}
		resp.Body.Close()
		return resp.StatusCode, resp.TLS, nil
	}
	waitFor(t, 60*time.Second, "ingest answering over HTTPS", func() bool { _, _, err := post(client(true)); return err == nil }, logs.String)
	code, st, err := post(client(true))
	if err != nil || code != http.StatusAccepted {
		t.Fatalf("mTLS POST: %d, %v\n%s", code, err, logs.String())
	}
	if !bytes.Equal(st.PeerCertificates[0].Raw, first.Certificate[0]) {
		t.Fatalf("served certificate serial %d; want the first one issued", st.PeerCertificates[0].SerialNumber)
	}
	if _, _, err := post(client(false)); err == nil {
		t.Error("a client without a certificate was served; client_ca_file requires one")
	}
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Post("http://"+listen+"/v1/events", "application/x-ndjson", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP on the TLS port answered %d", resp.StatusCode)
		}
	}

	// Rotate: new certificate at the same paths, then SIGHUP.
	testca.WriteFiles(t, dir, "server", second)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "the rotated certificate served", func() bool {
		_, st, err := post(client(true))
		return err == nil && bytes.Equal(st.PeerCertificates[0].Raw, second.Certificate[0])
	}, logs.String)
	// A broken file on reload keeps the certificate in service.
	os.WriteFile(srvCert, []byte("not a certificate"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "the failed reload logged", func() bool { return strings.Contains(logs.String(), "certificate reload failed") }, logs.String)
	if code, st, err := post(client(true)); err != nil || code != http.StatusAccepted || !bytes.Equal(st.PeerCertificates[0].Raw, second.Certificate[0]) {
		t.Errorf("after a failed reload: %d, %v; want the previous certificate still served", code, err)
	}
}
