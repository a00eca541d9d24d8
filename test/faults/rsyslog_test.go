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
)

// rsyslog is Debian's rsyslogd, run by a test with its own configuration,
// tailing an sshd auth log and an nginx access log (imfile) into the
// ruleset "out", which the test's configuration defines.
type rsyslog struct {
	authLog, accessLog string
	out                *bytes.Buffer
}

// startRsyslog writes the configuration (the inputs, then out, the
// ruleset of the test) and starts rsyslogd; it stops at the test's end.
func startRsyslog(t *testing.T, global, modules, out string) *rsyslog {
	t.Helper()
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		bin = "/usr/sbin/rsyslogd" // not on a non-root PATH
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("rsyslogd not found: run scripts/test-deps (Debian's rsyslog, rsyslog-gnutls, rsyslog-kafka)")
	}
	dir := t.TempDir()
	r := &rsyslog{authLog: filepath.Join(dir, "auth.log"), accessLog: filepath.Join(dir, "access.log"), out: &bytes.Buffer{}}
	for _, f := range []string{r.authLog, r.accessLog} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	work := filepath.Join(dir, "rsyslog")
	os.Mkdir(work, 0o755)
	conf := filepath.Join(dir, "rsyslog.conf")
	doc := fmt.Sprintf(`global(workDirectory="%s" %s)
module(load="imfile")
%s
input(type="imfile" file="%s" tag="sshd" ruleset="out")
input(type="imfile" file="%s" tag="nginx" ruleset="out")
ruleset(name="out") {
%s
}
`, work, global, modules, r.authLog, r.accessLog, out)
	if err := os.WriteFile(conf, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = r.out, r.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return r
}

// logLines writes perFile lines to each log in chunks of 100: sshd logins
// of users u00000..., nginx requests of paths /p/00000... (the keys the
// events are matched by, returned), and bad malformed access log lines
// in the middle. midway runs once half are written.
func (r *rsyslog) logLines(t *testing.T, perFile, bad int, midway func()) map[string]bool {
	const chunk = 100
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
			access = append(access, fmt.Sprintf(`203.0.113.%d - - [%s] "GET %s HTTP/1.1" 200 %d "-" "curl/8.5.0"`, j%250+1, now.Format("02/Jan/2006:15:04:05 -0700"), path, j))
		}
		if i == perFile/2 {
			for k := 0; k < bad; k++ {
				access = append(access, fmt.Sprintf("garbage line %d", k))
			}
		}
		appendLines(r.authLog, auth)
		appendLines(r.accessLog, access)
		if i == perFile/2 {
			midway()
		}
		time.Sleep(20 * time.Millisecond)
	}
	return want
}

// lineEvents reads topic until every line of want arrived, and returns
// each line's event ID and the number of repeated copies (the same ID
// again: a resend or a redone batch, which readers keep once). A line that
// arrived as two different events fails the test.
func lineEvents(t *testing.T, st stacktest.Stack, topic string, want map[string]bool, logs func() string) (ids map[string]string, records, copies int) {
	t.Helper()
	var problems []string
	msgs := stacktest.ReadUntil(t, st, topic, func(msgs []kafka.Message) bool {
		ids, copies, problems = map[string]string{}, 0, nil
		for _, m := range msgs {
			e, err := event.Parse(m.Value)
			if err != nil {
				t.Fatalf("non-canonical event in Kafka: %v", err)
			}
			k := "path:" + e.Path
			if e.Kind == event.KindLogin {
				k = "login:" + e.Login
			}
			switch id, seen := ids[k]; {
			case !seen:
				ids[k] = e.ID
			case id == e.ID:
				copies++
			default:
				problems = append(problems, fmt.Sprintf("%s arrived as two events, %s and %s", k, id, e.ID))
			}
		}
		return len(ids) >= len(want)
	}, 3*time.Minute)
	if len(ids) < len(want) || len(problems) > 0 {
		t.Fatalf("%d of %d lines reached %s, %d as two events (%.3v)\n%s", len(ids), len(want), topic, len(problems), problems, logs())
	}
	for k := range want {
		if ids[k] == "" {
			t.Fatalf("line %s never arrived", k)
		}
	}
	return ids, len(msgs), copies
}

// archiveLines archives topic and checks that the archive holds exactly
// the events of ids, each at least once. It returns how many it holds.
func archiveLines(t *testing.T, st stacktest.Stack, topic string, ids map[string]string) int {
	t.Helper()
	s, _ := archivetest.NewStore(t, st, faultRetention)
	kr := archivetest.Keyring(t)
	pipelinetest.Archive(t, st, topic, s, faultRetention, kr.Write(), 2000)
	got := archivetest.Read(t, s, kr)
	for k, id := range ids {
		if got.IDs[id] == 0 {
			t.Fatalf("line %s (event %s) is not in the archive", k, id)
		}
	}
	if len(got.IDs) != len(ids) {
		t.Fatalf("the archive holds %d distinct events; want %d", len(got.IDs), len(ids))
	}
	return len(got.IDs)
}
