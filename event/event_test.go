package event

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)

func opts() Options {
	return Options{Now: now, Source: "web", DefaultClass: "security", Classes: map[string]bool{"security": true, "analytics": true}}
}

func decode(t *testing.T, line string) *Event {
	t.Helper()
	e, err := Decode([]byte(line), opts())
	if err != nil {
		t.Fatalf("Decode(%s): %v", line, err)
	}
	return e
}

func TestDecodeKinds(t *testing.T) {
	f := func(line, want string) {
		t.Helper()
		got := string(AppendJSON(nil, decode(t, line)))
		if got != want+"\n" {
			t.Errorf("Decode+AppendJSON(%s)\n got %s\nwant %s", line, got, want)
		}
	}
	f(`{"id":"c1","time":"2026-11-29T06:59:00.5+01:00","kind":"connection","tenant":"acme","app":"shop","ip":"::ffff:203.0.113.7","port":51234,"session":"s1","user_agent":"curl/8","method":"GET","path":"/a?b=1","status":200}`,
		`{"v":1,"id":"c1","time":"2026-11-29T05:59:00.500000000Z","kind":"connection","class":"security","tenant":"acme","app":"shop","source":"web","received":"2026-11-29T06:00:00.000000000Z","ip":"203.0.113.7","port":51234,"session":"s1","user_agent":"curl/8","method":"GET","path":"/a?b=1","status":200}`)
	f(`{"id":"l1","time":"2026-11-29T05:00:00Z","kind":"login","tenant":"acme","login":"alice","ip":"fe80::1%eth0","action":"failure","attrs":{"reason":"bad password","z":1,"a":{"y":true,"b":null}}}`,
		`{"v":1,"id":"l1","time":"2026-11-29T05:00:00.000000000Z","kind":"login","class":"security","tenant":"acme","source":"web","received":"2026-11-29T06:00:00.000000000Z","ip":"fe80::1","login":"alice","action":"failure","attrs":{"a":{"b":null,"y":true},"reason":"bad password","z":1}}`)
	f(`{"id":"g1","time":"2026-11-29T05:00:00Z","kind":"source_change","tenant":"acme","app":"shop","repo":"acme/shop","ref":"refs/heads/main","old_commit":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","new_commit":"0000000000000000000000000000000000000000","action":"delete","login":"bob","ip":"198.51.100.2","protocol":"ssh","class":"analytics"}`,
		`{"v":1,"id":"g1","time":"2026-11-29T05:00:00.000000000Z","kind":"source_change","class":"analytics","tenant":"acme","app":"shop","source":"web","received":"2026-11-29T06:00:00.000000000Z","ip":"198.51.100.2","login":"bob","action":"delete","protocol":"ssh","repo":"acme/shop","ref":"refs/heads/main","old_commit":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","new_commit":"0000000000000000000000000000000000000000"}`)
	// An old event is kept and marked late.
	f(`{"id":"a1","time":"2026-11-20T00:00:00Z","kind":"activity","tenant":"acme","login":"carol","action":"app.deploy"}`,
		`{"v":1,"id":"a1","time":"2026-11-20T00:00:00.000000000Z","kind":"activity","class":"security","tenant":"acme","source":"web","received":"2026-11-29T06:00:00.000000000Z","late":true,"login":"carol","action":"app.deploy"}`)
	f(`{"id":"q1","kind":"access_audit","tenant":"acme","login":"investigator","action":"query","purpose":"case 2026-114"}`,
		`{"v":1,"id":"q1","time":"2026-11-29T06:00:00.000000000Z","kind":"access_audit","class":"security","tenant":"acme","source":"web","received":"2026-11-29T06:00:00.000000000Z","login":"investigator","action":"query","purpose":"case 2026-114"}`)
}

