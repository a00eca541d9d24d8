package query

import (
	"testing"
	"unicode/utf8"

	json "github.com/segmentio/encoding/json"
)

// FuzzFastRow checks the positional reader against a real JSON parse:
// whenever it claims success, it must agree member for member.
func FuzzFastRow(f *testing.F) {
	// More seeds in testdata/fuzz/FuzzFastRow.
	f.Add([]byte(`{"v":1,"id":"a","time":"2026-11-29T05:00:00.000000000Z","kind":"login","tenant":"t","ip":"::1","port":22,"login":"x","late":true,"attrs":{"ip":"9.9.9.9"}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		// The archive holds only valid UTF-8 (ingest refuses anything else
		// and segments are authenticated); on invalid bytes the JSON parser
		// substitutes U+FFFD where fastRow keeps the bytes.
		if !utf8.Valid(line) {
			return
		}
		var fast row
		if !fastRow(line, &fast) {
			return
		}
		var full row
		if _, err := json.Parse(line, &full, 0); err != nil {
			// fastRow stops at "attrs" and does not validate what follows;
			// the archive only holds valid JSON, so a claim on invalid
			// input is harmless, but the members it read must still be
			// those of the prefix. Nothing more to compare.
			return
		}
		if fast != full {
			t.Fatalf("fastRow = %+v\nparse   = %+v\nfor %q", fast, full, line)
		}
	})
}

func TestFastRowStopsAtAttrs(t *testing.T) {
	var r row
	if !fastRow([]byte(`{"v":1,"id":"a","kind":"login","tenant":"t","attrs":{"ip":"9.9.9.9","login":"evil"}}`), &r) {
		t.Fatal("fastRow refused a canonical line")
	}
	if r.IP != "" || r.Login != "" || r.ID != "a" {
		t.Errorf("fastRow read attrs members as top-level ones: %+v", r)
	}
	for _, s := range []string{`{"v":1,"id":"a\"b"}`, `{"v":2,"id":"a"}`, `not json`, `{"v":1,"id":"a"`} {
		if fastRow([]byte(s), &r) {
			t.Errorf("fastRow(%s) claimed success", s)
		}
	}
}
