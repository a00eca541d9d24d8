package serve

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/custodylog/custody/internal/secret"
)

// Console sign-in with single sign-on: the OAuth 2.0 authorization-code
// flow with PKCE (RFC 7636, S256) against the configured issuer. The state,
// the nonce and the PKCE verifier wait in the sealed login cookie; the ID
// token is verified as the API's bearer JWTs are (issuer, signature against
// the same key set, algorithm allowlist, expiry), with this client as its
// audience and the nonce checked, and its groups give the role.
// golang.org/x/oauth2 (already a dependency of go-oidc) makes the requests.

// OIDCConsole is serve.oidc.console. Empty ClientID: the console takes API
// tokens only.
type OIDCConsole struct {
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the secret of a confidential client
	// (CUSTODY_OIDC_CLIENT_SECRET overrides it); none: a public client,
	// protected by PKCE alone.
	ClientSecretFile string `yaml:"client_secret_file"`
	// AuthURL and TokenURL are the identity provider's endpoints.
	AuthURL  string `yaml:"auth_url"`
	TokenURL string `yaml:"token_url"`
	// RedirectURL is this server's /sign-in/oidc/callback as browsers
	// reach it, registered with the identity provider.
	RedirectURL string `yaml:"redirect_url"`
	// Scopes asked for; default openid, profile, email (add the one that
	// makes the provider send groups_claim, if it needs one).
	Scopes []string `yaml:"scopes"`

	clientSecret string
}

// Enabled reports whether the console offers single sign-on.
func (c *OIDCConsole) Enabled() bool { return c.ClientID != "" }

func (c *OIDCConsole) resolve(baseDir string) error {
	s, err := secret.Resolve("", c.ClientSecretFile, "CUSTODY_OIDC_CLIENT_SECRET", baseDir)
	if err != nil {
		return fmt.Errorf("oidc.console.client_secret_file: %w", err)
	}
	c.clientSecret = s.Reveal()
	return nil
}

func secureURL(s string) bool {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return false
	}
	h := u.Hostname()
	return u.Scheme == "https" || u.Scheme == "http" && (h == "127.0.0.1" || h == "localhost" || h == "::1")
}

func (c *OIDCConsole) validate(issuer string) error {
	if !c.Enabled() {
		if c.AuthURL != "" || c.TokenURL != "" || c.RedirectURL != "" || c.ClientSecretFile != "" {
			return errors.New("oidc.console.client_id: is required when any other oidc.console key is set")
		}
		return nil
	}
	var errs []error
	if issuer == "" {
		errs = append(errs, errors.New("oidc.console: needs oidc.issuer and its key set (the ID tokens are verified with them)"))
	}
	for _, u := range []struct{ key, v string }{{"auth_url", c.AuthURL}, {"token_url", c.TokenURL}, {"redirect_url", c.RedirectURL}} {
		if !secureURL(u.v) {
			errs = append(errs, fmt.Errorf("oidc.console.%s: %q must be an https URL (or http on loopback)", u.key, u.v))
		}
	}
	if u, err := url.Parse(c.RedirectURL); err == nil && u.Path != "/sign-in/oidc/callback" {
		errs = append(errs, fmt.Errorf("oidc.console.redirect_url: %q must end in /sign-in/oidc/callback, where this server takes the answer", c.RedirectURL))
	}
	return errors.Join(errs...)
}

// oidcLogin runs the console's single sign-on.
type oidcLogin struct {
	oauth  *oauth2.Config
	verify *oidc.IDTokenVerifier
	claims *jwtVerifier // maps claims to an identity
}

