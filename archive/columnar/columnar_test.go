package columnar

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/custodylog/custody/internal/testkit/dataset"
	"github.com/klauspost/compress/zstd"
)

func roundTrip(t testing.TB, e *Encoder, d *Decoder, lines [][]byte) []byte {
	t.Helper()
	blk, err := e.AppendBlock(nil, lines)
	if err != nil {
		t.Fatal(err)
	}
	b, n, err := Parse(blk)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(blk) {
		t.Fatalf("Parse spans %d bytes of %d", n, len(blk))
	}
	got, err := d.AppendLines(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Join(lines, []byte("\n")), '\n')
	if !bytes.Equal(got, want) {
		gl := bytes.Split(got, []byte("\n"))
		for i, l := range lines {
			if i >= len(gl) || !bytes.Equal(gl[i], l) {
				t.Fatalf("line %d:\n got %q\nwant %q", i, gl[min(i, len(gl)-1)], l)
			}
		}
		t.Fatalf("got %d bytes, want %d", len(got), len(want))
	}
	return blk
}

func coders(t testing.TB) (*Encoder, *Decoder) {
	e, err := NewEncoder(zstd.SpeedDefault)
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDecoder()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return e, d
}

// Every event of the shared benchmark dataset comes back byte for byte.
func TestRoundTripDataset(t *testing.T) {
	e, d := coders(t)
	const n = 100000
	g := dataset.New(dataset.Options{Seed: 3, Total: n})
	var lines [][]byte
	raw := 0
	stored := 0
	encs := map[string]string{}
	for i := 0; i < n; i++ {
		l := g.Line()
		raw += len(l) + 1
		lines = append(lines, l)
		if len(lines) == 8192 || i == n-1 {
			blk := roundTrip(t, e, d, lines)
			stored += len(blk)
			b, _, _ := Parse(blk)
			for _, c := range b.Columns {
				encs[string(c.Key)] = c.Encoding()
			}
			lines = nil
		}
	}
	// The encodings the data calls for: a regression in a typed encoding
	// would fall back to raw silently, and only the size would tell.
	for k, want := range map[string]string{"id": "uuid-rel", "time": "time", "received": "time-rel", "ip": "ip", "port": "int",
		"session": "hex", "new_commit": "hex", "tenant": "dict", "user_agent": "dict", "status": "dict", "kind": "dict"} {
		if encs[k] != want {
			t.Errorf("column %s encoded as %q, want %q", k, encs[k], want)
		}
	}
	t.Logf("%d events: %.1f bytes each raw, %.1f stored (%.1fx)", n, float64(raw)/n, float64(stored)/n, float64(raw)/float64(stored))
}

