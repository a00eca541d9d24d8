package segment

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/custodylog/custody/archive/columnar"
	"github.com/custodylog/custody/crypto/seal"
	"github.com/klauspost/compress/zstd"
)

// A v3 body block holds at most BlockRows lines or BlockBytes of them
// (the line that crosses BlockBytes included). Larger blocks compress a
// little better (docs/BENCHMARKS.md); these keep what a writer holds, and
// a reader decodes at once, to a few megabytes.
const (
	BlockRows  = 16384
	BlockBytes = 4 << 20
	// maxBlock caps a stored block's size for a reader: a writer's
	// blocks are far below it.
	maxBlock = 256 << 20
)

var colEncoders = sync.Pool{New: func() any {
	e, err := columnar.NewEncoder(zstd.SpeedDefault)
	if err != nil {
		panic(fmt.Sprintf("columnar encoder options are invalid: %v", err))
	}
	return e
}}

// colState is a v3 body reader's decoder and buffers, pooled together
// so that reading many segments does not allocate each block anew.
type colState struct {
	dec *columnar.Decoder
	blk []byte
	out []byte
}

var colStates = sync.Pool{New: func() any {
	d, err := columnar.NewDecoder()
	if err != nil {
		panic(fmt.Sprintf("columnar decoder options are invalid: %v", err))
	}
	return &colState{dec: d}
}}

// columnWriter turns a v3 body's lines into blocks written to dst. It
// copies what it is given (io.Writer's contract) and holds up to a block.
type columnWriter struct {
	dst   io.Writer
	enc   *columnar.Encoder
	buf   []byte // pending lines, each with its newline, then a partial one
	ends  []int  // offset of each complete line's newline in buf
	lines [][]byte
	out   []byte
}

func newColumnWriter(dst io.Writer) *columnWriter {
	return &columnWriter{dst: dst, enc: colEncoders.Get().(*columnar.Encoder)}
}

func (c *columnWriter) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			c.buf = append(c.buf, rest...)
			break
		}
		c.buf = append(c.buf, rest[:i+1]...)
		c.ends = append(c.ends, len(c.buf)-1)
		rest = rest[i+1:]
		if len(c.ends) >= BlockRows || len(c.buf) >= BlockBytes {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return len(p), nil
}

// flush encodes and writes the complete lines held.
func (c *columnWriter) flush() error {
	if len(c.ends) == 0 {
		return nil
	}
	c.lines = c.lines[:0]
	start := 0
	for _, e := range c.ends {
		c.lines = append(c.lines, c.buf[start:e])
		start = e + 1
	}
	var err error
	if c.out, err = c.enc.AppendBlock(c.out[:0], c.lines); err != nil {
		return err
	}
	if _, err := c.dst.Write(c.out); err != nil {
		return err
	}
	c.buf = append(c.buf[:0], c.buf[start:]...)
	c.ends = c.ends[:0]
	return nil
}

// Close writes the last block and returns the encoder. A partial last
// line is an error (the Writer reports it as ErrMismatch).
func (c *columnWriter) Close() error {
	defer func() {
		if c.enc != nil {
			colEncoders.Put(c.enc)
			c.enc = nil
		}
	}()
	if err := c.flush(); err != nil {
		return err
	}
	if len(c.buf) > 0 {
		return fmt.Errorf("%w: the body ends inside a line", ErrMismatch)
	}
	return nil
}

// columnReader reads a v3 body's blocks from the sealed stream (trailer
// held back) and yields their lines.
type columnReader struct {
	r   *bufio.Reader
	st  *colState
	off int
}

func newColumnReader(src io.Reader, maxPlaintext int64) (*columnReader, error) {
	st := colStates.Get().(*colState)
	st.out = st.out[:0]
	d := st.dec
	d.MaxBytes = columnar.DefaultMaxBytes
	if maxPlaintext > 0 && maxPlaintext < int64(d.MaxBytes) {
		// One byte over the cap is enough for the body reader to see
		// that the cap was passed.
		d.MaxBytes = int(maxPlaintext) + 1
	}
	return &columnReader{r: bufio.NewReaderSize(src, 64<<10), st: st}, nil
}

func (c *columnReader) close() {
	if c.st != nil {
		colStates.Put(c.st)
		c.st = nil
	}
}

func (c *columnReader) Read(p []byte) (int, error) {
	for c.off == len(c.st.out) {
		if err := c.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, c.st.out[c.off:])
	c.off += n
	return n, nil
}

