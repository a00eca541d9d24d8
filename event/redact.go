package event

import (
	"encoding/base64"
	"net/url"
	"strings"

	json "github.com/segmentio/encoding/json"
)

// Redaction: Custody must never store a password, secret, token, cookie,
// authorization header or private key. Senders should not send them; when
// they do, the secret is removed here, before the event reaches Kafka, in
// every string member (top-level and in attrs, at any depth), and counted
// in the event's "redacted" member and the ingest metrics.
//
// Three rules, each a table test in redact_test.go (docs/EVENTS.md §5):
//
//  1. Names. A member of attrs whose name is secret-looking is dropped, as
//     is the value of a secret-looking parameter anywhere in a string:
//     "name=value" after ?, &, ;, #, a space or the start (query strings,
//     fragments, matrix parameters, free text; the value ends at &, ;, #,
//     a space or a quote), and "name: value" (a header line: the value
//     runs to the end of the line). Names are split into words (at punctuation and camelCase), so
//     "access_token", "X-Api-Key" and "clientSecret" match while
//     "footprint", "hotplug" and "secretary" do not.
//  2. Credentials. The credential after an HTTP authorization scheme
//     (Bearer, Basic, Token, Digest, Negotiate, NTLM, AWS4-HMAC-SHA256) and
//     the userinfo of a URL ("https://user:pass@host", "https://TOKEN@host")
//     are replaced by REDACTED, leaving the rest of the string.
//  3. Whole values. A PEM private key, a JWT or a token with a well-known
//     prefix (GitHub, GitLab, Slack, AWS, Stripe) is a secret whatever its
//     name: the whole value is replaced (top-level) or dropped (attrs).

// RedactedValue replaces a removed secret inside a string.
const RedactedValue = "REDACTED"

// secretWords are words that make a name secret wherever they stand in
// it: "db_password", "X-Auth-Token", "refreshToken".
var secretWords = map[string]bool{
	"password": true, "passwords": true, "passwd": true, "passphrase": true, "secret": true, "secrets": true,
	"token": true, "tokens": true, "cookie": true, "cookies": true, "authorization": true, "credential": true,
	"credentials": true, "signature": true, "bearer": true, "jwt": true, "otp": true, "totp": true,
	"apikey": true, "accesskey": true, "secretkey": true, "privatekey": true, "privkey": true, "signingkey": true,
	"mfacode": true, "pincode": true, "sessionkey": true, "authkey": true, "masterkey": true,
}

// secretSuffixes make a glued word secret: "accesstoken", "dbpassword",
// "clientsecret". Only suffixes: as prefixes "secret" would catch
// "secretary" and "token" "tokenizer".
var secretSuffixes = []string{"password", "passwd", "passphrase", "secret", "token", "cookie", "credential", "credentials", "signature", "apikey", "accesskey", "privatekey"}

// secretPrefixes make a glued word secret: "password2", "passwordconfirm".
var secretPrefixes = []string{"password", "passwd", "passphrase", "credential"}

// weakNames are secrets only as the whole name, because as words they
// are common in innocent names ("auth_method", "key_id", "sig_version").
var weakNames = map[string]bool{"pass": true, "pwd": true, "auth": true, "key": true, "sig": true, "pin": true}

// SensitiveKey reports whether a name (an attrs member, a parameter, a
// header) names a secret. The name is split into lower-case words at every
// character that is not a letter or digit and at lower-to-upper case
// changes; it does not allocate for names up to 128 bytes.
func SensitiveKey(k string) bool {
	var buf [128]byte // the name's words, lower-case, glued
	var ends [32]int  // where each word ends in buf
	n, nw := 0, 0
	inWord := false
	for i := 0; i < len(k); i++ {
		c := k[i]
		upper := c >= 'A' && c <= 'Z'
		alnum := upper || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		camel := upper && i > 0 && k[i-1] >= 'a' && k[i-1] <= 'z'
		if inWord && (!alnum || camel) {
			if nw == len(ends) {
				return true // 32 words in a name: treat as hostile
			}
			ends[nw] = n
			nw++
			inWord = false
		}
		if !alnum {
			continue
		}
		if n == len(buf) {
			return true // a 128-letter name: treat as hostile
		}
		if upper {
			c += 'a' - 'A'
		}
		buf[n] = c
		n++
		inWord = true
	}
	if inWord {
		if nw == len(ends) {
			return true
		}
		ends[nw] = n
		nw++
	}
	if nw == 0 {
		return false
	}
	if nw == 1 && weakNames[string(buf[:n])] {
		return true
	}
	start := 0
	for w := 0; w < nw; w++ {
		x := buf[start:ends[w]]
		if secretWords[string(x)] {
			return true
		}
		if w > 0 { // "api key", "private key": the two words glued
			prev := 0
			if w > 1 {
				prev = ends[w-2]
			}
			if secretWords[string(buf[prev:ends[w]])] {
				return true
			}
		}
		for _, s := range secretSuffixes {
			if len(x) > len(s) && string(x[len(x)-len(s):]) == s {
				return true
			}
		}
		for _, p := range secretPrefixes {
			if len(x) > len(p) && string(x[:len(p)]) == p {
				return true
			}
		}
		start = ends[w]
	}
	// The glued whole name: "X-Api-Key" is x, api, key.
	return secretWords[string(buf[:n])]
}

