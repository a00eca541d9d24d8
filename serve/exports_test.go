package serve

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/export"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/segmentio/kafka-go"
)

func (r *rig) exportReq(caseRef string) ExportRequest {
	q := r.queryReq(caseRef)
	q.IP = "203.0.113.7"
	return ExportRequest{QueryRequest: q, Authority: "Tribunal judiciaire de Paris", LegalBasis: "art. 60-1 CPP", Reference: "R-881"}
}

// waitExport polls the export until it has a result.
func (r *rig) waitExport(t *testing.T, url, id string) Export {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		code, b := r.doAt(t, url, "legal", "GET", "/v1/exports/"+id, nil)
		var e Export
		if code != http.StatusOK || json.Unmarshal(b, &e) != nil {
			t.Fatalf("GET export %s: %d %s", id, code, b)
		}
		if e.Result != nil {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("export %s still %s after a minute", id, e.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (r *rig) createExport(t *testing.T, who string, req ExportRequest) Export {
	t.Helper()
	code, b := r.do(t, who, "POST", "/v1/exports", req)
	var e Export
	if code != http.StatusCreated || json.Unmarshal(b, &e) != nil {
		t.Fatalf("POST /v1/exports: %d %s", code, b)
	}
	return e
}

// An export runs in the background, and its package verifies offline,
// holds exactly the events the filters select (never the access log), and
// names where they come from; the register lists it with its download, and
// each step is an audit event in Kafka.
func TestExportPackage(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "E-1")
	e := r.createExport(t, "legal", r.exportReq("E-1"))
	if e.Case != "E-1" || e.RequestedBy != "legal" || (e.Status != ExportQueued && e.Status != ExportRunning) {
		t.Fatalf("created: %+v", e)
	}
	e = r.waitExport(t, r.url, e.ID)
	if e.Status != ExportReady || e.Result.Events != 6 || e.Result.Segments != 2 {
		t.Fatalf("result: %s %+v", e.Status, e.Result)
	}
	req, _ := http.NewRequest("GET", r.url+"/v1/exports/"+e.ID+"/package", nil)
	req.Header.Set("Authorization", "Bearer "+r.tokens["legal"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pkg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || int64(len(pkg)) != e.Result.Size || resp.Header.Get("X-Package-Sha256") != e.Result.SHA256 {
		t.Fatalf("download: %d, %d bytes (want %d), sha %s", resp.StatusCode, len(pkg), e.Result.Size, resp.Header.Get("X-Package-Sha256"))
	}
	keys := export.Keys{}
	keys.Add(r.keys.Signer.ID, r.keys.Signer.Public().Public)
	res, err := export.Verify(bytes.NewReader(pkg), int64(len(pkg)), keys)
	if err != nil || len(res.Findings) != 0 {
		t.Fatalf("the package does not verify: %v %v", err, res.Findings)
	}
	m := res.Manifest
	if m.Request.Case != "E-1" || m.Request.Authority != "Tribunal judiciaire de Paris" || m.Query.Filters["ip"] != "203.0.113.7" || len(m.Provenance) != 2 {
		t.Errorf("manifest: %+v", m)
	}
	zr, _ := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	f, _ := zr.Open(export.EventsJSONL)
	jl, _ := io.ReadAll(f)
	var got []string
	for l := range bytes.Lines(jl) {
		var ev struct{ ID, Kind string }
		json.Unmarshal(l, &ev)
		got = append(got, ev.ID)
		if ev.Kind == "access_audit" {
			t.Errorf("the package holds an access_audit event: %s", l)
		}
	}
	if strings.Join(got, ",") != "acme-0,globex-0,acme-1,globex-1,acme-2,globex-2" {
		t.Errorf("events.jsonl holds %v", got)
	}

	code, b := r.do(t, "auditor", "GET", "/v1/exports?case=E-1", nil)
	var reg struct{ Exports []Export }
	if code != 200 || json.Unmarshal(b, &reg) != nil || len(reg.Exports) != 1 || len(reg.Exports[0].Downloads) != 1 || reg.Exports[0].Downloads[0].By != "legal" {
		t.Errorf("register: %d %s", code, b)
	}
	if code, b := r.do(t, "auditor", "GET", "/v1/exports?case=OTHER", nil); code != 200 || !strings.Contains(string(b), `"exports":[]`) {
		t.Errorf("register of another case: %d %s", code, b)
	}
	if code, _ := r.do(t, "auditor", "GET", "/v1/exports/"+e.ID+"/package", nil); code != http.StatusForbidden {
		t.Errorf("auditor download: %d; want 403", code)
	}

	// Each step, in Kafka: create, ready, download.
	want := []string{"export.create", "export.download", "export.ready"}
	var actions []string
	stacktest.ReadUntil(t, r.st, r.topic, func(ms []kafka.Message) bool {
		actions = nil
		for _, m := range ms {
			var ev struct {
				Kind, Action string
				Attrs        map[string]any
			}
			if json.Unmarshal(m.Value, &ev) == nil && ev.Kind == "access_audit" && ev.Attrs["export"] == e.ID {
				actions = append(actions, ev.Action)
			}
		}
		slices.Sort(actions)
		return slices.Equal(actions, want)
	}, 20*time.Second)
	if !slices.Equal(actions, want) {
		t.Errorf("audit events of the export: %v; want %v", actions, want)
	}
}

// Four eyes: with exports.approvals 2, an export waits for a second legal
// identity; its requester cannot approve it, nor anyone twice.
func TestExportFourEyes(t *testing.T) {
	r := newRig(t)
	r.url = r.serve(t, strings.Join(r.st.KafkaBrokers, ","), func(c *Config) { c.Exports.Approvals = 2 })
	r.openCase(t, "E-2")
	e := r.createExport(t, "legal", r.exportReq("E-2"))
	if e.Status != ExportPending || e.ApprovalsNeeded != 2 {
		t.Fatalf("created: %s, needs %d", e.Status, e.ApprovalsNeeded)
	}
	path := "/v1/exports/" + e.ID + "/approve"
	if code, b := r.do(t, "legal", "POST", path, nil); code != http.StatusForbidden || !strings.Contains(string(b), "cannot approve it") {
		t.Errorf("self-approval: %d %s", code, b)
	}
	if code, b := r.do(t, "auditor", "POST", path, nil); code != http.StatusForbidden {
		t.Errorf("auditor approval: %d %s", code, b)
	}
	if code, b := r.do(t, "legal", "GET", "/v1/exports/"+e.ID+"/package", nil); code != http.StatusConflict {
		t.Errorf("download while pending: %d %s", code, b)
	}
	if code, b := r.do(t, "legal-2", "POST", path, nil); code != http.StatusOK {
		t.Fatalf("second identity's approval: %d %s", code, b)
	}
	if code, b := r.do(t, "legal-2", "POST", path, nil); code != http.StatusForbidden || !strings.Contains(string(b), "already approved") {
		t.Errorf("approval twice: %d %s", code, b)
	}
	e = r.waitExport(t, r.url, e.ID)
	if e.Status != ExportReady || len(e.Approvals) != 1 || e.Approvals[0].By != "legal-2" {
		t.Fatalf("after approval: %s %+v", e.Status, e.Approvals)
	}
}

// Bad input gets a clear 4xx and leaves no export record; so does an
// export whose audit event Kafka cannot take (503).
func TestExportRefusals(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "E-3")
	r.openCase(t, "E-closed")
	if code, b := r.do(t, "legal", "POST", "/v1/cases/E-closed/close", nil); code != 200 {
		t.Fatalf("close: %d %s", code, b)
	}
	noFilter := r.exportReq("E-3")
	noFilter.IP = ""
	wide := r.exportReq("E-3")
	wide.From, wide.To = "2025-01-01", "2026-12-31"
	limited := r.exportReq("E-3")
	limited.Limit = 10
	for name, tc := range map[string]struct {
		req  ExportRequest
		code int
		says string
	}{
		"no case":     {r.exportReq("E-none"), http.StatusForbidden, `E-none\" does not exist: every read names an open case`},
		"closed case": {r.exportReq("E-closed"), http.StatusForbidden, "case E-closed was closed"},
		"no filter":   {noFilter, http.StatusBadRequest, "an export needs at least one of ip, login"},
		"wide range":  {wide, http.StatusBadRequest, "at most 744h0m0s per query"},
		"a limit":     {limited, http.StatusBadRequest, "limit: an export is complete or fails"},
	} {
		if code, b := r.do(t, "legal", "POST", "/v1/exports", tc.req); code != tc.code || !strings.Contains(string(b), tc.says) {
			t.Errorf("%s: %d %s; want %d saying %q", name, code, b, tc.code, tc.says)
		}
	}
	down := r.serve(t, stacktest.NewGate(t, r.st.KafkaBrokers[0]).Addr())
	if code, b := r.doAt(t, down, "legal", "POST", "/v1/exports", r.exportReq("E-3")); code != http.StatusServiceUnavailable || !strings.Contains(string(b), "nothing was created") {
		t.Errorf("Kafka down: %d %s", code, b)
	}
	if code, b := r.do(t, "legal", "GET", "/v1/exports", nil); code != 200 || !strings.Contains(string(b), `"exports":[]`) {
		t.Errorf("export records after refusals: %d %s", code, b)
	}
}

// The size limit per role: an export past it fails, saying so, and leaves
// no package.
func TestExportSizeLimit(t *testing.T) {
	r := newRig(t)
	r.url = r.serve(t, strings.Join(r.st.KafkaBrokers, ","), func(c *Config) { c.Roles = map[Role]Limits{Legal: {MaxExportEvents: 4}} })
	r.openCase(t, "E-4")
	e := r.waitExport(t, r.url, r.createExport(t, "legal", r.exportReq("E-4")).ID)
	if e.Status != ExportFailed || !strings.Contains(e.Result.Error, "more than the 4 events a legal export may") || e.Result.Package != "" {
		t.Fatalf("an export over the role's limit: %s %+v", e.Status, e.Result)
	}
	if code, b := r.do(t, "legal", "GET", "/v1/exports/"+e.ID+"/package", nil); code != http.StatusConflict {
		t.Errorf("download of a failed export: %d %s", code, b)
	}
}