func TestDecodeErrors(t *testing.T) {
	f := func(line, field, reason string) {
		t.Helper()
		_, err := Decode([]byte(line), opts())
		fe, ok := err.(*FieldError)
		if !ok {
			t.Errorf("Decode(%s) = %v; want a *FieldError", line, err)
			return
		}
		if fe.Field != field || !strings.Contains(fe.Reason, reason) {
			t.Errorf("Decode(%s) = %q; want field %q and reason containing %q", line, fe, field, reason)
		}
	}
	base := `"kind":"connection","tenant":"acme","ip":"203.0.113.7"`
	f(`{`+base+`,"ip":"999.1.1.1"}`, "ip", `"999.1.1.1" is not an IP address`)
	f(`{"kind":"connection","tenant":"acme"}`, "ip", "is required for connection events")
	f(`{"kind":"teleport","tenant":"acme"}`, "kind", `"teleport" is not one of`)
	f(`{"tenant":"acme"}`, "kind", "is required")
	f(`{"kind":"connection","ip":"203.0.113.7"}`, "tenant", "is required")
	f(`{`+base+`,"time":"2026-11-29T06:10:00Z"}`, "time", "ahead of the server clock; the limit is 5m0s")
	f(`{`+base+`,"time":"yesterday"}`, "time", "is not an RFC 3339 time")
	f(`{`+base+`,"time":"1970-01-01T00:00:00Z"}`, "time", "before 2000-01-01")
	f(`{`+base+`,"port":70000}`, "port", "70000 is outside 1-65535")
	f(`{`+base+`,"port":"80"}`, "port", "is a JSON string; want an integer")
	f(`{`+base+`,"login":42}`, "login", "is a JSON number; want a string")
	f(`{`+base+`,"colour":"red"}`, "colour", "is not a v1 event member")
	f(`{`+base+`,"source":"forged"}`, "source", "is set by Custody")
	f(`{`+base+`,"redacted":0}`, "redacted", "is set by Custody")
	f(`{`+base+`,"class":"forever"}`, "class", `"forever" is not a configured retention class`)
	f(`{`+base+`,"login":"a\u0000b"}`, "login", "control character")
	f(`{`+base+`,"status":42}`, "status", "42 is not an HTTP status")
	f(`{`+base+`,"attrs":[1,2]}`, "attrs", "must be a JSON object")
	f(`{`+base+`,"attrs":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{}}}}}}}}}}`, "attrs.a.b.c.d.e.f.g.h", "nests deeper than 8 levels")
	f(`{`+base+`,"id":"has space"}`, "id", `has ' ' at byte 3`)
	f(`{"kind":"login","tenant":"acme","ip":"203.0.113.7","login":"a","action":"hack"}`, "action", `"hack" is not one of success, failure, mfa, logout`)
	f(`{"kind":"source_change","tenant":"acme","repo":"r","login":"a","action":"create","protocol":"ftp"}`, "protocol", `"ftp" is not one of ssh, https`)
	f(`{"kind":"source_change","tenant":"acme","repo":"r","login":"a","action":"create","protocol":"ssh","new_commit":"xyz"}`, "new_commit", "not a 4-64 digit hexadecimal")
	f(`{"kind":"connection","tenant":"acme",`, "", "ends inside a value")
	f(`{"kind":"connection"} {"kind":"login"}`, "", "more than one JSON value")
	f(``, "", "empty line")
	f(`not json`, "", "invalid JSON: expected 'null' but found invalid token")
	f(`{"kind":"connection","Tenant":"acme","ip":"1.2.3.4"}`, "Tenant", "is not a v1 event member")
	f("{\"kind\":\"connection\",\"tenant\":\"acme\",\"ip\":\"1.2.3.4\",\"path\":\"\xff\"}", "", "not valid UTF-8")
	f(`{`+base+`,"path":"`+strings.Repeat("a", 17000)+`"}`, "", "the limit is 16384")
	o := opts()
	o.Tenants = map[string]bool{"globex": true}
	if _, err := Decode([]byte(`{`+base+`}`), o); !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), `this sender may not write for tenant "acme"`) {
		t.Errorf("tenant outside the token's tenants: %v; want ErrNotAllowed naming acme", err)
	}
}

