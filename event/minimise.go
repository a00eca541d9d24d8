package event

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	useragent "github.com/medama-io/go-useragent"

	"github.com/custodylog/custody/internal/secret"
)

// Minimise is what one retention class keeps of the members that identify
// a person (events.minimise in the configuration). Every producer applies
// it before an event reaches Kafka, so the full values are never stored
// anywhere, Kafka included. docs/EVENTS.md §5a.
type Minimise struct {
	// Class is the retention class the rules apply to.
	Class string `yaml:"class"`
	// IP is "keep" (the default) or "truncate": IPv4 to its /16, IPv6 to
	// its /48 ("the first half of your IP address").
	IP string `yaml:"ip"`
	// Port is "keep" or "drop".
	Port string `yaml:"port"`
	// UserAgent is "keep" or "summary": browser family and major
	// version, operating system and device type, e.g.
	// "Chrome 126; Windows; Desktop".
	UserAgent string `yaml:"user_agent"`
	// Login and Session are "keep" or "pseudonym": a keyed HMAC, stable
	// for one person within the class, meaningless without the key.
	Login   string `yaml:"login"`
	Session string `yaml:"session"`
	// PseudonymKey keys the pseudonyms and the IDs Custody derives for
	// the class; from CUSTODY_PSEUDONYM_KEY_<CLASS>, pseudonym_key_file or
	// pseudonym_key. At least 32 characters.
	PseudonymKey     secret.String `yaml:"pseudonym_key"`
	PseudonymKeyFile string        `yaml:"pseudonym_key_file"`
}

// PseudonymKeyEnv is the environment variable that overrides the class's key.
func PseudonymKeyEnv(class string) string {
	return "CUSTODY_PSEUDONYM_KEY_" + strings.ToUpper(strings.ReplaceAll(class, "-", "_"))
}

func (m *Minimise) needsKey() bool { return m.Login == "pseudonym" || m.Session == "pseudonym" }

func (m *Minimise) validate() error {
	var errs []error
	for _, r := range []struct{ key, v, alt string }{
		{"ip", m.IP, "truncate"}, {"port", m.Port, "drop"}, {"user_agent", m.UserAgent, "summary"},
		{"login", m.Login, "pseudonym"}, {"session", m.Session, "pseudonym"},
	} {
		if r.v != "" && r.v != "keep" && r.v != r.alt {
			errs = append(errs, fmt.Errorf("%s: %q is not keep or %s", r.key, r.v, r.alt))
		}
	}
	if m.needsKey() && len(m.PseudonymKey) < 32 {
		if m.PseudonymKey == "" {
			errs = append(errs, fmt.Errorf("pseudonym_key: is required for pseudonyms (set pseudonym_key_file or %s)", PseudonymKeyEnv(m.Class)))
		} else {
			errs = append(errs, fmt.Errorf("pseudonym_key: is %d characters; at least 32 are required", len(m.PseudonymKey)))
		}
	}
	return errors.Join(errs...)
}

// Minimiser applies one class's Minimise; Config.Minimisers builds them.
type Minimiser struct {
	rules Minimise
	key   []byte
}

// uaParser is built on first use: it costs ~50 ms and some memory, which
// only producers with a summarising class should pay.
var uaParser = sync.OnceValue(useragent.NewParser)

// apply minimises e in place.
func (m *Minimiser) apply(e *Event) {
	if m.rules.IP == "truncate" && e.IP.IsValid() {
		bits := 48
		if e.IP.Is4() {
			bits = 16
		}
		p, _ := e.IP.Prefix(bits)
		e.IP = p.Addr()
	}
	if m.rules.Port == "drop" {
		e.Port = 0
	}
	if m.rules.UserAgent == "summary" && e.UserAgent != "" {
		e.UserAgent = summariseUA(e.UserAgent)
	}
	if m.rules.Login == "pseudonym" && e.Login != "" {
		e.Login = m.pseudonym("login", e.Tenant, e.Login)
	}
	if m.rules.Session == "pseudonym" && e.Session != "" {
		e.Session = m.pseudonym("session", e.Tenant, e.Session)
	}
}

// pseudonym is "p-" and 32 hex digits of HMAC-SHA256(key, member ‖ 0 ‖
// tenant ‖ 0 ‖ value): the same person gets the same pseudonym within the
// class and tenant, and no one without the key can link it back.
func (m *Minimiser) pseudonym(member, tenant, v string) string {
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(member))
	h.Write([]byte{0})
	h.Write([]byte(tenant))
	h.Write([]byte{0})
	h.Write([]byte(v))
	return "p-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// summariseUA reduces a user agent to "<browser> <major>; <OS>; <device>",
// each part "unknown" when the parser does not recognise it.
func summariseUA(s string) string {
	ua := uaParser().Parse(s)
	or := func(v string) string {
		if v == "" {
			return "unknown"
		}
		return v
	}
	browser := or(string(ua.Browser()))
	if v := ua.BrowserVersionMajor(); v != "" && browser != "unknown" {
		browser += " " + v
	}
	return browser + "; " + or(string(ua.OS())) + "; " + or(string(ua.Device()))
}

// Minimisers compiles the events section's rules by class, for Options.
// Call it after the configuration was resolved and validated.
func (c *Config) Minimisers() map[string]*Minimiser {
	if len(c.Minimise) == 0 {
		return nil
	}
	out := make(map[string]*Minimiser, len(c.Minimise))
	for _, m := range c.Minimise {
		out[m.Class] = &Minimiser{rules: m, key: []byte(m.PseudonymKey.Reveal())}
	}
	return out
}
