package event

import (
	"net/url"
	"strings"

	json "github.com/segmentio/encoding/json"
)

// Redaction: Custody must never store a password, secret, token, cookie,
// authorization header or private key. Senders should not send them; when
// they do, the member is dropped here, before the event reaches Kafka, and
// counted in the event's "redacted" member and the ingest metrics.

// sensitiveWords are matched against attribute keys and URL query
// parameter names after lower-casing and removing everything but letters
// and digits, so "X-Api-Key", "api_key" and "apiKey" all become "xapikey"
// or "apikey".
var sensitiveWords = []string{
	"password", "passwd", "passphrase", "secret", "token", "cookie",
	"authorization", "privatekey", "privkey", "apikey", "accesskey",
	"credential", "signature", "bearer", "jwt", "otp", "mfacode",
}

// sensitiveExact are names that are secrets only as whole names, because
// as substrings they occur in innocent keys ("pass" in "passage").
var sensitiveExact = map[string]bool{"pass": true, "pwd": true, "auth": true, "key": true, "sig": true, "pin": true}

func normalizeKey(k string) string {
	var b strings.Builder
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			b.WriteByte(c)
		case c >= 'A' && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		}
	}
	return b.String()
}

// SensitiveKey reports whether a key names a secret.
func SensitiveKey(k string) bool {
	n := normalizeKey(k)
	if sensitiveExact[n] {
		return true
	}
	for _, w := range sensitiveWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// SensitiveValue reports whether a string value is a secret whatever its
// key: PEM private keys, HTTP authorization credentials, URLs carrying a
// password.
func SensitiveValue(v string) bool {
	if strings.Contains(v, "PRIVATE KEY") && strings.Contains(v, "-----BEGIN") {
		return true
	}
	lv := strings.ToLower(strings.TrimSpace(v))
	if strings.HasPrefix(lv, "bearer ") || strings.HasPrefix(lv, "basic ") || strings.HasPrefix(lv, "digest ") {
		return true
	}
	if i := strings.Index(v, "://"); i > 0 {
		if u, err := url.Parse(strings.TrimSpace(v)); err == nil && u.User != nil {
			if _, ok := u.User.Password(); ok {
				return true
			}
		}
	}
	return false
}

const (
	maxAttrDepth = 8
	maxAttrKeys  = 512
)

// decodeAttrs decodes the attrs object and removes sensitive members at
// every depth. It returns how many it removed.
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
			if SensitiveKey(k) {
				delete(x, k)
				*redacted++
				continue
			}
			if s, ok := val.(string); ok && SensitiveValue(s) {
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
			if s, ok := val.(string); ok && SensitiveValue(s) {
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
	}
	return v, nil
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

// RedactedValue replaces the value of a sensitive query parameter.
const RedactedValue = "REDACTED"

// redactPath replaces the values of sensitive query parameters in an HTTP
// request path, keeping the parameter names (useful to investigators), and
// returns how many it replaced. The rest of the path is left byte for byte.
func redactPath(p string) (string, int) {
	q := strings.IndexByte(p, '?')
	if q < 0 {
		return p, 0
	}
	frag := ""
	rest := p[q+1:]
	if h := strings.IndexByte(rest, '#'); h >= 0 {
		rest, frag = rest[:h], rest[h:]
	}
	params := strings.Split(rest, "&")
	n := 0
	for i, kv := range params {
		k, v, hasV := strings.Cut(kv, "=")
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		value, err := url.QueryUnescape(v)
		if err != nil {
			value = v
		}
		if hasV && v != RedactedValue && (SensitiveKey(name) || SensitiveValue(value)) {
			params[i] = k + "=" + RedactedValue
			n++
		}
	}
	if n == 0 {
		return p, 0
	}
	return p[:q+1] + strings.Join(params, "&") + frag, n
}
