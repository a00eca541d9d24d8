package kafkaconn_test

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/internal/testkit/testca"
)

// Each broken transport is refused at the first round trip, with an error
// that names its cause: a CA that did not sign the broker's certificate,
// an expired certificate, a wrong SCRAM password, and a "broker" that
// drops the connection instead of speaking TLS.
func TestTransportRefusals(t *testing.T) {
	st := stacktest.Get(t)
	if !st.Secure() {
		t.Fatal("the transport refusal tests need the secure stack: scripts/stack up --secure (make test starts it)")
	}
	dir := t.TempDir()
	other := testca.New(t, "another-ca")

	// A TLS listener with a certificate that expired yesterday, signed by
	// a CA the client trusts.
	expiredCA := testca.New(t, "expired-issuer")
	expired := listenTLS(t, expiredCA.Issue(t, "127.0.0.1", true, time.Now().Add(-24*time.Hour)))
	// A listener that accepts and closes: a broker that drops TLS.
	dropper := listenDrop(t)

	cases := []struct {
		name string
		cfg  func() kafkaconn.Config
		want string
	}{
		{"wrong CA", func() kafkaconn.Config {
			c := st.Kafka()
			c.TLS.CAFile = other.WritePEM(t, dir)
			return c
		}, "certificate signed by unknown authority"},
		{"expired certificate", func() kafkaconn.Config {
			c := st.Kafka()
			c.Brokers, c.TLS.CAFile = []string{expired}, expiredCA.WritePEM(t, dir)
			return c
		}, "certificate has expired"},
		{"wrong SCRAM password", func() kafkaconn.Config {
			c := st.Kafka()
			c.SASL.Password = secret.String("not-the-password")
			return c
		}, "SASL Authentication Failed"},
		{"broker drops TLS", func() kafkaconn.Config {
			c := st.Kafka()
			c.Brokers = []string{dropper}
			return c
		}, "closed the connection during the TLS handshake"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg()
			cfg.Topic = "custody.events"
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the configuration itself is valid: %v", err)
			}
			cl, err := cfg.NewClient()
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			err = cl.Ping(ctx)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Ping = %v; want an error naming %q", err, c.want)
			}
			t.Logf("%s: %v", c.name, err)
		})
	}
}

func listenTLS(t *testing.T, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, func(c net.Conn) {
		c.(*tls.Conn).Handshake()
		c.Close()
	})
	return ln.Addr().String()
}

func listenDrop(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln, func(c net.Conn) { c.Close() })
	return ln.Addr().String()
}

// serve accepts on ln until the test ends, handling each connection with
// fn; the cleanup waits for the accept loop.
func serve(t *testing.T, ln net.Listener, fn func(net.Conn)) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fn(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
}
