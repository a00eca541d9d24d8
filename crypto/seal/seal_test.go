package seal

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	mrand "math/rand/v2"
	"testing"
)

var (
	testKey    = bytes.Repeat([]byte{0x42}, KeySize)
	testPrefix = [NoncePrefixSize]byte{1, 2, 3, 4, 5, 6, 7}
	testAAD    = []byte("security/connection/2026/11/29/05/custody.events+0+00000000000000000000.cseg")
)

func sealBytes(t testing.TB, pt []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, testKey, testPrefix, testAAD)
	if err != nil {
		t.Fatal(err)
	}
	// Write in odd pieces so chunk boundaries fall inside writes.
	for p := pt; len(p) > 0; {
		n := min(len(p), 1000+mrand.IntN(70000))
		if _, err := w.Write(p[:n]); err != nil {
			t.Fatal(err)
		}
		p = p[n:]
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func openBytes(sealed []byte, key []byte, prefix [NoncePrefixSize]byte, aad []byte) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(sealed), key, prefix, aad)
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}

func TestRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3 * ChunkSize, 3*ChunkSize + 17} {
		pt := make([]byte, n)
		rand.Read(pt)
		sealed := sealBytes(t, pt)
		// docs/FORMAT.md §7.3: full chunks of 65536, then a final one of
		// 0-65536 bytes; each chunk costs a 4-byte word and a 16-byte tag.
		full := 0
		if n > 0 {
			full = (n - 1) / ChunkSize
		}
		if got, want := len(sealed), full*(FrameSize+ChunkSize+Overhead)+FrameSize+(n-full*ChunkSize)+Overhead; got != want {
			t.Errorf("len(sealed %d bytes) = %d; the format says %d", n, got, want)
		}
		got, err := openBytes(sealed, testKey, testPrefix, testAAD)
		if err != nil {
			t.Fatalf("open %d bytes: %v", n, err)
		}
		if !bytes.Equal(got, pt) {
			t.Fatalf("open %d bytes: plaintext differs", n)
		}
	}
}

func TestNoPlaintextInOutput(t *testing.T) {
	pt := bytes.Repeat([]byte("MARKER-203.0.113.7-"), 10000)
	sealed := sealBytes(t, pt)
	if bytes.Contains(sealed, []byte("MARKER")) {
		t.Fatal("sealed stream contains plaintext")
	}
}

// TestEveryChangeDetected flips bits across a three-chunk stream: in every
// frame word, at the edges of every chunk and at random places inside.
func TestEveryChangeDetected(t *testing.T) {
	pt := make([]byte, 2*ChunkSize+500)
	rand.Read(pt)
	sealed := sealBytes(t, pt)
	var positions []int
	chunkLen := FrameSize + ChunkSize + Overhead
	for start := 0; start < len(sealed); start += chunkLen {
		for i := 0; i < 64 && start+i < len(sealed); i++ {
			positions = append(positions, start+i)
		}
		end := min(start+chunkLen, len(sealed))
		for i := max(start, end-32); i < end; i++ {
			positions = append(positions, i)
		}
	}
	for range 300 {
		positions = append(positions, mrand.IntN(len(sealed)))
	}
	for _, pos := range positions {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(sealed)
			bad[pos] ^= bit
			got, err := openBytes(bad, testKey, testPrefix, testAAD)
			if err == nil {
				t.Fatalf("flip 0x%02x at byte %d: opened without error (%d bytes)", bit, pos, len(got))
			}
			if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("flip at byte %d: error %v; want ErrAuth or ErrTruncated", pos, err)
			}
		}
	}
}

