package serve

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/export"
)

func (r *rig) openRights(t *testing.T, b RightsRequestBody) RightsRequest {
	t.Helper()
	code, out := r.do(t, "legal", "POST", "/v1/requests", b)
	var rr RightsRequest
	if code != http.StatusCreated || json.Unmarshal(out, &rr) != nil {
		t.Fatalf("open rights request: %d %s", code, out)
	}
	return rr
}

// The rights-request register: a request is opened with its subject and
// right, answered once, closed, and deleted a year after its reply
// (injected clock); erasure is answered with the legal obligation and the
// date the data is gone; refusals name the field.
func TestRightsRegister(t *testing.T) {
	r := newRig(t)
	today := time.Now().UTC().Format("2006-01-02")
	for name, tc := range map[string]struct {
		b    RightsRequestBody
		says string
	}{
		"no subject":   {RightsRequestBody{Right: "access", ReceivedAt: today}, "exactly one is required"},
		"two subjects": {RightsRequestBody{SubjectLogin: "a", SubjectTenant: "b", Right: "access", ReceivedAt: today}, "exactly one is required"},
		"bad right":    {RightsRequestBody{SubjectLogin: "a", Right: "oblivion", ReceivedAt: today}, `right: \"oblivion\" is not one of access`},
		"future":       {RightsRequestBody{SubjectLogin: "a", Right: "access", ReceivedAt: "2999-01-01"}, "is in the future"},
	} {
		if code, b := r.do(t, "legal", "POST", "/v1/requests", tc.b); code != http.StatusBadRequest || !strings.Contains(string(b), tc.says) {
			t.Errorf("%s: %d %s; want 400 saying %s", name, code, b, tc.says)
		}
	}
	if code, _ := r.do(t, "auditor", "POST", "/v1/requests", RightsRequestBody{SubjectLogin: "alice", Right: "access", ReceivedAt: today}); code != http.StatusForbidden {
		t.Errorf("auditor opening a request: %d", code)
	}
	rr := r.openRights(t, RightsRequestBody{SubjectLogin: "alice", Right: "access", ReceivedAt: today, IdentityVerified: true, VerifiedBy: "ID card at the desk"})
	path := "/v1/requests/" + rr.ID
	if code, b := r.do(t, "legal", "POST", path+"/close", nil); code != http.StatusBadRequest || !strings.Contains(string(b), "reply first") {
		t.Errorf("close before the reply: %d %s", code, b)
	}
	code, b := r.do(t, "legal", "POST", path+"/reply", ReplyBody{Outcome: "granted", Answer: "the export was sent on " + today})
	var got RightsRequest
	if code != 200 || json.Unmarshal(b, &got) != nil || got.Reply == nil || !got.DeleteAfter.Equal(got.Reply.At.AddDate(0, 0, 365)) {
		t.Fatalf("reply: %d %s", code, b)
	}
	if code, b := r.do(t, "legal", "POST", path+"/reply", ReplyBody{Outcome: "again", Answer: "x"}); code != http.StatusConflict {
		t.Errorf("a second reply: %d %s", code, b)
	}
	if code, b := r.do(t, "legal", "POST", path+"/close", nil); code != 200 || !strings.Contains(string(b), `"closed_by":"legal"`) {
		t.Errorf("close: %d %s", code, b)
	}
	if code, b := r.do(t, "auditor", "GET", "/v1/requests", nil); code != 200 || !strings.Contains(string(b), rr.ID) {
		t.Errorf("register (auditor): %d %s", code, b)
	}

	// Erasure of data under the retention obligation: the basis and the
	// date, from the shred schedule (security: 30 days, grace 6 h).
	er := r.openRights(t, RightsRequestBody{SubjectLogin: "alice", Right: "erasure", ReceivedAt: today, IdentityVerified: true})
	code, b = r.do(t, "legal", "POST", "/v1/requests/"+er.ID+"/reply", ReplyBody{Outcome: "refused"})
	gone := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, 31).Add(6 * time.Hour).Format("2006-01-02")
	if code != 200 || !strings.Contains(string(b), "kept for 30 days") || !strings.Contains(string(b), "gone by "+gone) {
		t.Errorf("erasure reply: %d %s; want the obligation and %s", code, b, gone)
	}

	// A year after the reply, the sweep deletes the request; not a second
	// before.
	justBefore := got.Reply.At.AddDate(0, 0, 365).Add(-time.Second)
	r.now.Store(&justBefore)
	if gone, err := r.rights.Sweep(t.Context()); err != nil || len(gone) != 0 {
		t.Fatalf("sweep a second before a year: %v %v", gone, err)
	}
	later := got.Reply.At.AddDate(0, 0, 366)
	r.now.Store(&later)
	if gone, err := r.rights.Sweep(t.Context()); err != nil || len(gone) != 2 {
		t.Fatalf("sweep a year on: %v %v; want both requests", gone, err)
	}
	if code, b := r.do(t, "legal", "GET", path, nil); code != http.StatusNotFound {
		t.Errorf("request after the sweep: %d %s", code, b)
	}
	for o, err := range r.s.List(t.Context(), RightsPrefix) {
		t.Errorf("left in the bucket after the sweep: %s %v", o.Name, err)
	}
}