// knownTokenPrefixes start tokens that are secrets whatever their name.
var knownTokenPrefixes = []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_", "github_pat_", "glpat-", "xoxb-", "xoxp-", "xoxa-", "xoxr-", "xoxs-", "sk_live_", "rk_live_", "cst_"}

// SensitiveValue reports whether a string, as a whole, is a secret: a PEM
// private key, a JWT, or a token of a well-known format. Credentials and
// parameters inside a longer string are handled by Scrub.
func SensitiveValue(v string) bool {
	if strings.Contains(v, "-----BEGIN") && strings.Contains(v, "PRIVATE KEY") {
		return true
	}
	t := strings.TrimSpace(v)
	if len(t) < 16 || strings.ContainsAny(t, " \t") {
		return false
	}
	if isJWT(t) {
		return true
	}
	for _, p := range knownTokenPrefixes {
		if strings.HasPrefix(t, p) && len(t) >= len(p)+16 {
			return true
		}
	}
	// AWS access key IDs: AKIA or ASIA and 16 upper-case letters or digits.
	if len(t) == 20 && (strings.HasPrefix(t, "AKIA") || strings.HasPrefix(t, "ASIA")) && isUpperAlnum(t[4:]) {
		return true
	}
	return false
}

func isJWT(s string) bool {
	if !strings.HasPrefix(s, "eyJ") {
		return false
	}
	parts := strings.Split(s, ".")
	if len(parts) != 3 || len(parts[0]) < 10 || len(parts[1]) < 4 {
		return false
	}
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			if c := p[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '=') {
				return false
			}
		}
	}
	return true
}

func isUpperAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Scrub removes the secrets inside a string (rules 1 and 2, and the
// tokens of rule 3 wherever they stand) and returns the result and how
// many it removed. Most strings are returned as they are, without
// allocating.
func Scrub(s string) (string, int) {
	seen, token := scan(s)
	return scrubScanned(s, seen, token)
}

// scan is one pass over s to see which rules can apply; most strings need
// none. token reports a possible well-known token or JWT.
func scan(s string) (seen uint8, token bool) {
	for i := 0; i < len(s); i++ {
		c := byteClass[s[i]]
		if c == 0 {
			continue
		}
		seen |= c
		if c&clsTokenHint != 0 && !token {
			token = tokenAt(s, i)
		}
	}
	return seen, token
}

// scrubScanned is Scrub after scan.
func scrubScanned(s string, seen uint8, token bool) (string, int) {
	n := 0
	if token {
		s, n = scrubTokens(s)
	}
	if seen&clsAt != 0 && seen&clsColon != 0 && strings.Contains(s, "://") {
		var k int
		s, k = scrubUserinfo(s)
		n += k
	}
	if seen&(clsEq|clsColon) != 0 {
		var k int
		s, k = scrubParams(s)
		n += k
	}
	if seen&clsSpace != 0 {
		var k int
		s, k = scrubSchemes(s)
		n += k
	}
	return s, n
}

const (
	clsEq = 1 << iota
	clsColon
	clsSpace
	clsAt
	clsTokenHint // '_', '-', 'e' or 'A': where a token may start or end
)

var byteClass = func() (t [256]uint8) {
	t['='], t[':'], t[' '], t['\t'], t['@'] = clsEq, clsColon, clsSpace, clsSpace, clsAt
	t['_'], t['-'], t['e'], t['A'] = clsTokenHint, clsTokenHint, clsTokenHint, clsTokenHint
	return t
}()

// tokenAt reports whether a token scrubTokens replaces may be at s[i]:
// a known prefix ending there, or "eyJ", "AKIA" or "ASIA" starting there.
func tokenAt(s string, i int) bool {
	switch s[i] {
	case 'e':
		return strings.HasPrefix(s[i:], "eyJ")
	case 'A':
		return strings.HasPrefix(s[i:], "AKIA") || strings.HasPrefix(s[i:], "ASIA")
	}
	for _, p := range knownTokenPrefixes {
		if i+1 >= len(p) && s[i+1-len(p):i+1] == p {
			return true
		}
	}
	return false
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '='
}

// tokenStarts are what scrubTokens looks for.
var tokenStarts = append(append([]string(nil), knownTokenPrefixes...), "eyJ", "AKIA", "ASIA")

// scrubTokens replaces well-known tokens and JWTs anywhere in s.
func scrubTokens(s string) (string, int) {
	n := 0
	for _, p := range tokenStarts {
		from := 0
		for {
			i := strings.Index(s[from:], p)
			if i < 0 {
				break
			}
			i += from
			end := i + len(p)
			for end < len(s) && isTokenChar(s[end]) {
				end++
			}
			tok := s[i:end]
			boundary := i == 0 || !isTokenChar(s[i-1])
			secret := false
			switch p {
			case "eyJ":
				secret = isJWT(strings.TrimRight(tok, "."))
			case "AKIA", "ASIA":
				secret = len(tok) >= 20 && isUpperAlnum(tok[4:20])
			default:
				secret = len(tok) >= len(p)+16
			}
			if !boundary || !secret {
				from = i + len(p)
				continue
			}
			s = s[:i] + RedactedValue + s[end:]
			n++
			from = i + len(RedactedValue)
		}
	}
	return s, n
}

// scrubUserinfo replaces the userinfo of every "scheme://userinfo@host".
// A bare user name is kept for schemes where it is conventionally not a
// secret ("ssh://git@host"); over HTTP it is often a token.
func scrubUserinfo(s string) (string, int) {
	n, from := 0, 0
	for {
		i := strings.Index(s[from:], "://")
		if i < 0 {
			break
		}
		start := from + i + 3
		end := start
		for end < len(s) && !strings.ContainsRune("/?#@ \t\"'<>", rune(s[end])) {
			end++
		}
		if end >= len(s) || s[end] != '@' || end == start || s[start:end] == RedactedValue {
			from = start
			continue
		}
		info := s[start:end]
		scheme := strings.ToLower(schemeBefore(s, from+i))
		if !strings.Contains(info, ":") && scheme != "http" && scheme != "https" && scheme != "ws" && scheme != "wss" {
			from = end + 1
			continue
		}
		s = s[:start] + RedactedValue + s[end:]
		n++
		from = start + len(RedactedValue) + 1
	}
	return s, n
}

// schemeBefore returns the URL scheme that ends at i ("https" in
// "x https://").
func schemeBefore(s string, i int) string {
	j := i
	for j > 0 {
		c := s[j-1]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.') {
			break
		}
		j--
	}
	return s[j:i]
}

