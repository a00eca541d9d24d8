package segment

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/crypto/seal"
)

// maxWindow bounds the memory a decoder may need for one frame; the writer
// uses an 8 MiB window, so anything larger was not written by Custody.
const maxWindow = 32 << 20

var decoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(maxWindow), zstd.WithDecoderLowmem(true))
	if err != nil {
		panic(fmt.Sprintf("zstd decoder options are invalid: %v", err))
	}
	return d
}}

// Keys resolves key IDs to data keys; *keyring.Keyring satisfies it.
type keys interface {
	Unwrap(id string, wrapped []byte) ([]byte, error)
}

// ReaderOptions bound what a reader will do.
type ReaderOptions struct {
	// MaxPlaintext caps the decompressed body; 0 means no cap. A body
	// beyond it fails with ErrTooLarge, so a decompression bomb costs at
	// most this much work and no more than the decoder window in memory.
	MaxPlaintext int64
}

// Reader reads one segment. Open reads and authenticates the header and
// index; Body streams the events. Close releases the decoder.
type Reader struct {
	name  string
	h     *Header
	ix    *Index
	src   io.Reader
	keys  segKeys
	aad   []byte
	opts  ReaderOptions
	body  *bodyReader
	begun bool
	// v2: the reader that withholds and checks the signature, and what
	// resolves the signer.
	sig     *sigReader
	sigKeys any
}

// Open reads the header and index of the segment stored under name from
// src, recovers its data key with ks and authenticates header and index.
// Every error names the object. ks unwraps v1 data keys (Unwrap, the v1
// keyring); for v2 segments it must also open sealed keys (OpenKey, the
// private keyring) and resolve signers (Signer, the public keyring), as
// keyring.Set does. The body of a v2 segment ends with io.EOF only once its
// signature verified.
func Open(src io.Reader, name string, ks any, opts ReaderOptions) (*Reader, error) {
	r, err := open(src, name, ks, opts)
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", name, err)
	}
	return r, nil
}

func open(src io.Reader, name string, ks any, opts ReaderOptions) (*Reader, error) {
	var pre [preambleSize]byte
	n, err := io.ReadFull(src, pre[:])
	if err == nil && string(pre[:len(Magic)]) == Magic && (pre[len(Magic)] == Version2 || pre[len(Magic)] == Version3) {
		return openV2(pre[:], src, name, ks, opts)
	}
	h, hb, err := ReadHeader(io.MultiReader(bytes.NewReader(pre[:n]), src))
	if err != nil {
		return nil, err
	}
	if Name(&h.Meta) != name {
		return nil, ErrName
	}
	v1, ok := ks.(keys)
	if !ok || v1 == nil {
		return nil, fmt.Errorf("format v1 segment: reading it needs the v1 keyring (crypto.keyring_file)")
	}
	dek, err := v1.Unwrap(h.KeyID, h.WrappedKey)
	if err != nil {
		var nf *keyring.NotFoundError
		if errors.As(err, &nf) {
			return nil, err
		}
		return nil, ErrAuth // opaque, whatever the keyring said
	}
	k, err := deriveKeys(dek)
	if err != nil {
		return nil, err
	}
	header := make([]byte, 0, preambleSize+len(hb))
	header = append(header, Magic...)
	header = append(header, Version)
	header = binary.BigEndian.AppendUint32(header, uint32(len(hb)))
	header = append(header, hb...)
	aad := associatedData(name, header)
	ix, err := readIndex(src, k, aad)
	if err != nil {
		return nil, err
	}
	return &Reader{name: name, h: h, ix: ix, src: src, keys: k, aad: aad, opts: opts}, nil
}

// Name is the object name the segment was opened under.
func (r *Reader) Name() string { return r.name }

// Header returns the authenticated header.
func (r *Reader) Header() *Header { return r.h }

// Index returns the authenticated index.
func (r *Reader) Index() *Index { return r.ix }

// Body returns the events, canonical JSON lines. Its Read returns io.EOF
// only after the whole segment authenticated and matched its trailer and
// header; any other problem is an error naming the object. Body may be
// called once.
func (r *Reader) Body() (io.Reader, error) {
	if r.begun {
		return nil, fmt.Errorf("segment %s: body already read", r.name)
	}
	r.begun = true
	var prefix [seal.NoncePrefixSize]byte
	copy(prefix[:], r.h.NoncePrefix)
	sr, err := seal.NewReader(r.src, r.keys.body, prefix, r.aad)
	if err != nil {
		return nil, err
	}
	hb := &holdback{r: sr, keep: trailerSize}
	if r.h.Version == Version3 {
		cr, err := newColumnReader(hb, r.opts.MaxPlaintext)
		if err != nil {
			return nil, err
		}
		r.body = &bodyReader{r: r, hb: hb, src: cr, release: cr.close, sha: sha256.New()}
		return r.body, nil
	}
	d := decoders.Get().(*zstd.Decoder)
	if err := d.Reset(hb); err != nil {
		decoders.Put(d)
		return nil, fmt.Errorf("segment %s: %w", r.name, r.mapErr(err))
	}
	r.body = &bodyReader{r: r, hb: hb, src: d, sha: sha256.New(), release: func() {
		d.Reset(nil)
		decoders.Put(d)
	}}
	return r.body, nil
}

