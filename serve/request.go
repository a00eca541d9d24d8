package serve

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/query"
)

// QueryRequest is the body of POST /v1/query (api/openapi.yaml). Times are
// RFC 3339 or dates (a date in "to" means the end of that day), as on the
// command line.
type QueryRequest struct {
	Case    string `json:"case"`
	Purpose string `json:"purpose"`
	From    string `json:"from"`
	To      string `json:"to"`
	IP      string `json:"ip,omitempty"`
	Login   string `json:"login,omitempty"`
	Kind    string `json:"kind,omitempty"`
	Tenant  string `json:"tenant,omitempty"`
	App     string `json:"app,omitempty"`
	Repo    string `json:"repo,omitempty"`
	Session string `json:"session,omitempty"`
	Limit   int    `json:"limit,omitempty"`
	// Progress asks for progress lines ({"progress": …}) among the
	// events, about five a second: the console's progress bar.
	Progress bool `json:"progress,omitempty"`
}

func decodeQuery(r *http.Request) (*QueryRequest, error) {
	var q QueryRequest
	if err := decodeStrict(r, &q); err != nil {
		return nil, err
	}
	return &q, nil
}

func bad(format string, a ...any) error {
	return &requestError{http.StatusBadRequest, fmt.Sprintf(format, a...)}
}

// filter checks the request and turns it into the engine's filter, with
// the identity's tenant scope applied whatever the request says.
func (q *QueryRequest) filter(id Identity, maxRange time.Duration) (query.Filter, error) {
	var f query.Filter
	var err error
	if strings.TrimSpace(q.Case) == "" {
		return f, bad("case: is required: every read names an open case")
	}
	if strings.TrimSpace(q.Purpose) == "" {
		return f, bad("purpose: is required: every read records why")
	}
	if q.From == "" || q.To == "" {
		return f, bad("from, to: are required")
	}
	if f.From, err = query.ParseTime(q.From, false); err != nil {
		return f, bad("from: %v", err)
	}
	if f.To, err = query.ParseTime(q.To, true); err != nil {
		return f, bad("to: %v", err)
	}
	if q.IP != "" {
		p, err := query.ParseIP(q.IP)
		if err != nil {
			return f, bad("ip: %v", err)
		}
		f.IP = &p
	}
	if q.Limit < 0 {
		return f, bad("limit: %d is negative", q.Limit)
	}
	f.Login, f.Kind, f.Tenant, f.App, f.Repo, f.Session = q.Login, q.Kind, q.Tenant, q.App, q.Repo, q.Session
	if err := f.Validate(); err != nil {
		return f, bad("%s", strings.ReplaceAll(err.Error(), "--", ""))
	}
	if f.Kind == string(event.KindAccessAudit) {
		return f, &requestError{http.StatusForbidden, "kind: access_audit events are the access log, read through GET /v1/access-log (role auditor)"}
	}
	// The access log is never event content: queries read every other kind.
	f.NotKinds = []string{string(event.KindAccessAudit)}
	if d := f.To.Sub(f.From); d > maxRange {
		return f, bad("from, to: the range is %s; at most %s per query", d, maxRange)
	}
	if len(id.Tenants) > 0 {
		if q.Tenant != "" && !slices.Contains(id.Tenants, q.Tenant) {
			return f, &requestError{http.StatusForbidden, fmt.Sprintf("tenant: %s may read only %s", id.Name, strings.Join(id.Tenants, ", "))}
		}
		f.Tenants = id.Tenants
	}
	return f, nil
}

// attrs are the exact filters, for the audit event.
func (q *QueryRequest) attrs() map[string]any {
	m := map[string]any{"from": q.From, "to": q.To}
	for k, v := range map[string]string{"ip": q.IP, "login": q.Login, "kind": q.Kind, "tenant": q.Tenant, "app": q.App, "repo": q.Repo, "session": q.Session} {
		if v != "" {
			m[k] = v
		}
	}
	if q.Limit > 0 {
		m["limit"] = q.Limit
	}
	return m
}
