package segment

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/crypto/keyring"
)

var update = flag.Bool("update", false, "rewrite the golden and invalid vectors in testdata/")

// goldenRandom is the fixed "randomness" of the golden vector, in the order
// the writer consumes it: data key (32 bytes 0x40..0x5f), nonce prefix
// (7 bytes 0x60..0x66), key-wrap nonce (12 bytes 0x70..0x7b). docs/FORMAT.md
// lists the same values so another implementation can reproduce the bytes.
func goldenRandom() *bytes.Reader {
	var b []byte
	for i := 0x40; i < 0x60; i++ {
		b = append(b, byte(i))
	}
	for i := 0x60; i < 0x67; i++ {
		b = append(b, byte(i))
	}
	for i := 0x70; i < 0x7c; i++ {
		b = append(b, byte(i))
	}
	return bytes.NewReader(b)
}

const goldenDir = "testdata/golden"

type invalidVector struct {
	File   string `json:"file"`
	Name   string `json:"name"` // object name to open it under
	Change string `json:"change"`
	Error  string `json:"error"` // the sentinel, or for a missing key the message
}

var sentinels = map[string]error{
	"ErrNotSegment": ErrNotSegment, "ErrVersion": ErrVersion, "ErrHeader": ErrHeader, "ErrName": ErrName,
	"ErrAuth": ErrAuth, "ErrTruncated": ErrTruncated, "ErrTrailing": ErrTrailing,
}

