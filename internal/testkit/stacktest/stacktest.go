// Package stacktest gives integration tests the addresses of the real Kafka
// and MinIO started by scripts/stack. Tests that call it FAIL when the stack
// is missing or unreachable; only `go test -short` skips them, so a CI run
// can never pass by quietly not testing.
package stacktest

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/secret"
	"github.com/custodylog/custody/internal/tlsconfig"
)

// Stack is what scripts/stack exports in .stack/env. On the secure stack
// (scripts/stack up --secure, what make test runs) Kafka speaks SASL_SSL
// with SCRAM-SHA-512 and MinIO HTTPS, both under the stack's own CA; every
// client a test builds must come from the methods below, which carry that.
type Stack struct {
	KafkaBrokers []string
	S3Endpoint   string
	S3AccessKey  string
	S3SecretKey  string
	// KafkaCAFile and S3CAFile are the stack's CA on the secure stack,
	// empty on the plain one.
	KafkaCAFile string
	S3CAFile    string
	// KafkaUser and KafkaPassword are the SCRAM-SHA-512 identity, empty on
	// the plain stack. Get returns custody-admin's; As another principal's.
	KafkaUser     string
	KafkaPassword string
	// MinIOData is MinIO's data directory, for tests that inspect the bytes
	// MinIO actually stored.
	MinIOData string
	// Dir is the stack state directory (scripts, pid files, logs).
	Dir string
	// Cluster is the three-node topology (scripts/stack up --cluster), whose
	// topics have ReplicationFactor 3; the single node's have 1.
	Cluster           bool
	ReplicationFactor int
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
		KafkaCAFile: os.Getenv("CUSTODY_KAFKA_TLS_CA_FILE"),
		S3CAFile:    os.Getenv("CUSTODY_S3_TLS_CA_FILE"),
		Cluster:     os.Getenv("CUSTODY_STACK_TOPOLOGY") == "cluster",
	}
	s.ReplicationFactor = 1
	if s.Cluster {
		s.ReplicationFactor = 3
	}
	if os.Getenv("CUSTODY_KAFKA_SASL_MECHANISM") != "" {
		s.KafkaUser, s.KafkaPassword = os.Getenv("CUSTODY_KAFKA_SASL_USERNAME"), os.Getenv("CUSTODY_KAFKA_SASL_PASSWORD")
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

// Secure reports whether this is the secure stack.
func (s Stack) Secure() bool { return s.KafkaUser != "" }

// As returns the stack seen as another SCRAM principal of the secure stack
// (custody-ingest, custody-archiver, custody-serve, custody-foreign), its
// password read from the stack's secrets; it ends the test on the plain
// stack, which has no principals.
func (s Stack) As(t testing.TB, user string) Stack {
	t.Helper()
	if !s.Secure() {
		t.Fatal("Stack.As needs the secure stack (scripts/stack up --secure, as make test runs it)")
	}
	pw, err := os.ReadFile(filepath.Join(s.Dir, "secrets", "kafka-"+user))
	if err != nil {
		t.Fatalf("no SCRAM password for %s: %v", user, err)
	}
	s.KafkaUser, s.KafkaPassword = user, strings.TrimSpace(string(pw))
	return s
}

// Kafka is the kafka section that reaches this stack as its principal.
func (s Stack) Kafka() kafkaconn.Config {
	c := kafkaconn.Defaults()
	c.Brokers, c.ReplicationFactor = s.KafkaBrokers, s.ReplicationFactor
	if s.KafkaCAFile != "" {
		c.TLS = tlsconfig.Config{Enabled: true, CAFile: s.KafkaCAFile}
	}
	if s.KafkaUser != "" {
		c.SASL = kafkaconn.SASL{Mechanism: "scram-sha-512", Username: s.KafkaUser, Password: secret.String(s.KafkaPassword)}
	}
	return c
}

// KafkaYAML is the same as the lines of a kafka section (after brokers,
// indented two spaces), for tests that write a configuration file.
func (s Stack) KafkaYAML() string {
	var b strings.Builder
	fmt.Fprintf(&b, "  replication_factor: %d\n", s.ReplicationFactor)
	if s.KafkaCAFile != "" {
		b.WriteString("  tls: {enabled: true, ca_file: " + s.KafkaCAFile + "}\n")
	}
	if s.KafkaUser != "" {
		b.WriteString("  sasl: {mechanism: scram-sha-512, username: " + s.KafkaUser + ", password: " + s.KafkaPassword + "}\n")
	}
	return b.String()
}

// S3TLS is the s3.tls section that reaches this stack's MinIO.
func (s Stack) S3TLS() tlsconfig.Config {
	if s.S3CAFile == "" {
		return tlsconfig.Config{}
	}
	return tlsconfig.Config{Enabled: true, CAFile: s.S3CAFile}
}

// KafkaTLS is the client TLS configuration for Kafka, nil on the plain
// stack.
func (s Stack) KafkaTLS() *tls.Config { return caConfig(s.KafkaCAFile) }

func caConfig(file string) *tls.Config {
	if file == "" {
		return nil
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		panic("stacktest: cannot read the stack's CA: " + err.Error())
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

// KafkaSASL is the SCRAM mechanism of the stack's principal, nil on the
// plain stack.
func (s Stack) KafkaSASL() sasl.Mechanism {
	if s.KafkaUser == "" {
		return nil
	}
	m, err := scram.Mechanism(scram.SHA512, s.KafkaUser, s.KafkaPassword)
	if err != nil {
		panic(err)
	}
	return m
}

// Transport is a fresh kafka-go transport to this stack (never the shared
// default one, whose pooled connections are dead after a fault test
// restarted the broker).
func (s Stack) Transport() *kafka.Transport {
	return &kafka.Transport{TLS: s.KafkaTLS(), SASL: s.KafkaSASL()}
}

// Dialer is the kafka-go dialer for readers and leader connections.
func (s Stack) Dialer() *kafka.Dialer {
	return &kafka.Dialer{Timeout: 10 * time.Second, DualStack: true, TLS: s.KafkaTLS(), SASLMechanism: s.KafkaSASL()}
}

// MinIO is a minio-go client of the stack's MinIO, as its root user.
func (s Stack) MinIO(t testing.TB) *minio.Client {
	t.Helper()
	opts := &minio.Options{Creds: credentials.NewStaticV4(s.S3AccessKey, s.S3SecretKey, ""), Secure: s.S3CAFile != ""}
	if tc := caConfig(s.S3CAFile); tc != nil {
		tr, err := minio.DefaultTransport(true)
		if err != nil {
			t.Fatal(err)
		}
		tr.TLSClientConfig = tc
		opts.Transport = tr
	}
	mc, err := minio.New(s.S3Endpoint, opts)
	if err != nil {
		t.Fatal(err)
	}
	return mc
}

// KcatArgs are kcat's arguments to reach the stack as its principal. On
// the secure stack kcat authenticates with PLAIN over TLS, as
// custody-admin: Debian's kcat links librdkafka 2.0.2, whose SCRAM Kafka
// 4.x refuses (librdkafka#4895, fixed in 2.6.1), so scripts/stack lets
// that one principal use PLAIN as well.
func (s Stack) KcatArgs() []string {
	args := []string{"-b", strings.Join(s.KafkaBrokers, ",")}
	if s.KafkaCAFile != "" {
		args = append(args, "-X", "security.protocol=SASL_SSL", "-X", "ssl.ca.location="+s.KafkaCAFile)
	}
	if s.KafkaUser != "" {
		args = append(args, "-X", "sasl.mechanisms=PLAIN", "-X", "sasl.username="+s.KafkaUser, "-X", "sasl.password="+s.KafkaPassword)
	}
	return args
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
