// Package demo runs `make run`'s script end to end on the real stack, as a
// newcomer would, and checks that the query it prints finds the events it
// sent.
package demo

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// Regression test: scripts/run used to stop the archiver before it had
// consumed anything and print a query that found nothing; it also took
// readiness from a probe that answered before ingest listened.
func TestRunScriptPrintsAWorkingQuery(t *testing.T) {
	stacktest.Get(t)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(root, "scripts", "run"))
	cmd.Dir = root
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	var stdout bytes.Buffer
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(io.TeeReader(out, &stdout))
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // only if still running
	})

	// The script waits for readiness and for the events to be stored; the
	// deadline only bounds a broken run.
	var query, accessLog string
	deadline := time.After(6 * time.Minute)
	for query == "" || accessLog == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("scripts/run ended before printing a query: %v\nstdout:\n%s\nstderr:\n%s", <-exited, stdout.String(), stderr.String())
			}
			if i := strings.Index(l, "bin/custody query "); i >= 0 {
				query = strings.TrimSpace(l)
			}
			if i := strings.Index(l, "bin/custody access-log "); i >= 0 {
				accessLog = strings.TrimSpace(l)
			}
		case <-deadline:
			t.Fatalf("no query printed after 6 minutes\nstdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	}
	go func() {
		for range lines { // keep draining until the script ends
		}
	}()

	// Run the printed line exactly as a user pasting it would.
	sh := exec.Command("bash", "-c", query)
	sh.Dir = root
	sh.Env = os.Environ()
	res, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("printed query %q failed: %v\n%s", query, err, res)
	}
	rows := 0
	for _, l := range strings.Split(string(res), "\n") {
		if strings.Contains(l, " 203.0.113.7 ") {
			rows++
		}
	}
	if rows != 8 {
		t.Fatalf("printed query returned %d rows for 203.0.113.7; want the 8 events sent:\n%s", rows, res)
	}

	// The printed access log shows the demo's queries, as its auditor.
	sh = exec.Command("bash", "-c", accessLog)
	sh.Dir = root
	sh.Env = os.Environ()
	res, err = sh.CombinedOutput()
	if err != nil || strings.Count(string(res), "make run demo") < 2 {
		t.Fatalf("printed access log %q: %v\n%s", accessLog, err, res)
	}

	// Every metric the dashboard and the alert rules (docs/grafana,
	// docs/prometheus) name is one the running services export.
	checkOpsMetrics(t, root, "127.0.0.1:9464", "127.0.0.1:9465", "127.0.0.1:9482")

	// Ctrl-C stops the services cleanly.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("scripts/run after Ctrl-C: %v\n%s", err, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("scripts/run did not stop within 2 minutes of Ctrl-C")
	}
	if !strings.Contains(stdout.String(), "services stopped") {
		t.Errorf("scripts/run did not report stopping the services:\n%s", stdout.String())
	}
}

// notInDemo are the metrics of senders make run does not start (the agent,
// the syslog listener, custody normalize).
var notInDemo = regexp.MustCompile(`^custody_(agent|syslog|normalize)_`)

// checkOpsMetrics scrapes the services' /metrics and checks every custody_
// metric the dashboard and the alert rules name against what they export.
func checkOpsMetrics(t *testing.T, root string, addrs ...string) {
	t.Helper()
	exported := map[string]bool{}
	for _, a := range addrs {
		resp, err := http.Get("http://" + a + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			if l == "" || l[0] == '#' {
				continue
			}
			exported[strings.FieldsFunc(l, func(r rune) bool { return r == '{' || r == ' ' })[0]] = true
		}
	}
	name := regexp.MustCompile(`custody_[a-z_]+[a-z]`)
	named := 0
	for _, f := range []string{"docs/grafana/custody.json", "docs/prometheus/custody-alerts.yml"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range name.FindAllString(string(b), -1) {
			if notInDemo.MatchString(m) {
				continue // test/repo's TestDashboardCoversMetrics checks the name is declared
			}
			named++
			if !exported[m] {
				t.Errorf("%s names %s, which no running service exports", f, m)
			}
		}
	}
	if named < 20 {
		t.Fatalf("only %d metric names found in the dashboard and rules", named)
	}
}
