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
	// Today's key pairs: an export seals its package to the current key.
	r.addToday(t)
	sv := startRigServe(t, r, bin)
	listen, logs, cmd := sv.listen, sv.logs, sv.cmd
	const legalTok, audTok = rigLegalToken, rigAuditorToken
	day, query := sv.day, sv.query
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
	sv.stopped = true
	if err != nil || !strings.Contains(logs.String(), "stopped cleanly") {
		t.Errorf("serve after SIGTERM: %v\n%s", err, logs.String())
	}
}

const (
	rigInvestigatorToken = "cst_investigator_token_for_the_serve_test_0123"
	rigLegalToken        = "cst_legal_token_for_the_serve_test_0123456789"
	rigAuditorToken      = "cst_auditor_token_for_the_serve_test_0123456789"
)

// rigServe is custody serve running over a shred rig, with case LE-7
// open and an investigator of acme (tokFile).
type rigServe struct {
	listen, tokFile string
	cmd             *exec.Cmd
	logs            *syncBuffer
	stopped         bool
	day             func(i int) string
	// query runs custody query --server over the rig's three days.
	query func(args ...string) (stdout, stderr string, code int)
}

func startRigServe(t *testing.T, r *shredRig, bin string) *rigServe {
	t.Helper()
	listen, metrics := stacktest.FreePort(t), stacktest.FreePort(t)
	f, err := os.OpenFile(r.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "serve:\n  listen: %s\n  metrics_listen: %s\n  tokens:\n    - {name: inv, sha256: %s, role: investigator, tenants: [acme]}\n    - {name: counsel, sha256: %s, role: legal}\n    - {name: aud, sha256: %s, role: auditor}\n",
		listen, metrics, serve.HashToken(rigInvestigatorToken), serve.HashToken(rigLegalToken), serve.HashToken(rigAuditorToken))
	f.Close()
	sv := &rigServe{listen: listen, tokFile: filepath.Join(r.dir, "token"), logs: &syncBuffer{}}
	os.WriteFile(sv.tokFile, []byte(rigInvestigatorToken+"\n"), 0o600)
	sv.cmd = exec.Command(bin, "serve", "--config", r.cfg)
	sv.cmd.Stderr = sv.logs
	if err := sv.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !sv.stopped {
			sv.cmd.Process.Signal(syscall.SIGTERM)
			sv.cmd.Wait()
		}
	})
	waitFor(t, 60*time.Second, "serve ready", func() bool { return httpCode("http://"+metrics+"/readyz") == 200 }, sv.logs.String)
	req, _ := http.NewRequest("POST", "http://"+listen+"/v1/cases", strings.NewReader(`{"id":"LE-7","title":"preservation order","legal_basis":"court order 7/2026"}`))
	req.Header.Set("Authorization", "Bearer "+rigLegalToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("open case: %v %v\n%s", resp, err, sv.logs.String())
	}
	resp.Body.Close()
	sv.day = func(i int) string { return r.days[i].Format("2006-01-02") }
	sv.query = func(args ...string) (string, string, int) {
		c := exec.Command(bin, append([]string{"query", "--server", "http://" + listen, "--token-file", sv.tokFile, "--from", sv.day(0), "--to", sv.day(2)}, args...)...)
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
	return sv
}

// TestServeForgetsShreddedKeys: custody serve reads its private keyring
// again when it changes. A day read once (its data key opened and
// remembered, its head cached) is no longer readable through the running
// service once custody retention run has shredded its key; the other days
// still are.
func TestServeForgetsShreddedKeys(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	bin := custodyBin(t)
	f, err := os.OpenFile(r.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "query:\n  head_cache: {dir: heads, max_bytes: 64MiB}\n")
	f.Close()
	sv := startRigServe(t, r, bin)
	out, errOut, code := sv.query("--case", "LE-7", "--purpose", "before", "--format", "csv")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "short-0") {
		t.Fatalf("before the shredding: code %d\n%s\n%s", code, out, errOut)
	}
	if o, err := exec.Command(bin, "retention", "run", "--config", r.cfg, "--test-now", r.dueAt(0)).CombinedOutput(); err != nil || !strings.Contains(string(o), "shredded short/"+sv.day(0)) {
		t.Fatalf("retention run: %v\n%s", err, o)
	}
	sv.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "the keyring reloaded", func() bool {
		return strings.Contains(sv.logs.String(), "private keyring reloaded") && strings.Contains(sv.logs.String(), "short/"+sv.day(0)+".v1")
	}, sv.logs.String)
	out, errOut, code = sv.query("--case", "LE-7", "--purpose", "after", "--format", "csv")
	if strings.Contains(out, "short-0") || !strings.Contains(out, "short-1") || !strings.Contains(out, "short-2") || !strings.Contains(errOut, "shredded") {
		t.Errorf("after the shredding: code %d\n%s\n%s", code, out, errOut)
	}
}

// TestServeReadsNewHolds: a hold placed while custody serve runs (its
// case key added to the hold keyring file) is taken without a restart,
// so the held day stays readable through the service after its key is
// shredded.
func TestServeReadsNewHolds(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	bin := custodyBin(t)
	sv := startRigServe(t, r, bin)
	if out, code := r.run(t, "hold", "place", "--case", "LE-9", "--from", sv.day(0), "--to", sv.day(0), "--tenant", "acme"); code != 0 || !strings.Contains(out, "hold LE-9 placed") {
		t.Fatalf("hold place: code %d\n%s", code, out)
	}
	if out, code := r.run(t, "retention", "run", "--test-now", r.dueAt(0)); code != 0 || !strings.Contains(out, "shredded short/"+sv.day(0)) {
		t.Fatalf("retention run: code %d\n%s", code, out)
	}
	sv.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, 30*time.Second, "both keyrings reloaded", func() bool {
		l := sv.logs.String()
		return strings.Contains(l, "hold keyring reloaded") && strings.Contains(l, "LE-9") && strings.Contains(l, "private keyring reloaded")
	}, sv.logs.String)
	out, errOut, code := sv.query("--case", "LE-7", "--purpose", "held", "--format", "csv")
	if code != 0 || strings.Count(out, "\n") != 4 || !strings.Contains(out, "short-0") || strings.Contains(errOut, "shredded") {
		t.Errorf("the held, shredded day through serve: code %d\n%s\n%s", code, out, errOut)
	}
}
