package pipeline

import (
	"errors"
	"strings"
	"testing"

	"github.com/custodylog/custody/internal/testkit/dataset"
)

var testClasses = map[string]bool{"security": true, "short": true}

// TestExtractReasons pins the reason every kind of bad record gets: each
// goes to the dead-letter topic with it (docs/PIPELINE.md §9).
func TestExtractReasons(t *testing.T) {
	const good = `{"v":1,"id":"a","time":"2026-11-29T05:00:00.000000000Z","kind":"login","class":"security","tenant":"t"`
	for _, c := range []struct {
		in, reason string // reason "" = valid
	}{
		{good + `}`, ""},
		{good + `,"attrs":{"a":[1,-2.5e+3,true,false,null,{"b":"c\"\\\/\n"}],"d":{}}}`, ""},
		{` ` + good + "}\t\r ", "not a one-line JSON object"},
		{good + "}\v", ""}, // trailing space as bytes.TrimSpace sees it
		{`{"v":1}`, "id is missing"},
		{`{}`, "v is 0; want 1"},
		{`{"v":2,"id":"a"}`, "v is 2; want 1"},
		{`{"v":1.0,"id":"a"}`, "invalid JSON"},
		{`{"v":"1","id":"a"}`, "invalid JSON"},
		{`{"v":01,"id":"a"}`, "invalid JSON"},
		{`{"v":-1,"id":"a"}`, "v is -1; want 1"},
		{`{"v":1,"id":"a","kind":"nope"}`, `kind "nope" is unknown`},
		{`{"v":1,"id":"a","kind":"login"}`, "tenant is missing"},
		{`{"v":1,"id":"a","kind":"login","tenant":"t"}`, "class is missing"},
		{`{"v":1,"id":"a","kind":"login","tenant":"t","class":"forever"}`, `class "forever" is not a configured`},
		{`{"v":1,"id":"a","kind":"login","tenant":"t","class":"security","time":"2026-11-29 05:00"}`, `time "2026-11-29 05:00" is not a canonical`},
		{good + `,"x":}`, "invalid JSON"},
		{good + `,"x":[1,]}`, "invalid JSON"},
		{good + `,"x":tru}`, "invalid JSON"},
		{good + `,"x":"\q"}`, "invalid JSON"},
		{good + `} {}`, "data after the JSON object"},
		{good, "invalid JSON"},
		{good + `,"tenant":"u"}`, ""}, // duplicates: the last wins
		{good + `,"ID":"b"}`, ""},     // names match exactly
		{`{"v":1,"id":"a\u0062","time":"2026-11-29T05:00:00.000000000Z","kind":"login","class":"security","tenant":"t"}`, ""},
		{`{"v":1,"id":"é","time":"2026-11-29T05:00:00.000000000Z","kind":"login","class":"security","tenant":"t"}`, ""},
		{`{"v":1,"id":null,"time":"2026-11-29T05:00:00.000000000Z","kind":"login","class":"security","tenant":"t"}`, "id is missing"},
		{`{"v":1,"id":7,"time":"2026-11-29T05:00:00.000000000Z","kind":"login","class":"security","tenant":"t"}`, "invalid JSON"},
		{good + `,"a":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, ""},
	} {
		var f fields
		err := extract([]byte(c.in), testClasses, &f)
		var inv *invalidError
		switch {
		case c.reason == "" && err != nil:
			t.Errorf("%s: %v", c.in, err)
		case c.reason != "" && (!errors.As(err, &inv) || !strings.Contains(inv.reason, c.reason)):
			t.Errorf("%s: got %v, want a reason with %q", c.in, err, c.reason)
		case c.reason == "" && f.ID == "a" && f.Tenant != "t" && !strings.Contains(c.in, `"tenant":"u"`):
			t.Errorf("%s: tenant %q", c.in, f.Tenant)
		case strings.Contains(c.in, `"tenant":"u"`) && f.Tenant != "u":
			t.Errorf("%s: tenant %q; want the last one, u", c.in, f.Tenant)
		}
	}
}

// FuzzExtract: extract never panics, and what it accepts is a routable
// event: an ID, a known kind, a tenant, a configured class, a time.
func FuzzExtract(f *testing.F) {
	g := dataset.New(dataset.Options{Seed: 3, Total: 4})
	for i := 0; i < 4; i++ {
		f.Add(g.Line())
	}
	f.Fuzz(func(t *testing.T, value []byte) {
		var fl fields
		err := extract(value, testClasses, &fl)
		var inv *invalidError
		switch {
		case err != nil && !errors.As(err, &inv):
			t.Fatalf("%q: %v is not an *invalidError", value, err)
		case err == nil && (fl.ID == "" || !validKinds[fl.Kind] || fl.Tenant == "" || !testClasses[fl.Class] || fl.t.IsZero()):
			t.Fatalf("%q accepted with %+v", value, fl)
		}
	})
}
