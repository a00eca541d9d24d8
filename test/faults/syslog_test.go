//go:build faults

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

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
	// The action queue survives the listener's restart: omfwd retries
	// forever (resumeRetryCount -1) and sends what waited once it is back.
	rs := startRsyslog(t, fmt.Sprintf(`defaultNetstreamDriverCAFile="%s"`, caFile), "", fmt.Sprintf(`
  action(type="omfwd" target="127.0.0.1" port="%d" protocol="tcp"
         streamDriver="gtls" streamDriverMode="1" streamDriverAuthMode="x509/name" streamDriverPermittedPeers="syslog.custody.test"
         tcp_framing="octet-counted" template="RSYSLOG_SyslogProtocol23Format"
         queue.type="LinkedList" queue.size="100000"
         action.resumeRetryCount="-1" action.resumeInterval="1")`, port))
	logs := func() string { return "ingest:\n" + tail(ing.stderr.String()) + "\nrsyslog:\n" + tail(rs.out.String()) }

	const perFile = 3000
	want := rs.logLines(t, perFile, 0, func() {
		// The first instance must have taken a share; then the restart:
		// what rsyslog sends meanwhile waits in its queue.
		if got := stacktest.ReadUntil(t, st, topic, func(m []kafka.Message) bool { return len(m) >= perFile/2 }, time.Minute); len(got) < perFile/2 {
			t.Fatalf("%d events in Kafka before the restart; want %d at least\n%s", len(got), perFile/2, logs())
		}
		ing.stop(t)
		ing = startIngest()
	})
	ids, records, copies := lineEvents(t, st, topic, want, logs)
	ing.stop(t)
	archived := archiveLines(t, st, topic, ids)
	t.Logf("rsyslog over TLS, ingest restarted midway: %d lines, %d Kafka records (%d resent copies), %d distinct events archived", len(want), records, copies, archived)
}
