package serve

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// loopbackJar keeps cookies by name for one host, sending Secure ones over
// plain HTTP as browsers do for loopback (Go's cookiejar does not).
type loopbackJar struct {
	mu      sync.Mutex
	cookies map[string]*http.Cookie
}

func (j *loopbackJar) SetCookies(_ *url.URL, cs []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range cs {
		if c.MaxAge < 0 {
			delete(j.cookies, c.Name)
		} else {
			j.cookies[c.Name] = c
		}
	}
}

func (j *loopbackJar) Cookies(*url.URL) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*http.Cookie
	for _, c := range j.cookies {
		out = append(out, &http.Cookie{Name: c.Name, Value: c.Value})
	}
	return out
}

// consoleClient is a browser-like client: a cookie jar; with stop, no
// redirects followed, so each answer can be looked at.
func consoleClient(t *testing.T, stop bool) *http.Client {
	t.Helper()
	c := &http.Client{Jar: &loopbackJar{cookies: map[string]*http.Cookie{}}}
	if stop {
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return c
}

func cookieOf(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// signInForm fetches the sign-in page and returns its anti-CSRF value.
func signInForm(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	resp, err := c.Get(base + "/sign-in")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	_, rest, ok := strings.Cut(b.String(), `name="csrf" value="`)
	if !ok {
		t.Fatalf("no csrf field in the sign-in page:\n%s", b.String())
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func postForm(t *testing.T, c *http.Client, u string, form url.Values) *http.Response {
	t.Helper()
	resp, err := c.PostForm(u, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// The console's sessions: sign-in needs the form's anti-CSRF value and a
// valid token; the session cookie is HttpOnly, Secure and SameSite=Strict
// and sealed (a changed byte or a copy into another cookie is refused);
// state-changing API calls made with it need X-CSRF-Token; a token removed
// from the configuration ends its sessions; every page carries the CSP.
func TestConsoleSessions(t *testing.T) {
	r := newRig(t)
	key := strings.Repeat("5a", 32)
	withKey := func(c *Config) { c.Console.sessionKey, _ = parseSessionKey(key) }
	base := r.serve(t, strings.Join(r.st.KafkaBrokers, ","), withKey)
	c := consoleClient(t, true)

	resp, err := c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/sign-in" {
		t.Fatalf("GET / signed out: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if csrf := signInForm(t, c, base); csrf == "" {
		t.Fatal("the sign-in form has an empty csrf value")
	}
	if resp := postForm(t, c, base+"/sign-in", url.Values{"csrf": {"forged"}, "token": {r.tokens["legal"]}}); resp.StatusCode != http.StatusForbidden || cookieOf(resp, sessionCookie) != nil {
		t.Errorf("sign-in with a forged csrf value: %d", resp.StatusCode)
	}
	csrf := signInForm(t, c, base)
	if resp := postForm(t, c, base+"/sign-in", url.Values{"csrf": {csrf}, "token": {"cst_not_a_token_0123456789"}}); resp.StatusCode != http.StatusUnauthorized || cookieOf(resp, sessionCookie) != nil {
		t.Errorf("sign-in with a wrong token: %d", resp.StatusCode)
	}
	csrf = signInForm(t, c, base)
	resp = postForm(t, c, base+"/sign-in", url.Values{"csrf": {csrf}, "token": {r.tokens["legal"]}})
	sc := cookieOf(resp, sessionCookie)
	if resp.StatusCode != http.StatusSeeOther || sc == nil {
		t.Fatalf("sign-in: %d, cookie %v", resp.StatusCode, sc)
	}
	if !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/" {
		t.Errorf("session cookie flags: %+v", sc)
	}

	// The page: the identity, its anti-CSRF value, the CSP.
	resp, err = c.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") != contentSecurityPolicy || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("GET / signed in: %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	var se session
	srvSealer, _ := newSealer(mustKey(t, key))
	if err := srvSealer.open(sessionCookie, sc.Value, &se); err != nil || se.CSRF == "" || se.Token != HashToken(r.tokens["legal"]) {
		t.Fatalf("session: %+v %v", se, err)
	}

	api := func(method, path, csrf string, body any, cookie *http.Cookie) int {
		t.Helper()
		var rd *strings.Reader
		if body != nil {
			b, _ := json.Marshal(body)
			rd = strings.NewReader(string(b))
		} else {
			rd = strings.NewReader("")
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Content-Type", "application/json")
		if csrf != "" {
			req.Header.Set(csrfHeader, csrf)
		}
		req.AddCookie(cookie)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := api("GET", "/v1/whoami", "", nil, sc); code != 200 {
		t.Errorf("whoami with the session: %d", code)
	}
	open := CaseRequest{ID: "CON-1", Title: "t", LegalBasis: "b"}
	if code := api("POST", "/v1/cases", "", open, sc); code != http.StatusForbidden {
		t.Errorf("POST /v1/cases with the session and no X-CSRF-Token: %d; want 403", code)
	}
	if code := api("POST", "/v1/cases", "wrong", open, sc); code != http.StatusForbidden {
		t.Errorf("POST /v1/cases with a wrong X-CSRF-Token: %d; want 403", code)
	}
	if code := api("POST", "/v1/cases", se.CSRF, open, sc); code != http.StatusCreated {
		t.Errorf("POST /v1/cases with the session's X-CSRF-Token: %d; want 201", code)
	}
	tampered := *sc
	mid := len(sc.Value) / 2
	flip := byte('A')
	if sc.Value[mid] == 'A' {
		flip = 'B'
	}
	tampered.Value = sc.Value[:mid] + string(flip) + sc.Value[mid+1:]
	if code := api("GET", "/v1/whoami", "", nil, &tampered); code != http.StatusUnauthorized {
		t.Errorf("whoami with a changed cookie: %d; want 401", code)
	}
	moved := &http.Cookie{Name: sessionCookie, Value: mustSeal(t, srvSealer, loginCookie, se)}
	if code := api("GET", "/v1/whoami", "", nil, moved); code != http.StatusUnauthorized {
		t.Errorf("whoami with a value sealed for another cookie: %d; want 401", code)
	}
	expired := se
	expired.Exp = time.Now().Add(-time.Second).Unix()
	if code := api("GET", "/v1/whoami", "", nil, &http.Cookie{Name: sessionCookie, Value: mustSeal(t, srvSealer, sessionCookie, expired)}); code != http.StatusUnauthorized {
		t.Errorf("whoami with an expired session: %d; want 401", code)
	}
	// Another instance with the same key reads the session; without the
	// token in its configuration, it does not.
	other := r.serve(t, strings.Join(r.st.KafkaBrokers, ","), withKey)
	req, _ := http.NewRequest("GET", other+"/v1/whoami", nil)
	req.AddCookie(sc)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("whoami on a second instance with the same key: %v %v", resp, err)
	}
	revoked := r.serve(t, strings.Join(r.st.KafkaBrokers, ","), withKey, func(c *Config) {
		c.Tokens = c.Tokens[:0]
	})
	req, _ = http.NewRequest("GET", revoked+"/v1/whoami", nil)
	req.AddCookie(sc)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("whoami after the token left the configuration: %v %v; want 401", resp, err)
	}

	// Sign-out needs the anti-CSRF value too, and ends the session.
	if resp := postForm(t, c, base+"/sign-out", url.Values{}); resp.StatusCode != http.StatusForbidden {
		t.Errorf("sign-out without csrf: %d", resp.StatusCode)
	}
	resp = postForm(t, c, base+"/sign-out", url.Values{"csrf": {se.CSRF}})
	if gone := cookieOf(resp, sessionCookie); resp.StatusCode != http.StatusSeeOther || gone == nil || gone.MaxAge >= 0 {
		t.Errorf("sign-out: %d %v", resp.StatusCode, gone)
	}
}

func mustKey(t *testing.T, hex string) []byte {
	t.Helper()
	k, err := parseSessionKey(hex)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustSeal(t *testing.T, s *sealer, name string, v any) string {
	t.Helper()
	out, err := s.seal(name, v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Every role's console page renders whole, with the sections its role may
// use and no other (the API refuses the rest anyway).
func TestConsolePagePerRole(t *testing.T) {
	cfg := Defaults()
	key := strings.Repeat("7b", 32)
	cfg.Console.sessionKey, _ = parseSessionKey(key)
	for _, tk := range roleTokens {
		tk.SHA256 = HashToken("tok-" + tk.Name)
		cfg.Tokens = append(cfg.Tokens, tk)
	}
	srv, err := New(context.Background(), cfg, Deps{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	sl, _ := newSealer(mustKey(t, key))
	sections := map[Role][]string{
		Investigator: {`data-view="cases"`, `data-view="search"`},
		Legal:        {`data-view="cases"`, `data-view="search"`, `data-view="exports"`, `id="case-form"`, `id="search-export"`},
		Auditor:      {`data-view="cases"`, `data-view="exports"`, `data-view="access"`},
		Admin:        {`data-view="cases"`},
	}
	all := []string{`data-view="search"`, `data-view="exports"`, `data-view="access"`, `id="case-form"`, `id="search-export"`}
	for _, tk := range roleTokens {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: mustSeal(t, sl, sessionCookie, session{Token: HashToken("tok-" + tk.Name), CSRF: "c", Exp: time.Now().Add(time.Hour).Unix()})})
		srv.Handler().ServeHTTP(rec, req)
		page := rec.Body.String()
		if rec.Code != 200 || !strings.Contains(page, "Sign out") || !strings.HasSuffix(strings.TrimSpace(page), "</html>") {
			t.Errorf("%s: %d\n%s", tk.Name, rec.Code, page)
			continue
		}
		for _, sec := range all {
			if want := slices.Contains(sections[tk.Role], sec); strings.Contains(page, sec) != want {
				t.Errorf("%s (%s): %s shown %t; want %t", tk.Name, tk.Role, sec, !want, want)
			}
		}
	}
}

// FuzzSessionCookie: whatever a cookie holds, opening it never panics and
// never yields a session unless this key sealed it for this cookie name.
func FuzzSessionCookie(f *testing.F) {
	key := mustKeyF(f, strings.Repeat("3c", 32))
	sl, _ := newSealer(key)
	good, _ := sl.seal(sessionCookie, session{Token: HashToken("t"), CSRF: "c", Exp: 1 << 40})
	other, _ := sl.seal(loginCookie, login{CSRF: "c", Exp: 1 << 40})
	f.Add(good)
	f.Add(other)
	f.Add("")
	f.Add(good[:len(good)/2])
	f.Fuzz(func(t *testing.T, v string) {
		var se session
		if err := sl.open(sessionCookie, v, &se); err != nil {
			if err != errBadCookie {
				t.Fatalf("open(%q) = %v; every failure must be errBadCookie (no oracle)", v, err)
			}
			return
		}
		// Opened: it must be a value sealed by sl for sessionCookie, which
		// the fuzzer can only have copied from the seeds.
		if v != good {
			var want session
			if sl.open(sessionCookie, good, &want) != nil || se != want {
				t.Fatalf("opened a value not sealed here: %q -> %+v", v, se)
			}
		}
	})
}

func mustKeyF(f *testing.F, hex string) []byte {
	k, err := parseSessionKey(hex)
	if err != nil {
		f.Fatal(err)
	}
	return k
}