// Regression test: any sender could write access_audit events (forging the
// access log) and pick any retention class. Senders get explicit kinds and
// classes; a refusal names what is allowed.
func TestKindsAndClassesPerSender(t *testing.T) {
	o := opts()
	o.Classes = map[string]bool{"security": true, "analytics": true}
	o.DefaultClass = "security"
	o.Kinds = map[Kind]bool{KindLogin: true, KindConnection: true}
	o.AllowedClasses = map[string]bool{"security": true}
	f := func(line, field, reason string) {
		t.Helper()
		_, err := Decode([]byte(line), o)
		var fe *FieldError
		if !errors.As(err, &fe) || !errors.Is(err, ErrNotAllowed) || fe.Field != field || !strings.Contains(fe.Reason, reason) {
			t.Errorf("Decode(%s) = %v; want ErrNotAllowed on %q containing %q", line, err, field, reason)
		}
	}
	f(`{"kind":"access_audit","tenant":"acme","login":"x","action":"query","purpose":"p"}`, "kind", "may not send access_audit events (its credentials allow connection, login)")
	f(`{"kind":"login","tenant":"acme","login":"x","action":"success","ip":"192.0.2.1","class":"analytics"}`, "class", `may not write to retention class "analytics" (its credentials allow security)`)
	o.AllowedClasses = map[string]bool{"analytics": true}
	f(`{"kind":"login","tenant":"acme","login":"x","action":"success","ip":"192.0.2.1"}`, "class", `class "security" (the default class)`)
	if _, err := Decode([]byte(`{"kind":"login","tenant":"acme","login":"x","action":"success","ip":"192.0.2.1","class":"analytics"}`), o); err != nil {
		t.Errorf("allowed kind and class refused: %v", err)
	}
	// An unknown class is a plain validation error, not a permission one.
	if _, err := Decode([]byte(`{"kind":"login","tenant":"acme","login":"x","action":"success","ip":"192.0.2.1","class":"legal"}`), o); err == nil || errors.Is(err, ErrNotAllowed) {
		t.Errorf("unknown class: %v; want a validation error that is not ErrNotAllowed", err)
	}
}

func TestRedaction(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	line := `{"kind":"login","tenant":"acme","login":"alice","ip":"203.0.113.7","action":"success",` +
		`"path":"/login?user=alice&password=` + secret + `&next=%2F&access_token=` + secret + `",` +
		`"attrs":{"Password":"` + secret + `","http":{"headers":{"Authorization":"Bearer ` + secret + `","Cookie":"sid=` + secret + `","X-Api-Key":"` + secret + `","accept":"*/*"}},` +
		`"clone_url":"https://bob:` + secret + `@git.example.org/x.git","pem":"-----BEGIN OPENSSH PRIVATE KEY-----\n` + secret + `","list":["ok","Bearer ` + secret + `"],"pwd":"` + secret + `","passage":"kept","session_id":"kept-too"}}`
	e := decode(t, line)
	out := string(AppendJSON(nil, e))
	if strings.Contains(out, secret) {
		t.Fatalf("a secret survived decoding:\n%s", out)
	}
	// Two query values, Password, Authorization, Cookie, X-Api-Key,
	// clone_url, pem, one list item and pwd.
	if e.Redacted != 10 {
		t.Errorf("redacted = %d; want 10\n%s", e.Redacted, out)
	}
	for _, kept := range []string{`"passage":"kept"`, `"session_id":"kept-too"`, `"accept":"*/*"`, `password=REDACTED`, `next=%2F`, `user=alice`} {
		if !strings.Contains(out, kept) {
			t.Errorf("redaction removed too much: %s missing from\n%s", kept, out)
		}
	}
}

func TestParseRoundTrip(t *testing.T) {
	line := `{"id":"l1","time":"2026-11-29T05:00:00.123456789Z","kind":"login","tenant":"acme","login":"alice","ip":"2001:db8::1","action":"mfa","port":22,"attrs":{"n":1.50,"s":"x\ty\"z"}}`
	e := decode(t, line)
	first := AppendJSON(nil, e)
	p, err := Parse(first)
	if err != nil {
		t.Fatalf("Parse(%s): %v", first, err)
	}
	if second := AppendJSON(nil, p); string(second) != string(first) {
		t.Errorf("canonical form is not stable:\n%s%s", first, second)
	}
	if !json.Valid(first[:len(first)-1]) {
		t.Errorf("canonical form is not valid JSON: %s", first)
	}
}