func newOIDCLogin(j *jwtVerifier, c OIDCConsole) *oidcLogin {
	scopes := c.Scopes
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", "email"}
	}
	return &oidcLogin{
		oauth: &oauth2.Config{ClientID: c.ClientID, ClientSecret: c.clientSecret, RedirectURL: c.RedirectURL, Scopes: scopes,
			Endpoint: oauth2.Endpoint{AuthURL: c.AuthURL, TokenURL: c.TokenURL, AuthStyle: oauth2.AuthStyleInParams}},
		verify: oidc.NewVerifier(j.cfg.Issuer, j.keys, &oidc.Config{ClientID: c.ClientID, SupportedSigningAlgs: j.algs}),
		claims: j,
	}
}

// oidcStart sends the browser to the identity provider.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	l := login{CSRF: randomString(), State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(), Exp: time.Now().Add(10 * time.Minute).Unix()}
	v, err := s.sessions.seal(loginCookie, l)
	if err != nil {
		http.Error(w, "cannot start a sign-in", http.StatusInternalServerError)
		return
	}
	setLoginCookie(w, v)
	securityHeaders(w.Header())
	http.Redirect(w, r, s.oidcLogin.oauth.AuthCodeURL(l.State, oidc.Nonce(l.Nonce), oauth2.S256ChallengeOption(l.Verifier)), http.StatusSeeOther)
}

// oidcCallback takes the identity provider's answer: it checks the state,
// exchanges the code with the PKCE verifier, verifies the ID token and its
// nonce, and starts a session for the identity its groups map to.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	l, ok := s.loginOf(r)
	switch {
	case q.Get("error") != "":
		s.denied.WithLabelValues("unauthenticated").Inc()
		s.showSignIn(w, http.StatusUnauthorized, "The identity provider refused the sign-in: "+q.Get("error")+" "+q.Get("error_description"))
		return
	case !ok || l.State == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(l.State)) != 1:
		s.denied.WithLabelValues("csrf").Inc()
		s.showSignIn(w, http.StatusForbidden, "The sign-in expired or did not start here. Try again.")
		return
	}
	clearCookie(w, loginCookie)
	id, err := s.oidcLogin.finish(r.Context(), q.Get("code"), l)
	if err != nil {
		s.denied.WithLabelValues("unauthenticated").Inc()
		s.log.Info("console single sign-on refused", zap.String("client", clientAddr(r)), zap.Error(err))
		s.showSignIn(w, http.StatusUnauthorized, "Single sign-on failed: "+err.Error())
		return
	}
	// The session lasts serve.console.session_ttl, not the ID token's few
	// minutes. The answer is a page that moves on to the console by
	// itself: this navigation came from the identity provider's site, and
	// a redirect would carry that over, so the browser would withhold the
	// new SameSite=Strict session cookie on the way to /.
	s.startSession(w, r, session{ID: &id}, id, true)
}

func (o *oidcLogin) finish(ctx context.Context, code string, l *login) (Identity, error) {
	if code == "" {
		return Identity{}, errors.New("the answer has no code")
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tok, err := o.oauth.Exchange(ctx, code, oauth2.VerifierOption(l.Verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("the code exchange failed: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return Identity{}, errors.New("the token response has no id_token (is the openid scope granted?)")
	}
	it, err := o.verify.Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("the ID token is not valid: %w", err)
	}
	if subtle.ConstantTimeCompare([]byte(it.Nonce), []byte(l.Nonce)) != 1 {
		return Identity{}, errors.New("the ID token's nonce is not this sign-in's")
	}
	id, err := o.claims.identity(it)
	if err != nil {
		return Identity{}, err
	}
	id.Via = "console:oidc"
	return id, nil
}

// setLoginCookie is setCookie with SameSite=Lax: the identity provider's
// redirect back is a cross-site navigation, on which browsers withhold
// Strict cookies. The login cookie holds no credential, only this
// sign-in's state, nonce and verifier, for ten minutes.
func setLoginCookie(w http.ResponseWriter, value string) {
	http.SetCookie(w, &http.Cookie{Name: loginCookie, Value: value, Path: "/", MaxAge: 600, HttpOnly: true, Secure: true, SameSite: http.SameSiteLaxMode})
}
