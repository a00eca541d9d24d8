package serve

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/browsertest"
	"github.com/custodylog/custody/internal/testkit/memstore"
)

// fakeIdP is an OpenID provider whose user is signed in already: its
// authorization endpoint answers at once with a code, and its token
// endpoint checks the code, the redirect URI and the PKCE verifier (RFC
// 7636 S256) before it issues an ID token with the nonce it was given.
type fakeIdP struct {
	*httptest.Server
	key      *rsa.PrivateKey
	clientID string
	redirect string

	mu    sync.Mutex
	codes map[string]grant
	// what the next ID token says, and how it goes wrong
	groups     []string
	wrongNonce bool
	refuse     string // answer the authorization request with this error
	// page: answer with a page whose link the user follows back, as a
	// provider that asks for a password does (a navigation the provider's
	// site starts), instead of an immediate redirect
	page bool
}

type grant struct{ challenge, nonce string }

func newFakeIdP(t *testing.T, clientID string) *fakeIdP {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeIdP{key: k, clientID: clientID, codes: map[string]grant{}, groups: []string{"custody-legal"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.Server = httptest.NewServer(mux)
	t.Cleanup(p.Close)
	return p
}

func (p *fakeIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" || q.Get("client_id") != p.clientID || q.Get("redirect_uri") != p.redirect ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" || !strings.Contains(q.Get("scope"), "openid") {
		http.Error(w, "bad authorization request: "+r.URL.RawQuery, http.StatusBadRequest)
		return
	}
	back := p.redirect + "?state=" + q.Get("state")
	if p.refuse != "" {
		http.Redirect(w, r, back+"&error="+p.refuse, http.StatusSeeOther)
		return
	}
	code := randomString()
	p.mu.Lock()
	p.codes[code] = grant{challenge: q.Get("code_challenge"), nonce: q.Get("nonce")}
	p.mu.Unlock()
	if p.page {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><title>IdP</title><a id="approve" href="%s">Continue to Custody</a>`, html.EscapeString(back+"&code="+code))
		return
	}
	http.Redirect(w, r, back+"&code="+code, http.StatusSeeOther)
}

func (p *fakeIdP) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	p.mu.Lock()
	g, ok := p.codes[r.PostForm.Get("code")]
	delete(p.codes, r.PostForm.Get("code")) // a code is good once
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	if !ok || r.PostForm.Get("grant_type") != "authorization_code" || r.PostForm.Get("client_id") != p.clientID || r.PostForm.Get("redirect_uri") != p.redirect ||
		base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	nonce := g.nonce
	if p.wrongNonce {
		nonce = "another-sign-in"
	}
	now := time.Now()
	s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: p.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "idp-1"))
	claims, _ := json.Marshal(map[string]any{"iss": p.URL, "aud": p.clientID, "sub": "carol@example.org", "groups": p.groups, "nonce": nonce,
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix()})
	jws, _ := s.Sign(claims)
	idt, _ := jws.CompactSerialize()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": "opaque", "token_type": "Bearer", "expires_in": 300, "id_token": idt})
}

// consoleWithIdP serves the console with single sign-on against p.
func consoleWithIdP(t *testing.T, p *fakeIdP) string {
	t.Helper()
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "idp-1", Algorithm: "RS256", Use: "sig"}}})
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	os.WriteFile(jwks, set, 0o644)
	hs := httptest.NewUnstartedServer(nil)
	base := "http://" + hs.Listener.Addr().String()
	p.redirect = base + "/sign-in/oidc/callback"
	cfg := Defaults()
	cfg.OIDC = OIDC{Issuer: p.URL, Audience: "custody-api", JWKSFile: jwks,
		Roles:   []GroupRole{{Group: "custody-legal", Role: Legal}, {Group: "custody-inv-acme", Role: Investigator, Tenants: []string{"acme"}}},
		Console: OIDCConsole{ClientID: p.clientID, AuthURL: p.URL + "/authorize", TokenURL: p.URL + "/token", RedirectURL: p.redirect}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	keys := archivetest.Keyring(t)
	cases := NewCases(caseStore{memstore.New()}, keys.Signer, keys.Public, nil, time.Now)
	srv, err := New(context.Background(), cfg, Deps{Log: zap.NewNop(), Cases: cases})
	if err != nil {
		t.Fatal(err)
	}
	hs.Config.Handler = srv.Handler()
	hs.Start()
	t.Cleanup(hs.Close)
	return base
}

func whoamiWith(t *testing.T, c *http.Client, base string) (int, Identity) {
	t.Helper()
	resp, err := c.Get(base + "/v1/whoami")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var id Identity
	b, _ := io.ReadAll(resp.Body)
	json.Unmarshal(b, &id)
	return resp.StatusCode, id
}

// Single sign-on to the console: the authorization-code flow with PKCE
// gives a session whose identity and role come from the ID token's
// groups; a forged state, a replayed code, a wrong nonce, a refusal by
// the provider and a user in no mapped group each end at the sign-in page
// with no session.
func TestConsoleOIDCSignIn(t *testing.T) {
	p := newFakeIdP(t, "custody-console")
	base := consoleWithIdP(t, p)

	c := consoleClient(t, false)
	resp, err := c.Get(base + "/sign-in/oidc")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(page), "Signed in as carol@example.org") || !strings.Contains(string(page), `http-equiv="refresh"`) {
		t.Fatalf("after the provider's answer: %d\n%s", resp.StatusCode, page)
	}
	if code, id := whoamiWith(t, c, base); code != 200 || id.Name != "carol@example.org" || id.Role != Legal || id.Via != "console:oidc" {
		t.Fatalf("whoami with the single sign-on session: %d %+v", code, id)
	}

	try := func(name string, setup func(), want string) {
		t.Helper()
		c := consoleClient(t, false)
		setup()
		resp, err := c.Get(base + "/sign-in/oidc")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if code, _ := whoamiWith(t, c, base); code != http.StatusUnauthorized || !strings.Contains(string(b), want) {
			t.Errorf("%s: whoami %d; page:\n%s\nwant it to say %q", name, code, b, want)
		}
	}
	try("wrong nonce", func() { p.wrongNonce = true }, "nonce")
	p.wrongNonce = false
	try("no mapped group", func() { p.groups = []string{"staff"} }, "no group that maps to a role")
	p.groups = []string{"custody-legal"}
	try("provider refuses", func() { p.refuse = "access_denied" }, "refused the sign-in: access_denied")
	p.refuse = ""

	// A callback that did not start here (no login cookie, or another
	// state), and a code used twice.
	c = consoleClient(t, true)
	resp, err = c.Get(base + "/sign-in/oidc")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authz := resp.Header.Get("Location")
	resp, err = c.Get(authz)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	loginCookies := c.Jar.Cookies(nil)
	forger := consoleClient(t, true)
	forger.Jar.SetCookies(nil, loginCookies)
	forged := strings.Replace(callback, "state=", "state=x", 1)
	if resp, err := forger.Get(forged); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("callback with another state: %v %v; want 403", resp, err)
	}
	stranger := consoleClient(t, true)
	if resp, err := stranger.Get(callback); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("callback without the login cookie: %v %v; want 403", resp, err)
	}
	if resp, err := c.Get(callback); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the genuine callback: %v %v", resp, err)
	}
	replay := consoleClient(t, true)
	replay.Jar.SetCookies(nil, loginCookies) // the same sign-in, its code again
	resp, err = replay.Get(callback)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if code, _ := whoamiWith(t, replay, base); resp.StatusCode != http.StatusUnauthorized || code != http.StatusUnauthorized || !strings.Contains(string(b), "code exchange failed") {
		t.Errorf("a code used twice: %d, whoami %d\n%s", resp.StatusCode, code, b)
	}
}

// Single sign-on in a real browser, with the identity provider on another
// site (localhost against the console's 127.0.0.1): the login cookie must
// survive the provider's cross-site redirect back (SameSite=Lax), and the
// Strict session cookie must reach the console after it (the callback's
// page moves on by itself).
func TestConsoleOIDCSignInBrowser(t *testing.T) {
	ctx, _ := browsertest.New(t)
	p := newFakeIdP(t, "custody-console")
	p.URL = strings.Replace(p.URL, "127.0.0.1", "localhost", 1)
	p.page = true
	base := consoleWithIdP(t, p)
	browsertest.Do(t, ctx, "single sign-on",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS(`a[href="/sign-in/oidc"]`)),
		chromedp.Click(chromedp.CSS(`a[href="/sign-in/oidc"]`)),
		chromedp.WaitVisible(chromedp.CSS("#approve")), // at the provider
		chromedp.Click(chromedp.CSS("#approve")),
		chromedp.WaitVisible(chromedp.CSS("#who")),
	)
	if who := browsertest.Text(t, ctx, "#who"); !strings.Contains(who, "carol@example.org · legal") {
		t.Errorf("after single sign-on the header shows %q", who)
	}
	via, err := chromedp.Run(ctx, chromedp.Evaluate[string](`fetch('/v1/whoami', {credentials: 'same-origin'}).then(r => r.json()).then(j => j.via)`, chromedp.EvalAwaitPromise))
	if err != nil || via != "console:oidc" {
		t.Errorf("whoami from the page: via %q, %v", via, err)
	}
}

// caseStore gives the in-memory store the Write the case register uses
// (nothing is written here: the console lists cases on every page).
type caseStore struct{ *memstore.Store }

func (c caseStore) Write(ctx context.Context, name string, b []byte, _ store.WriteOptions) (string, error) {
	return "", c.Put(ctx, name, bytes.NewReader(b), int64(len(b)), store.Lock{})
}
