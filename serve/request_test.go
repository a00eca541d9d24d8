package serve

import (
	"bytes"
	"net/http/httptest"
	"slices"
	"testing"
	"time"
)

// FuzzDecodeQuery: whatever the body, the decoder answers with an error or
// a filter that keeps the identity's tenant scope and the range limit.
func FuzzDecodeQuery(f *testing.F) {
	f.Add([]byte(`{"case":"LE-1","purpose":"p","from":"2026-11-01","to":"2026-11-02","ip":"203.0.113.0/24","tenant":"acme","limit":5}`))
	f.Add([]byte(`{"case":"LE-1","purpose":"p","from":"2026-11-01T00:00:00Z","to":"2026-11-01T01:00:00Z","kind":"login","login":"a"}`))
	id := Identity{Name: "inv", Role: Investigator, Tenants: []string{"acme", "globex"}}
	f.Fuzz(func(t *testing.T, b []byte) {
		r := httptest.NewRequest("POST", "/v1/query", bytes.NewReader(b))
		q, err := decodeQuery(r)
		if err != nil {
			return
		}
		fl, err := q.filter(id, 48*time.Hour)
		if err != nil {
			return
		}
		if !slices.Equal(fl.Tenants, id.Tenants) || fl.Tenant != "" && !slices.Contains(id.Tenants, fl.Tenant) {
			t.Fatalf("scope lost: tenants %v, tenant %q", fl.Tenants, fl.Tenant)
		}
		if !fl.From.Before(fl.To) || fl.To.Sub(fl.From) > 48*time.Hour || q.Case == "" || q.Purpose == "" {
			t.Fatalf("accepted %s: %+v", b, fl)
		}
	})
}
