//go:build faults

// Package faults holds the fault-injection suite: tests that stop and
// restart the real Kafka and MinIO of scripts/stack, so they cannot run
// alongside the other packages. `make test` runs them after the main suite
// with `go test -tags faults -p 1`.
package faults

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

var (
	repoRoot string
	bin      string
)

func TestMain(m *testing.M) {
	// The faults are those of a production transport: SASL_SSL to Kafka
	// and HTTPS to MinIO (scripts/stack up --secure, as make test runs it).
	// The processes under test reach them through .stack/env's overrides.
	if os.Getenv("CUSTODY_KAFKA_SASL_MECHANISM") == "" || os.Getenv("CUSTODY_S3_TLS_CA_FILE") == "" {
		fmt.Fprintln(os.Stderr, "the fault suite runs on the secure stack: scripts/stack up --secure, then . .stack/env (make test does both)")
		os.Exit(1)
	}
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Join(filepath.Dir(file), "..", "..")
	dir, err := os.MkdirTemp("", "custody-faults-")
	if err != nil {
		panic(err)
	}
	bin = filepath.Join(dir, "custody")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(repoRoot, "cmd", "custody")).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "cannot build custody: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// stack runs scripts/stack with args, failing the test on error.
func stack(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "scripts", "stack"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/stack %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// proc is a custody process started by a test.
type proc struct {
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: &bytes.Buffer{}}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			p.cmd.Wait()
		}
	})
	return p
}

// stop sends SIGTERM and requires a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.cmd.Wait(); err != nil {
		t.Errorf("%s did not exit cleanly: %v\n%s", p.cmd.Args[1], err, tail(p.stderr.String()))
	}
}

func tail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// waitHTTP polls url until it answers 200.
func waitHTTP(t *testing.T, url string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not answering 200 after %s: %v", url, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// postBatch posts 200 connection events, named prefix-batch-i, to the
// ingest of writeConfig's configuration and returns their IDs if ingest
// acknowledged them (202), nil otherwise (refused, or the request failed:
// the process was killed under it).
func postBatch(client *http.Client, prefix string, batch int) []string {
	var body bytes.Buffer
	ids := make([]string, 0, 200)
	for i := 0; i < 200; i++ {
		id := fmt.Sprintf("%s-%d-%d", prefix, batch, i)
		ids = append(ids, id)
		fmt.Fprintf(&body, `{"id":"%s","kind":"connection","tenant":"acme","ip":"198.51.100.%d"}`+"\n", id, i)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:18181/v1/events", &body)
	req.Header.Set("Authorization", "Bearer faults-token-0123456789")
	resp, err := client.Do(req)
	if err != nil {
		return nil
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return nil
	}
	return ids
}

func writeConfig(t *testing.T, st stacktest.Stack, topic, extra string) string {
	t.Helper()
	dir := t.TempDir()
	doc := fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
%[5]ss3:
  access_key: a
  secret_key: b
ingest:
  listen: 127.0.0.1:18181
  metrics_listen: 127.0.0.1:19181
  spool_dir: %[3]s/ingest-spool
  tokens:
    - name: web
      token: faults-token-0123456789
      tenants: [acme]
agent:
  name: faults-host
  metrics_listen: 127.0.0.1:19182
  spool_dir: %[3]s/agent-spool
  outbox_dir: %[3]s/outbox
  positions_file: %[3]s/positions.json
  poll_interval: 20ms
%[4]s`, strings.Join(st.KafkaBrokers, ", "), topic, dir, extra, st.KafkaYAML())
	p := filepath.Join(dir, "custody.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// allIDs is a ReadUntil predicate: true once every ID in want was read.
func allIDs(t *testing.T, want map[string]bool) func([]kafka.Message) bool {
	seen := map[string]bool{}
	n := 0
	return func(msgs []kafka.Message) bool {
		for ; n < len(msgs); n++ {
			e, err := event.Parse(msgs[n].Value)
			if err != nil {
				t.Fatalf("non-canonical event in Kafka: %v", err)
			}
			if want[e.ID] {
				seen[e.ID] = true
			}
		}
		return len(seen) == len(want)
	}
}
