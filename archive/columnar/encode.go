package columnar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Limits a block keeps to; a reader refuses a block beyond them.
const (
	MaxRows    = 1 << 20 // rows in one block
	MaxColumns = 1024    // distinct member names in one block
	maxShapes  = MaxRows
	// MaxColumnBytes caps one column's decoded payload and one block's
	// directory, so that a block's claimed sizes cannot make a reader
	// allocate without bound.
	MaxColumnBytes = 256 << 20
)

// column is the values of one member name, in row order, while a block is
// built.
type column struct {
	key []byte // raw key bytes, between the quotes
	// name is the key of the block that last used the column: the next
	// block takes back the same member's column, whose buffers already
	// have that member's size (a column handed to another member would
	// grow again, copying as much as it holds).
	name string
	// The values' raw JSON text, copied while the line is in cache:
	// value i is data[ends[i-1]:ends[i]]. Passes over one column then
	// read memory in order instead of touching every line again.
	data []byte
	ends []uint32
}

func (c *column) add(v []byte) {
	c.data = append(c.data, v...)
	c.ends = append(c.ends, uint32(len(c.data)))
}

func (c *column) reset() {
	c.data, c.ends = c.data[:0], c.ends[:0]
}

// views appends to dst a slice of each value.
func (c *column) views(dst [][]byte) [][]byte {
	start := uint32(0)
	for _, e := range c.ends {
		dst = append(dst, c.data[start:e:e])
		start = e
	}
	return dst
}

// Encoder turns lines into blocks. It keeps scratch space between calls,
// so one Encoder per goroutine; it is not safe for concurrent use.
type Encoder struct {
	z       *zstd.Encoder
	cols    []*column
	byKey   map[string]int
	shapes  map[string]uint32
	shapeL  [][]int // each shape's column indexes; nil: verbatim
	prev    int     // shape of the last non-verbatim row, -1: none
	row     []int
	free    map[string]*column // by name
	rowSh   []uint32
	members []member
	sig     []byte
	payload []byte
	scratch []byte
	vals    [][]byte // views of one column's values
	verb    *column
}

// NewEncoder returns an Encoder compressing each column with zstd at the
// given level.
func NewEncoder(level zstd.EncoderLevel) (*Encoder, error) {
	z, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(1<<20), zstd.WithZeroFrames(true), zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, fmt.Errorf("cannot create zstd encoder: %w", err)
	}
	return &Encoder{z: z, byKey: map[string]int{}, shapes: map[string]uint32{}, free: map[string]*column{}}, nil
}

// ErrEmpty is returned for a block of no lines.
var ErrEmpty = errors.New("columnar: a block needs at least one line")

// AppendBlock appends to dst the block holding lines (each without its
// newline, and holding none), in order. Lines are read, not kept.
func (e *Encoder) AppendBlock(dst []byte, lines [][]byte) ([]byte, error) {
	if len(lines) == 0 {
		return dst, ErrEmpty
	}
	if len(lines) > MaxRows {
		return dst, fmt.Errorf("columnar: %d lines in one block, over the limit of %d", len(lines), MaxRows)
	}
	e.reset()
	for _, l := range lines {
		e.add(l)
	}
	return e.finish(dst)
}

func (e *Encoder) reset() {
	for _, c := range e.cols {
		c.reset()
		e.free[c.name] = c
	}
	e.cols = e.cols[:0]
	clear(e.byKey)
	clear(e.shapes)
	e.shapeL = e.shapeL[:0]
	e.rowSh = e.rowSh[:0]
	e.prev = -1
	if e.verb != nil {
		e.verb.reset()
	}
}

func (e *Encoder) newColumn(key []byte) int {
	c, ok := e.free[string(key)]
	if ok {
		delete(e.free, c.name)
	} else {
		for _, c = range e.free {
			break
		}
		if c != nil {
			delete(e.free, c.name)
		} else {
			c = &column{}
		}
		c.name = string(key)
	}
	c.key = key
	e.cols = append(e.cols, c)
	e.byKey[string(key)] = len(e.cols) - 1
	return len(e.cols) - 1
}

