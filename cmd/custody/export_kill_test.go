package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/export"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/serve"
)

// TestExportKill9: custody serve is killed (SIGKILL) at each step of an
// export's run: after claiming it, after storing the package, after
// recording the result. A restarted serve takes the export over once its
// attempt has gone silent, and it ends ready, exactly once, with a package
// holding the filtered events that verifies.
func TestExportKill9(t *testing.T) {
	r := newShredRig(t, stacktest.Get(t))
	bin := custodyBin(t)
	listen, metrics := stacktest.FreePort(t), stacktest.FreePort(t)
	const legalTok = "cst_legal_token_for_the_kill_test_0123456789"
	f, err := os.OpenFile(r.cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "serve:\n  listen: %s\n  metrics_listen: %s\n  exports: {takeover_after: 2s}\n  tokens:\n    - {name: counsel, sha256: %s, role: legal}\n",
		listen, metrics, serve.HashToken(legalTok))
	f.Close()
	r.addToday(t)
	start := func(args ...string) (*exec.Cmd, *syncBuffer) {
		cmd := exec.Command(bin, append([]string{"serve", "--config", r.cfg}, args...)...)
		logs := &syncBuffer{}
		cmd.Stderr = logs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Signal(syscall.SIGTERM)
				cmd.Wait()
			}
		})
		waitFor(t, 60*time.Second, "serve ready", func() bool { return httpCode("http://"+metrics+"/readyz") == 200 }, logs.String)
		return cmd, logs
	}
	call := func(method, path string, body any) (int, []byte) {
		var rd io.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = bytes.NewReader(b)
		}
		req, _ := http.NewRequest(method, "http://"+listen+path, rd)
		req.Header.Set("Authorization", "Bearer "+legalTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, []byte(err.Error())
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	day := func(i int) string { return r.days[i].Format("2006-01-02") }
	trusted := export.Keys{}
	for _, s := range r.pub.Signers() {
		trusted.Add(s.ID, s.Public)
	}
	for i, step := range []string{"export.claimed", "export.stored", "export.recorded"} {
		cmd, logs := start("--test-crash-at", step)
		caseID := fmt.Sprintf("K9-%d", i)
		if code, b := call("POST", "/v1/cases", serve.CaseRequest{ID: caseID, Title: "kill", LegalBasis: "test"}); code != http.StatusCreated {
			t.Fatalf("%s: open case: %d %s", step, code, b)
		}
		code, b := call("POST", "/v1/exports", serve.ExportRequest{QueryRequest: serve.QueryRequest{Case: caseID, Purpose: "kill test", From: day(0), To: day(2), Tenant: "acme"}})
		var e serve.Export
		// The runner may reach the step, and so die, before the answer to
		// the request that created the export is written: a client that
		// lost it finds the export in the case's register after the
		// restart.
		lost := code == 0
		if !lost && (code != http.StatusCreated || json.Unmarshal(b, &e) != nil) {
			t.Fatalf("%s: create export: %d %s", step, code, b)
		}
		if err := cmd.Wait(); err == nil || cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("%s: serve was not killed at the step: %v\n%s", step, err, logs.String())
		}
		again, logs := start()
		if lost {
			var list struct{ Exports []serve.Export }
			code, b := call("GET", "/v1/exports?case="+caseID, nil)
			if code != 200 || json.Unmarshal(b, &list) != nil || len(list.Exports) != 1 {
				t.Fatalf("%s: the answer was lost and the case lists: %d %s", step, code, b)
			}
			e = list.Exports[0]
		}
		var got serve.Export
		waitFor(t, 60*time.Second, "export "+e.ID+" ready after "+step, func() bool {
			code, b := call("GET", "/v1/exports/"+e.ID, nil)
			return code == 200 && json.Unmarshal(b, &got) == nil && got.Result != nil
		}, logs.String)
		if got.Status != serve.ExportReady || got.Result.Events != 3 {
			t.Fatalf("%s: %s %+v", step, got.Status, got.Result)
		}
		wantAttempt := 2
		if step == "export.recorded" {
			wantAttempt = 1 // the result was recorded before the kill
		}
		if got.Result.Attempt != wantAttempt {
			t.Errorf("%s: the result is attempt %d's; want %d", step, got.Result.Attempt, wantAttempt)
		}
		code, pkg := call("GET", "/v1/exports/"+e.ID+"/package", nil)
		if code != 200 {
			t.Fatalf("%s: download: %d %s", step, code, pkg)
		}
		res, err := export.Verify(bytes.NewReader(pkg), int64(len(pkg)), trusted)
		if err != nil || len(res.Findings) != 0 || res.Manifest.Counts.Events != 3 {
			t.Fatalf("%s: the package: %v %v", step, err, res)
		}
		// Exactly one result among the export's objects.
		n := 0
		for o, err := range r.s.List(t.Context(), serve.ExportPrefix+e.ID+"/") {
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(o.Name, "/result.json") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%s: %d results", step, n)
		}
		again.Process.Signal(syscall.SIGTERM)
		if err := again.Wait(); err != nil {
			t.Fatalf("%s: serve after SIGTERM: %v\n%s", step, err, logs.String())
		}
	}
}
