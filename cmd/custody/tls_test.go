package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/internal/testkit/stacktest"
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

// testCA issues certificates for tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a leaf certificate and key (mode 0600) and returns the files.
func (ca *testCA) issue(t *testing.T, dir, name string, serial int64, client bool) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	cf, kf := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cf, kf
}

// TestIngestTLS runs custody ingest with a certificate and client
// authorities: HTTPS with mTLS serves, a client without a certificate is
// refused, and SIGHUP puts a rotated certificate in service without a
// restart. Kafka is unreachable on purpose: accepted events are spooled.
func TestIngestTLS(t *testing.T) {
	stacktest.Get(t) // integration: builds and runs the binary
	bin := custodyBin(t)
	dir := t.TempDir()
	ca := newTestCA(t, "custody test CA")
	caFile := filepath.Join(dir, "ca.pem")
	os.WriteFile(caFile, ca.pem, 0o644)
	// The served certificate lives at fixed paths: rotation rewrites them.
	srvCert, srvKey := ca.issue(t, dir, "server", 100, false)
	cliCert, cliKey := ca.issue(t, dir, "client", 200, true)
	listen, metrics := stacktest.FreePort(t), stacktest.FreePort(t)
	const token = "tls-test-token-0123456789abc"
	doc := fmt.Sprintf("kafka:\n  brokers: [127.0.0.1:1]\n  dial_timeout: 1s\ningest:\n  listen: %s\n  metrics_listen: %s\n  spool_dir: %s/spool\n  tls: {cert_file: %s, key_file: %s, client_ca_file: %s}\n  tokens: [{name: web, token: %s, tenants: [acme]}]\n",
		listen, metrics, dir, srvCert, srvKey, caFile, token)
	cmd, logs := startIngest(t, bin, dir, doc)

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.pem)
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
	if got := st.PeerCertificates[0].SerialNumber.Int64(); got != 100 {
		t.Fatalf("served certificate serial %d; want 100", got)
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
	ca.issue(t, dir, "server", 101, false)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "the rotated certificate served", func() bool {
		_, st, err := post(client(true))
		return err == nil && st.PeerCertificates[0].SerialNumber.Int64() == 101
	}, logs.String)
	// A broken file on reload keeps the certificate in service.
	os.WriteFile(srvCert, []byte("not a certificate"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "the failed reload logged", func() bool { return strings.Contains(logs.String(), "certificate reload failed") }, logs.String)
	if code, st, err := post(client(true)); err != nil || code != http.StatusAccepted || st.PeerCertificates[0].SerialNumber.Int64() != 101 {
		t.Errorf("after a failed reload: %d, %v; want the previous certificate still served", code, err)
	}
}