// buildInvalid derives each invalid vector from the golden segment with
// exactly one change.
func buildInvalid(t *testing.T, name string, good []byte) map[string][]byte {
	h, hb, err := ReadHeader(bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	rest := good[preambleSize+len(hb):] // index length, index, body
	idxLen := int(binary.BigEndian.Uint32(rest))
	bodyStart := preambleSize + len(hb) + 4 + idxLen
	reheader := func(mod func(h *Header)) []byte {
		c := *h
		mod(&c)
		b, err := encodeHeader(&c)
		if err != nil {
			t.Fatal(err)
		}
		return append(b, rest...)
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x01
		return b
	}
	lastFrame := len(good) - (int(binary.BigEndian.Uint32(good[bodyStart:])&^(1<<31)) + 4)
	if lastFrame != bodyStart {
		t.Fatalf("golden body is expected to be one chunk")
	}
	clearedFinal := bytes.Clone(good)
	clearedFinal[lastFrame] &^= 0x80
	return map[string][]byte{
		"bad-magic.cseg":      flip(0),
		"version-2.cseg":      func() []byte { b := bytes.Clone(good); b[len(Magic)] = 2; return b }(),
		"header-count.cseg":   reheader(func(h *Header) { h.Count-- }),
		"header-maxtime.cseg": reheader(func(h *Header) { h.MaxTime = h.MaxTime.Add(time.Second) }),
		"wrapped-key.cseg":    reheader(func(h *Header) { h.WrappedKey[20] ^= 1 }),
		"unknown-key.cseg":    reheader(func(h *Header) { h.KeyID = "2026-10.v1" }),
		"moved-hour.cseg": reheader(func(h *Header) {
			sh := time.Hour
			h.Hour, h.MinTime, h.MaxTime = h.Hour.Add(sh), h.MinTime.Add(sh), h.MaxTime.Add(sh)
		}),
		"header-json.cseg":     spacedHeader(hb, rest),
		"index-byte.cseg":      flip(preambleSize + len(hb) + 4 + 3),
		"index-length.cseg":    flip(preambleSize + len(hb) + 3),
		"body-byte.cseg":       flip(bodyStart + 10),
		"final-flag.cseg":      clearedFinal,
		"truncated-body.cseg":  good[:len(good)-1],
		"truncated-index.cseg": good[:bodyStart-5],
		"truncated-head.cseg":  good[:preambleSize+10],
		"extended.cseg":        append(bytes.Clone(good), 0),
	}
}

// spacedHeader re-frames the header JSON with one space added: the same
// meaning in other bytes, which the associated data must still refuse.
func spacedHeader(hb, rest []byte) []byte {
	j := bytes.Replace(hb, []byte(`"kind":"connection"`), []byte(`"kind":"connection" `), 1)
	out := append([]byte(Magic), Version)
	out = binary.BigEndian.AppendUint32(out, uint32(len(j)))
	return append(append(out, j...), rest...)
}

func invalidManifest(name string) []invalidVector {
	moved := strings.Replace(name, "/05/", "/06/", 1)
	return []invalidVector{
		{"bad-magic.cseg", name, "first magic byte flipped", "ErrNotSegment"},
		{"version-2.cseg", name, "version byte set to 2", "ErrVersion"},
		{"header-count.cseg", name, "header count lowered by one, header re-encoded", "ErrAuth"},
		{"header-maxtime.cseg", name, "header max_time one second later, header re-encoded", "ErrAuth"},
		{"wrapped-key.cseg", name, "one byte of wrapped_key flipped, header re-encoded", "ErrAuth"},
		{"unknown-key.cseg", name, "key_id set to 2026-10.v1, which the keyring lacks", "key 2026-10.v1 not in keyring"},
		{"moved-hour.cseg", moved, "hour, min_time and max_time moved one hour later, opened under the matching name", "ErrAuth"},
		{"header-json.cseg", name, "a space added inside the header JSON (same meaning, other bytes)", "ErrAuth"},
		{"golden.cseg", moved, "the golden segment opened under another hour's name", "ErrName"},
		{"index-byte.cseg", name, "one byte of the sealed index flipped", "ErrAuth"},
		{"index-length.cseg", name, "index length word changed", "ErrAuth"},
		{"body-byte.cseg", name, "one byte of the body ciphertext flipped", "ErrAuth"},
		{"final-flag.cseg", name, "final-chunk flag cleared on the last chunk", "ErrAuth"},
		{"truncated-body.cseg", name, "last byte removed", "ErrTruncated"},
		{"truncated-index.cseg", name, "cut inside the index", "ErrTruncated"},
		{"truncated-head.cseg", name, "cut inside the header", "ErrTruncated"},
		{"extended.cseg", name, "one zero byte appended", "ErrTrailing"},
	}
}

func TestGoldenVector(t *testing.T) {
	evs := events(5, 42)
	name, b, plain := writeSegment(t, evs, goldenRandom())
	if *update {
		os.MkdirAll(filepath.Join(goldenDir, "invalid"), 0o755)
		kr, _ := testKeyring(t)
		must(t, kr.Save(filepath.Join(goldenDir, "keyring.json")))
		must(t, os.WriteFile(filepath.Join(goldenDir, "golden.cseg"), b, 0o644))
		must(t, os.WriteFile(filepath.Join(goldenDir, "golden.name"), []byte(name+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(goldenDir, "golden.jsonl"), []byte(plain), 0o644))
		for f, v := range buildInvalid(t, name, b) {
			must(t, os.WriteFile(filepath.Join(goldenDir, "invalid", f), v, 0o644))
		}
		m, _ := json.MarshalIndent(invalidManifest(name), "", "  ")
		must(t, os.WriteFile(filepath.Join(goldenDir, "invalid", "manifest.json"), append(m, '\n'), 0o644))
	}

	stored, err := os.ReadFile(filepath.Join(goldenDir, "golden.cseg"))
	must(t, err)
	storedName, err := os.ReadFile(filepath.Join(goldenDir, "golden.name"))
	must(t, err)
	wantPlain, err := os.ReadFile(filepath.Join(goldenDir, "golden.jsonl"))
	must(t, err)
	// The writer must still produce these exact bytes: a change here is a
	// format change and needs a new version, not a new golden file.
	if !bytes.Equal(stored, b) || strings.TrimSpace(string(storedName)) != name {
		t.Fatalf("writer output differs from testdata/golden/golden.cseg (%d vs %d bytes); the v1 format changed", len(b), len(stored))
	}
	// The reader is checked against the keyring file a third party would use.
	krb, err := os.ReadFile(filepath.Join(goldenDir, "keyring.json"))
	must(t, err)
	kr, err := keyring.Parse(krb)
	must(t, err)
	r, err := Open(bytes.NewReader(stored), name, kr, ReaderOptions{})
	must(t, err)
	body, err := r.Body()
	must(t, err)
	var got bytes.Buffer
	_, err = got.ReadFrom(body)
	must(t, err)
	if got.String() != string(wantPlain) {
		t.Fatalf("golden body = %q; want %q", got.String(), wantPlain)
	}
}

func TestInvalidVectors(t *testing.T) {
	mb, err := os.ReadFile(filepath.Join(goldenDir, "invalid", "manifest.json"))
	must(t, err)
	var vs []invalidVector
	must(t, json.Unmarshal(mb, &vs))
	if len(vs) < 15 {
		t.Fatalf("manifest lists %d vectors; want them all", len(vs))
	}
	for _, v := range vs {
		path := filepath.Join(goldenDir, "invalid", v.File)
		if v.File == "golden.cseg" {
			path = filepath.Join(goldenDir, v.File)
		}
		b, err := os.ReadFile(path)
		must(t, err)
		_, err = readSegment(t, v.Name, b, ReaderOptions{})
		if err == nil {
			t.Errorf("%s (%s): read without error", v.File, v.Change)
			continue
		}
		if s, ok := sentinels[v.Error]; ok {
			if !errors.Is(err, s) {
				t.Errorf("%s (%s): error %v; want %s", v.File, v.Change, err, v.Error)
			}
		} else if !strings.Contains(err.Error(), v.Error) {
			t.Errorf("%s (%s): error %v; want %q", v.File, v.Change, err, v.Error)
		}
		if !strings.Contains(err.Error(), v.Name) {
			t.Errorf("%s: error %q does not name the object", v.File, err)
		}
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