// Lines that are not flat canonical objects, and values no typed encoding
// takes, still come back byte for byte.
func TestRoundTripOddLines(t *testing.T) {
	e, d := coders(t)
	f := func(lines ...string) {
		t.Helper()
		var ls [][]byte
		for _, l := range lines {
			ls = append(ls, []byte(l))
		}
		roundTrip(t, e, d, ls)
	}
	f(`{}`)
	f(``)
	f(`not json at all`)
	f(`{ "a": 1 }`, `{"a":1}`, `[1,2]`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{"a":1`)
	f(`{"a":1,"a":2}`, `{"a":"x"}`)
	f(`{"a\"b":{"x":[1,{"y":"}"}]},"c":[],"d":null,"e":true,"f":-0,"g":1e5,"h":"\u00e9"}`)
	// Values that look typed but are not canonical: each column falls
	// back to raw.
	f(`{"time":"2026-11-29T05:00:00.123456789Z"}`, `{"time":"2026-11-29T05:00:00.12345678Z "}`)
	f(`{"time":"2026-02-30T05:00:00.123456789Z"}`)
	f(`{"id":"01a21f73-9ed4-7f46-95d3-971b52dc7536"}`, `{"id":"01A21F73-9ED4-7F46-95D3-971B52DC7536"}`)
	f(`{"ip":"192.0.2.1"}`, `{"ip":"::ffff:192.0.2.1"}`, `{"ip":"2001:db8::1"}`, `{"ip":"2001:DB8::1"}`)
	f(`{"ip":"192.0.2.1"}`, `{"ip":"fe80::1%eth0"}`)
	f(`{"ip":"192.0.2.1"}`, `{"ip":"192.000.2.1"}`)
	f(`{"s":"abcdef"}`, `{"s":"ABCDEF"}`)
	f(`{"s":"abcdef"}`, `{"s":"abc"}`)
	f(`{"s":""}`, `{"s":"00"}`)
	f(`{"n":9223372036854775807}`, `{"n":-9223372036854775807}`, `{"n":0}`)
	f(`{"n":1}`, `{"n":-0}`)
	f(`{"n":1}`, `{"n":01}`)
	f(`{"n":1}`, `{"n":9223372036854775808}`)
	f(`{"t":"0000-01-01T00:00:00.000000000Z"}`, `{"t":"9999-12-31T23:59:59.999999999Z"}`, `{"t":"2024-02-29T12:00:00.000000001Z"}`)
	// A column seen on some rows only, in different orders.
	f(`{"a":1,"b":2}`, `{"b":3,"a":4}`, `{"c":5}`, `x`, `{"a":6}`)
	// Many repeats of few values: the dictionary, including 257+ entries
	// (two-byte indexes).
	var many []string
	for i := 0; i < 4000; i++ {
		many = append(many, `{"k":"v`+strings.Repeat("x", i%300)+`"}`)
	}
	f(many...)
}

func TestEncodingLimits(t *testing.T) {
	e, _ := coders(t)
	if _, err := e.AppendBlock(nil, nil); !errors.Is(err, ErrEmpty) {
		t.Fatalf("empty block: %v", err)
	}
	// More member names than a block takes: lines past the limit go
	// verbatim rather than failing the block.
	var ls [][]byte
	var sb strings.Builder
	sb.WriteString("{")
	for i := 0; i <= MaxColumns; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString(`"k` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `":1`)
	}
	sb.WriteString("}")
	ls = append(ls, []byte(sb.String()))
	_, d := coders(t)
	roundTrip(t, e, d, ls)
}

// A block that claims a huge decoded size is refused, not allocated.
func TestDecodeBomb(t *testing.T) {
	e, d := coders(t)
	var ls [][]byte
	for i := 0; i < 100000; i++ {
		ls = append(ls, []byte(`{"k":"`+strings.Repeat("y", 1000)+`"}`))
	}
	blk, err := e.AppendBlock(nil, ls)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Parse(blk)
	if err != nil {
		t.Fatal(err)
	}
	d.MaxBytes = 10 << 20
	if _, err := d.AppendLines(nil, b); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a 100 MB block under a 10 MB cap: %v", err)
	}
}

// Rows gives the selected members of each row, and the whole line of any
// row, byte for byte as AppendLines does, for every kind of line.
func TestRows(t *testing.T) {
	e, d := coders(t)
	g := dataset.New(dataset.Options{Seed: 8, Total: 3000})
	var lines [][]byte
	for i := 0; i < 3000; i++ {
		lines = append(lines, g.Line())
	}
	lines = append(lines, []byte(`not json`), []byte(`{"a":1,"a":2,"ip":"x"}`), []byte(`{}`), []byte(`{"ip":"1.2.3.4","time":"\u0032"}`))
	blk, err := e.AppendBlock(nil, lines)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := Parse(blk)
	if err != nil {
		t.Fatal(err)
	}
	all, err := d.AppendLines(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Split(all, []byte("\n"))
	keys := []string{"ip", "time", "nosuch"}
	rows, err := d.Rows(b, keys)
	if err != nil {
		t.Fatal(err)
	}
	i := 0
	for rows.Next() {
		line := lines[i]
		for k, key := range keys {
			got := rows.Value(k)
			var wantV []byte
			if ms, ok := split(nil, line); ok {
				for _, m := range ms {
					if string(m.key) == key {
						wantV = m.value
						break
					}
				}
			}
			if !bytes.Equal(got, wantV) {
				t.Fatalf("row %d %s: %q, want %q", i, key, got, wantV)
			}
		}
		if (rows.Verbatim() != nil) != bytes.Equal(line, []byte("not json")) {
			t.Fatalf("row %d: verbatim %q", i, rows.Verbatim())
		}
		// Every 7th line rebuilt: the rebuild must not depend on
		// having rebuilt the rows before it.
		if i%7 == 0 || i >= 3000 {
			l, err := rows.AppendLine(nil)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(l, append(bytes.Clone(want[i]), '\n')) || !bytes.Equal(want[i], line) {
				t.Fatalf("row %d:\n got %q\nwant %q", i, l, line)
			}
		}
		i++
	}
	if i != len(lines) {
		t.Fatalf("%d rows of %d", i, len(lines))
	}
}
