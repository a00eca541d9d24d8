// Package segment writes and reads Custody archive segments (format v1,
// docs/FORMAT.md): a cleartext header, a sealed index of keyed bloom
// filters, and a body of zstd-compressed canonical JSON lines sealed as a
// chunked AES-256-GCM stream, with a trailer holding the SHA-256 of the
// plaintext.
package segment

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"

	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/crypto/seal"
)

// Magic opens every segment; Version follows it.
const (
	Magic   = "CUSTSEG\n"
	Version = 1

	preambleSize   = len(Magic) + 1 + 4
	maxHeaderSize  = 64 << 10
	maxIndexSize   = 64 << 20
	compressionZst = "zstd"
)

// Errors a reader reports. Each is wrapped with the object name.
var (
	ErrNotSegment  = errors.New("not a custody segment (bad magic)")
	ErrVersion     = errors.New("unsupported segment version")
	ErrHeader      = errors.New("invalid segment header")
	ErrName        = errors.New("object name does not match the segment header (moved or renamed)")
	ErrAuth        = seal.ErrAuth // the one authentication sentinel, whichever layer failed
	ErrTruncated   = errors.New("segment truncated")
	ErrTrailing    = errors.New("data after the end of the segment")
	ErrTooLarge    = errors.New("segment plaintext exceeds the size cap")
	ErrMismatch    = errors.New("segment content does not match its header or trailer")
	ErrCompression = errors.New("corrupt compressed body")
)

// Meta describes what a segment holds. The writer's caller knows all of it
// before writing: the archiver cuts a complete buffer into a segment.
type Meta struct {
	Class       string    `json:"class"`
	Kind        string    `json:"kind"`
	Hour        time.Time `json:"hour"`
	Topic       string    `json:"topic"`
	Partition   int32     `json:"partition"`
	FirstOffset int64     `json:"first_offset"`
	LastOffset  int64     `json:"last_offset"`
	MinTime     time.Time `json:"min_time"`
	MaxTime     time.Time `json:"max_time"`
	Count       int64     `json:"count"`
	// Kinds, in a segment that holds every kind of its class and hour
	// (format v3; Kind is then empty), is the number of events of each
	// kind present. A single-kind segment has Kind and no Kinds.
	Kinds map[string]int64 `json:"kinds,omitempty"`
}

// Has reports whether the segment may hold events of kind k: its one kind,
// or one of its Kinds.
func (m *Meta) Has(k string) bool {
	if m.Kind != "" {
		return m.Kind == k
	}
	return m.Kinds[k] > 0
}

// Key is the segment's place in the chain's accounting (docs/CHAIN.md
// §2): "<class>/<kind>/<yyyymmddhh>", the kind empty for a segment of
// every kind.
func (m *Meta) Key() string {
	return m.Class + "/" + m.Kind + "/" + m.Hour.UTC().Format("2006010215")
}

// Header is the cleartext header: Meta plus what a reader needs to open
// the rest. It is authenticated (as associated data of the index and every
// body chunk) but not secret.
type Header struct {
	Meta
	KeyID       string `json:"key_id"`
	WrappedKey  []byte `json:"wrapped_key"`
	NoncePrefix []byte `json:"nonce_prefix"`
	ChunkSize   int    `json:"chunk_size"`
	Compression string `json:"compression"`

	// Version is the format version (1 or 2). SealedKey and Signer are
	// v2's; they are not part of the v1 header's JSON.
	Version   int    `json:"-"`
	SealedKey []byte `json:"-"`
	Signer    string `json:"-"`
}

var (
	classPattern = regexp.MustCompile(`^[a-z][a-z0-9-]{0,31}$`)
	kindPattern  = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
	topicPattern = regexp.MustCompile(`^[a-zA-Z0-9._-]{1,249}$`)
)

