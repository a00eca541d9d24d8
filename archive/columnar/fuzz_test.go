package columnar

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// FuzzRoundTrip: any lines come back byte for byte. The input is split
// at newlines into a block's lines.
func FuzzRoundTrip(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/lines/*.jsonl")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"a":1}` + "\n" + `x`))
	e, err := NewEncoder(zstd.SpeedFastest)
	if err != nil {
		f.Fatal(err)
	}
	d, err := NewDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		lines := bytes.Split(in, []byte("\n"))
		blk, err := e.AppendBlock(nil, lines)
		if err != nil {
			t.Fatal(err)
		}
		b, n, err := Parse(blk)
		if err != nil || n != len(blk) {
			t.Fatalf("parse: %d of %d bytes, %v", n, len(blk), err)
		}
		got, err := d.AppendLines(nil, b)
		if err != nil {
			t.Fatal(err)
		}
		if want := append(bytes.Clone(in), '\n'); !bytes.Equal(got, want) {
			t.Fatalf("got %q, want %q", got, want)
		}
	})
}

// FuzzDecode: a reader given any bytes as a block returns an error or
// lines, and never panics or allocates without bound.
func FuzzDecode(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/blocks/*.cblk")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	d, err := NewDecoder()
	if err != nil {
		f.Fatal(err)
	}
	d.MaxBytes = 16 << 20
	f.Fuzz(func(t *testing.T, in []byte) {
		b, _, err := Parse(in)
		if err != nil {
			return
		}
		all, err := d.AppendLines(nil, b)
		// The selective reader rebuilds the same lines, or fails where
		// the whole-block reader failed.
		rows, rerr := d.Rows(b, []string{"ip", "time"})
		if rerr != nil {
			if err == nil && !errors.Is(rerr, ErrTooLarge) {
				t.Fatalf("Rows failed (%v) where AppendLines read the block", rerr)
			}
			return
		}
		var got []byte
		for rows.Next() {
			rows.Value(0)
			rows.Value(1)
			if got, rerr = rows.AppendLine(got); rerr != nil {
				break
			}
		}
		if err == nil && rerr == nil && !bytes.Equal(got, all) {
			t.Fatalf("Rows rebuilt %q, AppendLines %q", got, all)
		}
	})
}

// FuzzValues: each value decoder, given any payload, returns values or
// an error, never a panic; what it returns re-encodes to the same values.
func FuzzValues(f *testing.F) {
	f.Add(byte(encTime), uint16(2), []byte{0x80, 0x80, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add(byte(encInt), uint16(3), []byte{2, 0x02, 0, 0, 1, 0, 2, 3})
	f.Add(byte(encDict), uint16(3), []byte{2, 1, 1, 'a', 'b', 1, 0, 1, 0})
	f.Add(byte(encIP), uint16(1), []byte{4, 192, 0, 2, 1})
	f.Add(byte(encHex), uint16(1), []byte{2, 0xab, 0xcd})
	f.Add(byte(encUUID), uint16(1), append([]byte{0x02}, make([]byte, 10)...))
	f.Add(byte(encRaw), uint16(2), []byte{1, 1, 'x', 'y'})
	e, err := NewEncoder(zstd.SpeedFastest)
	if err != nil {
		f.Fatal(err)
	}
	dec, err := NewDecoder()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, enc byte, n uint16, p []byte) {
		if enc > encInt || n == 0 {
			return
		}
		var d decoded
		if err := decodeValues(enc, p, int(n), 1<<20, &d, nil); err != nil {
			return
		}
		if len(d.ends) != int(n) && len(d.idx) != int(n) {
			t.Fatalf("%d values of %d", max(len(d.ends), len(d.idx)), n)
		}
		vals := make([][]byte, n)
		for i := range vals {
			s, e := d.span(uint32(i))
			vals[i] = d.text[s:e]
		}
		// Each value is text the encoder accepts back as the same.
		var lines [][]byte
		for _, v := range vals {
			lines = append(lines, append(append([]byte(`{"k":`), v...), '}'))
		}
		roundTrip(t, e, dec, lines)
	})
}
