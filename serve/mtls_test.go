package serve

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/custodylog/custody/internal/testkit/testca"
)

// A verified client certificate is an identity, mapped by its subject;
// an unknown subject, or a certificate from another authority, is not.
func TestClientCertificateIdentity(t *testing.T) {
	ca, other := testca.New(t, "custody clients"), testca.New(t, "someone else")
	cfg := Defaults()
	cfg.TLS.ClientCAFile = "set" // validated elsewhere; the test builds the TLS config
	cfg.Certificates = []Certificate{{Subject: "case-bot", Role: Investigator, Tenants: []string{"acme"}}}
	srv, err := New(context.Background(), cfg, Deps{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Issue(t, "127.0.0.1", true, time.Time{})}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	hs.StartTLS()
	defer hs.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	whoami := func(cert *tls.Certificate) (int, Identity, error) {
		tc := &tls.Config{RootCAs: roots}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		resp, err := c.Get(hs.URL + "/v1/whoami")
		if err != nil {
			return 0, Identity{}, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var id Identity
		json.Unmarshal(b, &id)
		return resp.StatusCode, id, nil
	}
	bot := ca.Issue(t, "case-bot", false, time.Time{})
	if code, id, err := whoami(&bot); err != nil || code != 200 || id.Name != "case-bot" || id.Role != Investigator || id.Via != "mtls" || len(id.Tenants) != 1 {
		t.Errorf("known client certificate: %d %+v %v", code, id, err)
	}
	stranger := ca.Issue(t, "stranger", false, time.Time{})
	if code, _, err := whoami(&stranger); err != nil || code != http.StatusUnauthorized {
		t.Errorf("unknown subject: %d %v; want 401", code, err)
	}
	forged := other.Issue(t, "case-bot", false, time.Time{})
	if code, _, err := whoami(&forged); err == nil && code != http.StatusUnauthorized {
		t.Errorf("certificate from another authority: %d; want a failed handshake or 401", code)
	}
	if code, _, err := whoami(nil); err != nil || code != http.StatusUnauthorized {
		t.Errorf("no certificate, no token: %d %v; want 401", code, err)
	}
}
