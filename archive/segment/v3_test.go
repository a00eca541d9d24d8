package segment

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"github.com/custodylog/custody/archive/columnar"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/dataset"
)

// A v3 body spans several blocks, split by rows and by bytes, and reads
// back byte for byte however the writer was fed.
func TestV3BlockSplits(t *testing.T) {
	priv, pub, sk := v2Keys(t)
	ks := keyring.Set{Private: priv, Public: pub}
	evs := events(3*BlockRows+17, 9) // ~20 MB: blocks cut by bytes
	name, b, plain := writeVersion(t, evs, pub, sk, Version3)
	got, r, err := readV2(name, b, ks)
	if err != nil {
		t.Fatal(err)
	}
	if got != plain {
		t.Fatal("v3 body differs from what was written")
	}
	if r.Header().Version != Version3 || r.Header().Compression != "columnar" {
		t.Fatalf("header %+v", r.Header())
	}
	// Fed a byte at a time, lines cross Write calls: the same body.
	m := metaFor(evs[:50])
	pk, _ := pub.Current(m.Class, m.Hour)
	var buf bytes.Buffer
	w, err := NewWriterV3(&buf, m, nil, pk, sk)
	if err != nil {
		t.Fatal(err)
	}
	var want strings.Builder
	for _, e := range evs[:50] {
		want.WriteString(e.line)
		for i := 0; i < len(e.line); i++ {
			w.Write([]byte{e.line[i]})
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got, _, err := readV2(w.Name(), buf.Bytes(), ks); err != nil || got != want.String() {
		t.Fatalf("byte-wise writes: %v", err)
	}
}

// The writer refuses a body that is not the header's count of whole
// lines, and the reader's plaintext cap holds for v3.
func TestV3Mismatch(t *testing.T) {
	priv, pub, sk := v2Keys(t)
	evs := events(20, 4)
	m := metaFor(evs)
	pk, _ := pub.Current(m.Class, m.Hour)
	for what, body := range map[string]string{
		"partial last line": evs[0].line + strings.TrimSuffix(evs[1].line, "\n"),
		"one line short":    evs[0].line,
	} {
		m := m
		m.LastOffset, m.Count = m.FirstOffset+1, 2
		w, err := NewWriterV3(io.Discard, m, nil, pk, sk)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
		if err := w.Close(); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s: Close = %v; want ErrMismatch", what, err)
		}
	}
	name, b, _ := writeVersion(t, evs, pub, sk, Version3)
	r, err := Open(bytes.NewReader(b), name, keyring.Set{Private: priv, Public: pub}, ReaderOptions{MaxPlaintext: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	body, _ := r.Body()
	if _, err := io.ReadAll(body); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a 8 kB body under a 1,000-byte cap: %v; want ErrTooLarge", err)
	}
}

// On the shared realistic dataset the columnar body is about 54% of the
// v2 body's size: a typed encoding that silently fell back to raw would
// push it over 60% (the figures are in docs/BENCHMARKS.md).
func TestV3Smaller(t *testing.T) {
	_, pub, sk := v2Keys(t)
	g := dataset.New(dataset.Options{Seed: 5, Total: 20000, Start: testHour, Span: 59 * 60e9})
	evs := make([]testEvent, 20000)
	for i := range evs {
		e := g.Next()
		e.Time = testHour.Add(e.Time.Sub(testHour) % 3600e9)
		if e.Time.Before(testHour) {
			e.Time = e.Time.Add(3600e9)
		}
		evs[i] = testEvent{line: string(event.AppendJSON(nil, e)), time: e.Time}
	}
	_, v2, _ := writeVersion(t, evs, pub, sk, Version2)
	_, v3, _ := writeVersion(t, evs, pub, sk, Version3)
	t.Logf("20,000 dataset events: v2 %d bytes, v3 %d (%.1f%%)", len(v2), len(v3), 100*float64(len(v3))/float64(len(v2)))
	if len(v3)*10 > len(v2)*6 {
		t.Errorf("v3 %d bytes is over 60%% of v2's %d", len(v3), len(v2))
	}
}

// Blocks gives a v3 body's blocks to a selective reader: the lines it
// rebuilds are the body's, and tampering, truncation and a planted
// segment fail it as they fail Body.
func TestV3Blocks(t *testing.T) {
	priv, pub, sk := v2Keys(t)
	ks := keyring.Set{Private: priv, Public: pub}
	evs := events(BlockRows+500, 6) // two blocks
	name, good, plain := writeVersion(t, evs, pub, sk, Version3)
	read := func(b []byte) (string, error) {
		r, err := Open(bytes.NewReader(b), name, ks, ReaderOptions{})
		if err != nil {
			return "", err
		}
		defer r.Close()
		var out []byte
		err = r.Blocks(func(b *columnar.Block, d *columnar.Decoder) error {
			rows, err := d.Rows(b, []string{"ip"})
			if err != nil {
				return err
			}
			for rows.Next() {
				if rows.Value(0) == nil {
					return errors.New("a row without ip")
				}
				if out, err = rows.AppendLine(out); err != nil {
					return err
				}
			}
			return nil
		})
		return string(out), err
	}
	got, err := read(good)
	if err != nil || got != plain {
		t.Fatalf("Blocks: %v (%d bytes of %d)", err, len(got), len(plain))
	}
	for _, off := range []int{len(good) / 2, len(good) - 70, len(good) - 1} {
		b := bytes.Clone(good)
		b[off] ^= 1
		if _, err := read(b); err == nil {
			t.Errorf("byte %d flipped: Blocks read it", off)
		}
	}
	if _, err := read(good[:len(good)-sigSize]); !errors.Is(err, ErrTruncated) {
		t.Errorf("signature cut off: %v; want ErrTruncated", err)
	}
	rogue, _ := keyring.NewSigningKey("archiver-a", testHour)
	_, planted, _ := writeVersion(t, evs, pub, rogue, Version3)
	if _, err := read(planted); !errors.Is(err, ErrSignature) {
		t.Errorf("planted: %v; want ErrSignature", err)
	}
	// v2 has no blocks.
	n2, b2, _ := writeVersion(t, evs[:10], pub, sk, Version2)
	r, err := Open(bytes.NewReader(b2), n2, ks, ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Blocks(func(*columnar.Block, *columnar.Decoder) error { return nil }); !errors.Is(err, ErrNotColumnar) {
		t.Errorf("v2: %v; want ErrNotColumnar", err)
	}
}

// Blocks holds a segment to the reader's plaintext cap, counted over the
// columns it decodes, across blocks.
func TestV3BlocksCap(t *testing.T) {
	priv, pub, sk := v2Keys(t)
	evs := events(BlockRows+500, 2) // two blocks, ~7 MB of lines
	name, b, _ := writeVersion(t, evs, pub, sk, Version3)
	for _, c := range []struct {
		max  int64
		fail bool
	}{{1 << 20, true}, {5 << 20, true}, {64 << 20, false}} {
		r, err := Open(bytes.NewReader(b), name, keyring.Set{Private: priv, Public: pub}, ReaderOptions{MaxPlaintext: c.max})
		if err != nil {
			t.Fatal(err)
		}
		err = r.Blocks(func(b *columnar.Block, d *columnar.Decoder) error {
			rows, err := d.Rows(b, []string{"ip"})
			if err != nil {
				return err
			}
			for rows.Next() {
				if _, err := rows.AppendLine(nil); err != nil {
					return err
				}
			}
			return nil
		})
		r.Close()
		if c.fail != errors.Is(err, ErrTooLarge) {
			t.Errorf("cap %d: %v", c.max, err)
		}
	}
}

// A v3 segment may hold every kind of its class and hour: its name has no
// kind, its header counts each kind, and it reads back like any other.
// Neither v2 nor an inconsistent count of kinds is accepted.
func TestV3EveryKind(t *testing.T) {
	priv, pub, sk := v2Keys(t)
	evs := events(300, 5)
	kinds := map[string]int64{}
	var plain strings.Builder
	for i := range evs {
		k := []string{"connection", "login", "source_change"}[i%3]
		evs[i].line = strings.Replace(evs[i].line, `"kind":"connection"`, `"kind":"`+k+`"`, 1)
		kinds[k]++
		plain.WriteString(evs[i].line)
	}
	m := metaFor(evs)
	m.Kind, m.Kinds = "", kinds
	pk, _ := pub.Current(m.Class, m.Hour)
	var buf bytes.Buffer
	w, err := NewWriterV3(&buf, m, nil, pk, sk)
	if err != nil {
		t.Fatal(err)
	}
	if want := "security/2026/11/29/05/custody.events+3+00000000000000001000.cseg"; w.Name() != want {
		t.Fatalf("name %s; want %s", w.Name(), want)
	}
	io.WriteString(w, plain.String())
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, r, err := readV2(w.Name(), buf.Bytes(), keyring.Set{Private: priv, Public: pub})
	if err != nil || got != plain.String() {
		t.Fatalf("read back: %v (same body: %v)", err, got == plain.String())
	}
	h := r.Header()
	if h.Kind != "" || len(h.Kinds) != 3 || h.Kinds["login"] != 100 || !h.Has("source_change") || h.Has("activity") {
		t.Fatalf("header kind %q kinds %v", h.Kind, h.Kinds)
	}
	if h.Key() != "security//2026112905" {
		t.Fatalf("key %q", h.Key())
	}
	// Verify (what the archiver checks) accepts it too.
	if _, err := Verify(bytes.NewReader(buf.Bytes()), w.Name(), pub); err != nil {
		t.Fatalf("Verify: %v", err)
	}

	for what, c := range map[string]struct {
		kind  string
		kinds map[string]int64
		v2    bool
	}{
		"format v2":            {kinds: kinds, v2: true},
		"no kinds":             {},
		"kinds short of count": {kinds: map[string]int64{"login": 100, "connection": 100}},
		"a zero count":         {kinds: map[string]int64{"login": 300, "connection": 0}},
		"not a kind name":      {kinds: map[string]int64{"Login!": 300}},
		"kind and kinds":       {kind: "login", kinds: map[string]int64{"login": 300}},
	} {
		m := metaFor(evs)
		m.Kind, m.Kinds = c.kind, c.kinds
		newWriter := NewWriterV3
		if c.v2 {
			newWriter = NewWriterV2
		}
		if _, err := newWriter(io.Discard, m, nil, pk, sk); !errors.Is(err, ErrHeader) {
			t.Errorf("%s: writer = %v; want ErrHeader", what, err)
		}
	}
}

// TestGoldenV3EveryKind pins a v3 segment of every kind (FORMAT.md v3.10)
// byte for byte: golden-v3/every-kind.cseg holds golden.cseg's events with
// three kinds among them, under the same keys (the keyring files there).
func TestGoldenV3EveryKind(t *testing.T) {
	const dir = "testdata/golden-v3"
	cryptotest.SetGlobalRandom(t, 2026)
	_, pub, sk := v2Keys(t)
	evs := events(5, 42)
	kinds := map[string]int64{}
	var plain strings.Builder
	for i := range evs {
		k := []string{"connection", "login", "connection", "source_change", "login"}[i]
		evs[i].line = strings.Replace(evs[i].line, `"kind":"connection"`, `"kind":"`+k+`"`, 1)
		kinds[k]++
		plain.WriteString(evs[i].line)
	}
	m := metaFor(evs)
	m.Kind, m.Kinds = "", kinds
	ix := NewIndexBuilder()
	for _, e := range evs {
		ix.AddIP(e.ip)
		ix.Add(FieldLogin, e.login)
	}
	pk, err := pub.Current(m.Class, m.Hour)
	must(t, err)
	var buf bytes.Buffer
	w, err := NewWriterV3(&buf, m, ix, pk, sk)
	must(t, err)
	io.WriteString(w, plain.String())
	must(t, w.Close())
	if *update {
		must(t, os.WriteFile(filepath.Join(dir, "every-kind.cseg"), buf.Bytes(), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "every-kind.name"), []byte(w.Name()+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(dir, "every-kind.jsonl"), []byte(plain.String()), 0o644))
	}
	stored, err := os.ReadFile(filepath.Join(dir, "every-kind.cseg"))
	must(t, err)
	if !bytes.Equal(stored, buf.Bytes()) {
		t.Fatalf("v3 writer output differs from %s/every-kind.cseg (%d vs %d bytes): format v3 changed", dir, buf.Len(), len(stored))
	}
	nb, err := os.ReadFile(filepath.Join(dir, "every-kind.name"))
	must(t, err)
	name := strings.TrimSpace(string(nb))
	if name != w.Name() || !strings.HasPrefix(name, "security/2026/") {
		t.Fatalf("every-kind.name %q; the writer names it %q", name, w.Name())
	}
	privFile, err := os.ReadFile(filepath.Join(dir, "private-keyring.json"))
	must(t, err)
	pubFile, err := os.ReadFile(filepath.Join(dir, "public-keyring.json"))
	must(t, err)
	rpriv, err := keyring.ParsePrivate(privFile)
	must(t, err)
	rpub, err := keyring.ParsePublic(pubFile)
	must(t, err)
	want, err := os.ReadFile(filepath.Join(dir, "every-kind.jsonl"))
	must(t, err)
	got, r, err := readV2(name, stored, keyring.Set{Private: rpriv, Public: rpub})
	if err != nil || got != string(want) {
		t.Fatalf("golden every-kind read: %v", err)
	}
	if h := r.Header(); h.Kind != "" || h.Kinds["connection"] != 2 || h.Kinds["login"] != 2 || h.Kinds["source_change"] != 1 {
		t.Fatalf("header kind %q kinds %v", h.Kind, h.Kinds)
	}
	// Under another name (one kind's), the same bytes are refused.
	if _, _, err := readV2(strings.Replace(name, "security/", "security/login/", 1), stored, keyring.Set{Private: rpriv, Public: rpub}); err == nil {
		t.Fatal("read under a one-kind name")
	}
}

// A Body built line by line ahead of its segment becomes the same body
// as lines written to the Writer, holds a fraction of the lines' bytes
// while it waits, gives its lines back, and can be written again (an
// upload retried under a new data key).
func TestV3Body(t *testing.T) {
	priv, pub, sk := v2Keys(t)
	ks := keyring.Set{Private: priv, Public: pub}
	g := dataset.New(dataset.Options{Seed: 3, Total: 2*BlockRows + 100, Start: testHour, Span: time.Hour})
	body := NewBody()
	var plain strings.Builder
	var lines []string
	for i := 0; i < 2*BlockRows+100; i++ {
		e := g.Next()
		e.Time = testHour.Add(time.Duration(i) * time.Millisecond)
		l := event.AppendJSON(nil, e)
		plain.Write(l)
		lines = append(lines, string(l[:len(l)-1]))
		if err := body.Add(l[:len(l)-1]); err != nil {
			t.Fatal(err)
		}
	}
	if body.Count() != int64(len(lines)) || body.Len() != int64(plain.Len()) {
		t.Fatalf("count %d, len %d; want %d, %d", body.Count(), body.Len(), len(lines), plain.Len())
	}
	// What waits is the sealed blocks, a fraction of the lines, and one
	// open block of lines.
	if sealed := body.Size() - int64(cap(body.open)+8*cap(body.ends)); sealed > int64(plain.Len())/5 || body.Size() > sealed+2*BlockBytes {
		t.Errorf("the body holds %d bytes (%d sealed) for %d of lines; want the sealed part under a fifth", body.Size(), sealed, plain.Len())
	}
	if err := body.Add([]byte("a\nb")); !errors.Is(err, ErrMismatch) {
		t.Errorf("a line with a newline: %v", err)
	}
	var back []string
	if err := body.Lines(func(l []byte) error { back = append(back, string(l)); return nil }); err != nil || !slices.Equal(back, lines) {
		t.Fatalf("Lines: %v (%d lines back of %d)", err, len(back), len(lines))
	}
	m := Meta{Class: "security", Kind: "connection", Hour: testHour, Topic: "custody.events", Partition: 3, FirstOffset: 1000,
		LastOffset: 1000 + int64(len(lines)) - 1, Count: int64(len(lines)), MinTime: testHour, MaxTime: testHour.Add(time.Duration(len(lines)) * time.Millisecond)}
	pk, _ := pub.Current(m.Class, m.Hour)
	countBlocks := func(name string, b []byte) int {
		r, err := Open(bytes.NewReader(b), name, ks, ReaderOptions{})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		if err := r.Blocks(func(*columnar.Block, *columnar.Decoder) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The Writer's own cut of the same lines.
	var ref bytes.Buffer
	rw, err := NewWriterV3(&ref, m, nil, pk, sk)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(rw, plain.String())
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	want := countBlocks(rw.Name(), ref.Bytes())
	for attempt := 0; attempt < 2; attempt++ {
		var buf bytes.Buffer
		w, err := NewWriterV3(&buf, m, nil, pk, sk)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.WriteBody(body); err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write([]byte("x\n")); err == nil {
			t.Fatal("Write after WriteBody was accepted")
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		got, _, err := readV2(w.Name(), buf.Bytes(), ks)
		if err != nil || got != plain.String() {
			t.Fatalf("attempt %d: read back: %v (same body: %v)", attempt, err, got == plain.String())
		}
		if n := countBlocks(w.Name(), buf.Bytes()); n != want || n < 3 {
			t.Errorf("attempt %d: %d blocks; the Writer cuts the same lines into %d", attempt, n, want)
		}
	}
	// A count that is not the header's is refused at Close.
	m.Count--
	m.LastOffset--
	w, _ := NewWriterV3(io.Discard, m, nil, pk, sk)
	if err := w.WriteBody(body); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, ErrMismatch) {
		t.Errorf("Close with one line more than the header: %v", err)
	}
}
