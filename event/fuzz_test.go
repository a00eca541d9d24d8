package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	sjson "github.com/segmentio/encoding/json"
)

func FuzzDecode(f *testing.F) {
	// More seeds live in testdata/fuzz/FuzzDecode.
	f.Add([]byte(`{"kind":"connection","tenant":"acme","ip":"203.0.113.7","attrs":{"password":"x"}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := Decode(line, opts())
		if err != nil {
			if _, ok := err.(*FieldError); !ok {
				t.Fatalf("Decode error %T is not a *FieldError: %v", err, err)
			}
			return
		}
		out := AppendJSON(nil, e)
		if !json.Valid(out) {
			t.Fatalf("canonical output is not JSON: %q", out)
		}
		p, err := Parse(out)
		if err != nil {
			t.Fatalf("Parse of canonical output %q: %v", out, err)
		}
		if again := AppendJSON(nil, p); string(again) != string(out) {
			t.Fatalf("canonical form not stable:\n%q\n%q", out, again)
		}
		var walk func(v any)
		walk = func(v any) {
			switch x := v.(type) {
			case map[string]any:
				for k, val := range x {
					if SensitiveKey(k) {
						t.Fatalf("sensitive key %q passed redaction", k)
					}
					walk(val)
				}
			case []any:
				for _, val := range x {
					walk(val)
				}
			case string:
				if SensitiveValue(x) {
					t.Fatalf("sensitive value %q passed redaction", x)
				}
			}
		}
		walk(e.Attrs)
		if strings.ContainsAny(string(out[:len(out)-1]), "\n") {
			t.Fatalf("canonical event spans lines: %q", out)
		}
	})
}

// FuzzRedactCanary puts a canary secret, in one of the forms senders leak
// secrets in, into any string member between arbitrary text, and asserts
// that no accepted event carries it (docs/EVENTS.md §5).
func FuzzRedactCanary(f *testing.F) {
	// More seeds live in testdata/fuzz/FuzzRedactCanary.
	for form := range canaryForms {
		for member := range canaryMembers {
			f.Add(uint8(form), uint8(member), "curl/8.4 ", " (x)")
		}
	}
	f.Fuzz(func(t *testing.T, form, member uint8, prefix, suffix string) {
		if strings.Contains(prefix+suffix, "CANARY") {
			return // the fuzzer wrote the canary itself
		}
		v := prefix + canaryForms[int(form)%len(canaryForms)] + suffix
		m := canaryMembers[int(member)%len(canaryMembers)]
		ev := map[string]any{"kind": "activity", "tenant": "acme", "login": "carol", "action": "deploy", "ip": "192.0.2.1"}
		switch {
		case strings.HasPrefix(m, "attrs."):
			ev["attrs"] = map[string]any{m[6:]: v, "list": []any{"x", v}, "nested": map[string]any{"deep": v}}
		default:
			ev[m] = v
		}
		line, err := json.Marshal(ev)
		if err != nil {
			return
		}
		e, err := Decode(line, opts())
		if err != nil {
			return
		}
		if out := AppendJSON(nil, e); strings.Contains(string(out), canarySecret) {
			t.Fatalf("canary survived in %s (form %q):\n%s", m, canaryForms[int(form)%len(canaryForms)], out)
		}
	})
}

const canarySecret = "CANARYz9y8x7w6v5u4"

// canaryForms are self-delimited leaks: whatever text surrounds them,
// the canary inside must go.
var canaryForms = []string{
	" Bearer " + canarySecret + " ",
	" https://u:" + canarySecret + "@h.example/ ",
	" https://" + canarySecret + "@github.com/acme/shop ",
	"?access_token=" + canarySecret + "&",
	"#access_token=" + canarySecret + "&",
	";password=" + canarySecret + ";",
	"&client_secret=" + canarySecret + "&",
	"?X-Api-Key=" + canarySecret + "&",
	"\nAuthorization: Token " + canarySecret + "\n",
	"\ncookie: sid=" + canarySecret + "\n",
	" password=" + canarySecret + " ",
	" -----BEGIN PRIVATE KEY-----" + canarySecret + " ",
	" ghp_" + canarySecret + canarySecret + " ",
}

var canaryMembers = []string{"app", "session", "login", "user_agent", "action", "protocol", "path", "repo", "ref", "purpose", "attrs.referer", "attrs.note"}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"v":1,"id":"x","time":"2026-11-29T05:00:00.000000000Z","kind":"login","tenant":"acme"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		e, err := Parse(line)
		if err != nil {
			return
		}
		if !json.Valid(AppendJSON(nil, e)) {
			t.Fatalf("re-encoding a parsed event gave invalid JSON")
		}
	})
}

var benchLine = []byte(`{"id":"evt-0001-8f3a9c2e7b","time":"2026-11-29T05:59:00.123456789Z","kind":"connection","tenant":"acme","app":"shop","ip":"203.0.113.7","port":51234,"session":"sess-9c2e7b1d","login":"alice@example.org","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36","method":"GET","path":"/products/1234?ref=abc","status":200}`)

// BenchmarkDecodeEncode is the per-event CPU cost of ingest's validation:
// decode, validate, redact, stamp and encode canonically (~400 bytes).
func BenchmarkDecodeEncode(b *testing.B) {
	o := opts()
	var buf []byte
	b.SetBytes(int64(len(benchLine)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := Decode(benchLine, o)
		if err != nil {
			b.Fatal(err)
		}
		buf = AppendJSON(buf[:0], e)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkParse(b *testing.B) {
	e, _ := Decode(benchLine, opts())
	line := AppendJSON(nil, e)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(line); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// FuzzDecodeFields: for every line Decode can read, DecodeFields on the
// same members agrees: both refuse (naming the same member) or both give
// the same event, the ID apart (DecodeFields derives it from the salt).
func FuzzDecodeFields(f *testing.F) {
	f.Add([]byte(`{"kind":"connection","tenant":"acme","ip":"203.0.113.7","port":443,"attrs":{"password":"x","n":[1,2]}}`))
	f.Add([]byte(`{"kind":"login","tenant":"acme","ip":"::ffff:10.0.0.1","login":"a b","action":"mfa","user_agent":"curl token=abc"}`))
	f.Add([]byte(`{"kind":"source_change","tenant":"acme","repo":"r","login":"l","action":"create","protocol":"ssh","new_commit":"ABCDEF1"}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var w wire
		if _, err := sjson.Parse(line, &w, sjson.DisallowUnknownFields|sjson.DontMatchCaseInsensitiveStructFields); err != nil ||
			w.Source != nil || w.Received != nil || w.Late != nil || w.Redacted != nil || (w.V != nil && *w.V != Version) {
			return
		}
		o := opts()
		o.IDSalt = []byte("salt")
		want, werr := Decode(line, o)
		var fe *FieldError
		if werr != nil && errors.As(werr, &fe) && (fe.Field == "" || fe.Field == "v") {
			return // whole-line problems (size, UTF-8, JSON): DecodeFields has no line
		}
		fs := Fields{ID: w.ID, Time: w.Time, Kind: w.Kind, Class: w.Class, Tenant: w.Tenant, App: w.App, IP: w.IP, Port: w.Port,
			Session: w.Session, Login: w.Login, UserAgent: w.UserAgent, Action: w.Action, Protocol: w.Protocol, Method: w.Method, Path: w.Path,
			Status: w.Status, Repo: w.Repo, Ref: w.Ref, OldCommit: w.OldCommit, NewCommit: w.NewCommit, Purpose: w.Purpose, Attrs: w.Attrs}
		if string(fs.Attrs) == "null" {
			fs.Attrs = nil
		}
		got, gerr := DecodeFields(&fs, o)
		switch {
		case werr != nil && gerr == nil:
			t.Fatalf("%q: Decode refuses (%v), DecodeFields accepts", line, werr)
		case werr == nil && gerr != nil:
			var ge *FieldError
			if errors.As(gerr, &ge) && ge.Field == "" { // the members' size alone
				return
			}
			t.Fatalf("%q: DecodeFields refuses (%v), Decode accepts", line, gerr)
		case werr != nil:
			var ge *FieldError
			if !errors.As(gerr, &ge) || ge.Field != fe.Field {
				t.Fatalf("%q: Decode names %v, DecodeFields %v", line, werr, gerr)
			}
			return
		}
		if w.ID == "" {
			got.ID = want.ID
		}
		got.Received = want.Received
		if a, b := AppendJSON(nil, want), AppendJSON(nil, got); string(a) != string(b) {
			t.Fatalf("Decode and DecodeFields differ:\n%s\n%s", a, b)
		}
		// The time as a value (At) decodes as its text does.
		if at, err := time.Parse(time.RFC3339Nano, w.Time); err == nil {
			fs.Time, fs.At = "", at
			byValue, err := DecodeFields(&fs, o)
			if err != nil {
				t.Fatalf("%q: DecodeFields refuses the time as a value (%v), accepts its text", line, err)
			}
			if w.ID == "" {
				byValue.ID = want.ID
			}
			byValue.Received = want.Received
			if a, b := AppendJSON(nil, want), AppendJSON(nil, byValue); string(a) != string(b) {
				t.Fatalf("the time as text and as a value differ:\n%s\n%s", a, b)
			}
		}
	})
}
