package logparse

import (
	"encoding/json"
	"time"

	"github.com/custodylog/custody/event"
)

// Event holds the v1 members a parsed line gives. Every sender that reads
// these formats (the agent, the syslog listener, custody normalize) turns
// it into JSON and through event.Decode, so that validation and redaction
// are those of any event (docs/EVENTS.md §5).
type Event struct {
	Time      string         `json:"time"`
	Kind      string         `json:"kind"`
	Tenant    string         `json:"tenant"`
	App       string         `json:"app,omitempty"`
	IP        string         `json:"ip,omitempty"`
	Port      int            `json:"port,omitempty"`
	Login     string         `json:"login,omitempty"`
	UserAgent string         `json:"user_agent,omitempty"`
	Action    string         `json:"action,omitempty"`
	Protocol  string         `json:"protocol,omitempty"`
	Method    string         `json:"method,omitempty"`
	Path      string         `json:"path,omitempty"`
	Status    int            `json:"status,omitempty"`
	Attrs     map[string]any `json:"attrs,omitempty"`
}

// JSON is the event's v1 JSON.
func (e Event) JSON() []byte {
	b, _ := json.Marshal(e) // strings, ints and a map of them: cannot fail
	return b
}

// Event is the connection event of an access log line, with
// attrs.bytes and attrs.referer (and attrs.host when host is set).
func (a Access) Event(tenant, app, host string) Event {
	e := Event{Time: a.Time.Format(time.RFC3339Nano), Kind: string(event.KindConnection), Tenant: tenant, App: app,
		IP: a.IP, Login: a.User, UserAgent: a.UserAgent, Method: a.Method, Path: a.Path, Protocol: a.Protocol, Status: a.Status,
		Attrs: map[string]any{"bytes": a.Bytes}}
	if a.Referer != "" {
		e.Attrs["referer"] = a.Referer
	}
	if host != "" {
		e.Attrs["host"] = host
	}
	return e
}

// Event is the login event of an sshd line, with attrs.host,
// attrs.auth_method and attrs.invalid_user.
func (l SSHLogin) Event(tenant, app string) Event {
	e := Event{Time: l.Time.Format(time.RFC3339Nano), Kind: string(event.KindLogin), Tenant: tenant, App: app,
		IP: l.IP, Port: l.Port, Login: l.User, Action: l.Action, Protocol: "ssh", Attrs: map[string]any{}}
	if l.Host != "" {
		e.Attrs["host"] = l.Host
	}
	if l.Method != "" {
		e.Attrs["auth_method"] = l.Method
	}
	if l.Invalid {
		e.Attrs["invalid_user"] = true
	}
	return e
}
