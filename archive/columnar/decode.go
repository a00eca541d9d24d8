package columnar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// ErrCorrupt is returned for a block that does not follow the format.
// Blocks are read after their AEAD chunks authenticated, so only a broken
// writer produces one; a reader must still never crash on it.
var ErrCorrupt = errors.New("columnar: corrupt block")

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

// frame locates one compressed payload inside a block.
type frame struct{ raw, off, z int }

// Column is one member name's directory entry in a block.
type Column struct {
	Key   []byte // raw key bytes, between the quotes
	enc   byte
	f     frame
	count int // values, from the shapes
}

// Encoding names the column's value encoding (docs/FORMAT.md v3.5).
func (c *Column) Encoding() string { return encNames[c.enc] }

// Block is a parsed block directory. Its slices alias the source bytes.
type Block struct {
	Rows    int
	shapes  [][]int // column indexes per shape; nil: verbatim
	Columns []Column
	width   int
	ids     frame
	verb    frame
	src     []byte // the frames
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint(what string, max uint64) int {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = corrupt("cannot read %s", what)
		return 0
	}
	if v > max {
		r.err = corrupt("%s %d over the limit of %d", what, v, max)
		return 0
	}
	r.b = r.b[n:]
	return int(v)
}

func (r *reader) bytes(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = corrupt("%s: %d bytes, %d left", what, n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

// Parse reads the block at the start of src and returns it with the
// number of bytes it spans. It reads the directory only; columns are
// decoded on demand by a Decoder.
func Parse(src []byte) (*Block, int, error) {
	r := &reader{b: src}
	l := r.uvarint("block length", uint64(len(src)))
	if r.err != nil {
		return nil, 0, r.err
	}
	if l > len(r.b) {
		return nil, 0, corrupt("block of %d bytes, %d present", l, len(r.b))
	}
	total := len(src) - len(r.b) + l
	r.b = r.b[:l]
	b := &Block{}
	b.Rows = r.uvarint("rows", MaxRows)
	if r.err == nil && b.Rows == 0 {
		return nil, 0, corrupt("a block of no rows")
	}
	ns := r.uvarint("shapes", uint64(b.Rows))
	if r.err == nil && ns == 0 {
		return nil, 0, corrupt("a block of no shapes")
	}
	sh := make([][]int, 0, min(ns, 1024))
	memberSlots := 0
	for i := 0; i < ns && r.err == nil; i++ {
		t := r.uvarint("shape length", MaxColumns+1)
		if t == 0 {
			sh = append(sh, nil)
			continue
		}
		memberSlots += t - 1
		if memberSlots > MaxColumnBytes {
			return nil, 0, corrupt("shapes of %d members in all", memberSlots)
		}
		cols := make([]int, t-1)
		for j := range cols {
			cols[j] = r.uvarint("shape column", MaxColumns-1)
		}
		sh = append(sh, cols)
	}
	b.shapes = sh
	nc := r.uvarint("columns", MaxColumns)
	if r.err == nil {
		w := r.bytes("shape ID width", 1)
		if r.err == nil {
			b.width = int(w[0])
			if b.width != width(uint64(ns-1)) {
				return nil, 0, corrupt("shape ID width %d for %d shapes", b.width, ns)
			}
		}
	}
	off := 0
	fr := func(what string) frame {
		f := frame{raw: r.uvarint(what+" size", MaxColumnBytes), off: off}
		f.z = r.uvarint(what+" compressed size", MaxColumnBytes)
		off += f.z
		return f
	}
	b.ids = fr("shape IDs")
	b.verb = fr("verbatim")
	if r.err == nil && b.ids.raw != b.Rows*b.width {
		return nil, 0, corrupt("shape IDs of %d bytes for %d rows of width %d", b.ids.raw, b.Rows, b.width)
	}
	b.Columns = make([]Column, 0, min(nc, 64))
	for i := 0; i < nc && r.err == nil; i++ {
		kl := r.uvarint("key length", MaxColumnBytes)
		c := Column{Key: r.bytes("key", kl)}
		if e := r.bytes("encoding", 1); e != nil {
			c.enc = e[0]
			if c.enc > encMax {
				return nil, 0, corrupt("column %q: unknown encoding %d", c.Key, c.enc)
			}
		}
		c.f = fr(fmt.Sprintf("column %q", c.Key))
		b.Columns = append(b.Columns, c)
	}
	if r.err != nil {
		return nil, 0, r.err
	}
	for _, s := range b.shapes {
		for _, ci := range s {
			if ci >= nc {
				return nil, 0, corrupt("a shape names column %d of %d", ci, nc)
			}
		}
	}
	if off != len(r.b) {
		return nil, 0, corrupt("frames of %d bytes, %d in the block", off, len(r.b))
	}
	b.src = r.b
	return b, total, nil
}

// Decoder decodes blocks' columns and rows. It keeps scratch space between
// calls; one per goroutine.
type Decoder struct {
	// MaxBytes caps the decoded text of one block: its lines together,
	// and each column's values. NewDecoder sets DefaultMaxBytes.
	MaxBytes int
	z        *zstd.Decoder
	ids      []uint32
	cols     []decoded
	raws     [][]byte // decompressed payloads: columns, verbatim, shape IDs
	loaded   []bool   // which of cols hold the current block's values
	decoded  int      // bytes of values decoded for the current block
	total    int64    // bytes decoded for earlier blocks
	nverb    int      // verbatim rows in the current block
}

// decoded is one column's values as JSON text: value i is
// text[ends[i-1]:ends[i]].
//
// For a member column each value is stored after its lead, `,"key":`, so
// that a row is rebuilt with one copy per member (the first member of a
// row skips the comma). A dictionary column holds its entries that way and
// idx, the entry of each value. size is the bytes of all values, leads
// included.
type decoded struct {
	own  []byte // the buffer text is built in, when not the payload
	text []byte
	ends []uint32
	idx  []uint32
	size int
	nums []int64 // a time column's values in Unix nanoseconds
	// wide: a time beyond int64 nanoseconds (before 1678 or after
	// 2262); such a column cannot be a reference.
	wide bool
}

func (d *decoded) reset() {
	d.text, d.ends, d.idx, d.nums, d.wide, d.size = nil, d.ends[:0], d.idx[:0], d.nums[:0], false, 0
}

// span returns where value i (its lead included) lies in text.
func (d *decoded) span(i uint32) (uint32, uint32) {
	if len(d.idx) > 0 {
		i = d.idx[i]
	}
	s := uint32(0)
	if i > 0 {
		s = d.ends[i-1]
	}
	return s, d.ends[i]
}

// NewDecoder returns a Decoder.
func NewDecoder() (*Decoder, error) {
	z, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(32<<20), zstd.WithDecoderMaxMemory(MaxColumnBytes))
	if err != nil {
		return nil, fmt.Errorf("cannot create zstd decoder: %w", err)
	}
	return &Decoder{z: z, MaxBytes: DefaultMaxBytes}, nil
}

// DefaultMaxBytes is a Decoder's cap on one block's decoded size.
const DefaultMaxBytes = 256 << 20

// ErrTooLarge is returned for a block that decodes to more than the
// Decoder's MaxBytes.
var ErrTooLarge = errors.New("columnar: block decodes over the size cap")

// Close releases the decoder's resources.
func (d *Decoder) Close() { d.z.Close() }

// inflate decompresses frame f into buffer slot k of the decoder, which
// keeps the memory for the next block. what names the frame in errors.
func (d *Decoder) inflate(b *Block, f frame, k int, what func() string) ([]byte, error) {
	if f.z == 0 {
		if f.raw != 0 {
			return nil, corrupt("%s: %d bytes in an empty frame", what(), f.raw)
		}
		return nil, nil
	}
	for len(d.raws) <= k {
		d.raws = append(d.raws, nil)
	}
	out, err := d.z.DecodeAll(b.src[f.off:f.off+f.z], slices.Grow(d.raws[k][:0], f.raw))
	if err != nil {
		return nil, corrupt("%s: cannot decompress: %v", what(), err)
	}
	d.raws[k] = out
	if len(out) != f.raw {
		return nil, corrupt("%s: %d bytes, the directory says %d", what(), len(out), f.raw)
	}
	return out, nil
}

// AppendLines appends every row of b to dst as NDJSON (each line ending
// in a newline), exactly as the lines were given to the Encoder.
func (d *Decoder) AppendLines(dst []byte, b *Block) ([]byte, error) {
	if err := d.load(b); err != nil {
		return dst, err
	}
	// The exact size of the lines: grow dst once, and refuse a block
	// over the cap before writing any of it. Each member's lead counts a
	// comma, which the first member of a row does without: the {} and
	// newline fit in its place and two more bytes.
	total := 2 * b.Rows
	for i := range b.Columns {
		total += d.cols[i].size
	}
	total += d.cols[len(b.Columns)].size
	if total > d.MaxBytes {
		return dst, ErrTooLarge
	}
	dst = slices.Grow(dst, total)
	cur := make([]uint32, len(b.Columns)+1)
	for _, id := range d.ids {
		sh := b.shapes[id]
		if sh == nil {
			verb := &d.cols[len(b.Columns)]
			s, e := verb.span(cur[len(b.Columns)])
			dst = append(append(dst, verb.text[s:e]...), '\n')
			cur[len(b.Columns)]++
			continue
		}
		dst = append(dst, '{')
		for j, ci := range sh {
			c := &d.cols[ci]
			s, e := c.span(cur[ci])
			if j == 0 {
				s++ // no comma before the first member
			}
			dst = append(dst, c.text[s:e]...)
			cur[ci]++
		}
		dst = append(dst, '}', '\n')
	}
	return dst, nil
}

// load decodes the shape IDs and every column of b.
func (d *Decoder) load(b *Block) error {
	if err := d.loadIDs(b); err != nil {
		return err
	}
	for i := range b.Columns {
		if err := d.loadColumn(b, i); err != nil {
			return err
		}
	}
	return d.loadColumn(b, len(b.Columns))
}

// loadIDs decodes the rows' shape IDs, counts each column's values and
// marks every column not yet decoded.
func (d *Decoder) loadIDs(b *Block) error {
	nc := len(b.Columns)
	raw, err := d.inflate(b, b.ids, nc+1, func() string { return "shape IDs" })
	if err != nil {
		return err
	}
	d.ids = d.ids[:0]
	counts := make([]int, nc+1)
	for i := 0; i < b.Rows; i++ {
		id := getUint(raw[i*b.width:], b.width)
		if id >= uint64(len(b.shapes)) {
			return corrupt("row %d has shape %d of %d", i, id, len(b.shapes))
		}
		d.ids = append(d.ids, uint32(id))
		sh := b.shapes[id]
		if sh == nil {
			counts[nc]++
		}
		for _, ci := range sh {
			counts[ci]++
		}
	}
	for i := range b.Columns {
		b.Columns[i].count = counts[i]
	}
	d.nverb = counts[nc]
	// Column i decodes into d.cols[i], the verbatim rows into
	// d.cols[nc]; their buffers are kept for the next block.
	for len(d.cols) <= nc {
		d.cols = append(d.cols, decoded{})
	}
	d.loaded = append(d.loaded[:0], make([]bool, nc+1)...)
	d.total += int64(d.decoded)
	d.decoded = 0
	return nil
}

// loadColumn decodes column i (len(b.Columns): the verbatim rows) unless
// it is decoded already. A relative column decodes its reference first.
func (d *Decoder) loadColumn(b *Block, i int) error {
	if d.loaded[i] {
		return nil
	}
	nc := len(b.Columns)
	v := &d.cols[i]
	v.reset()
	if i == nc {
		p, err := d.inflate(b, b.verb, nc, func() string { return "verbatim" })
		if err != nil {
			return err
		}
		if err := decodeValues(encRaw, p, d.nverb, d.MaxBytes, v, nil); err != nil {
			return corrupt("verbatim rows: %v", err)
		}
		return d.loadedBytes(i)
	}
	c := &b.Columns[i]
	p, err := d.inflate(b, c.f, i, func() string { return fmt.Sprintf("column %q", c.Key) })
	if err != nil {
		return err
	}
	lead := append(append(append(make([]byte, 0, len(c.Key)+4), ',', '"'), c.Key...), '"', ':')
	if c.enc == encTimeRel || c.enc == encUUIDRel {
		err = d.decodeRel(b, i, p, v, lead)
	} else {
		err = decodeValues(c.enc, p, c.count, d.MaxBytes, v, lead)
	}
	if errors.Is(err, ErrTooLarge) {
		return err
	}
	if err != nil {
		return corrupt("column %q (%s): %v", c.Key, encNames[c.enc], err)
	}
	return d.loadedBytes(i)
}

// loadedBytes marks column i decoded and counts its text against the
// block's cap, so that a reader decoding column by column is held to
// MaxBytes as AppendLines is.
func (d *Decoder) loadedBytes(i int) error {
	d.loaded[i] = true
	d.decoded += d.cols[i].size
	if d.decoded > d.MaxBytes {
		return ErrTooLarge
	}
	return nil
}

// Decoded is the number of bytes of values decoded since the Decoder was
// made, for a caller that caps a stream of blocks.
func (d *Decoder) Decoded() int64 { return d.total + int64(d.decoded) }

var errShort = errors.New("payload ends early")

// decodeRel decodes column ci of a relative encoding from payload p.
func (d *Decoder) decodeRel(b *Block, ci int, p []byte, out *decoded, lead []byte) error {
	n := b.Columns[ci].count
	if n == 0 || n > len(p) {
		return fmt.Errorf("%d values in %d bytes", n, len(p))
	}
	r := &reader{b: p}
	ref := r.uvarint("reference column", uint64(len(b.Columns)-1))
	if r.err != nil {
		return r.err
	}
	if b.Columns[ref].enc != encTime {
		return fmt.Errorf("reference column %d is not a time column", ref)
	}
	if err := d.loadColumn(b, ref); err != nil {
		return err
	}
	if d.cols[ref].wide {
		return fmt.Errorf("reference column %d is not a time column within 1678-2262", ref)
	}
	rows, ok := refIndex(b.shapes, d.ids, ci, ref)
	if !ok {
		return fmt.Errorf("a row lacks the reference column %q", b.Columns[ref].Key)
	}
	refs := d.cols[ref].nums
	xs, err := readOffsets(r, n)
	if err != nil {
		return err
	}
	out.own = slices.Grow(out.own[:0], n*(uuidLen+len(lead)))
	out.text = out.own
	switch b.Columns[ci].enc {
	case encTimeRel:
		var tf timeFormatter
		for i, x := range xs {
			t := refs[rows[i]] + x
			sec, ns := floorDiv(t, 1e9), t-floorDiv(t, 1e9)*1e9
			if sec < minSec || sec > maxSec {
				return fmt.Errorf("time %d out of range", sec)
			}
			out.text = tf.appendTime(append(out.text, lead...), sec, uint32(ns))
			out.nums = append(out.nums, t)
			out.ends = append(out.ends, uint32(len(out.text)))
		}
	case encUUIDRel:
		tails := r.bytes("UUID tails", 10*n)
		if r.err != nil {
			return r.err
		}
		var u [16]byte
		for i, x := range xs {
			hi := floorDiv(refs[rows[i]], 1e6) + x
			if hi < 0 || hi >= 1<<48 {
				return fmt.Errorf("UUID prefix %d out of range", hi)
			}
			for j := 0; j < 6; j++ {
				u[j] = byte(hi >> (40 - 8*j))
			}
			for j := 0; j < 10; j++ {
				u[6+j] = tails[j*n+i]
			}
			out.text = appendUUID(append(out.text, lead...), u[:])
			out.ends = append(out.ends, uint32(len(out.text)))
		}
	}
	out.own = out.text
	out.size = len(out.text)
	if len(r.b) != 0 {
		return fmt.Errorf("%d bytes after the values", len(r.b))
	}
	return nil
}

// readOffsets reads encInt's body: width, minimum, n fixed-width offsets.
func readOffsets(r *reader, n int) ([]int64, error) {
	w := r.bytes("integer width", 1)
	if r.err != nil {
		return nil, r.err
	}
	wd := int(w[0])
	if wd != 1 && wd != 2 && wd != 4 && wd != 8 {
		return nil, fmt.Errorf("integer width %d", wd)
	}
	lo, k := binary.Uvarint(r.b)
	if k <= 0 {
		return nil, errShort
	}
	r.b = r.b[k:]
	base := unzigzag(lo)
	vs := r.bytes("integers", n*wd)
	if r.err != nil {
		return nil, r.err
	}
	return readPlanes(vs, n, wd, uint64(base)), nil
}

// readPlanes reverses appendPlanes.
func readPlanes(vs []byte, n, wd int, base uint64) []int64 {
	xs := make([]int64, n)
	for j := 0; j < wd; j++ {
		plane := vs[j*n : (j+1)*n]
		for i, c := range plane {
			xs[i] = int64(uint64(xs[i])<<8 | uint64(c))
		}
	}
	for i, x := range xs {
		// Wrapping addition, as the writer subtracted: any 64-bit
		// pattern decodes to some integer, never a crash.
		xs[i] = int64(base + uint64(x))
	}
	return xs
}

// decodeValues decodes n values of encoding enc from payload p, which
// must be used up exactly.
func decodeValues(enc byte, p []byte, n, limit int, d *decoded, lead []byte) (err error) {
	// Text the encoding builds goes into d.own, kept for the next block;
	// raw text without leads is the payload itself.
	aliased := enc == encRaw && len(lead) == 0
	defer func() {
		if !aliased {
			d.own = d.text
		}
		if len(d.idx) == 0 {
			d.size = len(d.text)
		}
	}()
	d.text = d.own[:0]
	if n == 0 {
		if len(p) != 0 {
			return fmt.Errorf("%d bytes for no values", len(p))
		}
		return nil
	}
	// Every encoding spends at least a byte per value: this bounds what
	// a broken directory can make the reader allocate.
	if n > len(p) {
		return fmt.Errorf("%d values in %d bytes", n, len(p))
	}
	r := &reader{b: p}
	end := func() { d.ends = append(d.ends, uint32(len(d.text))) }
	// lead starts every value; the value's text follows it.
	text := func() []byte { return append(d.text, lead...) }
	switch enc {
	case encRaw:
		lens, err := readLengths(r, n, "value length")
		if err != nil {
			return err
		}
		if aliased {
			d.text = r.b
			for _, l := range lens {
				d.ends = append(d.ends, uint32(len(d.text)-len(r.b)+l))
				r.b = r.b[l:]
			}
			break
		}
		d.text = slices.Grow(d.text, len(r.b)+n*len(lead))
		for _, l := range lens {
			d.text = append(text(), r.b[:l]...)
			r.b = r.b[l:]
			end()
		}
	case encDict:
		nd := r.uvarint("dictionary size", 1<<16)
		if r.err == nil && nd == 0 {
			return errors.New("an empty dictionary")
		}
		if r.err != nil {
			return r.err
		}
		// The entries, each after its lead, are the column's text;
		// idx says which one each value is.
		if err := decodeValues(encRaw, rawPrefix(r, nd), nd, limit, d, lead); err != nil {
			return fmt.Errorf("dictionary: %w", err)
		}
		if len(lead) == 0 {
			// The entries alias the payload: copy them, as d.own must
			// not be a buffer the decoder reuses for payloads.
			d.text = append([]byte(nil), d.text...)
		}
		d.own = d.text
		w := r.bytes("index width", 1)
		if r.err != nil {
			return r.err
		}
		if int(w[0]) != width(uint64(nd-1)) {
			return fmt.Errorf("index width %d for %d entries", w[0], nd)
		}
		idx := r.bytes("indexes", n*int(w[0]))
		size := 0
		for i := 0; i < n && r.err == nil; i++ {
			k := getUint(idx[i*int(w[0]):], int(w[0]))
			if k >= uint64(nd) {
				return fmt.Errorf("index %d of %d entries", k, nd)
			}
			d.idx = append(d.idx, uint32(k))
			s, e := d.span(uint32(i))
			if size += int(e - s); size > limit {
				return ErrTooLarge
			}
		}
		d.size = size
	case encTime:
		var tf timeFormatter
		secs, err := readDeltas(r, n, minSec, maxSec, "time")
		if err != nil {
			return err
		}
		nsb := r.bytes("nanoseconds", 4*n)
		if r.err != nil {
			return r.err
		}
		ns := readPlanes(nsb, n, 4, 0)
		for i := 0; i < n; i++ {
			v := uint32(ns[i])
			if v >= 1e9 {
				return fmt.Errorf("nanoseconds %d", v)
			}
			d.text = tf.appendTime(text(), secs[i], v)
			if secs[i] < -9e9 || secs[i] > 9e9 {
				d.wide = true
			}
			d.nums = append(d.nums, secs[i]*1e9+int64(v))
			end()
		}
	case encUUID:
		his, err := readDeltas(r, n, 0, 1<<48-1, "UUID prefix")
		if err != nil {
			return err
		}
		tails := r.bytes("UUID tails", 10*n)
		var u [16]byte
		for i := 0; i < n && r.err == nil; i++ {
			for j := 0; j < 6; j++ {
				u[j] = byte(his[i] >> (40 - 8*j))
			}
			for j := 0; j < 10; j++ {
				u[6+j] = tails[j*n+i]
			}
			d.text = appendUUID(text(), u[:])
			end()
		}
	case encHex:
		lens, err := readLengths(r, n, "hex value length")
		if err != nil {
			return err
		}
		for _, l := range lens {
			d.text = append(appendHex(append(text(), '"'), r.b[:l]), '"')
			r.b = r.b[l:]
			end()
		}
	case encIP:
		tags := r.bytes("address sizes", n)
		for i := 0; i < n && r.err == nil; i++ {
			var a netip.Addr
			switch tags[i] {
			case 4:
				b := r.bytes("IPv4 address", 4)
				if b != nil {
					a = netip.AddrFrom4([4]byte(b))
				}
			case 16:
				b := r.bytes("IPv6 address", 16)
				if b != nil {
					a = netip.AddrFrom16([16]byte(b))
				}
			default:
				return fmt.Errorf("address size %d", tags[i])
			}
			d.text = append(a.AppendTo(append(text(), '"')), '"')
			end()
		}
	case encInt:
		xs, err := readOffsets(r, n)
		if err != nil {
			return err
		}
		for _, x := range xs {
			d.text = appendInt(text(), x)
			end()
		}
	}
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return fmt.Errorf("%d bytes after the values", len(r.b))
	}
	return nil
}

