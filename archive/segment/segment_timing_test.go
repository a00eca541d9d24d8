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
	_, k := testKeyring(b)
	benchWrite(b, func(out io.Writer, m Meta, ix *IndexBuilder) (*Writer, error) {
		return NewWriter(out, m, ix, k, WriterOptions{})
	})
}

// benchWrite writes one 20,000-event segment per iteration with newWriter.
func benchWrite(b *testing.B, newWriter func(io.Writer, Meta, *IndexBuilder) (*Writer, error)) {
	evs, plain := benchSegment(b)
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
		w, err := newWriter(&out, m, ix)
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

// BenchmarkWriteV2 is BenchmarkWrite in format v2: the data key sealed
// with HPKE (ML-KEM-768 + X25519) and the object signed with Ed25519, once
// per segment.
func BenchmarkWriteV2(b *testing.B) {
	_, pub, sk := v2Keys(b)
	pk, err := pub.Current("security", testHour)
	if err != nil {
		b.Fatal(err)
	}
	benchWrite(b, func(out io.Writer, m Meta, ix *IndexBuilder) (*Writer, error) {
		return NewWriterV2(out, m, ix, pk, sk)
	})
}

// BenchmarkSealKeyV2 is the per-segment public-key cost alone: one HPKE
// seal of a 32-byte data key and one Ed25519 signature.
func BenchmarkSealKeyV2(b *testing.B) {
	_, pub, sk := v2Keys(b)
	pk, err := pub.Current("security", testHour)
	if err != nil {
		b.Fatal(err)
	}
	dek := make([]byte, 32)
	digest := make([]byte, 32)
	for b.Loop() {
		if _, err := pk.Seal(hpkeInfo(pk.ID, "name"), dek); err != nil {
			b.Fatal(err)
		}
		sk.Sign(signedMessage("name", digest))
	}
}
