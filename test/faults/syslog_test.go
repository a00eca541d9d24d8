//go:build faults

package faults

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/pipelinetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/internal/testkit/testca"
)

// TestRsyslogForwardsOverTLS runs Debian's rsyslog as the sender: it tails
// an sshd auth log and an nginx access log (imfile) and forwards them as
// RFC 5424 over TLS with octet-counted framing (omfwd, gtls) to custody
// ingest's syslog listener, which is restarted (SIGTERM, then started
// again) while lines keep coming. Every line must arrive as one event
// (resent messages keep their ID, so readers keep them once) and be
// archived.
func TestRsyslogForwardsOverTLS(t *testing.T) {
	rsyslogd, err := exec.LookPath("rsyslogd")
	if err != nil {
		rsyslogd = "/usr/sbin/rsyslogd" // not on a non-root PATH
		if _, err := os.Stat(rsyslogd); err != nil {
			t.Fatal("rsyslogd not found: run scripts/test-deps (Debian's rsyslog and rsyslog-gnutls)")
		}
	}
	st := stacktest.Get(t)
	topic := stacktest.Topic(t, st, 3)
	dir := t.TempDir()
	ca := testca.New(t, "syslog-ca")
	caFile := ca.WritePEM(t, dir)
	certFile, keyFile := testca.WriteFiles(t, dir, "syslog", ca.Issue(t, "syslog.custody.test", true, time.Time{}))
	const port = 16514
	cfg := writeConfig(t, st, topic, fmt.Sprintf(`syslog:
  listen: 127.0.0.1:%d
  tls:
    cert_file: %s
    key_file: %s
  rules:
    - app_name: sshd
      format: sshd
      tenant: acme
      app: bastion
    - app_name: nginx
      format: combined
      tenant: acme
      app: web
`, port, certFile, keyFile))
	startIngest := func() *proc {
		p := start(t, "ingest", "--config", cfg, "--log-level", "info")
		waitHTTP(t, "http://127.0.0.1:19181/readyz", time.Minute)
		return p
	}
	ing := startIngest()

	authLog, accessLog := filepath.Join(dir, "auth.log"), filepath.Join(dir, "access.log")
	for _, f := range []string{authLog, accessLog} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(dir, "rsyslog")
	os.Mkdir(work, 0o755)
	conf := filepath.Join(dir, "rsyslog.conf")
	// The action queue survives the listener's restart: omfwd retries
	// forever (resumeRetryCount -1) and sends what waited once it is back.
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory="%s" defaultNetstreamDriverCAFile="%s")
module(load="imfile")
input(type="imfile" file="%s" tag="sshd" ruleset="fwd")
input(type="imfile" file="%s" tag="nginx" ruleset="fwd")
ruleset(name="fwd") {
  action(type="omfwd" target="127.0.0.1" port="%d" protocol="tcp"
         streamDriver="gtls" streamDriverMode="1" streamDriverAuthMode="x509/name" streamDriverPermittedPeers="syslog.custody.test"
         tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
         queue.type="LinkedList" queue.size="100000"
         action.resumeRetryCount="-1" action.resumeInterval="1")
}
`, work, caFile, authLog, accessLog, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	rs := exec.Command(rsyslogd, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	var rsOut bytes.Buffer
	rs.Stdout, rs.Stderr = &rsOut, &rsOut
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rs.Process.Signal(syscall.SIGTERM)
		rs.Wait()
	})

	// Lines: each names a unique user (sshd) or path (nginx), the key
	// the events are matched by.
	const perFile, chunk = 3000, 100
	want := map[string]bool{}
	appendLines := func(path string, lines []string) {
		f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now().UTC()
	for i := 0; i < perFile; i += chunk {
		var auth, access []string
		for j := i; j < i+chunk; j++ {
			user, path := fmt.Sprintf("u%05d", j), fmt.Sprintf("/p/%05d", j)
			want["login:"+user], want["path:"+path] = true, true
			auth = append(auth, fmt.Sprintf("Accepted password for %s from 198.51.100.%d port %d ssh2", user, j%250+1, 1024+j))
			access = append(access, fmt.Sprintf(`203.0.113.%d - - [%s] "GET %s?q=1 HTTP/1.1" 200 %d "-" "curl/8.5.0"`, j%250+1, now.Format("02/Jan/2006:15:04:05 -0700"), path, j))
		}
		appendLines(authLog, auth)
		appendLines(accessLog, access)
		if i == perFile/2 {
			// The first instance must have taken a share; then the
			// restart: what rsyslog sends meanwhile waits in its queue.
			if got := stacktest.ReadUntil(t, st, topic, func(m []kafka.Message) bool { return len(m) >= perFile/2 }, time.Minute); len(got) < perFile/2 {
				t.Fatalf("%d events in Kafka before the restart; want %d at least\n%s\n%s", len(got), perFile/2, tail(ing.stderr.String()), tail(rsOut.String()))
			}
			ing.stop(t)
			ing = startIngest()
		}
		time.Sleep(20 * time.Millisecond)
	}

	keyOf := func(e *event.Event) string {
		if e.Kind == event.KindLogin {
			return "login:" + e.Login
		}
		return "path:" + strings.TrimSuffix(e.Path, "?q=1")
	}
	ids := map[string]string{} // key -> ID
	copies := 0
	var problems []string
	msgs := stacktest.ReadUntil(t, st, topic, func(msgs []kafka.Message) bool {
		ids, copies, problems = map[string]string{}, 0, nil
		for _, m := range msgs {
			e, err := event.Parse(m.Value)
			if err != nil {
				t.Fatalf("non-canonical event in Kafka: %v", err)
			}
			k := keyOf(e)
			switch id, seen := ids[k]; {
			case !seen:
				ids[k] = e.ID
			case id == e.ID:
				copies++ // a resend: the same ID, kept once by readers
			default:
				problems = append(problems, fmt.Sprintf("%s arrived as two events, %s and %s", k, id, e.ID))
			}
		}
		return len(ids) >= len(want)
	}, 3*time.Minute)
	if len(ids) < len(want) {
		t.Fatalf("%d of %d lines reached Kafka\ningest:\n%s\nrsyslog:\n%s", len(ids), len(want), tail(ing.stderr.String()), tail(rsOut.String()))
	}
	if len(problems) > 0 {
		t.Fatalf("%d lines arrived as two events, e.g. %s", len(problems), problems[0])
	}
	for k := range want {
		if ids[k] == "" {
			t.Fatalf("line %s never arrived", k)
		}
	}
	ing.stop(t)

	s, _ := archivetest.NewStore(t, st, faultRetention)
	kr := archivetest.Keyring(t)
	pipelinetest.Archive(t, st, topic, s, faultRetention, kr.Write(), 2000)
	got := archivetest.Read(t, s, kr)
	for k, id := range ids {
		if got.IDs[id] == 0 {
			t.Fatalf("line %s (event %s) is not in the archive", k, id)
		}
	}
	if len(got.IDs) != len(want) {
		t.Fatalf("the archive holds %d distinct events; want %d", len(got.IDs), len(want))
	}
	t.Logf("rsyslog over TLS, ingest restarted midway: %d lines, %d Kafka records (%d resent copies), %d distinct events archived", len(want), len(msgs), copies, len(got.IDs))
}
