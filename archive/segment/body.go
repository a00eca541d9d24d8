package segment

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash"
	"sync"

	"github.com/custodylog/custody/archive/columnar"
)

// Body is a format v3 body built ahead of its segment: lines are encoded
// into columnar blocks as they come (BlockRows or BlockBytes each, as the
// Writer cuts them), so a buffer waiting to become a segment holds its
// events' compressed columns, about a tenth of the lines' bytes, plus one
// open block of lines. Writer.WriteBody seals it. It is not safe for
// concurrent use; it holds no secret (the data key is the Writer's).
type Body struct {
	blocks [][]byte // encoded blocks, in order
	held   int      // bytes of blocks
	open   []byte   // the open block's lines, each with its newline
	ends   []int    // offset of each open line's newline in open
	sha    hash.Hash
	n      int64 // bytes of lines, newlines included
	count  int64
}

// NewBody returns an empty body.
func NewBody() *Body { return &Body{sha: sha256.New()} }

// Add appends one line (without its newline), which must not contain one.
func (b *Body) Add(line []byte) error {
	if len(line) == 0 || bytes.IndexByte(line, '\n') >= 0 {
		return fmt.Errorf("%w: a body line is empty or holds a newline", ErrMismatch)
	}
	b.grow(len(line) + 1)
	b.open = append(b.open, line...)
	b.open = append(b.open, '\n')
	b.ends = append(b.ends, len(b.open)-1)
	b.sha.Write(b.open[len(b.open)-len(line)-1:])
	b.n += int64(len(line)) + 1
	b.count++
	if len(b.ends) >= BlockRows || len(b.open) >= BlockBytes {
		return b.seal()
	}
	return nil
}

// openMax is the capacity of a full open block's buffer: BlockBytes and
// room for the line that crosses it.
const openMax = BlockBytes + 256<<10

// openBlocks recycles full-size open block buffers between bodies: a
// buffer cut into a segment hands its one to the next.
var openBlocks = sync.Pool{New: func() any { b := make([]byte, 0, openMax); return &b }}

// grow makes room for n more bytes in the open block. It doubles from
// 16 KiB to 256 KiB, so that bodies that stay small (late hours) stay
// cheap, and then takes a pooled buffer of openMax at once: doubling on
// to 4 MiB copied each busy body's first block three times over, about
// 5% of the archiver's CPU.
func (b *Body) grow(n int) {
	need := len(b.open) + n
	if need <= cap(b.open) {
		return
	}
	size := max(2*cap(b.open), 16<<10, need)
	var nb []byte
	if size > 256<<10 && need <= openMax {
		nb = (*openBlocks.Get().(*[]byte))[:0]
	} else {
		nb = make([]byte, 0, size)
	}
	b.open = append(nb, b.open...)
}

// Release hands the body's open block buffer back for reuse; b must not
// be used after.
func (b *Body) Release() {
	if cap(b.open) == openMax {
		o := b.open[:0]
		openBlocks.Put(&o)
	}
	b.open, b.ends, b.blocks = nil, nil, nil
}

// seal encodes the open block.
func (b *Body) seal() error {
	if len(b.ends) == 0 {
		return nil
	}
	lines := make([][]byte, 0, len(b.ends))
	start := 0
	for _, e := range b.ends {
		lines = append(lines, b.open[start:e])
		start = e + 1
	}
	enc := colEncoders.Get().(*columnar.Encoder)
	blk, err := enc.AppendBlock(nil, lines)
	colEncoders.Put(enc)
	if err != nil {
		return err
	}
	b.blocks = append(b.blocks, blk)
	b.held += len(blk)
	b.open, b.ends = b.open[:0], b.ends[:0]
	return nil
}

// Count is the number of lines added.
func (b *Body) Count() int64 { return b.count }

// Len is the number of line bytes added, newlines included.
func (b *Body) Len() int64 { return b.n }

// Size is the memory the body holds, for a memory cap.
func (b *Body) Size() int64 { return int64(b.held + cap(b.open) + 8*cap(b.ends)) }

// Lines calls fn with each line added, in order, without its newline; the
// slice is valid during the call only. It decodes the sealed blocks again:
// for the rare reader of a body in memory (the archiver dropping records
// that another writer stored).
func (b *Body) Lines(fn func(line []byte) error) error {
	st := colStates.Get().(*colState)
	defer colStates.Put(st)
	for i, blk := range b.blocks {
		cb, n, err := columnar.Parse(blk)
		if err != nil {
			return fmt.Errorf("body block %d: %w", i, err)
		}
		if n != len(blk) {
			return fmt.Errorf("body block %d: %d of its %d bytes parse as a block", i, n, len(blk))
		}
		if st.out, err = st.dec.AppendLines(st.out[:0], cb); err != nil {
			return fmt.Errorf("body block %d: %w", i, err)
		}
		if err := eachLine(st.out, fn); err != nil {
			return err
		}
	}
	return eachLine(b.open, fn)
}

func eachLine(p []byte, fn func([]byte) error) error {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if err := fn(p[:i]); err != nil {
			return err
		}
		p = p[i+1:]
	}
	return nil
}

// WriteBody writes b as the whole body of a v3 segment: its blocks, then
// its open lines as the last block. The Writer must be a fresh v3 one (no
// Write before); Close then checks the count and writes the trailer. b
// stays valid and may be written again (an upload retried under a new
// data key).
func (w *Writer) WriteBody(b *Body) error {
	if w.cw == nil || w.n > 0 || w.closed {
		return fmt.Errorf("segment %s: WriteBody needs a fresh format v3 writer", w.name)
	}
	if err := b.seal(); err != nil {
		return fmt.Errorf("cannot write segment %s: %w", w.name, err)
	}
	for _, blk := range b.blocks {
		if _, err := w.cw.dst.Write(blk); err != nil {
			return fmt.Errorf("cannot write segment %s: %w", w.name, err)
		}
	}
	// The hash of every line is b's; Sum leaves it as it is, and Write
	// refuses from now on, so nothing adds to it.
	w.sha, w.n, w.lines, w.whole = b.sha, b.n, b.count, true
	if b.n > 0 {
		w.last = '\n'
	}
	return nil
}