// Close releases the decoder; it does not close the source.
func (r *Reader) Close() error {
	if r.body != nil && r.body.src != nil {
		r.body.release()
		r.body.src = nil
	}
	return nil
}

func (r *Reader) mapErr(err error) error {
	switch {
	case errors.Is(err, ErrAuth):
		return ErrAuth
	case errors.Is(err, seal.ErrTruncated):
		return ErrTruncated
	case errors.Is(err, seal.ErrTrailing):
		return ErrTrailing
	case errors.Is(err, ErrTooLarge), errors.Is(err, ErrMismatch), errors.Is(err, ErrTruncated):
		return err
	}
	// The stream authenticated, so the compressed bytes are the writer's;
	// a decoder error means a broken writer, or a window beyond our cap.
	return fmt.Errorf("%w: %v", ErrCompression, err)
}

type bodyReader struct {
	r  *Reader
	hb *holdback
	// src decodes the sealed stream: a zstd decoder (v1, v2) or a
	// columnar block reader (v3); release returns it.
	src     io.Reader
	release func()
	sha     hash.Hash
	n       int64
	lines   int64
	err     error
}

func (b *bodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.src == nil {
		return 0, fmt.Errorf("segment %s: reader closed", b.r.name)
	}
	n, err := b.src.Read(p)
	if n > 0 {
		b.n += int64(n)
		if max := b.r.opts.MaxPlaintext; max > 0 && b.n > max {
			b.err = fmt.Errorf("segment %s: %w (%d bytes)", b.r.name, ErrTooLarge, max)
			return 0, b.err
		}
		b.sha.Write(p[:n])
		b.lines += int64(bytes.Count(p[:n], []byte{'\n'}))
	}
	switch {
	case err == io.EOF:
		b.err = b.finish()
		if b.err != io.EOF {
			return n, b.err
		}
	case err != nil:
		b.err = fmt.Errorf("segment %s: %w", b.r.name, b.r.mapErr(err))
	}
	return n, nil
}

// finish checks the trailer and the header's count once the whole stream
// authenticated (the decoder reached EOF only because the sealed stream
// did, final chunk included).
func (b *bodyReader) finish() error {
	if b.hb.err != nil && b.hb.err != io.EOF {
		return fmt.Errorf("segment %s: %w", b.r.name, b.r.mapErr(b.hb.err))
	}
	tr := b.hb.tail
	if len(tr) != trailerSize {
		return fmt.Errorf("segment %s: %w: trailer is %d bytes", b.r.name, ErrMismatch, len(tr))
	}
	if binary.BigEndian.Uint64(tr[:8]) != uint64(b.n) || !bytes.Equal(tr[8:], b.sha.Sum(nil)) {
		return fmt.Errorf("segment %s: %w: plaintext length or SHA-256 differs from the trailer", b.r.name, ErrMismatch)
	}
	if b.lines != b.r.h.Count {
		return fmt.Errorf("segment %s: %w: %d events; header says %d", b.r.name, ErrMismatch, b.lines, b.r.h.Count)
	}
	if b.r.sig != nil {
		if err := b.r.sig.verify(b.r.name, b.r.h.Signer, b.r.sigKeys); err != nil {
			return fmt.Errorf("segment %s: %w", b.r.name, err)
		}
	}
	return io.EOF
}

// holdback passes its source through except for the last keep bytes, which
// it holds in tail once the source ends.
type holdback struct {
	r    io.Reader
	keep int
	buf  []byte
	tail []byte
	err  error
}

func (h *holdback) Read(p []byte) (int, error) {
	for len(h.buf) <= h.keep && h.err == nil {
		if cap(h.buf) == 0 {
			h.buf = make([]byte, 0, 64<<10)
		}
		if len(h.buf) == cap(h.buf) {
			break
		}
		n, err := h.r.Read(h.buf[len(h.buf):cap(h.buf)])
		h.buf = h.buf[:len(h.buf)+n]
		if err != nil {
			h.err = err
		}
	}
	if len(h.buf) > h.keep {
		n := copy(p, h.buf[:len(h.buf)-h.keep])
		h.buf = append(h.buf[:0], h.buf[n:]...)
		return n, nil
	}
	if h.err == io.EOF {
		h.tail = h.buf
	}
	return 0, h.err
}