func TestDeriveID(t *testing.T) {
	ts := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	a := DeriveID(ts, []byte("web"), []byte("line"))
	if a != DeriveID(ts, []byte("web"), []byte("line")) {
		t.Fatal("DeriveID is not deterministic")
	}
	if a == DeriveID(ts, []byte("web"), []byte("line2")) || a == DeriveID(ts, []byte("webl"), []byte("ine")) {
		t.Fatal("DeriveID collides on different parts")
	}
	if len(a) != 36 || a[14] != '7' || !strings.ContainsRune("89ab", rune(a[19])) {
		t.Errorf("DeriveID = %s; not UUIDv7 layout", a)
	}
	if b := DeriveID(ts.Add(time.Millisecond), []byte("x")); b[:13] <= a[:13] {
		t.Errorf("IDs do not sort by time: %s then %s", a, b)
	}
	// Without an id, a retry of the same line derives the same ID.
	l := `{"kind":"connection","tenant":"acme","ip":"203.0.113.7","time":"2026-11-29T05:00:00Z"}`
	x, y := decode(t, l), decode(t, l)
	if x.ID == "" || x.ID != y.ID {
		t.Errorf("derived IDs %q and %q differ for the same line", x.ID, y.ID)
	}
}

func TestParseTime(t *testing.T) {
	for _, s := range []string{"2026-11-29T05:00:00.123456789Z", "2028-02-29T23:59:59.999999999Z", "2026-11-29T05:00:00+02:00", "2026-11-29T05:00:00.5Z"} {
		want, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseTime(s)
		if err != nil || !got.Equal(want) || got.Location() != time.UTC && got.Equal(got.UTC()) == false {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, bad := range []string{"2026-02-30T00:00:00.000000000Z", "2026-13-01T00:00:00.000000000Z", "2026-11-29T24:00:00.000000000Z", "2026-11-29T05:00:00.00000000xZ", "x"} {
		if _, err := ParseTime(bad); err == nil {
			t.Errorf("ParseTime(%q) accepted", bad)
		}
	}
}

// TestDecodeFieldsAt: the time as a value is checked as its text is, and
// a refusal quotes it in RFC 3339.
func TestDecodeFieldsAt(t *testing.T) {
	base := Fields{Kind: "connection", Tenant: "acme", IP: "203.0.113.7"}
	for _, tc := range []struct {
		at   time.Time
		want string // the refusal, or "" to accept
	}{
		{now.Add(-time.Hour), ""},
		{now.Add(-48 * time.Hour), ""},
		{now.Add(time.Hour), "ahead of the server clock"},
		{time.Date(1999, 12, 31, 23, 0, 0, 0, time.UTC), "1999-12-31T23:00:00Z is before 2000-01-01"},
	} {
		f := base
		f.At = tc.at
		e, err := DecodeFields(&f, opts())
		if tc.want == "" {
			if err != nil || !e.Time.Equal(tc.at) || e.Time.Location() != time.UTC || e.Late != (now.Sub(tc.at) > time.Hour) {
				t.Errorf("%v: %v, %+v", tc.at, err, e)
			}
			continue
		}
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "time" || !strings.Contains(fe.Reason, tc.want) {
			t.Errorf("%v: %v; want a time error with %q", tc.at, err, tc.want)
		}
	}
	// Time, when set, wins over At.
	f := base
	f.At, f.Time = now.Add(-time.Hour), now.Add(-2*time.Hour).Format(time.RFC3339Nano)
	if e, err := DecodeFields(&f, opts()); err != nil || !e.Time.Equal(now.Add(-2*time.Hour)) {
		t.Errorf("Time and At: %v, %v", err, e)
	}
}
