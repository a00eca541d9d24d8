package segment

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// FuzzParseName: a name ParseName accepts is the one Name makes of what it
// returned, so verify and the archiver agree on every segment's identity.
func FuzzParseName(f *testing.F) {
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseName(s)
		if err != nil {
			return
		}
		if Name(&m) != s {
			t.Fatalf("ParseName(%q) = %+v, which Name renders as %q", s, m, Name(&m))
		}
	})
}

func TestParseName(t *testing.T) {
	m := Meta{Class: "security", Kind: "login", Hour: time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC), Topic: "custody.events", Partition: 3, FirstOffset: 990}
	got, err := ParseName(Name(&m))
	if err != nil || got.Class != m.Class || got.Kind != m.Kind || !got.Hour.Equal(m.Hour) || got.Topic != m.Topic || got.Partition != 3 || got.FirstOffset != 990 {
		t.Fatalf("ParseName(Name(m)) = %+v, %v", got, err)
	}
	// A segment of every kind: no kind in the name.
	m.Kind = ""
	if name := Name(&m); name != "security/2026/11/29/05/custody.events+3+00000000000000000990.cseg" {
		t.Fatalf("Name of a segment of every kind = %q", name)
	}
	got, err = ParseName("security/2026/11/29/05/custody.events+3+00000000000000000990.cseg")
	if err != nil || got.Class != "security" || got.Kind != "" || !got.Hour.Equal(m.Hour) || got.Topic != m.Topic || got.Partition != 3 || got.FirstOffset != 990 {
		t.Fatalf("ParseName of a segment of every kind = %+v, %v", got, err)
	}
	for _, bad := range []string{"security/login/2026/11/29/05/custody.events+3+990.cseg", "security/login/2026/11/29/05/custody.events+3+00000000000000000990",
		"security/login/2026/11/29/25/custody.events+3+00000000000000000990.cseg", "security/login/2026/11/29/05/+3+00000000000000000990.cseg",
		"security/login/2026/11/29/05/custody.events+-3+00000000000000000990.cseg", "security//2026/11/29/05/custody.events+3+00000000000000000990.cseg",
		"security/2026/11/29/05/custody.events+3+990.cseg", "2026/11/29/05/custody.events+3+00000000000000000990.cseg",
		"security/login/extra/2026/11/29/05/custody.events+3+00000000000000000990.cseg"} {
		if _, err := ParseName(bad); err == nil {
			t.Errorf("ParseName(%q) accepted it", bad)
		}
	}
}
