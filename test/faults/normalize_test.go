//go:build faults

package faults

import (
	"bytes"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/pipeline/dlq"
)

// TestRsyslogKafkaNormalize runs Debian's rsyslog with omkafka (librdkafka)
// as a Kafka-native producer: it tails an sshd auth log and an nginx
// access log and writes RFC 5424 messages to a raw topic, over the stack's
// SASL_SSL. custody normalize turns them into events; it is
// killed with SIGKILL midway and started again. Every line must arrive as
// one event (a redone batch keeps its IDs), every malformed line must be
// in the dead-letter topic with its reason, and the events are archived.
func TestRsyslogKafkaNormalize(t *testing.T) {
	st := stacktest.Get(t)
	events := stacktest.Topic(t, st, 3)
	raw := stacktest.Topic(t, st, 3)
	dlqTopic := stacktest.Name(t, "dlq")
	// Static membership: the member killed midway gets its partitions back
	// as soon as it restarts, not after the session timeout.
	cfg := writeConfig(t, st, events, fmt.Sprintf(`normalize:
  group_id: %s
  instance_id: normalize-1
  metrics_listen: 127.0.0.1:19183
  dlq_topic: %s
  inputs:
    - topic: %s
      format: rfc5424
      rules:
        - app_name: sshd
          format: sshd
          tenant: acme
          app: bastion
        - app_name: nginx
          format: combined
          tenant: acme
          app: web
`, stacktest.Name(t, "norm"), dlqTopic, raw))
	startNormalize := func() *proc {
		p := start(t, "normalize", "--config", cfg, "--log-level", "info")
		waitHTTP(t, "http://127.0.0.1:19183/readyz", time.Minute)
		return p
	}
	norm := startNormalize()
	// PLAIN over TLS, as kcat: Debian's librdkafka 2.0.2 speaks a SCRAM
	// that Kafka 4.x refuses (stacktest.KcatArgs).
	conf := []string{"security.protocol=PLAINTEXT"}
	if st.KafkaCAFile != "" {
		conf = []string{"security.protocol=SASL_SSL", "sasl.mechanisms=PLAIN", "sasl.username=" + st.KafkaUser, "sasl.password=" + st.KafkaPassword, "ssl.ca.location=" + st.KafkaCAFile}
	}
	rs := startRsyslog(t, "", `module(load="omkafka")`, fmt.Sprintf(`
  action(type="omkafka" topic="%s" broker=["%s"] template="RSYSLOG_SyslogProtocol23Format"
         confParam=["%s"]
         queue.type="LinkedList" queue.size="100000" action.resumeRetryCount="-1")`,
		raw, strings.Join(st.KafkaBrokers, `","`), strings.Join(conf, `","`)))
	logs := func() string {
		return "normalize:\n" + tail(norm.stderr.String()) + "\nrsyslog:\n" + tail(rs.out.String())
	}

	const perFile, bad = 3000, 10
	var killed time.Time
	want := rs.logLines(t, perFile, bad, func() {
		if got := stacktest.ReadUntil(t, st, events, func(m []kafka.Message) bool { return len(m) >= perFile/2 }, time.Minute); len(got) < perFile/2 {
			t.Fatalf("%d events before the kill; want %d at least\n%s", len(got), perFile/2, logs())
		}
		norm.cmd.Process.Signal(syscall.SIGKILL)
		norm.cmd.Wait()
		killed = time.Now()
		norm = startNormalize()
	})
	ids, records, copies := lineEvents(t, st, events, want, logs)
	t.Logf("every line in the events topic %s after the kill", time.Since(killed).Round(100*time.Millisecond))

	letters := stacktest.ReadUntil(t, st, dlqTopic, func(m []kafka.Message) bool { return len(m) >= bad }, time.Minute)
	garbage := map[string]bool{}
	for _, m := range letters {
		var reason, source string
		for _, h := range m.Headers {
			switch h.Key {
			case dlq.HeaderReason:
				reason = string(h.Value)
			case dlq.HeaderSourceTopic:
				source = string(h.Value)
			}
		}
		if source != raw || !strings.HasPrefix(reason, "rfc5424: MSG: ") {
			t.Errorf("dead letter %q: source %q, reason %q", m.Value, source, reason)
		}
		if i := bytes.Index(m.Value, []byte("garbage line ")); i >= 0 {
			garbage[string(bytes.TrimSpace(m.Value[i:]))] = true
		}
	}
	if len(garbage) != bad {
		t.Fatalf("%d of %d malformed lines in the dead-letter topic\n%s", len(garbage), bad, logs())
	}
	norm.stop(t)
	archived := archiveLines(t, st, events, ids)
	t.Logf("rsyslog omkafka -> custody normalize (kill -9 midway): %d lines, %d event records (%d redone copies), %d dead letters, %d distinct events archived",
		len(want), records, copies, len(letters), archived)
}
