package serve

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"go.uber.org/zap"
)

type jwtRig struct {
	url        string
	rsaKey     *rsa.PrivateKey
	ecKey      *ecdsa.PrivateKey
	pemPublic  []byte
	jwksPublic []byte
}

func newJWTRig(t *testing.T) *jwtRig {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &rk.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"},
		{Key: &ek.PublicKey, KeyID: "k2", Algorithm: "ES256", Use: "sig"},
	}}
	b, _ := json.Marshal(set)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "jwks.json"), b, 0o644)
	der, _ := x509.MarshalPKIXPublicKey(&rk.PublicKey)
	cfg := Defaults()
	cfg.OIDC = OIDC{Issuer: "https://idp.test", Audience: "custody", JWKSFile: filepath.Join(dir, "jwks.json"),
		Roles: []GroupRole{{Group: "custody-inv-acme", Role: Investigator, Tenants: []string{"acme"}}, {Group: "custody-legal", Role: Legal}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := New(context.Background(), cfg, Deps{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return &jwtRig{url: hs.URL, rsaKey: rk, ecKey: ek, pemPublic: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), jwksPublic: b}
}

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, c map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// hand builds a token with any header, signed by HMAC-SHA256 under secret
// (or unsigned when secret is nil).
func hand(header, claims map[string]any, secret []byte) string {
	enc := func(v any) string { b, _ := json.Marshal(v); return base64.RawURLEncoding.EncodeToString(b) }
	in := enc(header) + "." + enc(claims)
	if secret == nil {
		return in + "."
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(in))
	return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (r *jwtRig) whoami(t *testing.T, tok string) (int, Identity) {
	t.Helper()
	req, _ := http.NewRequest("GET", r.url+"/v1/whoami", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var id Identity
	json.Unmarshal(b, &id)
	return resp.StatusCode, id
}

func claims(mod func(map[string]any)) map[string]any {
	now := time.Now()
	c := map[string]any{"iss": "https://idp.test", "aud": "custody", "sub": "alice@example.org", "groups": []string{"staff", "custody-inv-acme"},
		"iat": now.Unix(), "nbf": now.Add(-time.Minute).Unix(), "exp": now.Add(10 * time.Minute).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

// A JWT from the identity provider authenticates, and its groups give the
// role and tenant scope; every forged or broken one is refused.
func TestJWTAuthentication(t *testing.T) {
	r := newJWTRig(t)
	code, id := r.whoami(t, sign(t, jose.RS256, r.rsaKey, "k1", claims(nil)))
	if code != 200 || id.Name != "alice@example.org" || id.Role != Investigator || strings.Join(id.Tenants, ",") != "acme" || id.Via != "oidc" {
		t.Fatalf("valid RS256 token: %d %+v", code, id)
	}
	code, id = r.whoami(t, sign(t, jose.ES256, r.ecKey, "k2", claims(func(c map[string]any) { c["groups"] = "custody-legal" })))
	if code != 200 || id.Role != Legal || len(id.Tenants) != 0 {
		t.Fatalf("valid ES256 token of legal: %d %+v", code, id)
	}
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, tok := range map[string]string{
		"alg none":                   hand(map[string]any{"alg": "none", "typ": "JWT"}, claims(nil), nil),
		"HS256 keyed with the PEM":   hand(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims(nil), r.pemPublic),
		"HS256 keyed with the JWKS":  hand(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "k1"}, claims(nil), r.jwksPublic),
		"wrong key":                  sign(t, jose.RS256, other, "k1", claims(nil)),
		"wrong issuer":               sign(t, jose.RS256, r.rsaKey, "k1", claims(func(c map[string]any) { c["iss"] = "https://evil.test" })),
		"wrong audience":             sign(t, jose.RS256, r.rsaKey, "k1", claims(func(c map[string]any) { c["aud"] = "another-service" })),
		"expired":                    sign(t, jose.RS256, r.rsaKey, "k1", claims(func(c map[string]any) { c["exp"] = time.Now().Add(-10 * time.Minute).Unix() })),
		"not yet valid":              sign(t, jose.RS256, r.rsaKey, "k1", claims(func(c map[string]any) { c["nbf"] = time.Now().Add(10 * time.Minute).Unix() })),
		"no group mapped to a role":  sign(t, jose.RS256, r.rsaKey, "k1", claims(func(c map[string]any) { c["groups"] = []string{"staff"} })),
		"disallowed algorithm PS256": sign(t, jose.PS256, r.rsaKey, "k1", claims(nil)),
		"signature altered":          func() string { s := sign(t, jose.RS256, r.rsaKey, "k1", claims(nil)); return s[:len(s)-8] + "AAAAAAAA" }(),
	} {
		if code, id := r.whoami(t, tok); code != http.StatusUnauthorized {
			t.Errorf("%s: %d %+v; want 401", name, code, id)
		}
	}
}

func TestOIDCConfigRefusals(t *testing.T) {
	for _, c := range []struct {
		o    OIDC
		want string
	}{
		{OIDC{Audience: "x"}, "oidc.issuer: is required"},
		{OIDC{Issuer: "https://i", JWKSFile: "f", Roles: []GroupRole{{Group: "g", Role: Legal}}}, "oidc.audience: is required"},
		{OIDC{Issuer: "https://i", Audience: "a", Roles: []GroupRole{{Group: "g", Role: Legal}}}, "set exactly one of jwks_file and jwks_url"},
		{OIDC{Issuer: "https://i", Audience: "a", JWKSURL: "http://idp.example/jwks", Roles: []GroupRole{{Group: "g", Role: Legal}}}, "must be https"},
		{OIDC{Issuer: "https://i", Audience: "a", JWKSFile: "f", Algorithms: []string{"HS256"}, Roles: []GroupRole{{Group: "g", Role: Legal}}}, `"HS256" is not an asymmetric`},
		{OIDC{Issuer: "https://i", Audience: "a", JWKSFile: "f"}, "oidc.roles: map at least one group"},
		{OIDC{Issuer: "https://i", Audience: "a", JWKSFile: "f", Roles: []GroupRole{{Group: "g", Role: "root"}}}, `"root" is not investigator`},
		{OIDC{Console: OIDCConsole{ClientID: "c"}}, "oidc.issuer: is required"},
		{OIDC{Issuer: "https://i", Audience: "a", JWKSFile: "f", Roles: []GroupRole{{Group: "g", Role: Legal}},
			Console: OIDCConsole{ClientID: "c", AuthURL: "http://idp.example/auth", TokenURL: "https://idp.example/token", RedirectURL: "https://custody.example/sign-in/oidc/callback"}}, "oidc.console.auth_url"},
		{OIDC{Issuer: "https://i", Audience: "a", JWKSFile: "f", Roles: []GroupRole{{Group: "g", Role: Legal}},
			Console: OIDCConsole{ClientID: "c", AuthURL: "https://idp.example/auth", TokenURL: "https://idp.example/token", RedirectURL: "https://custody.example/callback"}}, "must end in /sign-in/oidc/callback"},
		{OIDC{Issuer: "https://i", Audience: "a", JWKSFile: "f", Roles: []GroupRole{{Group: "g", Role: Legal}},
			Console: OIDCConsole{AuthURL: "https://idp.example/auth"}}, "oidc.console.client_id: is required"},
	} {
		if err := c.o.validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v; want %q", c.o, err, c.want)
		}
	}
}