// isNameChar is a character of a parameter or header name.
func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '%' || c == '[' || c == ']'
}

// isValueEnd ends a parameter value.
func isValueEnd(c byte) bool {
	return c == '&' || c == ';' || c == '#' || c == ' ' || c == '\t' || c == ',' || c == '"' || c == '\'' || c == '<' || c == '>' || c == '\n' || c == '\r'
}

// scrubParams replaces the value of every secret-looking "name=value" and
// "name: value" (rule 1).
func scrubParams(s string) (string, int) {
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '=' && c != ':' {
			continue
		}
		// The name: the run of name characters just before.
		j := i
		for j > 0 && isNameChar(s[j-1]) {
			j--
		}
		if j == i || j > 0 && !strings.ContainsRune("?&;#/ \t\n\r,\"'({[", rune(s[j-1])) {
			continue
		}
		name := s[j:i]
		if strings.IndexByte(name, '%') >= 0 {
			if u, err := url.QueryUnescape(name); err == nil {
				name = u
			}
		}
		if !SensitiveKey(name) {
			continue
		}
		v := i + 1
		if c == ':' {
			if v < len(s) && s[v] == '/' { // "https://": a scheme, not a header
				continue
			}
			for v < len(s) && (s[v] == ' ' || s[v] == '\t') {
				v++
			}
		}
		end := v
		if c == ':' {
			// A header's value runs to the end of the line:
			// "Authorization: Bearer x" keeps nothing of the credential.
			for end < len(s) && s[end] != '\n' && s[end] != '\r' {
				end++
			}
		} else {
			for end < len(s) && !isValueEnd(s[end]) {
				end++
			}
		}
		if end == v || s[v:end] == RedactedValue {
			continue
		}
		s = s[:v] + RedactedValue + s[end:]
		n++
		i = v + len(RedactedValue) - 1
	}
	return s, n
}

// authSchemes are the HTTP authorization schemes whose credential follows
// after a space, lower-case.
var authSchemes = []string{"bearer", "basic", "token", "digest", "negotiate", "ntlm", "aws4-hmac-sha256"}

