package segment

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addVectorSeeds seeds a fuzz target with the golden and invalid vectors
// kept in testdata/golden.
func addVectorSeeds(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.cseg"))
	inv, _ := filepath.Glob(filepath.Join(goldenDir, "invalid", "*.cseg"))
	if len(files) == 0 || len(inv) == 0 {
		f.Fatal("no seed vectors in testdata/golden")
	}
	for _, p := range append(files, inv...) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzReadHeader(f *testing.F) {
	addVectorSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, hb, err := ReadHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		if err := h.Validate(); err != nil {
			t.Fatalf("ReadHeader returned a header that fails Validate: %v", err)
		}
		if len(hb) == 0 || len(hb) > maxHeaderSize {
			t.Fatalf("header bytes length %d", len(hb))
		}
	})
}

func FuzzOpen(f *testing.F) {
	addVectorSeeds(f)
	kr, _ := testKeyring(f)
	nameb, err := os.ReadFile(filepath.Join(goldenDir, "golden.name"))
	if err != nil {
		f.Fatal(err)
	}
	name := strings.TrimSpace(string(nameb))
	golden, err := os.ReadFile(filepath.Join(goldenDir, "golden.cseg"))
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Open(bytes.NewReader(b), name, kr, ReaderOptions{MaxPlaintext: 1 << 20})
		if err != nil {
			return
		}
		defer r.Close()
		body, err := r.Body()
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, body); err == nil && !bytes.Equal(b, golden) {
			// Only the key holder can make a segment that reads cleanly.
			t.Fatalf("a %d-byte input other than the golden segment read without error", len(b))
		}
	})
}
