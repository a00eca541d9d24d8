package columnar

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/custodylog/custody/internal/testkit/dataset"
	"github.com/klauspost/compress/zstd"
)

// benchLines is one block's worth of the shared realistic dataset.
func benchLines(n int) ([][]byte, int) {
	g := dataset.New(dataset.Options{Seed: 11, Total: n})
	lines := make([][]byte, n)
	raw := 0
	for i := range lines {
		lines[i] = g.Line()
		raw += len(lines[i]) + 1
	}
	return lines, raw
}

// BenchmarkEncode: events per second through the block encoder, and the
// stored bytes per event, against zstd of the same NDJSON (the v2 body).
func BenchmarkEncode(b *testing.B) {
	const rows = 32768
	lines, raw := benchLines(rows)
	for _, lvl := range []zstd.EncoderLevel{zstd.SpeedFastest, zstd.SpeedDefault, zstd.SpeedBetterCompression} {
		b.Run(fmt.Sprintf("columnar-%s", lvl), func(b *testing.B) {
			e, err := NewEncoder(lvl)
			if err != nil {
				b.Fatal(err)
			}
			var blk []byte
			b.SetBytes(int64(raw))
			b.ReportAllocs()
			for b.Loop() {
				blk, err = e.AppendBlock(blk[:0], lines)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)*rows/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(len(blk))/rows, "B/event")
		})
		b.Run(fmt.Sprintf("rows-%s", lvl), func(b *testing.B) {
			z, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(lvl), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
			nd := append(bytes.Join(lines, []byte("\n")), '\n')
			var out []byte
			b.SetBytes(int64(raw))
			for b.Loop() {
				out = z.EncodeAll(nd, out[:0])
			}
			b.ReportMetric(float64(b.N)*rows/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(len(out))/rows, "B/event")
		})
	}
}

// BenchmarkDecode: events per second back to NDJSON, against zstd
// decompression of the same NDJSON (the v2 body).
func BenchmarkDecode(b *testing.B) {
	b.Run("columnar", benchDecodeColumnar)
	b.Run("rows", func(b *testing.B) {
		lines, raw := benchLines(32768)
		z, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(8<<20))
		comp := z.EncodeAll(append(bytes.Join(lines, []byte("\n")), '\n'), nil)
		d, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		defer d.Close()
		var out []byte
		var err error
		b.SetBytes(int64(raw))
		b.ReportAllocs()
		for b.Loop() {
			if out, err = d.DecodeAll(comp, out[:0]); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)*32768/b.Elapsed().Seconds(), "events/s")
	})
}

func benchDecodeColumnar(b *testing.B) {
	const rows = 32768
	lines, raw := benchLines(rows)
	e, _ := NewEncoder(zstd.SpeedDefault)
	blk, err := e.AppendBlock(nil, lines)
	if err != nil {
		b.Fatal(err)
	}
	d, _ := NewDecoder()
	defer d.Close()
	var out []byte
	b.SetBytes(int64(raw))
	b.ReportAllocs()
	for b.Loop() {
		blk, _, err := Parse(blk)
		if err != nil {
			b.Fatal(err)
		}
		if out, err = d.AppendLines(out[:0], blk); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*rows/b.Elapsed().Seconds(), "events/s")
}