// A subject export returns exactly its subject's events, of every kind but
// the access log, over the retention window, signed like a disclosure,
// with a cover page for the person; only for a verified access or
// portability request.
func TestSubjectExport(t *testing.T) {
	r := newRig(t)
	// Besides the rig's six logins by alice: her connection and source
	// change, and bob's connection, in another hour and partition.
	h := r.hour.Add(-3 * time.Hour)
	r.putSegment(t, 20, []event.Event{
		{ID: "conn-alice", Time: h, Kind: event.KindConnection, Class: "security", Tenant: "acme", IP: netip.MustParseAddr("198.51.100.1"), Port: 443, Login: "alice"},
		{ID: "conn-bob", Time: h.Add(time.Minute), Kind: event.KindConnection, Class: "security", Tenant: "acme", IP: netip.MustParseAddr("198.51.100.2"), Port: 443, Login: "bob"},
	})
	r.putSegment(t, 21, []event.Event{{ID: "push-alice", Time: h.Add(2 * time.Minute), Kind: event.KindSourceChange, Class: "security", Tenant: "acme", Login: "alice",
		Action: "modify", Repo: "shop", Ref: "refs/heads/main", OldCommit: strings.Repeat("a", 40), NewCommit: strings.Repeat("b", 40)}})
	today := time.Now().UTC().Format("2006-01-02")
	rr := r.openRights(t, RightsRequestBody{SubjectLogin: "alice", Right: "access", ReceivedAt: today, IdentityVerified: true, VerifiedBy: "video call"})
	code, b := r.do(t, "legal", "POST", "/v1/subject-exports", SubjectExportRequest{Request: rr.ID})
	var e Export
	if code != http.StatusCreated || json.Unmarshal(b, &e) != nil || e.Kind != KindSubjectAccess || e.RightsRequest != rr.ID {
		t.Fatalf("subject export: %d %s", code, b)
	}
	e = r.waitExport(t, r.url, e.ID)
	if e.Status != ExportReady || e.Result.Events != 8 {
		t.Fatalf("result: %s %+v; want alice's 8 events", e.Status, e.Result)
	}
	req, _ := http.NewRequest("GET", r.url+"/v1/exports/"+e.ID+"/package", nil)
	req.Header.Set("Authorization", "Bearer "+r.tokens["legal"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pkg, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	keys := export.Keys{}
	keys.Add(r.keys.Signer.ID, r.keys.Signer.Public().Public)
	res, err := export.Verify(bytes.NewReader(pkg), int64(len(pkg)), keys)
	if err != nil || len(res.Findings) != 0 {
		t.Fatalf("the package does not verify: %v %v", err, res.Findings)
	}
	m := res.Manifest
	if m.Counts.Kinds["login"] != 6 || m.Counts.Kinds["connection"] != 1 || m.Counts.Kinds["source_change"] != 1 || m.Counts.Kinds["access_audit"] != 0 {
		t.Errorf("kinds exported: %v; want alice's 6 logins, 1 connection, 1 source change, no access log", m.Counts.Kinds)
	}
	if m.Kind != KindSubjectAccess || m.Request.Reference != rr.ID || m.Query.Filters["login"] != "alice" || m.RetentionDays["security"] != 30 || m.Query.To.Sub(m.Query.From) < 30*24*time.Hour {
		t.Errorf("manifest: %+v", m)
	}
	zr, _ := zip.NewReader(bytes.NewReader(pkg), int64(len(pkg)))
	f, _ := zr.Open(export.SummaryHTML)
	summary, _ := io.ReadAll(f)
	if !bytes.Contains(summary, []byte("Data held about you")) || !bytes.Contains(summary, []byte("30 days after its day")) {
		t.Errorf("summary.html for the person:\n%s", summary)
	}

	unverified := r.openRights(t, RightsRequestBody{SubjectLogin: "alice", Right: "access", ReceivedAt: today})
	erasure := r.openRights(t, RightsRequestBody{SubjectLogin: "alice", Right: "erasure", ReceivedAt: today, IdentityVerified: true})
	for name, tc := range map[string]struct {
		id   string
		code int
		says string
	}{
		"unverified": {unverified.ID, http.StatusForbidden, "is not verified"},
		"erasure":    {erasure.ID, http.StatusBadRequest, "answers access or portability"},
		"unknown":    {"rr-20260101-00000000", http.StatusNotFound, "no such rights request"},
	} {
		if code, b := r.do(t, "legal", "POST", "/v1/subject-exports", SubjectExportRequest{Request: tc.id}); code != tc.code || !strings.Contains(string(b), tc.says) {
			t.Errorf("%s: %d %s; want %d saying %q", name, code, b, tc.code, tc.says)
		}
	}
	if code, _ := r.do(t, "inv-all", "POST", "/v1/subject-exports", SubjectExportRequest{Request: rr.ID}); code != http.StatusForbidden {
		t.Errorf("investigator subject export: %d", code)
	}
}
