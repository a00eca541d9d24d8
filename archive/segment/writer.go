package segment

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/crypto/seal"
)

const trailerSize = 8 + sha256.Size

// Key derivation labels (HKDF-SHA256 info strings, no salt).
const (
	infoBody  = "custody segment v1 body"
	infoIndex = "custody segment v1 index"
	infoBloom = "custody segment v1 bloom"
	aadLabel  = "custody segment v1\x00"
)

// Encoders are pooled: one costs megabytes to allocate and the archiver
// writes many segments. Concurrency 1 makes the output a deterministic
// function of the input, which the golden vectors rely on.
var encoders = sync.Pool{New: func() any {
	e, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true))
	if err != nil {
		panic(fmt.Sprintf("zstd encoder options are invalid: %v", err))
	}
	return e
}}

type segKeys struct{ body, index, bloom []byte }

func deriveKeys(dek []byte) (segKeys, error) {
	return deriveKeysWith(dek, infoBody, infoIndex, infoBloom)
}

// deriveKeysWith derives the body, index and bloom keys under a format's
// HKDF labels.
func deriveKeysWith(dek []byte, body, index, bloom string) (segKeys, error) {
	var k segKeys
	var err error
	if k.body, err = hkdf.Key(sha256.New, dek, nil, body, 32); err != nil {
		return k, err
	}
	if k.index, err = hkdf.Key(sha256.New, dek, nil, index, 32); err != nil {
		return k, err
	}
	k.bloom, err = hkdf.Key(sha256.New, dek, nil, bloom, 32)
	return k, err
}

// associatedData binds the object name and the exact header bytes
// (preamble included) to the index and every body chunk.
func associatedData(name string, header []byte) []byte {
	return associatedDataWith(aadLabel, name, header)
}

// associatedDataWith is associatedData under a format's label.
func associatedDataWith(label, name string, header []byte) []byte {
	h := sha256.New()
	h.Write([]byte(label))
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(name)))
	h.Write(n[:])
	h.Write([]byte(name))
	binary.BigEndian.PutUint32(n[:], uint32(len(header)))
	h.Write(n[:])
	h.Write(header)
	return h.Sum(nil)
}

func indexAEAD(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

// Writer writes one segment. Write takes the body: canonical JSON lines,
// each ending in '\n'. Close must be called, and its error checked: only a
// nil error from Close means the segment is complete. Not safe for
// concurrent use.
type Writer struct {
	name   string
	meta   Meta
	sw     *seal.Writer
	zw     *zstd.Encoder // v1, v2
	cw     *columnWriter // v3
	sha    hash.Hash
	n      int64
	lines  int64
	last   byte
	closed bool
	whole  bool         // the body came whole (WriteBody)
	sign   func() error // v2: appends the signature after the body
}

// WriterOptions are for tests; the zero value is what production uses.
type WriterOptions struct {
	// Random supplies the data key, nonce prefix and wrap nonce; nil means
	// crypto/rand. Golden vectors set it to a fixed stream.
	Random io.Reader
}

// NewWriter writes the header and sealed index to dst and returns a Writer
// for the body. The segment's data key is fresh and random, wrapped by kek.
func NewWriter(dst io.Writer, m Meta, ix *IndexBuilder, kek keyring.Key, opts WriterOptions) (*Writer, error) {
	random := opts.Random
	if random == nil {
		random = rand.Reader
	}
	m.Hour, m.MinTime, m.MaxTime = m.Hour.UTC(), m.MinTime.UTC(), m.MaxTime.UTC()
	dek := make([]byte, keyring.KeySize)
	if _, err := io.ReadFull(random, dek); err != nil {
		return nil, fmt.Errorf("cannot read random data key: %w", err)
	}
	var prefix [seal.NoncePrefixSize]byte
	if _, err := io.ReadFull(random, prefix[:]); err != nil {
		return nil, fmt.Errorf("cannot read random nonce prefix: %w", err)
	}
	wrapped, err := keyring.Wrap(random, kek, dek)
	if err != nil {
		return nil, err
	}
	h := Header{Meta: m, KeyID: kek.ID, WrappedKey: wrapped, NoncePrefix: prefix[:], ChunkSize: seal.ChunkSize, Compression: compressionZst}
	name := Name(&h.Meta)
	hdr, err := encodeHeader(&h)
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", name, err)
	}
	keys, err := deriveKeys(dek)
	if err != nil {
		return nil, err
	}
	aad := associatedData(name, hdr)
	ia, err := indexAEAD(keys.index)
	if err != nil {
		return nil, err
	}
	if ix == nil {
		ix = NewIndexBuilder()
	}
	// The index key is used for this one message only, so a zero nonce is safe.
	sealedIndex := ia.Seal(nil, make([]byte, ia.NonceSize()), ix.encode(keys.bloom), aad)
	if len(sealedIndex) > maxIndexSize {
		return nil, fmt.Errorf("segment %s: index of %d bytes exceeds %d", name, len(sealedIndex), maxIndexSize)
	}
	head := binary.BigEndian.AppendUint32(hdr, uint32(len(sealedIndex)))
	if _, err := dst.Write(append(head, sealedIndex...)); err != nil {
		return nil, fmt.Errorf("cannot write segment %s: %w", name, err)
	}
	sw, err := seal.NewWriter(dst, keys.body, prefix, aad)
	if err != nil {
		return nil, err
	}
	zw := encoders.Get().(*zstd.Encoder)
	zw.Reset(sw)
	return &Writer{name: name, meta: m, sw: sw, zw: zw, sha: sha256.New()}, nil
}

// Name is the object key the segment must be stored under.
func (w *Writer) Name() string { return w.name }

// Write adds body bytes.
func (w *Writer) Write(p []byte) (int, error) {
	if w.closed || w.whole {
		return 0, fmt.Errorf("segment %s: write after close or WriteBody", w.name)
	}
	if len(p) == 0 {
		return 0, nil
	}
	w.sha.Write(p)
	w.n += int64(len(p))
	w.lines += int64(bytes.Count(p, []byte{'\n'}))
	w.last = p[len(p)-1]
	var n int
	var err error
	if w.cw != nil {
		n, err = w.cw.Write(p)
	} else {
		n, err = w.zw.Write(p)
	}
	if err != nil {
		return n, fmt.Errorf("cannot write segment %s: %w", w.name, err)
	}
	return n, nil
}

// Close ends the body, writes the trailer and the final chunk. It fails if
// the body does not hold exactly Meta.Count newline-terminated lines.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	var err error
	if w.cw != nil {
		err = w.cw.Close()
	} else {
		err = w.zw.Close()
		w.zw.Reset(nil)
		encoders.Put(w.zw)
	}
	if err != nil {
		return fmt.Errorf("cannot write segment %s: %w", w.name, err)
	}
	if w.lines != w.meta.Count || w.n > 0 && w.last != '\n' {
		return fmt.Errorf("segment %s: %w: body has %d lines (last byte %q); header says %d", w.name, ErrMismatch, w.lines, w.last, w.meta.Count)
	}
	var tr [trailerSize]byte
	binary.BigEndian.PutUint64(tr[:8], uint64(w.n))
	w.sha.Sum(tr[8:8])
	if _, err := w.sw.Write(tr[:]); err != nil {
		return fmt.Errorf("cannot write segment %s: %w", w.name, err)
	}
	if err := w.sw.Close(); err != nil {
		return fmt.Errorf("cannot write segment %s: %w", w.name, err)
	}
	if w.sign != nil {
		return w.sign()
	}
	return nil
}

// PlaintextSize is the number of body bytes written so far.
func (w *Writer) PlaintextSize() int64 { return w.n }