// readDeltas reads n zigzag uvarint deltas (the first from 0) and
// returns their running sums, each of which must lie in [lo, hi].
func readDeltas(r *reader, n int, lo, hi int64, what string) ([]int64, error) {
	xs := make([]int64, n)
	var prev int64
	for i := range xs {
		u, k := binary.Uvarint(r.b)
		if k <= 0 {
			return nil, errShort
		}
		r.b = r.b[k:]
		prev += unzigzag(u)
		if prev < lo || prev > hi {
			return nil, fmt.Errorf("%s %d out of range", what, prev)
		}
		xs[i] = prev
	}
	return xs, nil
}

// readLengths reads n uvarint lengths whose sum must be exactly the rest
// of the payload.
func readLengths(r *reader, n int, what string) ([]int, error) {
	lens := make([]int, n)
	total := 0
	for i := range lens {
		lens[i] = r.uvarint(what, MaxColumnBytes)
		total += lens[i]
	}
	if r.err != nil {
		return nil, r.err
	}
	if total != len(r.b) {
		return nil, fmt.Errorf("%ss add up to %d bytes, %d in the payload", what, total, len(r.b))
	}
	return lens, nil
}

// rawPrefix returns a reader's next nd raw-encoded values as one slice
// (the lengths and the bytes), advancing past them.
func rawPrefix(r *reader, nd int) []byte {
	start := r.b
	total := 0
	for i := 0; i < nd && r.err == nil; i++ {
		total += r.uvarint("dictionary entry length", MaxColumnBytes)
	}
	if r.err != nil {
		return nil
	}
	hdr := len(start) - len(r.b)
	r.bytes("dictionary entries", total)
	if r.err != nil {
		return nil
	}
	return start[:hdr+total]
}

func appendInt(dst []byte, x int64) []byte {
	if x < 0 {
		dst = append(dst, '-')
		u := uint64(-x)
		if x == -1<<63 {
			u = 1 << 63
		}
		return appendUint(dst, u)
	}
	return appendUint(dst, uint64(x))
}

func appendUint(dst []byte, u uint64) []byte {
	var b [20]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + u%10)
		u /= 10
		if u == 0 {
			break
		}
	}
	return append(dst, b[i:]...)
}

// The range of times parseTime accepts: years 0000 to 9999.
var (
	minSec = civilToUnix(0, 1, 1)
	maxSec = civilToUnix(9999, 12, 31) + 86399
)