// next decodes the next block into out; io.EOF at the end of the stream
// between blocks.
func (c *columnReader) next() error {
	b, err := c.block()
	if err != nil {
		return err
	}
	st := c.st
	st.out, err = st.dec.AppendLines(st.out[:0], b)
	c.off = 0
	if errors.Is(err, columnar.ErrTooLarge) {
		return ErrTooLarge
	}
	return err
}

// block reads and parses the next block; io.EOF at the end of the
// stream between blocks.
func (c *columnReader) block() (*columnar.Block, error) {
	l, err := binary.ReadUvarint(c.r)
	if err == io.EOF {
		return nil, io.EOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("%w: the body ends inside a block length", ErrMismatch)
	}
	if err != nil {
		return nil, err
	}
	if l == 0 || l > maxBlock {
		return nil, fmt.Errorf("%w: a block of %d bytes", ErrMismatch, l)
	}
	st := c.st
	st.blk = binary.AppendUvarint(st.blk[:0], l)
	h := len(st.blk)
	st.blk = slices.Grow(st.blk, int(l))[:h+int(l)]
	if _, err := io.ReadFull(c.r, st.blk[h:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("%w: the body ends inside a block", ErrMismatch)
		}
		return nil, err
	}
	b, _, err := columnar.Parse(st.blk)
	return b, err
}

// ErrNotColumnar is Blocks' answer for a segment of format v1 or v2.
var ErrNotColumnar = errors.New("segment body is not columnar (format v1 or v2)")

// Blocks reads a v3 body block by block, for a reader that decodes only
// the columns it needs (columnar.Decoder.Rows) and rebuilds only some
// lines. fn gets each block and a decoder, valid until fn returns.
//
// Blocks returns nil only once the whole sealed stream authenticated to
// its final chunk, the blocks held exactly the header's count of rows,
// the trailer was there, and the signature verified: the segment is
// complete and as its archiver wrote it. The trailer's SHA-256 of the
// lines is not checked, since the lines are not all rebuilt; Body checks
// it. Errors name the object. Blocks and Body exclude each other.
func (r *Reader) Blocks(fn func(*columnar.Block, *columnar.Decoder) error) error {
	if r.h.Version != Version3 {
		return fmt.Errorf("segment %s: %w", r.name, ErrNotColumnar)
	}
	if r.begun {
		return fmt.Errorf("segment %s: body already read", r.name)
	}
	r.begun = true
	var prefix [seal.NoncePrefixSize]byte
	copy(prefix[:], r.h.NoncePrefix)
	sr, err := seal.NewReader(r.src, r.keys.body, prefix, r.aad)
	if err != nil {
		return err
	}
	hb := &holdback{r: sr, keep: trailerSize}
	cr, err := newColumnReader(hb, r.opts.MaxPlaintext)
	if err != nil {
		return err
	}
	defer cr.close()
	fail := func(err error) error { return fmt.Errorf("segment %s: %w", r.name, r.mapErr(err)) }
	// The decoder is pooled: count from where this segment starts.
	base := cr.st.dec.Decoded()
	var rows int64
	for {
		b, err := cr.block()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail(err)
		}
		if rows += int64(b.Rows); rows > r.h.Count {
			return fail(fmt.Errorf("%w: more events than the header's %d", ErrMismatch, r.h.Count))
		}
		if err := fn(b, cr.st.dec); err != nil {
			if errors.Is(err, columnar.ErrTooLarge) {
				return fail(ErrTooLarge)
			}
			if errors.Is(err, columnar.ErrCorrupt) {
				return fail(err)
			}
			return err
		}
		// What the columns decoded to, against the plaintext cap: a
		// stream of small blocks that each expand is a bomb too.
		if max := r.opts.MaxPlaintext; max > 0 && cr.st.dec.Decoded()-base > max {
			return fail(fmt.Errorf("%w (%d bytes)", ErrTooLarge, max))
		}
	}
	if hb.err != nil && hb.err != io.EOF {
		return fail(hb.err)
	}
	if len(hb.tail) != trailerSize {
		return fail(fmt.Errorf("%w: trailer is %d bytes", ErrMismatch, len(hb.tail)))
	}
	if rows != r.h.Count {
		return fail(fmt.Errorf("%w: %d events; header says %d", ErrMismatch, rows, r.h.Count))
	}
	if r.sig != nil {
		if err := r.sig.verify(r.name, r.h.Signer, r.sigKeys); err != nil {
			return fmt.Errorf("segment %s: %w", r.name, err)
		}
	}
	return nil
}
