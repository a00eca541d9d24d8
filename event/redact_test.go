package event

import (
	"strings"
	"testing"
)

func TestSensitiveKey(t *testing.T) {
	f := func(name string, want bool) {
		t.Helper()
		if got := SensitiveKey(name); got != want {
			t.Errorf("SensitiveKey(%q) = %v; want %v", name, got, want)
		}
	}
	for _, n := range []string{"password", "Password", "passwd", "db_password", "dbPassword", "password2", "new-passphrase",
		"secret", "client_secret", "clientSecret", "AWS_SECRET_ACCESS_KEY", "token", "access_token", "accessToken", "accesstoken",
		"X-Auth-Token", "refresh_token", "id_token", "cookie", "Set-Cookie", "authorization", "Proxy-Authorization",
		"api_key", "apiKey", "X-Api-Key", "apikey", "private_key", "privateKey", "credentials", "signature", "X-Hub-Signature",
		"jwt", "otp", "otp_code", "mfa_code", "pin_code", "user[password]", "pass", "pwd", "auth", "key", "sig", "pin"} {
		f(n, true)
	}
	// Regression: substring matching dropped these innocent names.
	for _, n := range []string{"footprint", "hotplug", "secretary", "passage", "keyboard", "key_id", "auth_method", "author",
		"tokenizer", "session_id", "monkey", "pinned", "signal", "user", "next", "item", "sid", "", "_", "passport", "designation"} {
		f(n, false)
	}
}

func TestSensitiveValue(t *testing.T) {
	f := func(v string, want bool) {
		t.Helper()
		if got := SensitiveValue(v); got != want {
			t.Errorf("SensitiveValue(%q) = %v; want %v", v, got, want)
		}
	}
	f("-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk=\n-----END OPENSSH PRIVATE KEY-----", true)
	f("-----BEGIN RSA PRIVATE KEY-----", true)
	f("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl", true)
	f("ghp_0123456789abcdefABCDEF0123456789abcd", true)
	f("github_pat_11AAAAAAA0123456789_abcdefghijk", true)
	f("glpat-0123456789abcdefghij", true)
	f("xoxb-1234-5678-abcdefghijkl", true)
	f("AKIAIOSFODNN7EXAMPLE", true)
	f("sk_live_0123456789abcdef01", true)
	f("cst_Qm9vdHN0cmFwIHRva2VuIGZvciBjdXN0b2R5IHNlcnZl", true) // custody serve tokens
	f("-----BEGIN CERTIFICATE-----", false)                     // a certificate is public
	f("eyJ not a jwt", false)
	f("ghp_short", false)
	f("Mozilla/5.0 (X11; Linux x86_64)", false)
	f("AKIA", false)
}

