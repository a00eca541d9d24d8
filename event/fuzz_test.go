package event

import (
	"encoding/json"
	"strings"
	"testing"
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
