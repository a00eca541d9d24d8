// Command stackprobe is the readiness probe of scripts/stack: it exits 0 once
// a Kafka broker answers a metadata request with a known controller, or an S3
// endpoint answers its readiness check, and 1 otherwise. It probes once; the
// script owns the retry loop and its deadline.
//
// For the secure stack, STACKPROBE_CA_FILE makes both probes use TLS
// verified against that CA, and STACKPROBE_SASL_USER with
// STACKPROBE_SASL_PASSWORD_FILE authenticates the Kafka probe with
// SCRAM-SHA-512.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl/scram"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: stackprobe kafka|minio ADDR")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	var err error
	switch os.Args[1] {
	case "kafka":
		err = probeKafka(ctx, os.Args[2])
	case "minio":
		err = probeMinIO(ctx, os.Args[2])
	default:
		err = fmt.Errorf("unknown service %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "stackprobe %s %s: %v\n", os.Args[1], os.Args[2], err)
		os.Exit(1)
	}
}

// tlsConfig is nil without STACKPROBE_CA_FILE.
func tlsConfig() (*tls.Config, error) {
	f := os.Getenv("STACKPROBE_CA_FILE")
	if f == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(f)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", f)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func probeKafka(ctx context.Context, addr string) error {
	tc, err := tlsConfig()
	if err != nil {
		return err
	}
	tr := &kafka.Transport{TLS: tc}
	if u := os.Getenv("STACKPROBE_SASL_USER"); u != "" {
		pw, err := os.ReadFile(os.Getenv("STACKPROBE_SASL_PASSWORD_FILE"))
		if err != nil {
			return err
		}
		if tr.SASL, err = scram.Mechanism(scram.SHA512, u, strings.TrimSpace(string(pw))); err != nil {
			return err
		}
	}
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 3 * time.Second, Transport: tr}
	md, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return fmt.Errorf("metadata request failed: %w", err)
	}
	if len(md.Brokers) == 0 || md.Controller.Host == "" {
		return fmt.Errorf("metadata lists %d brokers and controller %q", len(md.Brokers), md.Controller.Host)
	}
	return nil
}

func probeMinIO(ctx context.Context, addr string) error {
	tc, err := tlsConfig()
	if err != nil {
		return err
	}
	scheme := "http"
	if tc != nil {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+addr+"/minio/health/ready", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: tc}}).Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readiness answered %s", resp.Status)
	}
	return nil
}
