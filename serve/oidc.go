package serve

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/custodylog/custody/internal/secret"
)

// OIDC bearer JWTs, verified with github.com/coreos/go-oidc: it checks the
// signature against the JWKS with only the allowed asymmetric algorithms
// (so "alg: none" and HS256 signed with a public key are refused by
// construction), the issuer, the audience, expiry and not-before, and it
// caches a remote JWKS, fetching again when a token names a key it does
// not know (key rotation). It is the verifier most Go services use, kept
// by the CoreOS/Red Hat maintainers, and adds only go-jose and x/oauth2.

// OIDC is the `serve.oidc` section. Empty Issuer: JWTs are not accepted.
type OIDC struct {
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
	// JWKSFile (a JSON Web Key Set) or JWKSURL (fetched, cached, and
	// fetched again on an unknown key ID) holds the issuer's public keys.
	JWKSFile string `yaml:"jwks_file"`
	JWKSURL  string `yaml:"jwks_url"`
	// Algorithms allowed; default RS256 and ES256. Only asymmetric ones.
	Algorithms []string `yaml:"algorithms"`
	// NameClaim names the identity (default "sub").
	NameClaim string `yaml:"name_claim"`
	// GroupsClaim holds the caller's groups, a string or a list of strings
	// (default "groups").
	GroupsClaim string `yaml:"groups_claim"`
	// Roles map groups to a role and tenant scope; the first entry whose
	// group the token carries decides. No entry: the token is refused.
	Roles []GroupRole `yaml:"roles"`
	// Console signs people in to the web console (serve/oidc_login.go).
	Console OIDCConsole `yaml:"console"`
}

// GroupRole maps an identity provider group to a role.
type GroupRole struct {
	Group   string   `yaml:"group"`
	Role    Role     `yaml:"role"`
	Tenants []string `yaml:"tenants"`
}

var asymmetric = map[string]bool{"RS256": true, "RS384": true, "RS512": true, "PS256": true, "PS384": true, "PS512": true, "ES256": true, "ES384": true, "ES512": true, "EdDSA": true}

// Enabled reports whether JWTs are accepted.
func (o *OIDC) Enabled() bool { return o.Issuer != "" }

func (o *OIDC) resolve(baseDir string) error {
	o.JWKSFile = secret.Path(baseDir, o.JWKSFile)
	return o.Console.resolve(baseDir)
}

func (o *OIDC) validate() error {
	if !o.Enabled() {
		if o.Audience != "" || o.JWKSFile != "" || o.JWKSURL != "" || len(o.Roles) > 0 || o.Console.Enabled() {
			return errors.New("oidc.issuer: is required when any other oidc key is set")
		}
		return nil
	}
	errs := []error{o.Console.validate(o.Issuer)}
	if o.Audience == "" {
		errs = append(errs, errors.New("oidc.audience: is required (tokens issued for other services must not be accepted)"))
	}
	if (o.JWKSFile == "") == (o.JWKSURL == "") {
		errs = append(errs, errors.New("oidc.jwks_file: set exactly one of jwks_file and jwks_url"))
	}
	if o.JWKSURL != "" && !strings.HasPrefix(o.JWKSURL, "https://") && !strings.HasPrefix(o.JWKSURL, "http://127.0.0.1") && !strings.HasPrefix(o.JWKSURL, "http://localhost") {
		errs = append(errs, fmt.Errorf("oidc.jwks_url: %q must be https (or loopback http)", o.JWKSURL))
	}
	for i, a := range o.Algorithms {
		if !asymmetric[a] {
			errs = append(errs, fmt.Errorf("oidc.algorithms[%d]: %q is not an asymmetric JWS algorithm (RS256, PS256, ES256, EdDSA, …)", i, a))
		}
	}
	if len(o.Roles) == 0 {
		errs = append(errs, errors.New("oidc.roles: map at least one group to a role"))
	}
	for i, r := range o.Roles {
		if r.Group == "" {
			errs = append(errs, fmt.Errorf("oidc.roles[%d].group: is required", i))
		}
		if !roles[r.Role] {
			errs = append(errs, fmt.Errorf("oidc.roles[%d].role: %q is not investigator, legal, auditor or admin", i, r.Role))
		}
	}
	return errors.Join(errs...)
}

// jwtVerifier authenticates bearer JWTs.
type jwtVerifier struct {
	cfg  OIDC
	v    *oidc.IDTokenVerifier
	keys oidc.KeySet
	algs []string
}

// newJWTVerifier loads the key set; ctx bounds the remote key set's
// fetches for the life of the server.
func newJWTVerifier(ctx context.Context, o OIDC) (*jwtVerifier, error) {
	var ks oidc.KeySet
	if o.JWKSFile != "" {
		b, err := os.ReadFile(o.JWKSFile)
		if err != nil {
			return nil, fmt.Errorf("oidc.jwks_file: %w", err)
		}
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(b, &set); err != nil {
			return nil, fmt.Errorf("oidc.jwks_file %s: %w", o.JWKSFile, err)
		}
		var keys []crypto.PublicKey
		for _, k := range set.Keys {
			if !k.IsPublic() {
				return nil, fmt.Errorf("oidc.jwks_file %s: key %q is not a public key (a JWKS for verification holds public keys only)", o.JWKSFile, k.KeyID)
			}
			keys = append(keys, k.Key)
		}
		if len(keys) == 0 {
			return nil, fmt.Errorf("oidc.jwks_file %s: no keys", o.JWKSFile)
		}
		ks = &oidc.StaticKeySet{PublicKeys: keys}
	} else {
		ks = oidc.NewRemoteKeySet(ctx, o.JWKSURL)
	}
	algs := o.Algorithms
	if len(algs) == 0 {
		algs = []string{"RS256", "ES256"}
	}
	return &jwtVerifier{cfg: o, keys: ks, algs: algs, v: oidc.NewVerifier(o.Issuer, ks, &oidc.Config{ClientID: o.Audience, SupportedSigningAlgs: algs})}, nil
}

// looksLikeJWT tells a JWT (three base64url parts) from an API token.
func looksLikeJWT(tok string) bool { return strings.Count(tok, ".") == 2 }

// authenticate verifies the token and maps its groups to a role.
func (j *jwtVerifier) authenticate(ctx context.Context, raw string) (Identity, error) {
	tok, err := j.v.Verify(ctx, raw)
	if err != nil {
		return Identity{}, err
	}
	return j.identity(tok)
}

// identity maps a verified token's name and groups claims to an identity.
func (j *jwtVerifier) identity(tok *oidc.IDToken) (Identity, error) {
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return Identity{}, err
	}
	nameClaim, groupsClaim := j.cfg.NameClaim, j.cfg.GroupsClaim
	if nameClaim == "" {
		nameClaim = "sub"
	}
	if groupsClaim == "" {
		groupsClaim = "groups"
	}
	name, _ := claims[nameClaim].(string)
	if name == "" {
		return Identity{}, fmt.Errorf("token has no %q claim", nameClaim)
	}
	var groups []string
	switch g := claims[groupsClaim].(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				groups = append(groups, s)
			}
		}
	}
	for _, r := range j.cfg.Roles {
		if slices.Contains(groups, r.Group) {
			return Identity{Name: name, Role: r.Role, Tenants: r.Tenants, Via: "oidc"}, nil
		}
	}
	return Identity{}, fmt.Errorf("%s is in no group that maps to a role", name)
}
