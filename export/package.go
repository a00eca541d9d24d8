// Package export writes and verifies disclosure packages: one .zip that an
// authority opens with everyday tools and anyone can verify offline. It
// holds the events (JSON Lines and CSV), a readable cover page, and a
// manifest of every file's SHA-256 and size, the exact query and the
// provenance of the events in the archive, signed with Ed25519.
// docs/EXPORTS.md is the format.
package export

import (
	"archive/zip"
	"bufio"

	"crypto/rand"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/flate"

	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/crypto/seal"
	"github.com/custodylog/custody/event"
)

// The files of a package.
const (
	EventsJSONL  = "events.jsonl"
	EventsCSV    = "events.csv"
	SummaryHTML  = "summary.html"
	ManifestJSON = "manifest.json"
	ManifestSig  = "manifest.sig"
)

// Format names the manifest's format and version.
const Format = "custody export v1"

// Manifest is manifest.json: what the package holds and where it comes
// from. The signature in manifest.sig covers its exact bytes.
type Manifest struct {
	Format string `json:"format"` // Format
	// Kind is "disclosure" (to an authority) or "subject-access" (to the
	// person the events are about).
	Kind       string   `json:"kind"`
	ID         string   `json:"id"`
	Request    Request  `json:"request"`
	Query      Query    `json:"query"`
	Counts     Counts   `json:"counts"`
	Files      []File   `json:"files"`
	Provenance []Source `json:"provenance"`
	// RetentionDays is how long each retention class keeps an event after
	// its day (for the reader: what is kept until when).
	RetentionDays map[string]int `json:"retention_days,omitempty"`
	ProducedAt    time.Time      `json:"produced_at"`
	Software      string         `json:"software"`
}

// Request is who asked, on what basis, and who approved.
type Request struct {
	Case       string   `json:"case"`
	Authority  string   `json:"authority,omitempty"`
	LegalBasis string   `json:"legal_basis,omitempty"`
	Reference  string   `json:"reference,omitempty"` // the authority's or the rights request's reference
	Purpose    string   `json:"purpose"`
	Requester  string   `json:"requester"`
	Approvers  []string `json:"approvers,omitempty"`
}

// Query is the exact query the events answer: the time range and every
// filter, including the tenant scope it ran under.
type Query struct {
	From        time.Time         `json:"from"`
	To          time.Time         `json:"to"`
	Filters     map[string]string `json:"filters"`
	TenantScope []string          `json:"tenant_scope,omitempty"` // empty: all tenants
}

// Counts are the events exported, in all and per kind and tenant.
type Counts struct {
	Events  int64            `json:"events"`
	Kinds   map[string]int64 `json:"kinds"`
	Tenants map[string]int64 `json:"tenants"`
}

// File is one file of the package.
type File struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Source is a segment that contributed events, and the chain checkpoint
// that lists it (docs/CHAIN.md), each by the SHA-256 of its object.
type Source struct {
	Segment    string `json:"segment"`
	SHA256     string `json:"sha256"`
	Events     int64  `json:"events"`
	Checkpoint string `json:"checkpoint"`
	// CheckpointSHA256 is the hex SHA-256 of the checkpoint object.
	CheckpointSHA256 string `json:"checkpoint_sha256"`
}

// Signature is manifest.sig: an Ed25519 signature over the bytes of
// manifest.json, and the key that made it.
type Signature struct {
	Algorithm string `json:"algorithm"` // "ed25519"
	KeyID     string `json:"key_id"`
	// Fingerprint is "SHA256:" and the hex SHA-256 of the raw 32-byte
	// public key.
	Fingerprint string `json:"fingerprint"`
	Signature   []byte `json:"signature"` // base64 in JSON
}

// Fingerprint names an Ed25519 public key.
func Fingerprint(pub []byte) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// deflateLevel trades size for speed; see BenchmarkWriter.
const deflateLevel = 3

// csvColumns are events.csv's columns: every member of the canonical
// event (docs/EVENTS.md), attrs as one JSON object.
var csvColumns = []string{"id", "time", "kind", "class", "tenant", "app", "source", "received", "late", "redacted", "ip", "port",
	"session", "login", "user_agent", "action", "protocol", "method", "path", "status", "repo", "ref", "old_commit", "new_commit", "purpose", "attrs"}

// csvSpillAAD labels the sealed temporary file events.csv is written to
// while events.jsonl streams into the zip.
var csvSpillAAD = []byte("custody export csv spill v1")

