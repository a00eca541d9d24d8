package segment

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
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
	// Diff states the one change against golden.cseg, machine-checked by
	// TestInvalidVectorsOneChange.
	Diff vectorDiff `json:"diff"`
}

// vectorDiff is one change to the golden segment. Kind is "byte" (the byte
// at Offset differs, nothing else), "header" (the header re-encoded with
// exactly Fields changed, everything after it identical), "header-bytes"
// (the same header members in other bytes), "truncate" (the first Length
// bytes), "append" (one byte added) or "name" (the same bytes under
// another object name).
type vectorDiff struct {
	Kind   string   `json:"kind"`
	Offset int      `json:"offset,omitempty"`
	Fields []string `json:"fields,omitempty"`
	Length int      `json:"length,omitempty"`
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
		// A deep copy: a change to one vector's wrapped key must not leak
		// into the next (it once did, so moved-hour failed at key unwrap).
		c := *h
		c.WrappedKey, c.NoncePrefix = bytes.Clone(h.WrappedKey), bytes.Clone(h.NoncePrefix)
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
		"version-9.cseg":      func() []byte { b := bytes.Clone(good); b[len(Magic)] = 9; return b }(),
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

func invalidManifest(name string, good []byte) []invalidVector {
	moved := strings.Replace(name, "/05/", "/06/", 1)
	_, hb, err := ReadHeader(bytes.NewReader(good))
	if err != nil {
		panic(err)
	}
	idx := preambleSize + len(hb)
	bodyStart := idx + 4 + int(binary.BigEndian.Uint32(good[idx:]))
	hdr := func(f ...string) vectorDiff { return vectorDiff{Kind: "header", Fields: f} }
	at := func(o int) vectorDiff { return vectorDiff{Kind: "byte", Offset: o} }
	cut := func(n int) vectorDiff { return vectorDiff{Kind: "truncate", Length: n} }
	return []invalidVector{
		{"bad-magic.cseg", name, "first magic byte flipped", "ErrNotSegment", at(0)},
		{"version-9.cseg", name, "version byte set to 9 (versions 1 to 3 exist)", "ErrVersion", at(len(Magic))},
		{"header-count.cseg", name, "header count lowered by one, header re-encoded", "ErrAuth", hdr("count")},
		{"header-maxtime.cseg", name, "header max_time one second later, header re-encoded", "ErrAuth", hdr("max_time")},
		{"wrapped-key.cseg", name, "one byte of wrapped_key flipped, header re-encoded", "ErrAuth", hdr("wrapped_key")},
		{"unknown-key.cseg", name, "key_id set to 2026-10.v1, which the keyring lacks", "key 2026-10.v1 not in keyring", hdr("key_id")},
		{"moved-hour.cseg", moved, "hour, min_time and max_time moved one hour later, opened under the matching name", "ErrAuth", hdr("hour", "max_time", "min_time")},
		{"header-json.cseg", name, "a space added inside the header JSON (same meaning, other bytes)", "ErrAuth", vectorDiff{Kind: "header-bytes"}},
		{"golden.cseg", moved, "the golden segment opened under another hour's name", "ErrName", vectorDiff{Kind: "name"}},
		{"index-byte.cseg", name, "one byte of the sealed index flipped", "ErrAuth", at(idx + 4 + 3)},
		{"index-length.cseg", name, "index length word changed", "ErrAuth", at(idx + 3)},
		{"body-byte.cseg", name, "one byte of the body ciphertext flipped", "ErrAuth", at(bodyStart + 10)},
		{"final-flag.cseg", name, "final-chunk flag cleared on the last chunk", "ErrAuth", at(bodyStart)},
		{"truncated-body.cseg", name, "last byte removed", "ErrTruncated", cut(len(good) - 1)},
		{"truncated-index.cseg", name, "cut inside the index", "ErrTruncated", cut(bodyStart - 5)},
		{"truncated-head.cseg", name, "cut inside the header", "ErrTruncated", cut(preambleSize + 10)},
		{"extended.cseg", name, "one zero byte appended", "ErrTrailing", vectorDiff{Kind: "append"}},
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
		m, _ := json.MarshalIndent(invalidManifest(name, b), "", "  ")
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
	for _, v := range loadManifest(t) {
		b := v.bytes(t)
		_, err := readSegment(t, v.Name, b, ReaderOptions{})
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

// TestInvalidVectorsOneChange checks that each invalid vector differs from
// golden.cseg by exactly the one change its manifest entry names. Regression
// test: unknown-key and moved-hour also carried wrapped-key's flipped byte,
// so moved-hour failed at key unwrap and never tested that moving the hour
// breaks authentication.
func TestInvalidVectorsOneChange(t *testing.T) {
	good, err := os.ReadFile(filepath.Join(goldenDir, "golden.cseg"))
	must(t, err)
	goodName, err := os.ReadFile(filepath.Join(goldenDir, "golden.name"))
	must(t, err)
	split := func(b []byte) (map[string]any, []byte, []byte) {
		n := int(binary.BigEndian.Uint32(b[len(Magic)+1:]))
		hb := b[preambleSize : preambleSize+n]
		var m map[string]any
		must(t, json.Unmarshal(hb, &m))
		return m, hb, b[preambleSize+n:]
	}
	gh, ghb, grest := split(good)
	for _, v := range loadManifest(t) {
		b := v.bytes(t)
		switch d := v.Diff; d.Kind {
		case "byte":
			var diffs []int
			for i := 0; i < len(b) && i < len(good); i++ {
				if b[i] != good[i] {
					diffs = append(diffs, i)
				}
			}
			if len(b) != len(good) || len(diffs) != 1 || diffs[0] != d.Offset {
				t.Errorf("%s: differs at bytes %v (length %d vs %d); manifest says only byte %d", v.File, diffs, len(b), len(good), d.Offset)
			}
		case "header", "header-bytes":
			h, hb, rest := split(b)
			if !bytes.Equal(rest, grest) {
				t.Errorf("%s: bytes after the header differ from golden.cseg", v.File)
			}
			var changed []string
			for k := range gh {
				if gj, _ := json.Marshal(gh[k]); string(gj) != func() string { j, _ := json.Marshal(h[k]); return string(j) }() {
					changed = append(changed, k)
				}
			}
			for k := range h {
				if _, ok := gh[k]; !ok {
					changed = append(changed, k)
				}
			}
			slices.Sort(changed)
			if !slices.Equal(changed, d.Fields) {
				t.Errorf("%s: header members %v changed; manifest says %v", v.File, changed, d.Fields)
			}
			if d.Kind == "header-bytes" && bytes.Equal(hb, ghb) {
				t.Errorf("%s: header bytes are golden's; manifest says they differ", v.File)
			}
		case "truncate":
			if d.Length >= len(good) || !bytes.Equal(b, good[:d.Length]) {
				t.Errorf("%s: is not golden.cseg cut to %d bytes", v.File, d.Length)
			}
		case "append":
			if len(b) != len(good)+1 || !bytes.Equal(b[:len(good)], good) {
				t.Errorf("%s: is not golden.cseg plus one byte", v.File)
			}
		case "name":
			if !bytes.Equal(b, good) || v.Name == strings.TrimSpace(string(goodName)) {
				t.Errorf("%s: want golden.cseg's bytes under another name", v.File)
			}
		default:
			t.Errorf("%s: manifest diff kind %q is unknown", v.File, d.Kind)
		}
	}
}

// loadManifest reads testdata/golden/invalid/manifest.json.
func loadManifest(t *testing.T) []invalidVector {
	t.Helper()
	mb, err := os.ReadFile(filepath.Join(goldenDir, "invalid", "manifest.json"))
	must(t, err)
	var vs []invalidVector
	must(t, json.Unmarshal(mb, &vs))
	if len(vs) < 15 {
		t.Fatalf("manifest lists %d vectors; want them all", len(vs))
	}
	return vs
}

// bytes reads the vector's file.
func (v invalidVector) bytes(t *testing.T) []byte {
	t.Helper()
	path := filepath.Join(goldenDir, "invalid", v.File)
	if v.File == "golden.cseg" {
		path = filepath.Join(goldenDir, v.File)
	}
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
