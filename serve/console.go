package serve

import (
	"bytes"
	"embed"
	"html/template"
	"io/fs"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"
)

// The console (docs/CONSOLE.md) is server-rendered pages plus one
// hand-written script that calls the same /v1 API as the CLI, with the
// session cookie instead of a bearer token. No framework and no build
// step: the assets are embedded as written, under 40 KB, and nothing is
// loaded from elsewhere (the Content-Security-Policy forbids it).

//go:embed console
var consoleFS embed.FS

var consoleTemplates = template.Must(template.ParseFS(consoleFS, "console/*.html"))

// contentSecurityPolicy allows the console's own scripts, styles and
// requests and nothing else: no inline script, no other origin, no
// framing.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
}

// consoleRoutes adds the console's pages to mux.
func (s *Server) consoleRoutes(mux *http.ServeMux) {
	assets, _ := fs.Sub(consoleFS, "console/assets")
	files := http.StripPrefix("/assets/", http.FileServerFS(assets))
	mux.Handle("GET /assets/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		securityHeaders(w.Header())
		w.Header().Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	}))
	mux.HandleFunc("GET /{$}", s.consoleHome)
	mux.HandleFunc("GET /sign-in", s.signInPage)
	mux.HandleFunc("POST /sign-in", s.signIn)
	mux.HandleFunc("POST /sign-out", s.signOut)
	if s.oidcLogin != nil {
		mux.HandleFunc("GET /sign-in/oidc", s.oidcStart)
		mux.HandleFunc("GET /sign-in/oidc/callback", s.oidcCallback)
	}
}

// page is what the templates see.
type page struct {
	Title    string
	Refresh  string // a path the page moves on to by itself
	Identity Identity
	CSRF     string
	Error    string
	OIDC     bool
	Can      map[string]bool // the role's actions (allowed), by name
	Kinds    []string
	MaxRange string
	MaxRows  int
}

// render writes a page, whole or not at all: a template that fails half
// way is a 500, not half a page.
func (s *Server) render(w http.ResponseWriter, code int, name string, p page) {
	var b bytes.Buffer
	if err := consoleTemplates.ExecuteTemplate(&b, name, p); err != nil {
		s.log.Error("cannot render console page", zap.String("page", name), zap.Error(err))
		http.Error(w, "cannot render the page", http.StatusInternalServerError)
		return
	}
	securityHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(b.Bytes())
}

// consoleHome is the console, or the way to sign in.
func (s *Server) consoleHome(w http.ResponseWriter, r *http.Request) {
	se, ok := s.sessionOf(r)
	var id Identity
	if ok {
		id, ok = s.sessionIdentity(se)
	}
	if !ok {
		http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
		return
	}
	maxRange, maxRows := s.cfg.limits(id.Role)
	if maxRows == 0 || maxRows > consoleMaxRows {
		maxRows = consoleMaxRows
	}
	can := map[string]bool{}
	for a, ok := range allowed[id.Role] {
		can[string(a)] = ok
	}
	s.render(w, http.StatusOK, "app.html", page{Title: "Custody", Identity: id, CSRF: se.CSRF, Can: can,
		Kinds: []string{"connection", "login", "source_change", "activity"}, MaxRange: maxRange.String(), MaxRows: maxRows})
}

// consoleMaxRows bounds the rows one search keeps in the page: past it the
// console says so and offers an export (or the CLI) for the rest.
const consoleMaxRows = 10000

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	s.showSignIn(w, http.StatusOK, "")
}

// showSignIn renders the sign-in form with a fresh anti-CSRF value, kept in
// the login cookie as well (double submit).
func (s *Server) showSignIn(w http.ResponseWriter, code int, msg string) {
	l := login{CSRF: randomString(), Exp: time.Now().Add(10 * time.Minute).Unix()}
	v, err := s.sessions.seal(loginCookie, l)
	if err != nil {
		http.Error(w, "cannot start a sign-in", http.StatusInternalServerError)
		return
	}
	setLoginCookie(w, v)
	s.render(w, code, "signin.html", page{Title: "Sign in · Custody", CSRF: l.CSRF, Error: msg, OIDC: s.oidcLogin != nil})
}

// loginOf opens the login cookie of a sign-in in progress.
func (s *Server) loginOf(r *http.Request) (*login, bool) {
	c, err := r.Cookie(loginCookie)
	if err != nil {
		return nil, false
	}
	var l login
	if s.sessions.open(loginCookie, c.Value, &l) != nil || time.Now().Unix() >= l.Exp {
		return nil, false
	}
	return &l, true
}

// signIn takes an API token from the form: for the local stack and for
// staff without single sign-on.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	l, ok := s.loginOf(r)
	if !ok || r.PostFormValue(csrfField) != l.CSRF {
		s.denied.WithLabelValues("csrf").Inc()
		s.showSignIn(w, http.StatusForbidden, "The sign-in form expired or did not come from this console. Try again.")
		return
	}
	hash := HashToken(strings.TrimSpace(r.PostFormValue("token")))
	id, ok := s.tokens[hash]
	if !ok {
		s.denied.WithLabelValues("unauthenticated").Inc()
		s.log.Info("console sign-in refused", zap.String("client", clientAddr(r)))
		s.showSignIn(w, http.StatusUnauthorized, "That token is not valid.")
		return
	}
	s.startSession(w, r, session{Token: hash}, id, false)
}

// startSession sets the session cookie and goes to the console: by a
// redirect, or by a page that moves on by itself (viaPage) when the request
// came from another site.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, se session, id Identity, viaPage bool) {
	se.CSRF = randomString()
	if se.Exp == 0 || se.Exp > time.Now().Add(s.cfg.Console.SessionTTL).Unix() {
		se.Exp = time.Now().Add(s.cfg.Console.SessionTTL).Unix()
	}
	v, err := s.sessions.seal(sessionCookie, se)
	if err != nil {
		http.Error(w, "cannot start a session", http.StatusInternalServerError)
		return
	}
	clearCookie(w, loginCookie)
	setCookie(w, sessionCookie, v, time.Until(time.Unix(se.Exp, 0)))
	s.log.Info("console sign-in", zap.String("identity", id.Name), zap.String("role", string(id.Role)), zap.String("via", id.Via), zap.String("client", clientAddr(r)))
	if viaPage {
		s.render(w, http.StatusOK, "signedin.html", page{Title: "Signed in · Custody", Identity: id, Refresh: "/"})
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) signOut(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if se, ok := s.sessionOf(r); ok && !csrfOK(r, se) {
		s.denied.WithLabelValues("csrf").Inc()
		http.Error(w, "missing or wrong anti-CSRF token", http.StatusForbidden)
		return
	}
	clearCookie(w, sessionCookie)
	http.Redirect(w, r, "/sign-in", http.StatusSeeOther)
}
