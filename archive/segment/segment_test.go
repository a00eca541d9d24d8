package segment

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/crypto/keyring"
)

var testHour = time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)

// testKeyring is fixed so that golden vectors are reproducible.
func testKeyring(t testing.TB) (*keyring.Keyring, keyring.Key) {
	t.Helper()
	m := make([]byte, 32)
	for i := range m {
		m[i] = byte(i)
	}
	doc := fmt.Sprintf(`{"version":1,"keys":[{"id":"2026-11.v1","month":"2026-11","created":"2026-11-01T00:00:00Z","key":"%s"}]}`,
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	kr, err := keyring.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	k, err := kr.Get("2026-11.v1")
	if err != nil {
		t.Fatal(err)
	}
	return kr, k
}

type testEvent struct {
	line    string
	ip      string
	login   string
	session string
	time    time.Time
}

// events makes n distinct connection events of about 400 bytes within
// testHour, deterministic for a given seed.
func events(n int, seed uint64) []testEvent {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]testEvent, n)
	for i := range out {
		ts := testHour.Add(time.Duration(i) * time.Hour / time.Duration(n+1)).Add(time.Duration(r.IntN(1000)))
		ip := fmt.Sprintf("203.0.%d.%d", r.IntN(4), r.IntN(256))
		login := fmt.Sprintf("user%d@example.org", r.IntN(500))
		sess := fmt.Sprintf("sess-%08x", r.Uint32())
		out[i] = testEvent{
			line: fmt.Sprintf(`{"v":1,"id":"evt-%d-%016x","time":"%s","kind":"connection","tenant":"acme","app":"shop","ip":"%s","port":%d,"session":"%s","login":"%s","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36","method":"GET","path":"/products/%d?ref=%x","status":%d,"bytes":%d}`+"\n",
				i, r.Uint64(), ts.Format(time.RFC3339Nano), ip, 1024+r.IntN(60000), sess, login, r.IntN(10000), r.Uint32(), []int{200, 200, 200, 301, 404, 500}[r.IntN(6)], r.IntN(100000)),
			ip: ip, login: login, session: sess, time: ts,
		}
	}
	return out
}

func metaFor(evs []testEvent) Meta {
	m := Meta{Class: "security", Kind: "connection", Hour: testHour, Topic: "custody.events", Partition: 3,
		FirstOffset: 1000, LastOffset: 1000 + int64(len(evs)) - 1, Count: int64(len(evs)), MinTime: evs[0].time, MaxTime: evs[0].time}
	for _, e := range evs {
		if e.time.Before(m.MinTime) {
			m.MinTime = e.time
		}
		if e.time.After(m.MaxTime) {
			m.MaxTime = e.time
		}
	}
	return m
}