// Writer streams a package into a zip. events.jsonl goes straight into the
// zip; events.csv, which must come after it, waits in an unlinked temporary
// file sealed under a key only this Writer holds (no plaintext event on
// disk). Memory holds the counts and the provenance, not the events. Not
// safe for concurrent use.
type Writer struct {
	zw      *zip.Writer
	jsonl   io.Writer
	jhash   hash.Hash
	jsize   int64
	csvFile *os.File
	csvKey  []byte
	csvPfx  [seal.NoncePrefixSize]byte
	csvSeal *seal.Writer
	csvBuf  *bufio.Writer
	cw      *csv.Writer
	chash   hash.Hash
	csize   countWriter
	counts  Counts
	lastT   time.Time
	row     []string
	files   []File
	// produced is the package's time, in every zip header too: the same
	// events, request and key give the same bytes.
	produced time.Time
	err      error
}

// NewWriter starts a package on dst, produced at the given time (the
// manifest's and every zip entry's); tmpDir ("" for the system's) holds
// the sealed CSV spill.
func NewWriter(dst io.Writer, tmpDir string, produced time.Time) (*Writer, error) {
	zw := zip.NewWriter(dst)
	// klauspost's deflate, at a fast level: plain deflate that every unzip
	// reads, at several times the standard library's speed (the zip is
	// most of a package's CPU; docs/BENCHMARKS.md).
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) { return flate.NewWriter(out, deflateLevel) })
	w := &Writer{zw: zw, produced: produced.UTC().Truncate(time.Second), jhash: sha256.New(), chash: sha256.New(), csvKey: make([]byte, seal.KeySize),
		counts: Counts{Kinds: map[string]int64{}, Tenants: map[string]int64{}}, row: make([]string, len(csvColumns))}
	f, err := os.CreateTemp(tmpDir, "custody-export-*.csv.sealed")
	if err != nil {
		return nil, fmt.Errorf("cannot create the CSV spill: %w", err)
	}
	os.Remove(f.Name()) // unlinked: the space goes when the file is closed
	w.csvFile = f
	rand.Read(w.csvKey)
	rand.Read(w.csvPfx[:])
	if w.csvSeal, err = seal.NewWriter(f, w.csvKey, w.csvPfx, csvSpillAAD); err != nil {
		f.Close()
		return nil, err
	}
	w.csvBuf = bufio.NewWriterSize(io.MultiWriter(w.csvSeal, w.chash, &w.csize), 256<<10)
	// A UTF-8 byte order mark: spreadsheets read the file as UTF-8 then.
	w.csvBuf.WriteString("\ufeff")
	w.cw = csv.NewWriter(w.csvBuf)
	w.cw.Write(csvColumns)
	zf, err := w.zw.CreateHeader(&zip.FileHeader{Name: EventsJSONL, Method: zip.Deflate, Modified: w.produced})
	if err != nil {
		f.Close()
		return nil, err
	}
	w.jsonl = io.MultiWriter(zf, w.jhash)
	return w, nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// Add appends one event, as a canonical JSON line (without the newline),
// in time order. A line that is not a canonical event is an error naming
// its position; the package is then unusable.
func (w *Writer) Add(line []byte) error {
	if w.err != nil {
		return w.err
	}
	e, err := event.Parse(line)
	if err != nil {
		w.err = fmt.Errorf("event %d: %w", w.counts.Events+1, err)
		return w.err
	}
	if e.Time.Before(w.lastT) {
		w.err = fmt.Errorf("event %d (%s) is older than the one before it: events must come in time order", w.counts.Events+1, e.ID)
		return w.err
	}
	w.lastT = e.Time
	if _, err := w.jsonl.Write(line); err != nil {
		w.err = err
		return err
	}
	if _, err := w.jsonl.Write([]byte{'\n'}); err != nil {
		w.err = err
		return err
	}
	w.jsize += int64(len(line)) + 1
	w.counts.Events++
	w.counts.Kinds[string(e.Kind)]++
	w.counts.Tenants[e.Tenant]++
	if err := w.cw.Write(w.csvRow(e)); err != nil {
		w.err = fmt.Errorf("cannot write the CSV spill: %w", err)
		return w.err
	}
	return nil
}