// add files one line's members under their columns and its shape. A line
// that is not a flat object, or would bring the block over MaxColumns
// member names, is kept verbatim.
func (e *Encoder) add(line []byte) {
	var ok bool
	e.members, ok = split(e.members[:0], line)
	ok = ok && len(e.members) <= MaxColumns
	// Most rows have the shape of the row before: guess each member's
	// column from it and compare keys, cheaper than hashing them.
	var prev []int
	if e.prev >= 0 {
		prev = e.shapeL[e.prev]
	}
	e.row = e.row[:0]
	fresh := 0
	for j := 0; ok && j < len(e.members); j++ {
		k := e.members[j].key
		if j < len(prev) && string(e.cols[prev[j]].key) == string(k) {
			e.row = append(e.row, prev[j])
		} else if ci, found := e.byKey[string(k)]; found {
			e.row = append(e.row, ci)
		} else {
			e.row = append(e.row, -1)
			fresh++
		}
	}
	if ok && len(e.cols)+fresh > MaxColumns {
		ok = false
	}
	if !ok {
		if e.verb == nil {
			e.verb = &column{}
		}
		e.verb.add(line)
		e.rowSh = append(e.rowSh, e.shapeID(nil, true))
		return
	}
	for j, m := range e.members {
		ci := e.row[j]
		if ci < 0 {
			// A key may repeat within the line: look again.
			if c, found := e.byKey[string(m.key)]; found {
				ci = c
			} else {
				ci = e.newColumn(m.key)
			}
			e.row[j] = ci
		}
		e.cols[ci].add(m.value)
	}
	e.rowSh = append(e.rowSh, e.shapeID(e.row, false))
}

// shapeID returns the ID of the shape of column list cols (verbatim:
// a verbatim row), adding it when new.
func (e *Encoder) shapeID(cols []int, verbatim bool) uint32 {
	if !verbatim && e.prev >= 0 && e.shapeL[e.prev] != nil && slices.Equal(e.shapeL[e.prev], cols) {
		return uint32(e.prev)
	}
	e.sig = e.sig[:0]
	if verbatim {
		// An empty list is the empty object {}: verbatim gets a marker
		// no column list produces.
		e.sig = append(e.sig, 0xff)
	}
	for _, ci := range cols {
		e.sig = binary.AppendUvarint(e.sig, uint64(ci))
	}
	id, found := e.shapes[string(e.sig)]
	if !found {
		id = uint32(len(e.shapeL))
		e.shapes[string(e.sig)] = id
		var l []int
		if !verbatim {
			l = append(make([]int, 0, len(cols)), cols...)
		}
		e.shapeL = append(e.shapeL, l)
	}
	if !verbatim {
		e.prev = int(id)
	}
	return id
}