// scrubSchemes replaces the credential after an authorization scheme
// (rule 2): "Bearer abc" becomes "Bearer REDACTED". "Basic" is so common
// a word that its credential must look like one: base64 of "user:pass".
func scrubSchemes(s string) (string, int) {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			continue
		}
		// The word before the space; every scheme starts with a, b, d, n
		// or t.
		if i < 4 {
			continue
		}
		j := i
		for j > 0 && s[j-1] != ' ' && s[j-1] != '\t' && s[j-1] != '"' && s[j-1] != ',' && s[j-1] != '(' {
			j--
		}
		scheme := authScheme(strings.TrimRight(s[j:i], ":"))
		if scheme == "" {
			continue
		}
		v := i + 1
		for v < len(s) && s[v] == ' ' {
			v++
		}
		end := v
		for end < len(s) && !strings.ContainsRune(" \t,\";)]\n\r", rune(s[end])) {
			end++
		}
		cred := s[v:end]
		if cred == "" || cred == RedactedValue || !looksLikeCredential(scheme, cred) {
			continue
		}
		if scheme == "digest" || scheme == "aws4-hmac-sha256" {
			// The parameters run to the end: all of them are the credential.
			end = len(s)
		}
		s = s[:v] + RedactedValue + s[end:]
		n++
		i = v + len(RedactedValue) - 1
	}
	return s, n
}

// authScheme returns the scheme w names, in lower case, or "".
func authScheme(w string) string {
	if len(w) < 4 || len(w) > 16 {
		return ""
	}
	switch w[0] | 0x20 {
	case 'a', 'b', 'd', 'n', 't':
	default:
		return ""
	}
	for _, a := range authSchemes {
		if strings.EqualFold(w, a) {
			return a
		}
	}
	return ""
}

// looksLikeCredential tells a credential from an English word after a
// scheme name ("Basic plan", "token of thanks").
func looksLikeCredential(scheme, c string) bool {
	switch scheme {
	case "basic":
		b, err := base64.StdEncoding.DecodeString(c)
		if err != nil {
			b, err = base64.RawStdEncoding.DecodeString(c)
		}
		return err == nil && strings.IndexByte(string(b), ':') > 0
	case "token", "bearer":
		if len(c) < 8 {
			return false
		}
		// A word of letters only is prose ("Bearer instruments"); a
		// credential has digits or punctuation.
		return strings.ContainsAny(c, "0123456789-_.~+/=") || len(c) >= 20
	}
	return true
}

// redactText is Scrub for a top-level member, plus rule 3: a whole-value
// secret is replaced by REDACTED.
func redactText(s string) (string, int) {
	if s == "" {
		return s, 0
	}
	seen, token := scan(s)
	// Whole-value secrets hold a token, or a dash (PEM armour).
	if (token || seen&clsTokenHint != 0 && strings.Contains(s, "-----BEGIN")) && SensitiveValue(s) {
		return RedactedValue, 1
	}
	return scrubScanned(s, seen, token)
}

const (
	maxAttrDepth = 8
	maxAttrKeys  = 512
)

// decodeAttrs decodes the attrs object and removes secrets at every depth.
// It returns how many it removed.
func decodeAttrs(raw json.RawMessage) (map[string]any, int, error) {
	var v any
	if _, err := json.Parse(raw, &v, json.UseNumber); err != nil {
		return nil, 0, fieldErr("attrs", "invalid JSON: %v", err)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, 0, fieldErr("attrs", "must be a JSON object")
	}
	keys, redacted := 0, 0
	out, err := scrub("attrs", m, 1, &keys, &redacted)
	if err != nil {
		return nil, 0, err
	}
	return out.(map[string]any), redacted, nil
}

// scrub removes members with secret names and whole-value secrets, and
// scrubs the secrets inside the other strings.
func scrub(path string, v any, depth int, keys, redacted *int) (any, error) {
	if depth > maxAttrDepth {
		return nil, fieldErr(path, "nests deeper than %d levels", maxAttrDepth)
	}
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			*keys++
			if *keys > maxAttrKeys {
				return nil, fieldErr("attrs", "has more than %d members", maxAttrKeys)
			}
			if SensitiveKey(k) || isSecretString(val) {
				delete(x, k)
				*redacted++
				continue
			}
			nv, err := scrub(path+"."+k, val, depth+1, keys, redacted)
			if err != nil {
				return nil, err
			}
			x[k] = nv
		}
		return x, nil
	case []any:
		out := x[:0]
		for i, val := range x {
			if isSecretString(val) {
				*redacted++
				continue
			}
			nv, err := scrub(path+"["+itoa(i)+"]", val, depth+1, keys, redacted)
			if err != nil {
				return nil, err
			}
			out = append(out, nv)
		}
		return out, nil
	case string:
		s, n := Scrub(x)
		*redacted += n
		return s, nil
	}
	return v, nil
}

func isSecretString(v any) bool {
	s, ok := v.(string)
	return ok && SensitiveValue(s)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	p := len(b)
	for ; i > 0; i /= 10 {
		p--
		b[p] = byte('0' + i%10)
	}
	return string(b[p:])
}