func TestTruncationAndExtension(t *testing.T) {
	pt := make([]byte, 2*ChunkSize+10)
	rand.Read(pt)
	sealed := sealBytes(t, pt)
	chunkLen := FrameSize + ChunkSize + Overhead
	for _, cut := range []int{0, 1, FrameSize, chunkLen - 1, chunkLen, 2 * chunkLen, len(sealed) - 1} {
		_, err := openBytes(sealed[:cut], testKey, testPrefix, testAAD)
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("truncated to %d of %d bytes: error %v; want ErrTruncated", cut, len(sealed), err)
		}
	}
	_, err := openBytes(append(bytes.Clone(sealed), 0), testKey, testPrefix, testAAD)
	if !errors.Is(err, ErrTrailing) {
		t.Errorf("one byte appended: error %v; want ErrTrailing", err)
	}
	// A complete second stream appended is still an extension.
	_, err = openBytes(append(bytes.Clone(sealed), sealed...), testKey, testPrefix, testAAD)
	if !errors.Is(err, ErrTrailing) {
		t.Errorf("stream appended to itself: error %v; want ErrTrailing", err)
	}
}

func TestReorderAndSplice(t *testing.T) {
	pt := make([]byte, 3*ChunkSize)
	rand.Read(pt)
	sealed := sealBytes(t, pt)
	c := FrameSize + ChunkSize + Overhead
	swapped := append(append(append([]byte{}, sealed[c:2*c]...), sealed[:c]...), sealed[2*c:]...)
	if _, err := openBytes(swapped, testKey, testPrefix, testAAD); !errors.Is(err, ErrAuth) {
		t.Errorf("chunks 0 and 1 swapped: error %v; want ErrAuth", err)
	}
	// Dropping a middle chunk shifts the counter.
	dropped := append(append([]byte{}, sealed[:c]...), sealed[2*c:]...)
	if _, err := openBytes(dropped, testKey, testPrefix, testAAD); !errors.Is(err, ErrAuth) {
		t.Errorf("chunk 1 dropped: error %v; want ErrAuth", err)
	}
	// Stopping at a non-final chunk whose frame is re-marked final.
	early := bytes.Clone(sealed[:c])
	early[0] |= 0x80
	if _, err := openBytes(early, testKey, testPrefix, testAAD); !errors.Is(err, ErrAuth) {
		t.Errorf("first chunk re-flagged final: error %v; want ErrAuth", err)
	}
	for name, f := range map[string]func() ([]byte, error){
		"other aad":    func() ([]byte, error) { return openBytes(sealed, testKey, testPrefix, []byte("moved/name")) },
		"other prefix": func() ([]byte, error) { return openBytes(sealed, testKey, [7]byte{9}, testAAD) },
		"other key":    func() ([]byte, error) { return openBytes(sealed, bytes.Repeat([]byte{1}, 32), testPrefix, testAAD) },
	} {
		if _, err := f(); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: error %v; want ErrAuth", name, err)
		}
	}
}

func TestBadKeySize(t *testing.T) {
	if _, err := NewWriter(io.Discard, make([]byte, 16), testPrefix, nil); err == nil {
		t.Error("NewWriter with a 16-byte key: no error")
	}
	if _, err := NewReader(bytes.NewReader(nil), make([]byte, 31), testPrefix, nil); err == nil {
		t.Error("NewReader with a 31-byte key: no error")
	}
}

func FuzzReader(f *testing.F) {
	f.Add(sealBytes(f, []byte("hello")))
	f.Add(sealBytes(f, bytes.Repeat([]byte("x"), ChunkSize+3)))
	f.Add([]byte{0x80, 0, 0, 0x10})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b), testKey, testPrefix, testAAD)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(io.Discard, r)
		if err == nil {
			// Only a genuine stream opens; re-sealing what it held must
			// reproduce the input byte for byte.
			pt, _ := openBytes(b, testKey, testPrefix, testAAD)
			if !bytes.Equal(sealBytes(t, pt), b) {
				t.Fatalf("opened a stream that its plaintext does not re-seal to")
			}
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	pt := make([]byte, 8<<20)
	rand.Read(pt)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		w, _ := NewWriter(io.Discard, testKey, testPrefix, testAAD)
		w.Write(pt)
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	pt := make([]byte, 8<<20)
	rand.Read(pt)
	sealed := sealBytes(b, pt)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		r, _ := NewReader(bytes.NewReader(sealed), testKey, testPrefix, testAAD)
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
	}
}