func (e *Encoder) finish(dst []byte) ([]byte, error) {
	rows := len(e.rowSh)
	var dir []byte
	var frames []byte
	dir = binary.AppendUvarint(dir, uint64(rows))
	dir = binary.AppendUvarint(dir, uint64(len(e.shapeL)))
	for _, cols := range e.shapeL {
		if cols == nil {
			dir = append(dir, 0)
			continue
		}
		dir = binary.AppendUvarint(dir, uint64(len(cols))+1)
		for _, ci := range cols {
			dir = binary.AppendUvarint(dir, uint64(ci))
		}
	}
	dir = binary.AppendUvarint(dir, uint64(len(e.cols)))
	compress := func(p []byte) []byte {
		n := len(frames)
		frames = e.z.EncodeAll(p, frames)
		return binary.AppendUvarint(binary.AppendUvarint(nil, uint64(len(p))), uint64(len(frames)-n))
	}
	// Shape IDs first, verbatim next, then the columns, each frame's
	// sizes in the directory in the same order.
	w := width(uint64(len(e.shapeL) - 1))
	p := e.payload[:0]
	for _, s := range e.rowSh {
		p = putUint(p, uint64(s), w)
	}
	var sizes [][]byte
	sizes = append(sizes, compress(p))
	if e.verb != nil && len(e.verb.ends) > 0 {
		e.vals = e.verb.views(e.vals[:0])
		p = appendRaw(p[:0], e.vals)
		sizes = append(sizes, compress(p))
	} else {
		sizes = append(sizes, []byte{0, 0})
	}
	// The first column of canonical times is the reference of the
	// relative encodings.
	times := make([][]int64, len(e.cols))
	ref := -1
	for i, c := range e.cols {
		if c.ends[0] == timeLen {
			e.vals = c.views(e.vals[:0])
			if ts, ok := parseTimes(e.vals); ok {
				times[i] = ts
				if ref < 0 {
					ref = i
				}
			}
		}
	}
	encs := make([]byte, len(e.cols))
	for i, c := range e.cols {
		var enc byte
		enc, p = e.encodeColumn(p[:0], i, ref, times)
		if len(p) > MaxColumnBytes {
			return dst, fmt.Errorf("columnar: column %q holds %d bytes in one block, over the limit of %d", c.key, len(p), MaxColumnBytes)
		}
		encs[i] = enc
		sizes = append(sizes, compress(p))
	}
	e.payload = p
	dir = append(dir, byte(w))
	dir = append(dir, sizes[0]...)
	dir = append(dir, sizes[1]...)
	for i, c := range e.cols {
		dir = binary.AppendUvarint(dir, uint64(len(c.key)))
		dir = append(dir, c.key...)
		dir = append(dir, encs[i])
		dir = append(dir, sizes[2+i]...)
	}
	if len(dir) > MaxColumnBytes {
		return dst, fmt.Errorf("columnar: block directory of %d bytes, over the limit of %d", len(dir), MaxColumnBytes)
	}
	dst = binary.AppendUvarint(dst, uint64(len(dir)+len(frames)))
	dst = append(dst, dir...)
	return append(dst, frames...), nil
}

// appendRaw appends the raw encoding: every length, then every value.
func appendRaw(p []byte, vals [][]byte) []byte {
	for _, v := range vals {
		p = binary.AppendUvarint(p, uint64(len(v)))
	}
	for _, v := range vals {
		p = append(p, v...)
	}
	return p
}

// encodeColumn picks the encoding of column ci and appends its payload
// to p. Times and UUIDs never repeat, so they skip the dictionary; other
// columns try it first when their first 256 values repeat enough. ref is
// the reference time column (-1: none), times the parsed values of every
// time column.
func (e *Encoder) encodeColumn(p []byte, ci, ref int, times [][]int64) (byte, []byte) {
	c := e.cols[ci]
	e.vals = c.views(e.vals[:0])
	vals := e.vals
	first := vals[0]
	if ts := times[ci]; ts != nil {
		if ci != ref {
			if rows, ok := refIndex(e.shapeL, e.rowSh, ci, ref); ok {
				p = binary.AppendUvarint(p, uint64(ref))
				return encTimeRel, appendRel(p, ts, times[ref], rows, 1)
			}
		}
		return encTime, appendTimes(p, ts)
	}
	if len(first) == uuidLen {
		if us, ok := parseUUIDs(vals); ok {
			var rows []int32
			if ref >= 0 {
				rows, ok = refIndex(e.shapeL, e.rowSh, ci, ref)
			}
			if ref >= 0 && ok {
				p = binary.AppendUvarint(p, uint64(ref))
				p = appendRel(p, us.prefixes, times[ref], rows, int64(time.Millisecond))
				return encUUIDRel, append(p, us.tails...)
			}
			return encUUID, appendUUIDs(p, us)
		}
	}
	if out, ok := appendDict(p, vals); ok {
		return encDict, out
	}
	if first[0] == '"' {
		if out, ok := appendHexes(p, vals); ok {
			return encHex, out
		}
		if out, ok := appendIPs(p, vals, e.scratch[:0]); ok {
			return encIP, out
		}
	} else if out, ok := appendInts(p, vals); ok {
		return encInt, out
	}
	return encRaw, appendRaw(p, vals)
}

