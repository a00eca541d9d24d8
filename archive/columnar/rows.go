package columnar

import "slices"

// Rows reads a block row by row for a reader that decides on a few
// members before it needs whole lines: a query filter. Only the columns
// it asks for are decoded, and the rest only if a line is rebuilt. Not
// safe for concurrent use; valid until the Decoder reads another block.
type Rows struct {
	d    *Decoder
	b    *Block
	sel  []int    // the column of each selected key, -1: no such column
	has  [][]bool // per shape: whether it holds each selected key
	cur  []uint32 // per column (and verbatim): the current row's first value
	next []uint32 // cursors for the row after
	row  int
	all  bool // every column decoded (a line was rebuilt)
}

// Rows decodes the shape IDs of b and the columns named by keys (raw key
// bytes, as Column.Key) and returns a reader positioned before the first
// row.
func (d *Decoder) Rows(b *Block, keys []string) (*Rows, error) {
	if err := d.loadIDs(b); err != nil {
		return nil, err
	}
	r := &Rows{d: d, b: b, sel: make([]int, len(keys)), row: -1}
	for k, key := range keys {
		r.sel[k] = slices.IndexFunc(b.Columns, func(c Column) bool { return string(c.Key) == key })
		if r.sel[k] >= 0 {
			if err := d.loadColumn(b, r.sel[k]); err != nil {
				return nil, err
			}
		}
	}
	if err := d.loadColumn(b, len(b.Columns)); err != nil {
		return nil, err
	}
	r.has = make([][]bool, len(b.shapes))
	for s, sh := range b.shapes {
		r.has[s] = make([]bool, len(keys))
		for k, ci := range r.sel {
			r.has[s][k] = ci >= 0 && slices.Contains(sh, ci)
		}
	}
	r.cur = make([]uint32, len(b.Columns)+1)
	r.next = make([]uint32, len(b.Columns)+1)
	return r, nil
}

// Next moves to the next row; false after the last.
func (r *Rows) Next() bool {
	if r.row+1 >= r.b.Rows {
		r.row = r.b.Rows
		return false
	}
	r.row++
	copy(r.cur, r.next)
	sh := r.b.shapes[r.d.ids[r.row]]
	if sh == nil {
		r.next[len(r.b.Columns)]++
	}
	for _, ci := range sh {
		r.next[ci]++
	}
	return true
}

// Verbatim returns the current row's line when it is stored verbatim
// (not a flat object), else nil.
func (r *Rows) Verbatim() []byte {
	if r.b.shapes[r.d.ids[r.row]] != nil {
		return nil
	}
	v := &r.d.cols[len(r.b.Columns)]
	s, e := v.span(r.cur[len(r.b.Columns)])
	return v.text[s:e]
}

// Value returns the raw JSON text of selected key k on the current row
// (its first occurrence), or nil when the row lacks it.
func (r *Rows) Value(k int) []byte {
	if !r.has[r.d.ids[r.row]][k] {
		return nil
	}
	ci := r.sel[k]
	c := &r.d.cols[ci]
	s, e := c.span(r.cur[ci])
	return c.text[s+uint32(len(r.b.Columns[ci].Key))+4 : e]
}

// AppendLine appends the current row's line, as the Encoder was given
// it, and a newline. The first call decodes the columns not selected.
func (r *Rows) AppendLine(dst []byte) ([]byte, error) {
	if !r.all {
		for i := range r.b.Columns {
			if err := r.d.loadColumn(r.b, i); err != nil {
				return dst, err
			}
		}
		r.all = true
	}
	sh := r.b.shapes[r.d.ids[r.row]]
	if sh == nil {
		return append(append(dst, r.Verbatim()...), '\n'), nil
	}
	dst = append(dst, '{')
	for j, ci := range sh {
		c := &r.d.cols[ci]
		// A repeated key's later values follow its first in the
		// column (a rare shape: count the earlier ones).
		k := r.cur[ci] + uint32(count(sh[:j], ci))
		s, e := c.span(k)
		if j == 0 {
			s++
		}
		dst = append(dst, c.text[s:e]...)
	}
	return append(dst, '}', '\n'), nil
}

func count(s []int, v int) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}
