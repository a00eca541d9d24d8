// Package seal is Custody's chunked AEAD stream: AES-256-GCM over 64 KiB
// plaintext chunks, so that a segment of any size is sealed and opened in
// constant memory and any change, reordering, truncation or extension of
// the stream is detected.
//
// Each chunk is framed as a 4-byte big-endian word, whose top bit is the
// final-chunk flag and whose low 31 bits are the ciphertext length
// (plaintext length + 16), followed by the ciphertext. The nonce of chunk i
// is prefix(7) ‖ uint32be(i) ‖ final(1), where final is 1 for the last chunk
// and 0 otherwise, so a flipped flag or a moved chunk fails authentication.
// Every chunk carries the same associated data, which callers use to bind
// the stream to its context (for segments: object name and header).
// Non-final chunks hold exactly ChunkSize plaintext bytes; the final chunk
// holds 0 to ChunkSize. The format is specified in docs/FORMAT.md.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

const (
	// ChunkSize is the plaintext size of every non-final chunk.
	ChunkSize = 64 << 10
	// KeySize is the AES-256 key size.
	KeySize = 32
	// NoncePrefixSize is the random part of every chunk nonce.
	NoncePrefixSize = 7
	// Overhead is the GCM tag added to each chunk.
	Overhead = 16
	// FrameSize is the length word before each chunk.
	FrameSize = 4

	finalBit = 1 << 31
)

// Errors a Reader returns. ErrAuth is Custody's one authentication-failure
// sentinel: keyring.ErrAuth and segment.ErrAuth are the same value, so
// errors.Is finds it whichever layer failed. It is deliberately
// uninformative: the
// reader does not say which check failed, only that the bytes are not what
// the key holder wrote.
var (
	ErrAuth      = errors.New("authentication failed")
	ErrTruncated = errors.New("stream truncated before its final chunk")
	ErrTrailing  = errors.New("data after the final chunk")
)

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: key is %d bytes; want %d", len(key), KeySize)
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func nonce(prefix [NoncePrefixSize]byte, counter uint32, final bool) [12]byte {
	var n [12]byte
	copy(n[:], prefix[:])
	binary.BigEndian.PutUint32(n[NoncePrefixSize:], counter)
	if final {
		n[11] = 1
	}
	return n
}

// Writer seals what is written to it. It is not safe for concurrent use.
// Close must be called to write the final chunk; it does not close dst.
type Writer struct {
	dst     io.Writer
	aead    cipher.AEAD
	aad     []byte
	prefix  [NoncePrefixSize]byte
	counter uint32
	buf     []byte // pending plaintext, at most ChunkSize
	out     []byte // frame + ciphertext scratch
	err     error
	closed  bool
}

// NewWriter returns a Writer sealing under key with the given nonce prefix.
// A key must never seal two streams with the same prefix; Custody uses a
// fresh key for every segment.
func NewWriter(dst io.Writer, key []byte, prefix [NoncePrefixSize]byte, aad []byte) (*Writer, error) {
	a, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Writer{
		dst: dst, aead: a, aad: append([]byte(nil), aad...), prefix: prefix,
		buf: make([]byte, 0, ChunkSize),
		out: make([]byte, FrameSize+ChunkSize+Overhead),
	}, nil
}

// Write buffers p and seals every full chunk.
func (w *Writer) Write(p []byte) (int, error) {
	if w.err != nil {
		return 0, w.err
	}
	if w.closed {
		return 0, errors.New("seal: write after close")
	}
	n := 0
	for len(p) > 0 {
		if len(w.buf) == ChunkSize {
			if err := w.flush(false); err != nil {
				return n, err
			}
		}
		c := copy(w.buf[len(w.buf):ChunkSize], p)
		w.buf = w.buf[:len(w.buf)+c]
		p = p[c:]
		n += c
	}
	return n, nil
}

// Close seals the buffered plaintext (possibly none) as the final chunk.
func (w *Writer) Close() error {
	if w.err != nil {
		return w.err
	}
	if w.closed {
		return nil
	}
	w.closed = true
	return w.flush(true)
}

func (w *Writer) flush(final bool) error {
	if w.counter == math.MaxUint32 {
		w.err = errors.New("seal: stream exceeds 2^32 chunks")
		return w.err
	}
	n := nonce(w.prefix, w.counter, final)
	ct := w.aead.Seal(w.out[FrameSize:FrameSize], n[:], w.buf, w.aad)
	word := uint32(len(ct))
	if final {
		word |= finalBit
	}
	binary.BigEndian.PutUint32(w.out, word)
	if _, err := w.dst.Write(w.out[:FrameSize+len(ct)]); err != nil {
		w.err = err
		return err
	}
	w.counter++
	w.buf = w.buf[:0]
	return nil
}

// Reader opens a sealed stream. Read returns io.EOF only after the final
// chunk authenticated and nothing follows it; every other ending is an
// error. Plaintext is released only after its chunk authenticated.
type Reader struct {
	src     io.Reader
	aead    cipher.AEAD
	aad     []byte
	prefix  [NoncePrefixSize]byte
	counter uint32
	ct      []byte
	pt      []byte
	off     int
	final   bool
	err     error
}

// NewReader returns a Reader opening src under key, prefix and aad.
func NewReader(src io.Reader, key []byte, prefix [NoncePrefixSize]byte, aad []byte) (*Reader, error) {
	a, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Reader{
		src: src, aead: a, aad: append([]byte(nil), aad...), prefix: prefix,
		ct: make([]byte, ChunkSize+Overhead),
		pt: make([]byte, 0, ChunkSize),
	}, nil
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	for r.off == len(r.pt) {
		if r.err != nil {
			return 0, r.err
		}
		if r.final {
			r.err = r.checkEnd()
			return 0, r.err
		}
		if err := r.next(); err != nil {
			r.err = err
			return 0, err
		}
	}
	n := copy(p, r.pt[r.off:])
	r.off += n
	return n, nil
}

func (r *Reader) checkEnd() error {
	var one [1]byte
	n, err := io.ReadFull(r.src, one[:])
	if n > 0 {
		return ErrTrailing
	}
	if err != nil && err != io.EOF {
		return err
	}
	return io.EOF
}

func (r *Reader) next() error {
	var frame [FrameSize]byte
	if _, err := io.ReadFull(r.src, frame[:]); err != nil {
		return readErr(err)
	}
	word := binary.BigEndian.Uint32(frame[:])
	final := word&finalBit != 0
	size := int(word &^ finalBit)
	// Non-final chunks have exactly one size; anything else was not written
	// by a Writer. The length itself is authenticated by the tag, since
	// a different length yields a different ciphertext split.
	if size < Overhead || size > ChunkSize+Overhead || !final && size != ChunkSize+Overhead {
		return ErrAuth
	}
	if _, err := io.ReadFull(r.src, r.ct[:size]); err != nil {
		return readErr(err)
	}
	n := nonce(r.prefix, r.counter, final)
	pt, err := r.aead.Open(r.pt[:0], n[:], r.ct[:size], r.aad)
	if err != nil {
		return ErrAuth
	}
	if r.counter == math.MaxUint32 {
		return ErrAuth
	}
	r.counter++
	r.pt, r.off, r.final = pt, 0, final
	return nil
}

func readErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return ErrTruncated
	}
	return err
}
