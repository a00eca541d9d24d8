// Package stacktest gives integration tests the addresses of the real Kafka
// and MinIO started by scripts/stack. Tests that call it FAIL when the stack
// is missing or unreachable; only `go test -short` skips them, so a CI run
// can never pass by quietly not testing.
package stacktest

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Stack is what scripts/stack exports in .stack/env.
type Stack struct {
	KafkaBrokers []string
	S3Endpoint   string
	S3AccessKey  string
	S3SecretKey  string
	// MinIOData is MinIO's data directory, for tests that inspect the bytes
	// MinIO actually stored.
	MinIOData string
	// Dir is the stack state directory (scripts, pid files, logs).
	Dir string
}

// Get returns the stack or ends the test.
func Get(t testing.TB) Stack {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs the real Kafka and MinIO (run without -short, after make stack-up)")
	}
	s := Stack{
		S3Endpoint:  os.Getenv("CUSTODY_S3_ENDPOINT"),
		S3AccessKey: os.Getenv("CUSTODY_S3_ACCESS_KEY"),
		S3SecretKey: os.Getenv("CUSTODY_S3_SECRET_KEY"),
		MinIOData:   os.Getenv("CUSTODY_MINIO_DATA"),
		Dir:         os.Getenv("CUSTODY_STACK_DIR"),
	}
	if b := os.Getenv("CUSTODY_KAFKA_BROKERS"); b != "" {
		s.KafkaBrokers = strings.Split(b, ",")
	}
	if len(s.KafkaBrokers) == 0 || s.S3Endpoint == "" || s.S3AccessKey == "" || s.S3SecretKey == "" {
		t.Fatal("integration stack not configured: CUSTODY_KAFKA_BROKERS, CUSTODY_S3_ENDPOINT, CUSTODY_S3_ACCESS_KEY and CUSTODY_S3_SECRET_KEY must be set; run `make test`, or `make stack-up` and `. .stack/env`, or pass -short to skip integration tests")
	}
	for _, a := range append([]string{s.S3Endpoint}, s.KafkaBrokers...) {
		c, err := net.DialTimeout("tcp", a, 3*time.Second)
		if err != nil {
			t.Fatalf("integration stack unreachable: %v (is `make stack-up` running?)", err)
		}
		c.Close()
	}
	return s
}

// Kcat returns the path of kcat, the independent Kafka client that tests
// use as a witness, or ends the test: skipped under -short like every
// integration test, failed when kcat is missing (make test installs it).
func Kcat(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: needs kcat and the real Kafka")
	}
	p, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatal("kcat is required as an independent Kafka witness (apt-get install kcat); make test installs it")
	}
	return p
}

// Name returns a name unique to this test run, usable as a topic, group
// or bucket name (lowercase letters, digits and '-').
func Name(t testing.TB, prefix string) string {
	t.Helper()
	return prefix + "-" + strings.ToLower(time.Now().UTC().Format("20060102-150405")) + "-" + randHex(4)
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