// Validate checks the header's own consistency; it names the field.
func (h *Header) Validate() error {
	m := &h.Meta
	switch {
	case !classPattern.MatchString(m.Class):
		return fmt.Errorf("class %q is not a retention class name", m.Class)
	case m.Kind != "" && !kindPattern.MatchString(m.Kind):
		return fmt.Errorf("kind %q is not an event kind", m.Kind)
	case m.Kind != "" && len(m.Kinds) > 0:
		return fmt.Errorf("kind %q and kinds are both set: a segment holds one kind or lists its kinds", m.Kind)
	case m.Kind == "" && h.Version < Version3:
		return fmt.Errorf("kind is empty: only a format v3 segment may hold every kind (format v%d)", max(h.Version, Version))
	case m.Kind == "":
		if err := validKinds(m.Kinds, m.Count); err != nil {
			return err
		}
	case m.Hour.IsZero() || !m.Hour.Equal(m.Hour.Truncate(time.Hour)) || m.Hour.Location() != time.UTC:
		return fmt.Errorf("hour %s is not a whole UTC hour", m.Hour.Format(time.RFC3339Nano))
	case !topicPattern.MatchString(m.Topic) || m.Topic == "." || m.Topic == "..":
		return fmt.Errorf("topic %q is not a Kafka topic name", m.Topic)
	case m.Partition < 0:
		return fmt.Errorf("partition %d is negative", m.Partition)
	case m.FirstOffset < 0 || m.LastOffset < m.FirstOffset:
		return fmt.Errorf("offset range %d-%d is invalid", m.FirstOffset, m.LastOffset)
	case m.Count < 1 || m.Count > m.LastOffset-m.FirstOffset+1:
		return fmt.Errorf("count %d does not fit offsets %d-%d", m.Count, m.FirstOffset, m.LastOffset)
	case m.MaxTime.Before(m.MinTime):
		return fmt.Errorf("max_time %s is before min_time %s", m.MaxTime.Format(time.RFC3339Nano), m.MinTime.Format(time.RFC3339Nano))
	case m.MinTime.Before(m.Hour) || !m.MaxTime.Before(m.Hour.Add(time.Hour)):
		return fmt.Errorf("event times %s-%s fall outside hour %s", m.MinTime.Format(time.RFC3339Nano), m.MaxTime.Format(time.RFC3339Nano), m.Hour.Format(time.RFC3339))
	case h.KeyID == "":
		return errors.New("key_id is empty")
	case len(h.WrappedKey) != keyring.WrappedSize:
		return fmt.Errorf("wrapped_key is %d bytes; want %d", len(h.WrappedKey), keyring.WrappedSize)
	case len(h.NoncePrefix) != seal.NoncePrefixSize:
		return fmt.Errorf("nonce_prefix is %d bytes; want %d", len(h.NoncePrefix), seal.NoncePrefixSize)
	case h.ChunkSize != seal.ChunkSize:
		return fmt.Errorf("chunk_size %d is not %d", h.ChunkSize, seal.ChunkSize)
	case h.Compression != compressionZst:
		return fmt.Errorf("compression %q is not zstd", h.Compression)
	}
	return nil
}

// validKinds checks the kinds of a segment of every kind: at least one,
// each an event kind name with a positive count, adding up to count.
func validKinds(kinds map[string]int64, count int64) error {
	if len(kinds) == 0 {
		return errors.New("kind is empty and kinds lists none")
	}
	var sum int64
	for k, n := range kinds {
		if !kindPattern.MatchString(k) {
			return fmt.Errorf("kinds: %q is not an event kind", k)
		}
		if n < 1 {
			return fmt.Errorf("kinds: %s has count %d", k, n)
		}
		sum += n
	}
	if sum != count {
		return fmt.Errorf("kinds add up to %d events; count is %d", sum, count)
	}
	return nil
}

