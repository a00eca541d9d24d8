package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

func stackConfig(t *testing.T, st stacktest.Stack, topic, extra string) string {
	t.Helper()
	dir := t.TempDir()
	doc := fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
s3:
  access_key: a
  secret_key: b
agent:
  name: test-host
  metrics_listen: 127.0.0.1:0
  spool_dir: %s/spool
  outbox_dir: %s/outbox
  positions_file: %s/positions.json
  poll_interval: 20ms
%s`, strings.Join(st.KafkaBrokers, ", "), topic, dir, dir, dir, extra)
	p := filepath.Join(dir, "custody.yaml")
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTODY_KAFKA_BROKERS", "")
	return p
}

// TestAgentKill9 tails a file that keeps growing while the agent is
// killed with SIGKILL 20 times at random moments and restarted. Every line
// must reach Kafka, and any line delivered twice must carry the same ID.
func TestAgentKill9(t *testing.T) {
	st := stacktest.Get(t)
	bin := custodyBin(t)
	topic := stacktest.Topic(t, st, 3)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "app.log")
	cfg := stackConfig(t, st, topic, fmt.Sprintf("  files:\n    - path: %s\n      format: json\n      tenants: [acme]\n", logPath))

	const total = 6000
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		f, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		for i := 0; i < total; i += 50 {
			var b bytes.Buffer
			for j := i; j < i+50; j++ {
				// No "id": the agent derives one from file and offset.
				fmt.Fprintf(&b, `{"time":"2026-11-29T05:00:00Z","kind":"activity","tenant":"acme","login":"u%d","action":"x"}`+"\n", j)
			}
			f.Write(b.Bytes())
			time.Sleep(2 * time.Millisecond) // the application's pace, not synchronisation
		}
	}()

	run := func() *exec.Cmd {
		c := exec.Command(bin, "agent", "--config", cfg, "--log-format", "console", "--log-level", "warn")
		c.Stderr = &bytes.Buffer{}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for i := 0; i < 20; i++ {
		c := run()
		time.Sleep(time.Duration(50+rand.IntN(350)) * time.Millisecond)
		c.Process.Signal(syscall.SIGKILL)
		c.Wait()
	}
	<-writerDone
	c := run()
	// Wait for every line, counted by login: duplicates must not count.
	logins := map[string]bool{}
	n := 0
	msgs := stacktest.ReadUntil(t, st, topic, func(ms []kafka.Message) bool {
		for ; n < len(ms); n++ {
			if e, err := event.Parse(ms[n].Value); err == nil {
				logins[e.Login] = true
			}
		}
		return len(logins) == total
	}, 2*time.Minute)
	c.Process.Signal(syscall.SIGTERM)
	if err := c.Wait(); err != nil {
		t.Errorf("agent did not exit cleanly on SIGTERM: %v\n%s", err, c.Stderr)
	}
	idsByLogin := map[string]map[string]bool{}
	for _, m := range msgs {
		e, err := event.Parse(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		if idsByLogin[e.Login] == nil {
			idsByLogin[e.Login] = map[string]bool{}
		}
		idsByLogin[e.Login][e.ID] = true
	}
	missing := 0
	for i := 0; i < total; i++ {
		ids := idsByLogin[fmt.Sprintf("u%d", i)]
		if len(ids) == 0 {
			missing++
		}
		if len(ids) > 1 {
			t.Errorf("line u%d was delivered under %d different IDs", i, len(ids))
		}
	}
	if missing > 0 || len(idsByLogin) != total {
		t.Fatalf("%d of %d lines missing from Kafka after 20 kill -9 (%d distinct lines, %d messages)", missing, total, len(idsByLogin), len(msgs))
	}
	t.Logf("%d lines, %d messages in Kafka (%d duplicates, each with its original ID), 20 kills", total, len(msgs), len(msgs)-total)
}

// TestSendAndHook runs send and the hook as on a git server: no S3
// credentials (their file is absent), no keyring, no ingest tokens, and an
// events topic that does not exist yet. Regression test: the hook failed
// with "s3.access_key: is required", and send left its events in the
// outbox for ever on a cluster without the topic.
func TestSendAndHook(t *testing.T) {
	st := stacktest.Get(t)
	topic := stacktest.Name(t, "absent") // created by the first producer
	dir := t.TempDir()
	cfg := filepath.Join(dir, "git-server.yaml")
	doc := fmt.Sprintf("kafka:\n  brokers: [%s]\n  topic: %s\n  partitions: 1\ns3:\n  secret_key_file: /absent/s3-secret\ncrypto:\n  keyring_file: /absent/keyring.json\ningest:\n  tokens: [{name: web, token_file: /absent/token, tenants: [acme]}]\nagent:\n  name: git-host\n  outbox_dir: %s/outbox\n  spool_dir: %s/spool\n",
		strings.Join(st.KafkaBrokers, ","), topic, dir, dir)
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CUSTODY_KAFKA_BROKERS", "")
	t.Setenv("CUSTODY_S3_ACCESS_KEY", "")
	t.Setenv("CUSTODY_S3_SECRET_KEY", "")
	root := newRoot()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(`{"id":"s1","kind":"activity","tenant":"acme","login":"a","action":"app.deploy","attrs":{"token":"t0p"}}` + "\n" + `{"kind":"activity"}` + "\n"))
	root.SetArgs([]string{"send", "--config", cfg})
	err := root.Execute()
	if ee, ok := err.(exitError); !ok || ee.code != 1 || !strings.Contains(errOut.String(), `line 2: field "tenant": is required`) || !strings.Contains(errOut.String(), "1 events kept (0 bytes wait in the outbox)") {
		t.Fatalf("send with one bad line: %v\n%s", err, errOut.String())
	}

	t.Setenv("CUSTODY_TENANT", "acme")
	t.Setenv("CUSTODY_REPO", "acme/shop")
	t.Setenv("GL_USERNAME", "bob")
	t.Setenv("SSH_CONNECTION", "198.51.100.7 50022 10.0.0.1 22")
	root = newRoot()
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader("0000000000000000000000000000000000000000 a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 refs/heads/feature\n" +
		"a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 b94a8fe5ccb19ba61c4c0873d391e987982fbbd3 refs/heads/main\n" +
		"b94a8fe5ccb19ba61c4c0873d391e987982fbbd3 0000000000000000000000000000000000000000 refs/tags/old\n"))
	root.SetArgs([]string{"hook", "git-post-receive", "--config", cfg})
	if err := root.Execute(); err != nil {
		t.Fatalf("hook: %v\n%s", err, errOut.String())
	}
	msgs := stacktest.ReadAll(t, st, topic, 4, 30*time.Second)
	var got []string
	for _, m := range msgs {
		e, err := event.Parse(m.Value)
		if err != nil {
			t.Fatal(err)
		}
		ip := ""
		if e.IP.IsValid() {
			ip = e.IP.String()
		}
		got = append(got, fmt.Sprintf("%s %s %s %s %s %s:%d %s %d", e.Kind, e.Action, e.Ref, e.Repo, e.Login, ip, e.Port, e.Protocol, e.Redacted))
	}
	want := []string{
		"activity app.deploy   a :0  1",
		"source_change create refs/heads/feature acme/shop bob 198.51.100.7:50022 ssh 0",
		"source_change modify refs/heads/main acme/shop bob 198.51.100.7:50022 ssh 0",
		"source_change delete refs/tags/old acme/shop bob 198.51.100.7:50022 ssh 0",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events in Kafka:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestReadPushEnv(t *testing.T) {
	env := map[string]string{"REMOTE_ADDR": "[2001:db8::5]:443", "REMOTE_USER": "carol", "HTTP_USER_AGENT": "git/2.43.0", "GITEA_REPO_USER_NAME": "acme", "GITEA_REPO_NAME": "shop"}
	p := readPushEnv(func(k string) string { return env[k] })
	if p != (pushEnv{Login: "carol", IP: "2001:db8::5", UserAgent: "git/2.43.0", Protocol: "https", Repo: "acme/shop"}) {
		t.Errorf("readPushEnv(https, Gitea) = %+v", p)
	}
	if _, err := pushEvents(strings.NewReader("abc refs/heads/x\n"), time.Now(), "acme", "", p); err == nil || !strings.Contains(err.Error(), "stdin line 1") {
		t.Errorf("malformed hook line: %v", err)
	}
}
