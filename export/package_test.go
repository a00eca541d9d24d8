package export

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/dataset"
)

var produced = time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)

func testKey(t testing.TB, id, seedHex string) keyring.SigningKey {
	t.Helper()
	seed, err := hex.DecodeString(seedHex)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := keyring.SigningKeyFromSeed(id, produced, seed)
	if err != nil {
		t.Fatal(err)
	}
	return sk
}

func signer(t testing.TB) keyring.SigningKey {
	t.Helper()
	raw, err := os.ReadFile("testdata/signer.seed")
	if err != nil {
		t.Fatal(err)
	}
	return testKey(t, "custody-serve", strings.TrimSpace(string(raw)))
}

func trust(sks ...keyring.SigningKey) Keys {
	k := Keys{}
	for _, sk := range sks {
		k.Add(sk.ID, sk.Public().Public)
	}
	return k
}

func testManifest() Manifest {
	return Manifest{Kind: "disclosure", ID: "exp-0001",
		Request: Request{Case: "LE-2026-114", Authority: "Tribunal judiciaire <Paris>", LegalBasis: "Réquisition art. 60-1 CPP", Reference: "R/2026/881",
			Purpose: "requisition of 2026-11-27", Requester: "alice@legal", Approvers: []string{"bob@legal"}},
		Query:      Query{From: time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC), To: time.Date(2026, 11, 28, 6, 0, 0, 0, time.UTC), Filters: map[string]string{"ip": "203.0.113.7"}},
		Provenance: []Source{{Segment: "security/login/2026112800/events/0/00000000000000000000.seg", SHA256: strings.Repeat("ab", 32), Events: 3, Checkpoint: "_chain/events/0/00000000000000000000.json", CheckpointSHA256: strings.Repeat("cd", 32)}},
		Software:   "custody test",
	}
}

// build writes a package of the given lines and returns its bytes and
// manifest.
func build(t testing.TB, lines [][]byte, sk keyring.SigningKey) ([]byte, Manifest) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, t.TempDir(), produced)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if err := w.Add(l); err != nil {
			t.Fatal(err)
		}
	}
	m, err := w.Close(testManifest(), sk)
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), m
}

func realistic(n int) [][]byte {
	g := dataset.New(dataset.Options{Seed: 7, Total: n})
	out := make([][]byte, n)
	times := map[*byte]time.Time{}
	for i := range out {
		out[i] = bytes.Clone(g.Line())
		e, _ := event.Parse(out[i])
		times[&out[i][0]] = e.Time
	}
	// The dataset jitters times; a query answers in time order.
	slices.SortStableFunc(out, func(a, b []byte) int { return times[&a[0]].Compare(times[&b[0]]) })
	return out
}