// encodePreamble returns magic ‖ version ‖ uint32be(len(header)) ‖ header.
func encodeHeader(h *Header) ([]byte, error) {
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	hb, err := json.Marshal(h)
	if err != nil {
		return nil, err
	}
	if len(hb) > maxHeaderSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds %d", ErrHeader, len(hb), maxHeaderSize)
	}
	out := make([]byte, 0, preambleSize+len(hb))
	out = append(out, Magic...)
	out = append(out, Version)
	out = binary.BigEndian.AppendUint32(out, uint32(len(hb)))
	return append(out, hb...), nil
}

// ReadHeader reads the preamble and header from r and returns the header
// and its exact bytes (which the associated data covers).
func ReadHeader(r io.Reader) (*Header, []byte, error) {
	var pre [preambleSize]byte
	if n, err := io.ReadFull(r, pre[:]); err != nil {
		if n >= len(Magic) && string(pre[:len(Magic)]) != Magic {
			return nil, nil, ErrNotSegment
		}
		return nil, nil, fmt.Errorf("%w: %d-byte object ends inside the preamble", ErrTruncated, n)
	}
	if string(pre[:len(Magic)]) != Magic {
		return nil, nil, ErrNotSegment
	}
	if v := pre[len(Magic)]; v != Version {
		return nil, nil, fmt.Errorf("%w %d (this reader knows %d)", ErrVersion, v, Version)
	}
	n := binary.BigEndian.Uint32(pre[len(Magic)+1:])
	if n == 0 || n > maxHeaderSize {
		return nil, nil, fmt.Errorf("%w: length %d outside 1-%d", ErrHeader, n, maxHeaderSize)
	}
	hb := make([]byte, n)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, nil, fmt.Errorf("%w: object ends inside the header", ErrTruncated)
	}
	h, err := parseHeader(hb)
	if err != nil {
		return nil, nil, err
	}
	h.Version = Version
	return h, hb, nil
}

func parseHeader(hb []byte) (*Header, error) {
	dec := json.NewDecoder(bytes.NewReader(hb))
	dec.DisallowUnknownFields()
	var h Header
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: data after the JSON object", ErrHeader)
	}
	if err := h.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	// One spelling per time (docs/FORMAT.md §4): what the writer writes.
	var raw struct {
		Hour    string `json:"hour"`
		MinTime string `json:"min_time"`
		MaxTime string `json:"max_time"`
	}
	if err := json.Unmarshal(hb, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHeader, err)
	}
	for _, f := range []struct {
		name, raw string
		t         time.Time
	}{{"hour", raw.Hour, h.Hour}, {"min_time", raw.MinTime, h.MinTime}, {"max_time", raw.MaxTime, h.MaxTime}} {
		if want := f.t.UTC().Format(time.RFC3339Nano); f.raw != want {
			return nil, fmt.Errorf("%w: %s %q is not spelt %q (UTC, Z, no trailing zeros)", ErrHeader, f.name, f.raw, want)
		}
	}
	return &h, nil
}

// HeadLen returns the length of a segment's head: preamble, header, index
// length word and sealed index, all a reader needs to prune a segment
// without its body (docs/FORMAT.md §3). Given the object's first bytes b
// it returns that length and true, or, when b is too short to tell, the
// number of bytes needed to tell and false. Lengths outside the format's
// bounds are not judged here: it then returns len(b) and true, and Open
// reports the error. Nothing here is authenticated; Open is.
func HeadLen(b []byte) (int, bool) {
	if len(b) < preambleSize {
		return preambleSize, false
	}
	h := int(binary.BigEndian.Uint32(b[len(Magic)+1:]))
	if h == 0 || h > maxHeaderSize {
		return len(b), true
	}
	if len(b) < preambleSize+h+4 {
		return preambleSize + h + 4, false
	}
	x := int(binary.BigEndian.Uint32(b[preambleSize+h:]))
	if x > maxIndexSize {
		return len(b), true
	}
	return preambleSize + h + 4 + x, true
}
