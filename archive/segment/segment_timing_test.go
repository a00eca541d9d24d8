package segment

import (
	"bytes"
	"io"
	"testing"
)

// benchSegment is 20,000 synthetic ~450-byte connection events: one
// segment's worth at the archiver's default cut.
func benchSegment(b *testing.B) ([]testEvent, []byte) {
	evs := events(20000, 77)
	var buf bytes.Buffer
	for _, e := range evs {
		buf.WriteString(e.line)
	}
	return evs, buf.Bytes()
}

// BenchmarkWrite measures compress + seal of a body plus the index, per
// byte and per event; the ratio metric is raw JSON bytes per stored byte.
func BenchmarkWrite(b *testing.B) {
	evs, plain := benchSegment(b)
	_, k := testKeyring(b)
	m := metaFor(evs)
	var out bytes.Buffer
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		out.Reset()
		ix := NewIndexBuilder()
		for _, e := range evs {
			ix.AddIP(e.ip)
			ix.Add(FieldLogin, e.login)
			ix.Add(FieldSession, e.session)
		}
		w, err := NewWriter(&out, m, ix, k, WriterOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := w.Write(plain); err != nil {
			b.Fatal(err)
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(plain))/float64(out.Len()), "ratio")
	b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkWriteBodyOnly leaves out the index, to show its share.
func BenchmarkWriteBodyOnly(b *testing.B) {
	evs, plain := benchSegment(b)
	_, k := testKeyring(b)
	m := metaFor(evs)
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		w, err := NewWriter(io.Discard, m, nil, k, WriterOptions{})
		if err != nil {
			b.Fatal(err)
		}
		w.Write(plain)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkRead measures open + authenticate + decompress + verify.
func BenchmarkRead(b *testing.B) {
	evs, plain := benchSegment(b)
	name, seg, _ := writeSegment(b, evs, nil)
	kr, _ := testKeyring(b)
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := Open(bytes.NewReader(seg), name, kr, ReaderOptions{})
		if err != nil {
			b.Fatal(err)
		}
		body, _ := r.Body()
		if _, err := io.Copy(io.Discard, body); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(float64(len(evs))*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
