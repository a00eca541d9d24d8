package event

import (
	"strings"
	"testing"

	"github.com/custodylog/custody/internal/secret"
)

const testPseudonymKey = "analytics-test-key-0123456789abcdef"

func analyticsOptions(key string) Options {
	o := opts()
	o.Classes = map[string]bool{"security": true, "analytics": true}
	c := DefaultConfig()
	c.Minimise = []Minimise{{Class: "analytics", IP: "truncate", Port: "drop", UserAgent: "summary", Login: "pseudonym", Session: "pseudonym", PseudonymKey: secret.String(key)}}
	return o.WithConfig(c)
}

func TestMinimise(t *testing.T) {
	o := analyticsOptions(testPseudonymKey)
	const ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.127 Safari/537.36"
	f := func(ip, wantIP string) *Event {
		t.Helper()
		line := `{"kind":"login","class":"analytics","tenant":"acme","login":"alice@example.org","session":"sess-91f2","ip":"` + ip + `","port":51234,"action":"success","user_agent":"` + ua + `"}`
		e, err := Decode([]byte(line), o)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.IP.String(); got != wantIP {
			t.Errorf("ip %s minimised to %s; want %s", ip, got, wantIP)
		}
		out := string(AppendJSON(nil, e))
		for _, full := range []string{ip, "alice@example.org", "sess-91f2", "51234", "6478", "Win64"} {
			if full != wantIP && strings.Contains(out, full) {
				t.Errorf("%q survived minimisation:\n%s", full, out)
			}
		}
		if e.UserAgent != "Chrome 126; Windows; Desktop" {
			t.Errorf("user_agent = %q; want the summary", e.UserAgent)
		}
		if !strings.HasPrefix(e.Login, "p-") || len(e.Login) != 34 || !strings.HasPrefix(e.Session, "p-") {
			t.Errorf("login %q, session %q; want p- pseudonyms", e.Login, e.Session)
		}
		return e
	}
	a := f("203.0.113.77", "203.0.0.0")
	b := f("2001:db8:1234:5678::9", "2001:db8:1234::")
	if a.Login != b.Login {
		t.Errorf("one login, two pseudonyms: %s, %s", a.Login, b.Login)
	}
	if a.ID == b.ID {
		t.Error("two different lines got one derived ID")
	}
	// Another key, another pseudonym: the pseudonym means nothing
	// without the class's key.
	e, err := Decode([]byte(`{"kind":"login","class":"analytics","tenant":"acme","login":"alice@example.org","ip":"203.0.113.77","action":"success"}`), analyticsOptions(strings.Repeat("k", 40)))
	if err != nil {
		t.Fatal(err)
	}
	if e.Login == a.Login {
		t.Error("the pseudonym does not depend on the key")
	}
	// Other classes keep every member.
	e, err = Decode([]byte(`{"kind":"login","tenant":"acme","login":"alice@example.org","ip":"203.0.113.77","port":51234,"action":"success","user_agent":"`+ua+`"}`), o)
	if err != nil {
		t.Fatal(err)
	}
	if e.Class != "security" || e.IP.String() != "203.0.113.77" || e.Login != "alice@example.org" || e.Port != 51234 || e.UserAgent != ua {
		t.Errorf("a security event was minimised: %s", AppendJSON(nil, e))
	}
}

func TestSummariseUA(t *testing.T) {
	f := func(ua, want string) {
		t.Helper()
		if got := summariseUA(ua); got != want {
			t.Errorf("summariseUA(%q) = %q; want %q", ua, got, want)
		}
	}
	f("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "Safari 17; iOS; Mobile")
	f("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128; Linux; Desktop")
	f("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "unknown; unknown; Bot")
	f("git/2.43.0", "unknown; unknown; unknown")
}

func TestMinimiseConfig(t *testing.T) {
	c := DefaultConfig()
	c.Minimise = []Minimise{
		{Class: "analytics", IP: "half", Login: "pseudonym", PseudonymKey: "short"},
		{Class: "analytics"},
		{Login: "pseudonym"},
	}
	err := c.Validate()
	for _, w := range []string{
		`minimise[0].ip: "half" is not keep or truncate`,
		"minimise[0].pseudonym_key: is 5 characters; at least 32 are required",
		`minimise[1].class: "analytics" already has rules at minimise[0]`,
		"minimise[2].class: is required",
		"minimise[2].pseudonym_key: is required for pseudonyms (set pseudonym_key_file or CUSTODY_PSEUDONYM_KEY_)",
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("Validate() = %v; want it to contain %q", err, w)
		}
	}
	if err := c.CheckClasses(map[string]bool{"security": true}); err == nil || !strings.Contains(err.Error(), `minimise[0].class: "analytics" is not a retention class`) {
		t.Errorf("CheckClasses = %v; want the unknown class named", err)
	}
}
