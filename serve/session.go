package serve

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Console sessions live in a cookie sealed with AES-256-GCM under the
// console's session key: any instance holding the key reads it, nobody
// else can read or forge it, and the server keeps no session state (several
// instances may run behind a load balancer). A session names the API
// token's hash, looked up again on every request, so a token removed from
// the configuration ends its sessions at once; an OIDC sign-in carries its
// identity and lasts serve.console.session_ttl.

const (
	sessionCookie = "custody_session"
	// loginCookie carries the sign-in form's anti-CSRF value (double
	// submit) and, during an OIDC sign-in, the state, nonce and PKCE
	// verifier; it lives for ten minutes.
	loginCookie = "custody_login"
	csrfHeader  = "X-CSRF-Token"
	csrfField   = "csrf"
)

// session is a signed-in console user.
type session struct {
	Token string    `json:"t,omitempty"` // the API token's SHA-256
	ID    *Identity `json:"i,omitempty"` // an OIDC sign-in's identity
	CSRF  string    `json:"c"`
	Exp   int64     `json:"e"` // Unix seconds
}

// login is the state of a sign-in in progress.
type login struct {
	CSRF     string `json:"c"`
	State    string `json:"s,omitempty"`
	Nonce    string `json:"n,omitempty"`
	Verifier string `json:"v,omitempty"`
	Exp      int64  `json:"e"`
}

// sealer seals and opens cookie values. The cookie's name is the
// additional data, so a value cannot be moved from one cookie to another.
type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("the console session key must be 32 bytes, not %d", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: g}, nil
}

func (s *sealer) seal(name string, v any) (string, error) {
	pt, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, pt, []byte(name))), nil
}

// errBadCookie covers every way a cookie can fail to open: which one is
// not told (an oracle for forgers).
var errBadCookie = errors.New("the cookie is not valid")

func (s *sealer) open(name, value string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) < s.aead.NonceSize()+s.aead.Overhead() {
		return errBadCookie
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, b[:n], b[n:], []byte(name))
	if err != nil {
		return errBadCookie
	}
	if err := json.Unmarshal(pt, v); err != nil {
		return errBadCookie
	}
	return nil
}

func randomString() string {
	var b [24]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// parseSessionKey reads the 64 hex digits of a session key.
func parseSessionKey(s string) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(b) != 32 {
		return nil, errors.New("want 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)")
	}
	return b, nil
}

// setCookie writes a console cookie: never readable by scripts, sent only
// over HTTPS (browsers count http://127.0.0.1 and localhost as secure, so
// the local stack works too) and only with requests from the console's
// own pages.
func setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: int(maxAge / time.Second),
		HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

func clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode})
}

// sessionOf opens the request's session cookie, if it holds a live one.
func (s *Server) sessionOf(r *http.Request) (*session, bool) {
	if s.sessions == nil {
		return nil, false
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, false
	}
	var se session
	if s.sessions.open(sessionCookie, c.Value, &se) != nil || time.Now().Unix() >= se.Exp || se.CSRF == "" {
		return nil, false
	}
	return &se, true
}

// sessionIdentity is who a live session is, or false if its token has
// gone from the configuration.
func (s *Server) sessionIdentity(se *session) (Identity, bool) {
	if se.ID != nil {
		return *se.ID, true
	}
	id, ok := s.tokens[se.Token]
	if !ok {
		return Identity{}, false
	}
	id.Via = "console"
	return id, true
}

// csrfOK reports whether a state-changing request made with the session
// cookie carries the session's anti-CSRF value, in the X-CSRF-Token header
// (the console's scripts) or the csrf form field (its forms).
func csrfOK(r *http.Request, se *session) bool {
	got := r.Header.Get(csrfHeader)
	if got == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		got = r.PostFormValue(csrfField)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(se.CSRF)) == 1
}

// safeMethod: a request that changes nothing, which needs no CSRF check.
func safeMethod(m string) bool { return m == http.MethodGet || m == http.MethodHead }