// writeSegment writes evs as one segment and returns its name and bytes.
func writeSegment(t testing.TB, evs []testEvent, random io.Reader) (string, []byte, string) {
	t.Helper()
	_, k := testKeyring(t)
	ix := NewIndexBuilder()
	var plain strings.Builder
	for _, e := range evs {
		ix.AddIP(e.ip)
		ix.Add(FieldLogin, e.login)
		ix.Add(FieldSession, e.session)
		ix.Add(FieldTenant, "acme")
		ix.Add(FieldApp, "shop")
		plain.WriteString(e.line)
	}
	var buf bytes.Buffer
	w, err := NewWriter(&buf, metaFor(evs), ix, k, WriterOptions{Random: random})
	if err != nil {
		t.Fatal(err)
	}
	// Write line by line, as the archiver does.
	for _, e := range evs {
		if _, err := io.WriteString(w, e.line); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return w.Name(), buf.Bytes(), plain.String()
}

// readSegment opens and reads a whole segment, returning the first error.
func readSegment(t testing.TB, name string, b []byte, opts ReaderOptions) (string, error) {
	t.Helper()
	kr, _ := testKeyring(t)
	r, err := Open(bytes.NewReader(b), name, kr, opts)
	if err != nil {
		return "", err
	}
	defer r.Close()
	body, err := r.Body()
	if err != nil {
		return "", err
	}
	out, err := io.ReadAll(body)
	return string(out), err
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{1, 7, 1000, 20000} {
		evs := events(n, uint64(n))
		name, b, plain := writeSegment(t, evs, nil)
		if want := "security/connection/2026/11/29/05/custody.events+3+00000000000000001000.cseg"; name != want {
			t.Fatalf("Name = %q; want %q", name, want)
		}
		got, err := readSegment(t, name, b, ReaderOptions{})
		if err != nil {
			t.Fatalf("%d events: %v", n, err)
		}
		if got != plain {
			t.Fatalf("%d events: body differs from what was written", n)
		}
		if n == 20000 {
			ratio := float64(len(plain)) / float64(len(b))
			t.Logf("%d events: %d plaintext bytes -> %d stored (%.1fx)", n, len(plain), len(b), ratio)
		}
	}
}

func TestIndex(t *testing.T) {
	evs := events(500, 9)
	// Fixed keys make the bloom bits, and so this test, reproducible.
	name, b, _ := writeSegment(t, evs, rand.NewChaCha8([32]byte{9}))
	kr, _ := testKeyring(t)
	r, err := Open(bytes.NewReader(b), name, kr, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ix := r.Index()
	for _, e := range evs {
		a := netip.MustParseAddr(e.ip)
		if !ix.MayContain(FieldIP, e.ip) || !ix.MayContain(FieldLogin, e.login) || !ix.MayContain(FieldSession, e.session) ||
			!ix.MayContainPrefix(netip.PrefixFrom(a, 32)) || !ix.MayContainPrefix(netip.MustParsePrefix(IPPrefix(a).String())) {
			t.Fatalf("index denies a value the segment holds: %+v", e)
		}
	}
	// Absent values: the false-positive rate must be near the designed 1%.
	fp := 0
	const probes = 10000
	for i := range probes {
		if ix.MayContain(FieldLogin, fmt.Sprintf("absent-%d@example.org", i)) {
			fp++
		}
	}
	if fp > probes*3/100 {
		t.Errorf("false positives: %d of %d absent logins; want about 1%%", fp, probes)
	}
	if ix.MayContain(FieldRepo, "anything") {
		t.Error("a field with no values must match nothing")
	}
	fp = 0
	for i := range 256 {
		if ix.MayContainPrefix(netip.MustParsePrefix(fmt.Sprintf("198.51.%d.0/24", i))) {
			fp++
		}
	}
	if fp > 256*3/100 {
		t.Errorf("false positives: %d of 256 absent /24 prefixes", fp)
	}
	if !ix.MayContainPrefix(netip.MustParsePrefix("203.0.0.0/16")) {
		t.Error("a /16 cannot be pruned by the /24 filter and must match")
	}
}

func TestBloomKeyedPerSegment(t *testing.T) {
	evs := events(50, 3)
	_, a, _ := writeSegment(t, evs, nil)
	_, b, _ := writeSegment(t, evs, nil)
	if bytes.Equal(a, b) {
		t.Fatal("two segments of the same events are identical; keys and nonces must be fresh")
	}
}

func TestErrors(t *testing.T) {
	evs := events(3000, 5) // several body chunks
	name, good, _ := writeSegment(t, evs, nil)
	kr, _ := testKeyring(t)
	f := func(what string, b []byte, name string, want error, wantText string) {
		t.Helper()
		_, err := readSegment(t, name, b, ReaderOptions{})
		if !errors.Is(err, want) {
			t.Errorf("%s: error %v; want %v", what, err, want)
			return
		}
		if !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %q does not name the object", what, err)
		}
		if wantText != "" && !strings.Contains(err.Error(), wantText) {
			t.Errorf("%s: error %q lacks %q", what, err, wantText)
		}
	}
	f("renamed", good, strings.Replace(name, "/05/", "/06/", 1), ErrName, "")
	f("truncated by one byte", good[:len(good)-1], name, ErrTruncated, "")
	f("truncated at a chunk boundary", good[:len(good)-len(good)%1000], name, ErrTruncated, "")
	f("extended", append(bytes.Clone(good), 'x'), name, ErrTrailing, "")
	f("empty", nil, name, ErrTruncated, "")
	f("not a segment", []byte("PK\x03\x04 some zip file or other garbage here"), name, ErrNotSegment, "")
	v9 := bytes.Clone(good)
	v9[len(Magic)] = 9
	f("version 9", v9, name, ErrVersion, "unsupported segment version 9")

	// A key ID the keyring lacks: the message names key and object.
	h, hb, err := ReadHeader(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	h.KeyID = "2026-10.v1"
	hdr, err := encodeHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	other := append(hdr, good[preambleSize+len(hb):]...)
	_, err = Open(bytes.NewReader(other), name, kr, ReaderOptions{})
	var nf *keyring.NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "key 2026-10.v1 not in keyring") || !strings.Contains(err.Error(), name) {
		t.Errorf("unknown key: error %v; want key 2026-10.v1 not in keyring, naming %s", err, name)
	}

	// Cap on decompressed size.
	_, err = readSegment(t, name, good, ReaderOptions{MaxPlaintext: 100000})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxPlaintext below the body size: error %v; want ErrTooLarge", err)
	}
}

