package logparse

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ErrIgnored means the line is valid but carries no login event (most
// sshd and syslog lines).
var ErrIgnored = errors.New("no login event on this line")

// SSHLogin is a login event from an OpenSSH auth log line.
type SSHLogin struct {
	Time   time.Time
	Host   string
	Action string // success, failure or logout
	User   string
	IP     string
	Port   int
	Method string // password, publickey, keyboard-interactive/pam, ...
	// Invalid is true for attempts on user names that do not exist.
	Invalid bool
}

var (
	reAccepted = regexp.MustCompile(`^Accepted (\S+) for (\S+) from (\S+) port (\d+)`)
	reFailed   = regexp.MustCompile(`^Failed (\S+) for (invalid user )?(\S+) from (\S+) port (\d+)`)
	reInvalid  = regexp.MustCompile(`^Invalid user (\S*) from (\S+) port (\d+)`)
	reDisconn  = regexp.MustCompile(`^Disconnected from user (\S+) (\S+) port (\d+)`)
)

const syslogTime = "Jan _2 15:04:05"

// ParseSSHD parses one auth log line in classic syslog form
// ("Nov 29 05:12:01 host sshd[123]: ...") or RFC 3339 form
// ("2026-11-29T05:12:01.5+00:00 host sshd[123]: ..."). Classic timestamps
// have no year or zone: the year is taken from now (the previous year if
// that would put the line more than a day in the future) and the zone is
// loc. Lines from other programs, or sshd lines that are not logins, give
// ErrIgnored.
func ParseSSHD(line string, now time.Time, loc *time.Location) (SSHLogin, error) {
	var l SSHLogin
	s := strings.TrimRight(line, "\r\n")
	var err error
	if len(s) >= 16 && s[3] == ' ' && s[15] == ' ' {
		t, perr := time.ParseInLocation(syslogTime, s[:15], loc)
		if perr != nil {
			return l, fmt.Errorf("timestamp: %q is not Mon dd hh:mm:ss", s[:15])
		}
		t = time.Date(now.In(loc).Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), 0, loc)
		if t.After(now.Add(24 * time.Hour)) {
			t = t.AddDate(-1, 0, 0)
		}
		l.Time, s = t.UTC(), s[16:]
	} else {
		ts, rest, ok := strings.Cut(s, " ")
		if !ok {
			return l, errors.New("timestamp: missing")
		}
		if l.Time, err = time.Parse(time.RFC3339Nano, ts); err != nil {
			return l, fmt.Errorf("timestamp: %q is neither syslog nor RFC 3339", ts)
		}
		l.Time, s = l.Time.UTC(), rest
	}
	var ok bool
	if l.Host, s, ok = strings.Cut(s, " "); !ok {
		return l, errors.New("host: missing")
	}
	prog, msg, ok := strings.Cut(s, ": ")
	if !ok {
		return l, ErrIgnored
	}
	if p, _, _ := strings.Cut(prog, "["); p != "sshd" && !strings.HasPrefix(p, "sshd-") {
		return l, ErrIgnored
	}
	m, err := ParseSSHDMessage(msg)
	m.Time, m.Host = l.Time, l.Host
	return m, err
}

// ParseSSHDMessage parses the message part of an sshd log line (after
// "sshd[pid]: "), for transports that carry the time, host and program
// apart, such as RFC 5424 syslog. Time and Host stay zero.
func ParseSSHDMessage(msg string) (SSHLogin, error) {
	var l SSHLogin
	msg = strings.TrimRight(msg, "\r\n")
	var port string
	switch {
	case reAccepted.MatchString(msg):
		m := reAccepted.FindStringSubmatch(msg)
		l.Action, l.Method, l.User, l.IP, port = "success", m[1], m[2], m[3], m[4]
	case reFailed.MatchString(msg):
		m := reFailed.FindStringSubmatch(msg)
		l.Action, l.Method, l.Invalid, l.User, l.IP, port = "failure", m[1], m[2] != "", m[3], m[4], m[5]
	case reInvalid.MatchString(msg):
		m := reInvalid.FindStringSubmatch(msg)
		l.Action, l.Invalid, l.User, l.IP, port = "failure", true, m[1], m[2], m[3]
	case reDisconn.MatchString(msg):
		m := reDisconn.FindStringSubmatch(msg)
		l.Action, l.User, l.IP, port = "logout", m[1], m[2], m[3]
	default:
		return l, ErrIgnored
	}
	var err error
	if l.Port, err = strconv.Atoi(port); err != nil || l.Port < 1 || l.Port > 65535 {
		return l, fmt.Errorf("port: %q is outside 1-65535", port)
	}
	return l, nil
}