func verify(t testing.TB, b []byte, keys Keys) *Result {
	t.Helper()
	res, err := Verify(bytes.NewReader(b), int64(len(b)), keys)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// TestRoundTrip: a package of realistic events verifies, opens with the
// system's unzip, and gives back every event, in order, in both formats;
// the manifest counts them; openssl, which no one here wrote, verifies the
// signature from the PEM key.
func TestRoundTrip(t *testing.T) {
	lines := realistic(5000)
	sk := signer(t)
	b, m := build(t, lines, sk)
	if res := verify(t, b, trust(sk)); len(res.Findings) != 0 || res.Signer != "custody-serve" {
		t.Fatalf("a fresh package: signer %q, findings %v", res.Signer, res.Findings)
	}
	if m.Counts.Events != 5000 || len(m.Files) != 3 {
		t.Fatalf("manifest counts %d events, lists %d files", m.Counts.Events, len(m.Files))
	}
	kinds := map[string]int64{}
	for _, l := range lines {
		e, err := event.Parse(l)
		if err != nil {
			t.Fatal(err)
		}
		kinds[string(e.Kind)]++
	}
	for k, n := range kinds {
		if m.Counts.Kinds[k] != n {
			t.Errorf("kind %s: manifest counts %d, want %d", k, m.Counts.Kinds[k], n)
		}
	}

	dir := t.TempDir()
	pkg := filepath.Join(dir, "package.zip")
	if err := os.WriteFile(pkg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	if o, err := exec.Command("unzip", "-q", pkg, "-d", out).CombinedOutput(); err != nil {
		t.Fatalf("unzip: %v\n%s", err, o)
	}
	got, err := os.ReadFile(filepath.Join(out, EventsJSONL))
	if err != nil {
		t.Fatal(err)
	}
	want := append(bytes.Join(lines, []byte("\n")), '\n')
	if !bytes.Equal(got, want) {
		t.Fatalf("events.jsonl differs from the events given (%d bytes, want %d)", len(got), len(want))
	}
	f, err := os.Open(filepath.Join(out, EventsCSV))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	br := bufio.NewReader(f)
	if bom, _ := br.Peek(3); string(bom) != "\ufeff" {
		t.Fatalf("events.csv does not start with a UTF-8 byte order mark: %q", bom)
	}
	br.Discard(3)
	rows, err := csv.NewReader(br).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5001 || strings.Join(rows[0], ",") != strings.Join(csvColumns, ",") {
		t.Fatalf("events.csv: %d rows, header %v", len(rows), rows[0])
	}
	for i, l := range lines {
		e, _ := event.Parse(l)
		r := rows[i+1]
		if r[0] != e.ID || r[1] != event.FormatTime(e.Time) || r[2] != string(e.Kind) || r[13] != csvCell(e.Login) || r[14] != csvCell(e.UserAgent) {
			t.Fatalf("csv row %d = %v; event %s", i+1, r, l)
		}
		if e.IP.IsValid() && r[10] != e.IP.String() {
			t.Fatalf("csv row %d ip %q, want %s", i+1, r[10], e.IP)
		}
	}
	summary, err := os.ReadFile(filepath.Join(out, SummaryHTML))
	if err != nil {
		t.Fatal(err)
	}
	// Values from the request are escaped, not markup.
	if !bytes.Contains(summary, []byte("Tribunal judiciaire &lt;Paris&gt;")) || !bytes.Contains(summary, []byte("<h2>5000 events</h2>")) {
		t.Errorf("summary.html lacks the escaped authority or the count:\n%s", summary)
	}

	// openssl: the PEM key, the raw signature, the manifest's bytes.
	pem := filepath.Join(dir, "key.pem")
	if err := os.WriteFile(pem, PEM(sk.ID, sk.Public().Public), 0o600); err != nil {
		t.Fatal(err)
	}
	var s Signature
	sb, _ := os.ReadFile(filepath.Join(out, ManifestSig))
	if err := json.Unmarshal(sb, &s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sig.bin"), s.Signature, 0o600); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command("openssl", "pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-in", filepath.Join(out, ManifestJSON), "-sigfile", filepath.Join(dir, "sig.bin")).CombinedOutput(); err != nil || !strings.Contains(string(o), "Signature Verified Successfully") {
		t.Fatalf("openssl pkeyutl -verify: %v\n%s", err, o)
	}
	keys, err := LoadKeys(pem)
	if err != nil || len(keys) != 1 || keys[Fingerprint(sk.Public().Public)].Public == nil {
		t.Fatalf("LoadKeys(PEM) = %v, %v", keys, err)
	}
}

func csvCell(v string) string {
	if v != "" && strings.ContainsRune("=+-@\t\r", rune(v[0])) {
		return "'" + v
	}
	return v
}

// rezip copies a package, letting change alter, drop (nil) or add files.
func rezip(t testing.TB, b []byte, change func(name string, data []byte) []byte, add map[string][]byte) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	zw := zip.NewWriter(&out)
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		if data = change(f.Name, data); data == nil {
			continue
		}
		w, err := zw.Create(f.Name)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(data)
	}
	for name, data := range add {
		w, _ := zw.Create(name)
		w.Write(data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

// TestVerifyDetectsTampering: every change after signing is found and
// named: a byte changed in each file, a file added, each file removed, the
// manifest re-signed with another key, a name twice in the zip, and
// a byte flipped in the zip's compressed stream.
func TestVerifyDetectsTampering(t *testing.T) {
	sk := signer(t)
	keys := trust(sk)
	b, _ := build(t, realistic(200), sk)
	keep := func(_ string, d []byte) []byte { return d }
	if res := verify(t, rezip(t, b, keep, nil), keys); len(res.Findings) != 0 {
		t.Fatalf("a faithful copy: %v", res.Findings)
	}
	has := func(res *Result, kind, file string) bool {
		for _, f := range res.Findings {
			if f.Kind == kind && f.File == file {
				return true
			}
		}
		return false
	}
	flip := func(target string) func(string, []byte) []byte {
		return func(name string, d []byte) []byte {
			if name == target {
				d = bytes.Clone(d)
				d[len(d)/2] ^= 0x01
			}
			return d
		}
	}
	for file, kind := range map[string]string{EventsJSONL: Modified, EventsCSV: Modified, SummaryHTML: Modified, ManifestJSON: BadSignature, ManifestSig: BadSignature} {
		where := file
		if file == ManifestJSON {
			where = ManifestSig // the signature no longer verifies over it
		}
		if res := verify(t, rezip(t, b, flip(file), nil), keys); !has(res, kind, where) {
			t.Errorf("a byte changed in %s: findings %v; want %s", file, res.Findings, kind)
		}
	}
	if res := verify(t, rezip(t, b, keep, map[string][]byte{"note.txt": []byte("added later")}), keys); !has(res, Added, "note.txt") || len(res.Findings) != 1 {
		t.Errorf("a file added: %v", res.Findings)
	}
	for _, file := range []string{EventsJSONL, EventsCSV, SummaryHTML} {
		drop := func(name string, d []byte) []byte {
			if name == file {
				return nil
			}
			return d
		}
		if res := verify(t, rezip(t, b, drop, nil), keys); !has(res, Removed, file) || len(res.Findings) != 1 {
			t.Errorf("%s removed: %v", file, res.Findings)
		}
	}
	dropSig := func(name string, d []byte) []byte {
		if name == ManifestSig {
			return nil
		}
		return d
	}
	if res := verify(t, rezip(t, b, dropSig, nil), keys); !has(res, BadSignature, ManifestSig) {
		t.Errorf("manifest.sig removed: %v", res.Findings)
	}

	// Re-signed by another key: the files and manifest agree, the key is
	// not trusted.
	other := testKey(t, "custody-serve", strings.Repeat("42", 32))
	resigned := rezip(t, b, func(name string, d []byte) []byte {
		if name != ManifestSig {
			return d
		}
		mb := mustRead(t, b, ManifestJSON)
		s, _ := json.Marshal(Signature{Algorithm: "ed25519", KeyID: other.ID, Fingerprint: Fingerprint(other.Public().Public), Signature: other.Sign(mb)})
		return s
	}, nil)
	if res := verify(t, resigned, keys); !has(res, BadSignature, ManifestSig) || !strings.Contains(res.Findings[0].Detail, "not one of the 1 trusted") {
		t.Errorf("re-signed with another key: %v", res.Findings)
	}
	// The manifest rewritten (an event count lowered) and re-signed with
	// the other key, claiming the trusted key's fingerprint.
	forged := rezip(t, b, func(name string, d []byte) []byte {
		if name != ManifestSig {
			return d
		}
		mb := mustRead(t, b, ManifestJSON)
		s, _ := json.Marshal(Signature{Algorithm: "ed25519", KeyID: sk.ID, Fingerprint: Fingerprint(sk.Public().Public), Signature: other.Sign(mb)})
		return s
	}, nil)
	if res := verify(t, forged, keys); !has(res, BadSignature, ManifestSig) || !strings.Contains(res.Findings[0].Detail, "does not verify") {
		t.Errorf("signed by another key under the trusted fingerprint: %v", res.Findings)
	}
	// The same name twice: unzip tools differ in which they show.
	twice := rezip(t, b, keep, map[string][]byte{EventsCSV: []byte("id\nforged\n")})
	if res := verify(t, twice, keys); !has(res, Invalid, EventsCSV) {
		t.Errorf("events.csv twice: %v", res.Findings)
	}
	// A byte of the compressed stream: the entry no longer reads.
	raw := bytes.Clone(b)
	raw[200] ^= 0x20
	if res := verify(t, raw, keys); len(res.Findings) == 0 || res.Findings[0].File != EventsJSONL {
		t.Errorf("a byte flipped in the zip's data: %v", res.Findings)
	}
}

func mustRead(t testing.TB, b []byte, name string) []byte {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := zr.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	d, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestAddRefuses: a line that is not an event, or out of time order, is an
// error naming its position; the package cannot be closed after it.
func TestAddRefuses(t *testing.T) {
	lines := realistic(3)
	w, err := NewWriter(io.Discard, t.TempDir(), produced)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add(lines[1]); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(lines[0]); err == nil || !strings.Contains(err.Error(), "event 2") || !strings.Contains(err.Error(), "time order") {
		t.Errorf("an older event = %v", err)
	}
	if _, err := w.Close(testManifest(), signer(t)); err == nil {
		t.Error("Close after a refused event succeeded")
	}
	w, _ = NewWriter(io.Discard, t.TempDir(), produced)
	if err := w.Add([]byte(`{"v":1,"id":"x"`)); err == nil || !strings.Contains(err.Error(), "event 1") {
		t.Errorf("a broken line = %v", err)
	}
}

var update = flag.Bool("update", false, "rewrite testdata/golden-v1.zip")

// TestGolden: testdata/golden-v1.zip, a package of 20 events signed with
// testdata/signer.seed, verifies; and its manifest is byte for byte what
// the Writer makes of the same events today (the zip's compressed bytes
// may change with the compressor; the manifest, which pins every file's
// SHA-256, may not). A third party can test a reader against it.
func TestGolden(t *testing.T) {
	sk := signer(t)
	b, _ := build(t, realistic(20), sk)
	if *update {
		if err := os.WriteFile("testdata/golden-v1.zip", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile("testdata/golden-v1.zip")
	if err != nil {
		t.Fatal(err)
	}
	if res := verify(t, golden, trust(sk)); len(res.Findings) != 0 || res.Manifest.Counts.Events != 20 {
		t.Fatalf("golden package: %v", res.Findings)
	}
	if got, want := mustRead(t, b, ManifestJSON), mustRead(t, golden, ManifestJSON); !bytes.Equal(got, want) {
		t.Errorf("the manifest of the same events differs from the golden one:\n%s\nwant:\n%s", got, want)
	}
}

// FuzzVerify: whatever the bytes, Verify returns an error or findings,
// never panics, and accepts nothing unsigned.
func FuzzVerify(f *testing.F) {
	golden, err := os.ReadFile("testdata/golden-v1.zip")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(golden)
	f.Add(golden[:len(golden)/2])
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	sk := signer(f)
	keys := trust(sk)
	f.Fuzz(func(t *testing.T, b []byte) {
		res, err := Verify(bytes.NewReader(b), int64(len(b)), keys)
		if err != nil {
			return
		}
		if len(res.Findings) == 0 && (res.Signer == "" || res.Manifest == nil) {
			t.Fatalf("no finding, yet signer %q, manifest %v", res.Signer, res.Manifest)
		}
	})
}

// TestCSVFormulaCells: a text value a spreadsheet would run as a formula
// gets a leading apostrophe in events.csv, and only there.
func TestCSVFormulaCells(t *testing.T) {
	e := event.Event{ID: "f-1", Time: produced.Add(-time.Hour), Kind: event.KindLogin, Class: "security", Tenant: "acme",
		Login: `=HYPERLINK("http://x")`, UserAgent: "-", Action: "@sum", Path: "+1", Repo: "plain"}
	line := event.AppendJSON(nil, &e)
	line = line[:len(line)-1]
	b, _ := build(t, [][]byte{line}, signer(t))
	rows, err := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(mustRead(t, b, EventsCSV), []byte("\ufeff")))).ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("events.csv: %v %v", rows, err)
	}
	col := map[string]string{}
	for i, name := range rows[0] {
		col[name] = rows[1][i]
	}
	for name, want := range map[string]string{"login": `'=HYPERLINK("http://x")`, "user_agent": "'-", "action": "'@sum", "path": "'+1", "repo": "plain", "id": "f-1"} {
		if col[name] != want {
			t.Errorf("csv %s = %q; want %q", name, col[name], want)
		}
	}
	if got := mustRead(t, b, EventsJSONL); !bytes.Equal(got, append(line, '\n')) {
		t.Errorf("events.jsonl changed the event: %s", got)
	}
}