// TestScrub is one row per rule: what a sender sends in any string member,
// what is stored.
func TestScrub(t *testing.T) {
	f := func(in, want string, n int) {
		t.Helper()
		got, k := Scrub(in)
		if got != want || k != n {
			t.Errorf("Scrub(%q) = %q, %d; want %q, %d", in, got, k, want, n)
		}
	}
	// Rule 1: parameters in queries, fragments, ';' lists, free text, headers.
	f("/login?user=alice&password=s3cr3t&next=%2F", "/login?user=alice&password=REDACTED&next=%2F", 1)
	f("https://shop.example/cb?code=1&access_token=abc#x", "https://shop.example/cb?code=1&access_token=REDACTED#x", 1)
	f("https://app.example/#access_token=abc&state=1", "https://app.example/#access_token=REDACTED&state=1", 1)
	f("/cart;jsessionid=1;token=abc?x=1", "/cart;jsessionid=1;token=REDACTED", 1) // '?' may be part of a value
	f("/cart;jsessionid=1;token=abc&x=1", "/cart;jsessionid=1;token=REDACTED&x=1", 1)
	f("a=1;password=x;b=2", "a=1;password=REDACTED;b=2", 1)
	f("/p?access%5Ftoken=abc", "/p?access%5Ftoken=REDACTED", 1)
	f("/p?user%5Bpassword%5D=abc", "/p?user%5Bpassword%5D=REDACTED", 1)
	f("retry with password=hunter2 later", "retry with password=REDACTED later", 1)
	f("Cookie: sid=abc; theme=dark", "Cookie: REDACTED", 1)
	f("Cookie: a=1\nAccept: */*", "Cookie: REDACTED\nAccept: */*", 1)
	f("X-Api-Key: 0123abcd", "X-Api-Key: REDACTED", 1)
	f("/search?footprint=1&hotplug=2&secretary=3", "/search?footprint=1&hotplug=2&secretary=3", 0)
	f("/?password=", "/?password=", 0)
	f("x?password=REDACTED", "x?password=REDACTED", 0) // already redacted: not counted twice
	// Rule 2: authorization credentials and URL userinfo.
	f("Bearer eyJhbGci.abc-def", "Bearer REDACTED", 1)
	f("curl/8 Authorization: Bearer abc.def-123 extra", "curl/8 Authorization: REDACTED", 1)
	f("curl/8 (Bearer abc.def-123) extra", "curl/8 (Bearer REDACTED) extra", 1)
	f("Basic YWxpY2U6aHVudGVyMg==", "Basic REDACTED", 1)
	f("Token 0123456789abcdef", "Token REDACTED", 1)
	f(`Digest username="a", response="6629fae49393a05397450978507c4ef1"`, "Digest REDACTED", 1)
	f("Basic plan for Bearer instruments", "Basic plan for Bearer instruments", 0)
	f("https://x-access-token:ghs_abc@github.com/acme/shop.git", "https://REDACTED@github.com/acme/shop.git", 1)
	f("https://ghp_0123456789abcdef@github.com/acme/shop", "https://REDACTED@github.com/acme/shop", 1)
	f("ssh://git@github.com/acme/shop.git", "ssh://git@github.com/acme/shop.git", 0)
	f("ftp://anna:pw@files.example/x", "ftp://REDACTED@files.example/x", 1)
	f("see https://a:b@h1/ and https://c:d@h2/", "see https://REDACTED@h1/ and https://REDACTED@h2/", 2)
	f("user@example.org", "user@example.org", 0)
	f("git@github.com:acme/shop.git", "git@github.com:acme/shop.git", 0)
	// Nothing to do: returned as is.
	f("Mozilla/5.0", "Mozilla/5.0", 0)
	f("", "", 0)
}

// TestRedactionEveryMember sends the canaries found in an end-to-end check
// (issue 9) through Decode: a secret in any top-level member or in attrs
// never survives, and the event stays valid.
func TestRedactionEveryMember(t *testing.T) {
	const canary = "CANARY9f8e7d6c5b"
	f := func(line string, n int) {
		t.Helper()
		e, err := Decode([]byte(line), opts())
		if err != nil {
			t.Fatalf("Decode(%s): %v", line, err)
		}
		out := string(AppendJSON(nil, e))
		if strings.Contains(out, canary) {
			t.Errorf("canary survived:\n%s", out)
		}
		if e.Redacted != n {
			t.Errorf("redacted = %d; want %d\n%s", e.Redacted, n, out)
		}
	}
	base := `"kind":"connection","tenant":"acme","ip":"192.0.2.7"`
	f(`{`+base+`,"user_agent":"Bearer `+canary+`"}`, 1)
	f(`{`+base+`,"path":"https://bob:`+canary+`@shop.example/cart"}`, 1)
	f(`{"kind":"source_change","tenant":"acme","repo":"https://x-access-token:`+canary+`@git.example/acme/shop.git","login":"bob","action":"modify","protocol":"https"}`, 1)
	f(`{`+base+`,"session":"Basic Ym9iOkNBTkFSWTlmOGU3ZDZjNWI="}`, 1) // base64 of bob:CANARY...
	f(`{`+base+`,"attrs":{"referer":"https://shop.example/?access_token=`+canary+`&password=`+canary+`"}}`, 2)
	f(`{`+base+`,"path":"/cb#access_token=`+canary+`"}`, 1)
	f(`{`+base+`,"path":"/cart;token=`+canary+`"}`, 1)
	f(`{`+base+`,"app":"`+canary[:0]+`ghp_`+canary+canary+`"}`, 1)
	f(`{`+base+`,"attrs":{"note":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJDQU5BUlkifQ.`+canary+`"}}`, 1)
	f(`{"kind":"activity","tenant":"acme","login":"carol","action":"deploy password=`+canary+`"}`, 1)
	// Innocent members stay as sent.
	e, err := Decode([]byte(`{`+base+`,"path":"/search?footprint=1","attrs":{"hotplug":true,"secretary":"anna","footprint":"x"}}`), opts())
	if err != nil {
		t.Fatal(err)
	}
	if e.Redacted != 0 || e.Path != "/search?footprint=1" || len(e.Attrs) != 3 {
		t.Errorf("innocent members changed: redacted %d, path %q, attrs %v", e.Redacted, e.Path, e.Attrs)
	}
}
