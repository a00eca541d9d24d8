package serve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T, name string) testCA {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return testCA{c, k}
}

func (ca testCA) issue(t *testing.T, cn string, server bool) tls.Certificate {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &k.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

// A verified client certificate is an identity, mapped by its subject;
// an unknown subject, or a certificate from another authority, is not.
func TestClientCertificateIdentity(t *testing.T) {
	ca, other := newCA(t, "custody clients"), newCA(t, "someone else")
	cfg := Defaults()
	cfg.TLS.ClientCAFile = "set" // validated elsewhere; the test builds the TLS config
	cfg.Certificates = []Certificate{{Subject: "case-bot", Role: Investigator, Tenants: []string{"acme"}}}
	srv, err := New(context.Background(), cfg, Deps{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	hs.TLS = &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "127.0.0.1", true)}, ClientCAs: pool, ClientAuth: tls.VerifyClientCertIfGiven}
	hs.StartTLS()
	defer hs.Close()
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
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
	bot := ca.issue(t, "case-bot", false)
	if code, id, err := whoami(&bot); err != nil || code != 200 || id.Name != "case-bot" || id.Role != Investigator || id.Via != "mtls" || len(id.Tenants) != 1 {
		t.Errorf("known client certificate: %d %+v %v", code, id, err)
	}
	stranger := ca.issue(t, "stranger", false)
	if code, _, err := whoami(&stranger); err != nil || code != http.StatusUnauthorized {
		t.Errorf("unknown subject: %d %v; want 401", code, err)
	}
	forged := other.issue(t, "case-bot", false)
	if code, _, err := whoami(&forged); err == nil && code != http.StatusUnauthorized {
		t.Errorf("certificate from another authority: %d; want a failed handshake or 401", code)
	}
	if code, _, err := whoami(nil); err != nil || code != http.StatusUnauthorized {
		t.Errorf("no certificate, no token: %d %v; want 401", code, err)
	}
}
