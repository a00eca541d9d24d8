// Package logparse reads the log formats the agent tails and turns each
// line into the members of a v1 event. Parsers never panic on any input;
// each has a fuzz target.
package logparse

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Access is one line of the nginx/Apache "combined" access log format:
//
//	$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
type Access struct {
	IP        string
	User      string // "" when the log says "-"
	Time      time.Time
	Method    string
	Path      string
	Protocol  string
	Status    int
	Bytes     int64
	Referer   string
	UserAgent string
}

const combinedTime = "02/Jan/2006:15:04:05 -0700"

// ParseCombined parses one combined-format line. Errors name the part of
// the line at fault.
func ParseCombined(line string) (Access, error) {
	var a Access
	s := strings.TrimRight(line, "\r\n")
	var ok bool
	if a.IP, s, ok = strings.Cut(s, " "); !ok || a.IP == "" {
		return a, errors.New("remote_addr: missing")
	}
	if _, s, ok = strings.Cut(s, " "); !ok { // ident, always "-"
		return a, errors.New("ident: missing")
	}
	if a.User, s, ok = strings.Cut(s, " "); !ok {
		return a, errors.New("remote_user: missing")
	}
	if a.User == "-" {
		a.User = ""
	}
	if !strings.HasPrefix(s, "[") {
		return a, errors.New("time_local: want [dd/Mon/yyyy:hh:mm:ss zone]")
	}
	ts, s, ok := strings.Cut(s[1:], "] ")
	if !ok {
		return a, errors.New("time_local: no closing ]")
	}
	t, err := time.Parse(combinedTime, ts)
	if err != nil {
		return a, fmt.Errorf("time_local: %q is not dd/Mon/yyyy:hh:mm:ss zone", ts)
	}
	a.Time = t.UTC()
	req, s, err := quoted(s)
	if err != nil {
		return a, fmt.Errorf("request: %v", err)
	}
	// "GET /path HTTP/1.1"; a malformed request ("-" or garbage from a
	// scanner) is kept as the path so nothing the client sent is lost.
	if parts := strings.SplitN(req, " ", 3); len(parts) == 3 && parts[0] != "" {
		a.Method, a.Path, a.Protocol = parts[0], parts[1], parts[2]
	} else if req != "-" {
		a.Path = req
	}
	s = strings.TrimLeft(s, " ")
	st, s, _ := strings.Cut(s, " ")
	if a.Status, err = strconv.Atoi(st); err != nil || a.Status < 100 || a.Status > 599 {
		return a, fmt.Errorf("status: %q is not an HTTP status", st)
	}
	bs, s, _ := strings.Cut(s, " ")
	if bs != "-" {
		if a.Bytes, err = strconv.ParseInt(bs, 10, 64); err != nil || a.Bytes < 0 {
			return a, fmt.Errorf("body_bytes_sent: %q is not a byte count", bs)
		}
	}
	if a.Referer, s, err = quoted(s); err != nil {
		return a, fmt.Errorf("http_referer: %v", err)
	}
	if a.UserAgent, _, err = quoted(strings.TrimLeft(s, " ")); err != nil {
		return a, fmt.Errorf("http_user_agent: %v", err)
	}
	if a.Referer == "-" {
		a.Referer = ""
	}
	if a.UserAgent == "-" {
		a.UserAgent = ""
	}
	return a, nil
}

// quoted reads a double-quoted field as nginx writes it (\" and \\ escaped,
// other bytes as \xHH), returning it unescaped and the rest of s.
func quoted(s string) (string, string, error) {
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, `"`) {
		return "", s, errors.New(`want a "quoted" field`)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), s[i+1:], nil
		case c == '\\' && i+1 < len(s):
			n := s[i+1]
			if n == 'x' && i+3 < len(s) {
				if v, err := strconv.ParseUint(s[i+2:i+4], 16, 8); err == nil {
					b.WriteByte(byte(v))
					i += 3
					continue
				}
			}
			b.WriteByte(n)
			i++
		default:
			b.WriteByte(c)
		}
	}
	return "", "", errors.New("no closing quote")
}
