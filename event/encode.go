package event

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// TimeLayout is the canonical time format: UTC, always nine fractional
// digits, so that canonical times sort as strings.
const TimeLayout = "2006-01-02T15:04:05.000000000Z"

// AppendTime appends t in TimeLayout. For years 0 to 9999 it writes the
// digits directly: time.Time.AppendFormat interprets the layout on every
// call, which was 6% of ingest's CPU (two times per event). Other years go
// through AppendFormat, so the result is always AppendFormat's.
func AppendTime(dst []byte, t time.Time) []byte {
	t = t.UTC()
	y, mo, d := t.Date()
	if y < 0 || y > 9999 {
		return t.AppendFormat(dst, TimeLayout)
	}
	h, mi, s := t.Clock()
	var b [len(TimeLayout)]byte
	digits(b[0:4], y)
	b[4] = '-'
	digits(b[5:7], int(mo))
	b[7] = '-'
	digits(b[8:10], d)
	b[10] = 'T'
	digits(b[11:13], h)
	b[13] = ':'
	digits(b[14:16], mi)
	b[16] = ':'
	digits(b[17:19], s)
	b[19] = '.'
	digits(b[20:29], t.Nanosecond())
	b[29] = 'Z'
	return append(dst, b[:]...)
}

// digits writes v into b in decimal, zero-padded to len(b).
func digits(b []byte, v int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
}

// AppendJSON appends the canonical encoding of e and a newline to dst.
//
// The canonical encoding is the only one Custody stores: members in the
// order of the Event struct, empty members omitted ("v", "id", "time",
// "kind" and "tenant" always present), no insignificant whitespace, times in
// TimeLayout, strings escaped minimally (only '"', '\\' and control
// characters), attrs with keys sorted at every depth. Two equal events
// therefore encode to the same bytes.
func AppendJSON(dst []byte, e *Event) []byte {
	dst = append(dst, `{"v":`...)
	dst = strconv.AppendInt(dst, Version, 10)
	dst = appendStr(dst, "id", e.ID)
	dst = append(dst, `,"time":"`...)
	dst = AppendTime(dst, e.Time)
	dst = append(dst, '"')
	dst = appendStr(dst, "kind", string(e.Kind))
	dst = appendOpt(dst, "class", e.Class)
	dst = appendStr(dst, "tenant", e.Tenant)
	dst = appendOpt(dst, "app", e.App)
	dst = appendOpt(dst, "source", e.Source)
	if !e.Received.IsZero() {
		dst = append(dst, `,"received":"`...)
		dst = AppendTime(dst, e.Received)
		dst = append(dst, '"')
	}
	if e.Late {
		dst = append(dst, `,"late":true`...)
	}
	if e.Redacted > 0 {
		dst = append(dst, `,"redacted":`...)
		dst = strconv.AppendInt(dst, int64(e.Redacted), 10)
	}
	if e.IP.IsValid() {
		dst = append(dst, `,"ip":"`...)
		dst = e.IP.AppendTo(dst)
		dst = append(dst, '"')
	}
	if e.Port != 0 {
		dst = append(dst, `,"port":`...)
		dst = strconv.AppendUint(dst, uint64(e.Port), 10)
	}
	dst = appendOpt(dst, "session", e.Session)
	dst = appendOpt(dst, "login", e.Login)
	dst = appendOpt(dst, "user_agent", e.UserAgent)
	dst = appendOpt(dst, "action", e.Action)
	dst = appendOpt(dst, "protocol", e.Protocol)
	dst = appendOpt(dst, "method", e.Method)
	dst = appendOpt(dst, "path", e.Path)
	if e.Status != 0 {
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendInt(dst, int64(e.Status), 10)
	}
	dst = appendOpt(dst, "repo", e.Repo)
	dst = appendOpt(dst, "ref", e.Ref)
	dst = appendOpt(dst, "old_commit", e.OldCommit)
	dst = appendOpt(dst, "new_commit", e.NewCommit)
	dst = appendOpt(dst, "purpose", e.Purpose)
	if len(e.Attrs) > 0 {
		dst = append(dst, `,"attrs":`...)
		dst = appendValue(dst, e.Attrs)
	}
	return append(dst, '}', '\n')
}

func appendStr(dst []byte, key, v string) []byte {
	dst = append(dst, ',', '"')
	dst = append(dst, key...)
	dst = append(dst, '"', ':')
	return appendQuoted(dst, v)
}

func appendOpt(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return appendStr(dst, key, v)
}

const hexDigits = "0123456789abcdef"

// AppendString writes s as a JSON string, escaped as the canonical
// encoding escapes (§6 of docs/EVENTS.md), an invalid UTF-8 byte as
// U+FFFD: for senders that build event JSON themselves (the OTLP
// receiver) before Decode checks it.
func AppendString(dst []byte, s string) []byte { return appendQuoted(dst, s) }

// appendQuoted writes s as a JSON string. s is valid UTF-8 (Decode rejects
// anything else); an invalid byte would be replaced by U+FFFD.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendValue writes an attrs value with map keys sorted.
func appendValue(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...)
	case string:
		return appendQuoted(dst, x)
	case bool:
		return strconv.AppendBool(dst, x)
	case json.Number:
		return append(dst, x...)
	case []any:
		dst = append(dst, '[')
		for i, e := range x {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendValue(dst, e)
		}
		return append(dst, ']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		dst = append(dst, '{')
		for i, k := range keys {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendQuoted(dst, k)
			dst = append(dst, ':')
			dst = appendValue(dst, x[k])
		}
		return append(dst, '}')
	}
	// Decode produces only the types above; anything else is a bug.
	panic("event: unsupported attrs value type")
}

// FormatTime renders t canonically.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// ParseTime reads a stored event time: the canonical layout by position
// (the common case, several times faster than time.Parse), anything else
// with time.Parse as RFC 3339.
func ParseTime(s string) (time.Time, error) {
	if len(s) != len(TimeLayout) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[19] != '.' || s[29] != 'Z' {
		return time.Parse(time.RFC3339Nano, s)
	}
	n := func(i, j int) int {
		v := 0
		for k := i; k < j; k++ {
			c := s[k]
			if c < '0' || c > '9' {
				return -1
			}
			v = v*10 + int(c-'0')
		}
		return v
	}
	y, mo, d, h, mi, se, ns := n(0, 4), n(5, 7), n(8, 10), n(11, 13), n(14, 16), n(17, 19), n(20, 29)
	if y < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 59 || ns < 0 {
		return time.Time{}, fmt.Errorf("%q is not a valid time", s)
	}
	t := time.Date(y, time.Month(mo), d, h, mi, se, ns, time.UTC)
	if t.Day() != d {
		return time.Time{}, fmt.Errorf("%q is not a valid date", s)
	}
	return t, nil
}