// csvRow renders e in csvColumns' order. A text cell that a spreadsheet
// would take for a formula (starting with = + - @, a tab or a carriage
// return) gets a leading apostrophe: events.jsonl keeps the exact value.
func (w *Writer) csvRow(e *event.Event) []string {
	r := w.row
	ip := ""
	if e.IP.IsValid() {
		ip = e.IP.String()
	}
	port, status := "", ""
	if e.Port != 0 {
		port = strconv.Itoa(int(e.Port))
	}
	if e.Status != 0 {
		status = strconv.Itoa(e.Status)
	}
	attrs := ""
	if len(e.Attrs) > 0 {
		b, _ := json.Marshal(e.Attrs)
		attrs = string(b)
	}
	received := ""
	if !e.Received.IsZero() {
		received = event.FormatTime(e.Received)
	}
	copy(r, []string{e.ID, event.FormatTime(e.Time), string(e.Kind), e.Class, e.Tenant, e.App, e.Source, received,
		strconv.FormatBool(e.Late), strconv.Itoa(e.Redacted), ip, port, e.Session, e.Login, e.UserAgent, e.Action, e.Protocol,
		e.Method, e.Path, status, e.Repo, e.Ref, e.OldCommit, e.NewCommit, e.Purpose, attrs})
	for i, v := range r {
		if v != "" && (v[0] == '=' || v[0] == '+' || v[0] == '-' || v[0] == '@' || v[0] == '\t' || v[0] == '\r') {
			r[i] = "'" + v
		}
	}
	return r
}

// Close completes the package: events.csv, summary.html, then the
// manifest (m, completed with the counts and files) and its signature by
// sk. It returns the manifest as written. dst is not closed.
func (w *Writer) Close(m Manifest, sk keyring.SigningKey) (Manifest, error) {
	defer w.csvFile.Close()
	if w.err != nil {
		return m, w.err
	}
	w.files = append(w.files, File{Name: EventsJSONL, Size: w.jsize, SHA256: hex.EncodeToString(w.jhash.Sum(nil))})
	w.cw.Flush()
	err := w.cw.Error()
	if err == nil {
		err = w.csvBuf.Flush()
	}
	if err == nil {
		err = w.csvSeal.Close()
	}
	if err == nil {
		err = w.copyCSV()
	}
	if err != nil {
		return m, fmt.Errorf("cannot write %s: %w", EventsCSV, err)
	}
	m.Format = Format
	m.Counts = w.counts
	m.ProducedAt = w.produced
	slices.SortFunc(m.Provenance, func(a, b Source) int { return strings.Compare(a.Segment, b.Segment) })
	summary, err := renderSummary(m)
	if err != nil {
		return m, err
	}
	if err := w.put(SummaryHTML, summary); err != nil {
		return m, err
	}
	m.Files = w.files
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return m, err
	}
	mb = append(mb, '\n')
	pub := sk.Public().Public
	sig, err := json.MarshalIndent(Signature{Algorithm: "ed25519", KeyID: sk.ID, Fingerprint: Fingerprint(pub), Signature: sk.Sign(mb)}, "", "  ")
	if err != nil {
		return m, err
	}
	if err := w.put(ManifestJSON, mb); err != nil {
		return m, err
	}
	if err := w.put(ManifestSig, append(sig, '\n')); err != nil {
		return m, err
	}
	return m, w.zw.Close()
}

// copyCSV opens the sealed spill and copies it into the zip.
func (w *Writer) copyCSV() error {
	if _, err := w.csvFile.Seek(0, io.SeekStart); err != nil {
		return err
	}
	sr, err := seal.NewReader(bufio.NewReaderSize(w.csvFile, 1<<20), w.csvKey, w.csvPfx, csvSpillAAD)
	if err != nil {
		return err
	}
	zf, err := w.zw.CreateHeader(&zip.FileHeader{Name: EventsCSV, Method: zip.Deflate, Modified: w.produced})
	if err != nil {
		return err
	}
	n, err := io.Copy(zf, sr)
	if err != nil {
		return err
	}
	if n != int64(w.csize) {
		return fmt.Errorf("the spill gave back %d bytes of %d", n, int64(w.csize))
	}
	w.files = append(w.files, File{Name: EventsCSV, Size: n, SHA256: hex.EncodeToString(w.chash.Sum(nil))})
	return nil
}

// put adds a small file and lists it (the manifest and its signature are
// not listed: the signature covers the one, the other is the signature).
func (w *Writer) put(name string, b []byte) error {
	zf, err := w.zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: w.produced})
	if err != nil {
		return err
	}
	if _, err := zf.Write(b); err != nil {
		return fmt.Errorf("cannot write %s: %w", name, err)
	}
	if name != ManifestJSON && name != ManifestSig {
		sum := sha256.Sum256(b)
		w.files = append(w.files, File{Name: name, Size: int64(len(b)), SHA256: hex.EncodeToString(sum[:])})
	}
	return nil
}

// sortedKeys is m's keys in order.
func sortedKeys(m map[string]int64) []string { return slices.Sorted(maps.Keys(m)) }
