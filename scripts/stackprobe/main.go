// Command stackprobe is the readiness probe of scripts/stack: it exits 0 once
// a Kafka broker answers a metadata request with a known controller, or an S3
// endpoint answers its readiness check, and 1 otherwise. It probes once; the
// script owns the retry loop and its deadline.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/segmentio/kafka-go"
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

func probeKafka(ctx context.Context, addr string) error {
	c := &kafka.Client{Addr: kafka.TCP(addr), Timeout: 3 * time.Second}
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
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/minio/health/ready", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readiness answered %s", resp.Status)
	}
	return nil
}