// TestEveryByteTampered flips each byte of a small segment in turn. Every
// change must be caught, on Open or while reading the body.
func TestEveryByteTampered(t *testing.T) {
	name, good, _ := writeSegment(t, events(5, 1), nil)
	for i := range good {
		bad := bytes.Clone(good)
		bad[i] ^= 0x01
		got, err := readSegment(t, name, bad, ReaderOptions{})
		if err == nil {
			t.Fatalf("byte %d of %d flipped: read %d bytes without error", i, len(good), len(got))
		}
	}
}

func TestWriterRejectsWrongCount(t *testing.T) {
	evs := events(3, 1)
	_, k := testKeyring(t)
	m := metaFor(evs)
	w, err := NewWriter(io.Discard, m, nil, k, WriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, evs[0].line)
	if err := w.Close(); !errors.Is(err, ErrMismatch) {
		t.Errorf("Close after 1 of 3 events: %v; want ErrMismatch", err)
	}
	m.MaxTime = testHour.Add(2 * time.Hour)
	if _, err := NewWriter(io.Discard, m, nil, k, WriterOptions{}); !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), "fall outside hour") {
		t.Errorf("events outside the hour: %v; want ErrHeader naming the hour", err)
	}
}

func TestHeaderTimeSpelling(t *testing.T) {
	_, good, _ := writeSegment(t, events(2, 3), nil)
	_, hb, err := ReadHeader(bytes.NewReader(good))
	must(t, err)
	for _, alt := range [][2]string{{`"hour":"2026-11-29T05:00:00Z"`, `"hour":"2026-11-29T05:00:00.000Z"`}, {`"hour":"2026-11-29T05:00:00Z"`, `"hour":"2026-11-29T05:00:00+00:00"`}} {
		j := bytes.Replace(hb, []byte(alt[0]), []byte(alt[1]), 1)
		if bytes.Equal(j, hb) {
			t.Fatalf("header lacks %s", alt[0])
		}
		if _, err := parseHeader(j); !errors.Is(err, ErrHeader) || !strings.Contains(err.Error(), "hour") {
			t.Errorf("header with %s: %v; want ErrHeader naming hour", alt[1], err)
		}
	}
}

func TestHeadLen(t *testing.T) {
	name, good, _ := writeSegment(t, events(50, 4), nil)
	_, hb, err := ReadHeader(bytes.NewReader(good))
	must(t, err)
	idx := preambleSize + len(hb)
	want := idx + 4 + int(binary.BigEndian.Uint32(good[idx:]))
	for _, n := range []int{0, 5, preambleSize, idx, idx + 3, idx + 4, want, len(good)} {
		got, ok := HeadLen(good[:n])
		switch {
		case n < preambleSize:
			if ok || got != preambleSize {
				t.Errorf("HeadLen(%d bytes) = %d, %v; want %d, false", n, got, ok, preambleSize)
			}
		case n < idx+4:
			if ok || got != idx+4 {
				t.Errorf("HeadLen(%d bytes) = %d, %v; want %d, false", n, got, ok, idx+4)
			}
		default:
			if !ok || got != want {
				t.Errorf("HeadLen(%d bytes) = %d, %v; want %d, true", n, got, ok, want)
			}
		}
	}
	// The head alone opens, index included: a pruning reader needs
	// nothing more.
	kr, _ := testKeyring(t)
	r, err := Open(bytes.NewReader(good[:want]), name, kr, ReaderOptions{})
	if err != nil {
		t.Fatalf("Open of the %d-byte head: %v", want, err)
	}
	if r.Index() == nil || r.Header().Count != 50 {
		t.Errorf("head opened without its index or header")
	}
}
