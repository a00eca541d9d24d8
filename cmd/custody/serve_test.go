package main

import (
	"bytes"
	"encoding/json"
	"fmt"
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
	"github.com/custodylog/custody/serve"
)

// custody serve as a process, custody query --server as its client: a
// legal token opens a case, an investigator's query returns the events,
// refusals are clear, and SIGTERM stops the service cleanly.
func TestServeAndRemoteQuery(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	bin := custodyBin(t)
	listen, metrics := stacktest.FreePort(t), stacktest.FreePort(t)
	const invTok, legalTok, audTok = "cst_investigator_token_for_the_serve_test_0123", "cst_legal_token_for_the_serve_test_0123456789", "cst_auditor_token_for_the_serve_test_0123456789"
	f, err := os.OpenFile(r.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "serve:\n  listen: %s\n  metrics_listen: %s\n  tokens:\n    - {name: inv, sha256: %s, role: investigator, tenants: [acme]}\n    - {name: counsel, sha256: %s, role: legal}\n    - {name: aud, sha256: %s, role: auditor}\n",
		listen, metrics, serve.HashToken(invTok), serve.HashToken(legalTok), serve.HashToken(audTok))
	f.Close()
	// Today's key pairs: an export seals its package to the current key.
	r.addToday(t)
	tokFile := filepath.Join(r.dir, "token")
	os.WriteFile(tokFile, []byte(invTok+"\n"), 0o600)

	cmd := exec.Command(bin, "serve", "--config", r.cfg)
	logs := &syncBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	})
	waitFor(t, 60*time.Second, "serve ready", func() bool { return httpCode("http://"+metrics+"/readyz") == 200 }, logs.String)

	req, _ := http.NewRequest("POST", "http://"+listen+"/v1/cases", strings.NewReader(`{"id":"LE-7","title":"preservation order","legal_basis":"court order 7/2026"}`))
	req.Header.Set("Authorization", "Bearer "+legalTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("open case: %v %v\n%s", resp, err, logs.String())
	}
	resp.Body.Close()

	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	query := func(args ...string) (string, string, int) {
		c := exec.Command(bin, append([]string{"query", "--server", "http://" + listen, "--token-file", tokFile, "--from", day(0), "--to", day(2)}, args...)...)
		c.Env = append(os.Environ(), "CUSTODY_SERVER=", "CUSTODY_TOKEN=")
		var o, e bytes.Buffer
		c.Stdout, c.Stderr = &o, &e
		err := c.Run()
		code := 0
		if err != nil {
			code = c.ProcessState.ExitCode()
		}
		return o.String(), e.String(), code
	}
	out, errOut, code := query("--case", "LE-7", "--purpose", "order 7", "--format", "csv")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.HasPrefix(out, "time,id,kind,") || !strings.Contains(out, "short-2") {
		t.Errorf("query --server: code %d\n%s\n%s", code, out, errOut)
	}
	if _, errOut, code = query("--case", "NOPE", "--purpose", "x"); code != 1 || !strings.Contains(errOut, `custody serve: case "NOPE" does not exist: every read names an open case (HTTP 403)`) {
		t.Errorf("unknown case: code %d, %s", code, errOut)
	}
	if _, errOut, code = query("--case", "LE-7", "--purpose", "x", "--tenant", "globex"); code != 1 || !strings.Contains(errOut, "(HTTP 403)") {
		t.Errorf("out-of-scope tenant: code %d, %s", code, errOut)
	}
	if _, errOut, code = query("--purpose", "x"); code != 1 || !strings.Contains(errOut, "--case is required") {
		t.Errorf("no --case: code %d, %s", code, errOut)
	}
	// The auditor sees that query's request and outcome in the access log.
	audFile := filepath.Join(r.dir, "aud-token")
	os.WriteFile(audFile, []byte(audTok), 0o600)
	var alog string
	for deadline := time.Now().Add(15 * time.Second); ; {
		c := exec.Command(bin, "access-log", "--server", "http://"+listen, "--token-file", audFile, "--from", time.Now().Add(-time.Hour).Format(time.RFC3339),
			"--to", time.Now().Add(time.Hour).Format(time.RFC3339), "--case", "LE-7")
		o, err := c.CombinedOutput()
		alog = string(o)
		if err == nil && strings.Count(alog, `"purpose":"order 7"`) == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.Count(alog, `"purpose":"order 7"`) != 2 || !strings.Contains(alog, `"action":"query.result"`) || !strings.Contains(alog, `"login":"inv"`) {
		t.Errorf("access log of case LE-7:\n%s", alog)
	}
	// A disclosure of acme's events for the case, by the legal token: the
	// package arrives, verifies with the key export pubkey prints, and the
	// register lists its download.
	legalFile := filepath.Join(r.dir, "legal-token")
	os.WriteFile(legalFile, []byte(legalTok), 0o600)
	pkg := filepath.Join(r.dir, "disclosure.zip")
	c := exec.Command(bin, "export", "--server", "http://"+listen, "--token-file", legalFile, "--case", "LE-7", "--purpose", "order 7 disclosure",
		"--from", day(0), "--to", day(2), "--tenant", "acme", "--authority", "court", "--output", pkg)
	if o, err := c.CombinedOutput(); err != nil || !strings.Contains(string(o), "3 events") || !strings.Contains(string(o), pkg) {
		t.Fatalf("export create: %v\n%s\n%s", err, o, logs.String())
	}
	pem, err := exec.Command(bin, "export", "pubkey", "--config", r.cfg).Output()
	if err != nil {
		t.Fatal(err)
	}
	pemFile := filepath.Join(r.dir, "export.pem")
	os.WriteFile(pemFile, pem, 0o600)
	if o, err := exec.Command(bin, "export", "verify", pkg, "--pubkey", pemFile).CombinedOutput(); err != nil || !strings.Contains(string(o), "case LE-7, 3 events") {
		t.Errorf("export verify: %v\n%s", err, o)
	}
	if o, err := exec.Command(bin, "export", "list", "--server", "http://"+listen, "--token-file", audFile, "--case", "LE-7").CombinedOutput(); err != nil ||
		!regexp.MustCompile(`exp-\S+\s+LE-7\s+ready\s+\S+\s+counsel\s+—\s+3\s+1\n`).Match(o) {
		t.Errorf("export list:\n%s%v", o, err)
	}
	// A person's access request for the tenant acme's account: recorded,
	// answered with a subject export of acme's events.
	o, err := exec.Command(bin, "requests", "open", "--server", "http://"+listen, "--token-file", legalFile, "--tenant", "acme", "--right", "access",
		"--verified", "--verified-by", "signed letter").CombinedOutput()
	var rr serve.RightsRequest
	if err != nil || json.Unmarshal(o, &rr) != nil || rr.ID == "" {
		t.Fatalf("requests open: %v\n%s", err, o)
	}
	subj := filepath.Join(r.dir, "subject.zip")
	if o, err := exec.Command(bin, "export", "subject", "--server", "http://"+listen, "--token-file", legalFile, "--request", rr.ID, "--output", subj).CombinedOutput(); err != nil || !strings.Contains(string(o), "3 events") {
		t.Errorf("export subject: %v\n%s", err, o)
	}
	if o, err := exec.Command(bin, "requests", "reply", rr.ID, "--server", "http://"+listen, "--token-file", legalFile, "--outcome", "granted", "--answer", "package sent").CombinedOutput(); err != nil || !strings.Contains(string(o), `"delete_after"`) {
		t.Errorf("requests reply: %v\n%s", err, o)
	}
	if o, err := exec.Command(bin, "requests", "list", "--server", "http://"+listen, "--token-file", audFile).CombinedOutput(); err != nil || !strings.Contains(string(o), rr.ID+"  tenant acme  access") {
		t.Errorf("requests list: %v\n%s", err, o)
	}
	c = exec.Command(bin, "query", "--from", day(0), "--to", day(0), "--purpose", "x")
	c.Env = append(os.Environ(), "CUSTODY_SERVER=")
	if o, err := c.CombinedOutput(); err == nil || !strings.Contains(string(o), "give --server URL") {
		t.Errorf("query without --server or --local: %v %s", err, o)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	err = cmd.Wait()
	stopped = true
	if err != nil || !strings.Contains(logs.String(), "stopped cleanly") {
		t.Errorf("serve after SIGTERM: %v\n%s", err, logs.String())
	}
}
