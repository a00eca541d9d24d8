package logparse

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseCombined(t *testing.T) {
	a, err := ParseCombined(`203.0.113.7 - alice [29/Nov/2026:06:12:01 +0100] "GET /shop/cart?id=3 HTTP/1.1" 200 5123 "https://example.org/" "Mozilla/5.0 (X11) \"quoted\""` + "\n")
	if err != nil {
		t.Fatal(err)
	}
	want := Access{IP: "203.0.113.7", User: "alice", Time: time.Date(2026, 11, 29, 5, 12, 1, 0, time.UTC), Method: "GET", Path: "/shop/cart?id=3",
		Protocol: "HTTP/1.1", Status: 200, Bytes: 5123, Referer: "https://example.org/", UserAgent: `Mozilla/5.0 (X11) "quoted"`}
	if a != want {
		t.Errorf("ParseCombined = %+v;\nwant %+v", a, want)
	}
	a, err = ParseCombined(`2001:db8::1 - - [29/Nov/2026:05:00:00 +0000] "\x16\x03\x01" 400 0 "-" "-"`)
	if err != nil || a.Path != "\x16\x03\x01" || a.Method != "" || a.User != "" || a.UserAgent != "" {
		t.Errorf("TLS garbage request = %+v, %v; want it kept as the path", a, err)
	}
	f := func(line, want string) {
		t.Helper()
		if _, err := ParseCombined(line); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("ParseCombined(%q) error = %v; want %q", line, err, want)
		}
	}
	f(``, "remote_addr")
	f(`1.2.3.4 - - 29/Nov/2026 "GET / HTTP/1.1" 200 1 "-" "-"`, "time_local")
	f(`1.2.3.4 - - [29/Nov/2026:05:00:00] "GET / HTTP/1.1" 200 1 "-" "-"`, "time_local")
	f(`1.2.3.4 - - [29/Nov/2026:05:00:00 +0000] "GET / HTTP/1.1 200 1`, "request")
	f(`1.2.3.4 - - [29/Nov/2026:05:00:00 +0000] "GET / HTTP/1.1" OK 1 "-" "-"`, "status")
	f(`1.2.3.4 - - [29/Nov/2026:05:00:00 +0000] "GET / HTTP/1.1" 200 -5 "-" "-"`, "body_bytes_sent")
	f(`1.2.3.4 - - [29/Nov/2026:05:00:00 +0000] "GET / HTTP/1.1" 200 5 "-"`, "http_user_agent")
}

func TestParseSSHD(t *testing.T) {
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	f := func(line string, want SSHLogin) {
		t.Helper()
		got, err := ParseSSHD(line, now, time.UTC)
		if err != nil {
			t.Fatalf("ParseSSHD(%q): %v", line, err)
		}
		if got != want {
			t.Errorf("ParseSSHD(%q) = %+v;\nwant %+v", line, got, want)
		}
	}
	f("Nov 29 05:12:01 web1 sshd[1234]: Accepted publickey for alice from 203.0.113.7 port 51234 ssh2: ED25519 SHA256:abc",
		SSHLogin{Time: time.Date(2026, 11, 29, 5, 12, 1, 0, time.UTC), Host: "web1", Action: "success", User: "alice", IP: "203.0.113.7", Port: 51234, Method: "publickey"})
	f("Nov  9 05:12:01 web1 sshd[1234]: Failed password for invalid user admin from 198.51.100.2 port 4444 ssh2",
		SSHLogin{Time: time.Date(2026, 11, 9, 5, 12, 1, 0, time.UTC), Host: "web1", Action: "failure", User: "admin", IP: "198.51.100.2", Port: 4444, Method: "password", Invalid: true})
	f("2026-11-29T05:12:01.250+01:00 web1 sshd-session[77]: Disconnected from user alice 2001:db8::7 port 22022",
		SSHLogin{Time: time.Date(2026, 11, 29, 4, 12, 1, 250e6, time.UTC), Host: "web1", Action: "logout", User: "alice", IP: "2001:db8::7", Port: 22022})
	// December lines read in early January belong to the previous year.
	jan := time.Date(2027, 1, 1, 0, 5, 0, 0, time.UTC)
	if l, err := ParseSSHD("Dec 31 23:59:59 h sshd[1]: Invalid user x from 192.0.2.1 port 1", jan, time.UTC); err != nil || l.Time.Year() != 2026 {
		t.Errorf("year rollover: %+v, %v", l, err)
	}
	for _, ignored := range []string{
		"Nov 29 05:12:01 web1 CRON[99]: pam_unix(cron:session): session opened for user root",
		"Nov 29 05:12:01 web1 sshd[1234]: Connection closed by 203.0.113.7 port 51234 [preauth]",
		"Nov 29 05:12:01 web1 kernel without colon",
	} {
		if _, err := ParseSSHD(ignored, now, time.UTC); !errors.Is(err, ErrIgnored) {
			t.Errorf("ParseSSHD(%q) = %v; want ErrIgnored", ignored, err)
		}
	}
	for _, bad := range []string{"", "Foo 99 99:99:99 web1 sshd[1]: Accepted x for y from 1.2.3.4 port 5", "Nov 29 05:12:01 web1 sshd[1]: Accepted publickey for a from 1.2.3.4 port 99999 ssh2"} {
		if _, err := ParseSSHD(bad, now, time.UTC); err == nil || errors.Is(err, ErrIgnored) {
			t.Errorf("ParseSSHD(%q) = %v; want a parse error", bad, err)
		}
	}
}

func FuzzParseCombined(f *testing.F) {
	f.Add(`203.0.113.7 - alice [29/Nov/2026:06:12:01 +0100] "GET /a HTTP/1.1" 200 5 "-" "ua \"x\" \x41"`)
	f.Fuzz(func(t *testing.T, line string) {
		a, err := ParseCombined(line)
		if err == nil && (a.Status < 100 || a.Status > 599 || a.Bytes < 0) {
			t.Fatalf("accepted %+v", a)
		}
	})
}

func FuzzParseSSHD(f *testing.F) {
	f.Add("Nov 29 05:12:01 web1 sshd[1234]: Accepted publickey for alice from 203.0.113.7 port 51234 ssh2")
	f.Add("2026-11-29T05:12:01Z web1 sshd[1]: Failed password for invalid user a from ::1 port 2 ssh2")
	now := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, line string) {
		l, err := ParseSSHD(line, now, time.UTC)
		if err == nil && (l.Port < 1 || l.Port > 65535 || l.Action == "") {
			t.Fatalf("accepted %+v", l)
		}
	})
}