// parseTimes returns canonical times as Unix nanoseconds.
func parseTimes(vals [][]byte) ([]int64, bool) {
	ts := make([]int64, len(vals))
	for i, v := range vals {
		sec, ns, ok := parseTime(v)
		// Nanoseconds since 1970 fit an int64 from 1678 to 2262; a
		// column with a time outside takes another encoding.
		if !ok || sec < -9e9 || sec > 9e9 {
			return nil, false
		}
		ts[i] = sec*1e9 + int64(ns)
	}
	return ts, true
}

func appendTimes(p []byte, ts []int64) []byte {
	var prev int64
	for _, t := range ts {
		sec := floorDiv(t, 1e9)
		p = binary.AppendUvarint(p, zigzag(sec-prev))
		prev = sec
	}
	ns := make([]int64, len(ts))
	for i, t := range ts {
		ns[i] = t - floorDiv(t, 1e9)*1e9
	}
	return appendPlanes(p, ns, 0, 4)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// appendRel appends vs[i] − floor(refs[rows[i]] / unit) for every i, as
// encInt's body: width, minimum, fixed-width offsets.
func appendRel(p []byte, vs, refs []int64, rows []int32, unit int64) []byte {
	ds := make([]int64, len(vs))
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for i, v := range vs {
		ds[i] = v - floorDiv(refs[rows[i]], unit)
		lo, hi = min(lo, ds[i]), max(hi, ds[i])
	}
	return appendOffsets(p, ds, lo, hi)
}

// appendOffsets appends integers as offsets from their minimum lo, in
// the fixed width their range needs, byte planes transposed.
func appendOffsets(p []byte, xs []int64, lo, hi int64) []byte {
	w := width(uint64(hi) - uint64(lo))
	p = append(p, byte(w))
	p = binary.AppendUvarint(p, zigzag(lo))
	return appendPlanes(p, xs, uint64(lo), w)
}

// appendPlanes appends x − base for each x in w bytes, transposed: the
// most significant byte of every value, then the next byte of every
// value, and so on. Planes of zeros then compress to almost nothing, and
// zstd's one Huffman table per block is not spread over bytes of every
// significance at once.
func appendPlanes(p []byte, xs []int64, base uint64, w int) []byte {
	for shift := 8 * (w - 1); shift >= 0; shift -= 8 {
		for _, x := range xs {
			p = append(p, byte((uint64(x)-base)>>shift))
		}
	}
	return p
}

type uuids struct {
	prefixes []int64 // first 6 bytes
	tails    []byte  // last 10 bytes of each, in byte planes
}

func parseUUIDs(vals [][]byte) (uuids, bool) {
	n := len(vals)
	us := uuids{prefixes: make([]int64, n), tails: make([]byte, 10*n)}
	for i, v := range vals {
		u, ok := parseUUID(v)
		if !ok {
			return us, false
		}
		us.prefixes[i] = int64(u[0])<<40 | int64(u[1])<<32 | int64(u[2])<<24 | int64(u[3])<<16 | int64(u[4])<<8 | int64(u[5])
		// Byte planes: the version nibble and variant bits sit in
		// planes of their own, where they compress away.
		for j := 0; j < 10; j++ {
			us.tails[j*n+i] = u[6+j]
		}
	}
	return us, true
}

func appendUUIDs(p []byte, us uuids) []byte {
	var prev int64
	for _, hi := range us.prefixes {
		p = binary.AppendUvarint(p, zigzag(hi-prev))
		prev = hi
	}
	return append(p, us.tails...)
}

// appendDict writes the dictionary encoding when the values repeat: at
// most a quarter of them distinct, at most 65,536, judged early on the
// first 256 so that a column of unique values costs little.
func appendDict(p []byte, vals [][]byte) ([]byte, bool) {
	limit := min(len(vals)/4, 1<<16)
	if limit < 2 {
		return p, false
	}
	var ids map[string]uint32 // once order outgrows a linear search
	idx := make([]uint32, len(vals))
	order := make([][]byte, 0, 16)
	for i, v := range vals {
		// Runs of one value are common (a block of one tenant's
		// events): compare with the previous value before anything.
		if i > 0 && string(v) == string(vals[i-1]) {
			idx[i] = idx[i-1]
			continue
		}
		id, ok := uint32(0), false
		if ids == nil {
			// Most dictionary columns (kind, method, status,
			// protocol…) hold a handful of values: comparing is
			// cheaper than hashing.
			for j, o := range order {
				if string(o) == string(v) {
					id, ok = uint32(j), true
					break
				}
			}
		} else {
			id, ok = ids[string(v)]
		}
		if !ok {
			if len(order) == limit || (i < 256 && len(order) > 64) {
				return p, false
			}
			id = uint32(len(order))
			order = append(order, v)
			if ids != nil {
				ids[string(v)] = id
			} else if len(order) > 16 {
				ids = make(map[string]uint32, 64)
				for j, o := range order {
					ids[string(o)] = uint32(j)
				}
			}
		}
		idx[i] = id
	}
	p = binary.AppendUvarint(p, uint64(len(order)))
	p = appendRaw(p, order)
	w := width(uint64(len(order) - 1))
	p = append(p, byte(w))
	for _, id := range idx {
		p = putUint(p, uint64(id), w)
	}
	return p, true
}

func appendHexes(p []byte, vals [][]byte) ([]byte, bool) {
	n := len(p)
	for _, v := range vals {
		if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || len(v)%2 != 0 {
			return p[:n], false
		}
		p = binary.AppendUvarint(p, uint64(len(v)-2)/2)
	}
	var ok bool
	for _, v := range vals {
		if p, ok = appendUnhex(p, v[1:len(v)-1]); !ok {
			return p[:n], false
		}
	}
	return p, true
}

func appendIPs(p []byte, vals [][]byte, scratch []byte) ([]byte, bool) {
	n := len(p)
	p = append(p, make([]byte, len(vals))...)
	for i, v := range vals {
		a, ok := parseIP(v, scratch)
		if !ok {
			return p[:n], false
		}
		if a.Is4() {
			p[n+i] = 4
			b := a.As4()
			p = append(p, b[:]...)
		} else {
			p[n+i] = 16
			b := a.As16()
			p = append(p, b[:]...)
		}
	}
	return p, true
}

func appendInts(p []byte, vals [][]byte) ([]byte, bool) {
	xs := make([]int64, len(vals))
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for i, v := range vals {
		x, ok := parseInt(v)
		if !ok {
			return p, false
		}
		xs[i] = x
		lo, hi = min(lo, x), max(hi, x)
	}
	// Offsets from the smallest value, so that ports (1024..65535) take
	// two bytes and statuses one.
	return appendOffsets(p, xs, lo, hi), true
}

// refIndex maps each value of column c to the index of column ref's
// first value in the same row; false when a row holding c lacks ref.
// shapes and ids are the block's shapes and rows' shape IDs.
func refIndex(shapes [][]int, ids []uint32, c, ref int) ([]int32, bool) {
	var out []int32
	nref := 0
	for _, id := range ids {
		sh := shapes[id]
		refAt := -1
		k := 0
		for _, ci := range sh {
			if ci == ref {
				if refAt < 0 {
					refAt = nref
				}
				nref++
			}
			if ci == c {
				k++
			}
		}
		if k > 0 && refAt < 0 {
			return nil, false
		}
		for ; k > 0; k-- {
			out = append(out, int32(refAt))
		}
	}
	return out, true
}
