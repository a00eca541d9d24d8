package segment

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/maphash"
	"math"
	"net/netip"
	"time"
)

// Field names an indexed event attribute. The numbers are part of the
// format; never renumber.
type Field uint8

const (
	FieldIP       Field = 1 // canonical IP text (netip.Addr.String)
	FieldIPPrefix Field = 2 // IPv4 /24 or IPv6 /48, canonical prefix text
	FieldLogin    Field = 3
	FieldSession  Field = 4
	FieldRepo     Field = 5
	FieldTenant   Field = 6
	FieldApp      Field = 7
	maxField            = FieldApp
)

func (f Field) String() string {
	switch f {
	case FieldIP:
		return "ip"
	case FieldIPPrefix:
		return "ip_prefix"
	case FieldLogin:
		return "login"
	case FieldSession:
		return "session"
	case FieldRepo:
		return "repo"
	case FieldTenant:
		return "tenant"
	case FieldApp:
		return "app"
	}
	return fmt.Sprintf("field(%d)", uint8(f))
}

const (
	indexVersion = 1
	bloomK       = 7  // hash functions; with 10 bits per value, ~1% false positives
	bitsPerValue = 10 //
	minBits      = 64
)

// IndexBuilder collects the distinct values of each field of a segment's
// events. Not safe for concurrent use.
type IndexBuilder struct {
	seed   maphash.Seed
	values [maxField + 1]valueSet
	rawIPs valueSet // IP texts already added, to parse each once
}

// NewIndexBuilder returns an empty builder.
func NewIndexBuilder() *IndexBuilder { return &IndexBuilder{seed: maphash.MakeSeed()} }

// valueSet is a set of strings kept in one arena: a distinct value costs
// its bytes, a span and about two slots, not an allocation. The slots are
// an open-addressing table (linear probing, at most three quarters full)
// holding 32 bits of each value's 64-bit hash and its index: a probe
// compares the tag, and the value itself only when the tags agree. It
// replaced a Go map keyed by the hash, which took 6% of the archiver's
// CPU and, with a side map for values sharing a hash, more memory.
type valueSet struct {
	slots []slot // a power of two; nil until the first value
	spans []span
	arena []byte
	seed  maphash.Seed
	// hash overrides maphash in tests, to force collisions.
	hash func([]byte) uint64
}

// slot is a tag (the hash's high 32 bits) and 1 + the value's index in
// spans; i == 0 is empty.
type slot struct{ tag, i uint32 }

type span struct{ off, n uint32 }

func (v *valueSet) value(i uint32) []byte {
	sp := v.spans[i]
	return v.arena[sp.off : sp.off+sp.n]
}

func (v *valueSet) hashOf(s string) uint64 {
	if v.hash != nil {
		return v.hash([]byte(s))
	}
	return maphash.String(v.seed, s)
}

// hashBytes is hashOf for a value in the arena (maphash.Bytes and String
// agree on the same bytes).
func (v *valueSet) hashBytes(b []byte) uint64 {
	if v.hash != nil {
		return v.hash(b)
	}
	return maphash.Bytes(v.seed, b)
}

// add inserts s and reports whether it was new. Every call passes the
// same seed (the builder's).
func (v *valueSet) add(seed maphash.Seed, s string) bool {
	if v.slots == nil {
		v.seed, v.slots = seed, make([]slot, 64)
	}
	h := v.hashOf(s)
	tag := uint32(h >> 32)
	mask := uint64(len(v.slots) - 1)
	p := h & mask
	for ; v.slots[p].i != 0; p = (p + 1) & mask {
		if sl := v.slots[p]; sl.tag == tag && string(v.value(sl.i-1)) == s {
			return false
		}
	}
	v.spans = append(v.spans, span{off: uint32(len(v.arena)), n: uint32(len(s))})
	v.arena = append(v.arena, s...)
	v.slots[p] = slot{tag: tag, i: uint32(len(v.spans))}
	if 4*len(v.spans) > 3*len(v.slots) {
		v.grow()
	}
	return true
}

// grow doubles the table, hashing each value again (the slots keep only
// half of each hash).
func (v *valueSet) grow() {
	v.slots = make([]slot, 2*len(v.slots))
	mask := uint64(len(v.slots) - 1)
	for i := range v.spans {
		h := v.hashBytes(v.value(uint32(i)))
		p := h & mask
		for v.slots[p].i != 0 {
			p = (p + 1) & mask
		}
		v.slots[p] = slot{tag: uint32(h >> 32), i: uint32(i + 1)}
	}
}

func (v *valueSet) len() int { return len(v.spans) }

func (v *valueSet) each(fn func([]byte)) {
	for i := range v.spans {
		fn(v.value(uint32(i)))
	}
}

func (v *valueSet) size() int { return cap(v.arena) + 8*len(v.slots) + 8*cap(v.spans) }

// Add records value under field. Empty values are ignored.
func (b *IndexBuilder) Add(f Field, value string) {
	if value == "" || f == 0 || f > maxField {
		return
	}
	b.values[f].add(b.seed, value)
}

// Size is roughly the memory the builder holds.
func (b *IndexBuilder) Size() int {
	n := b.rawIPs.size()
	for i := range b.values {
		n += b.values[i].size()
	}
	return n
}

// AddIP records an address under FieldIP and its /24 or /48 under
// FieldIPPrefix. Unparseable text is ignored: ingest has already normalised
// every IP, so this only drops what could never match a query anyway.
func (b *IndexBuilder) AddIP(s string) {
	if s == "" || !b.rawIPs.add(b.seed, s) {
		return
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return
	}
	a = a.Unmap().WithZone("")
	b.Add(FieldIP, a.String())
	b.Add(FieldIPPrefix, IPPrefix(a).String())
}

// IPPrefix is the prefix indexed for a: /24 for IPv4, /48 for IPv6.
func IPPrefix(a netip.Addr) netip.Prefix {
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return p
}

// bloomHasher computes the keyed positions of a value. The key is derived
// from the segment's data key, so filters reveal nothing without the KEK
// and the same value sets different bits in different segments.
type bloomHasher struct {
	mac     hash.Hash
	scratch []byte
	sumBuf  [sha256.Size]byte
}

func newBloomHasher(key []byte) *bloomHasher { return &bloomHasher{mac: hmac.New(sha256.New, key)} }

func (h *bloomHasher) sum(f Field, value []byte) (uint64, uint64) {
	h.scratch = append(append(h.scratch[:0], byte(f)), value...)
	h.mac.Reset()
	h.mac.Write(h.scratch)
	s := h.mac.Sum(h.sumBuf[:0])
	return binary.BigEndian.Uint64(s[0:8]), binary.BigEndian.Uint64(s[8:16]) | 1
}

type filter struct {
	k    uint8
	bits uint32
	data []byte
}

func (fl *filter) set(h1, h2 uint64) {
	for i := uint64(0); i < uint64(fl.k); i++ {
		p := (h1 + i*h2) % uint64(fl.bits)
		fl.data[p/8] |= 1 << (p % 8)
	}
}

func (fl *filter) test(h1, h2 uint64) bool {
	for i := uint64(0); i < uint64(fl.k); i++ {
		p := (h1 + i*h2) % uint64(fl.bits)
		if fl.data[p/8]&(1<<(p%8)) == 0 {
			return false
		}
	}
	return true
}

// encode builds the filters with the bloom key and serialises them:
// version(1) nfilters(1) { field(1) k(1) bits(u32be) data(ceil(bits/8)) }*.
func (b *IndexBuilder) encode(key []byte) []byte {
	return b.encodeAt(key, []byte{indexVersion, 0})
}

// encodeV2 is the v2 index: version 2, the segment's first and last event
// times (Unix nanoseconds, big-endian), then the filters as in v1. The
// times moved here from the cleartext header, which keeps only the hour.
func (b *IndexBuilder) encodeV2(key []byte, minTime, maxTime time.Time) []byte {
	out := []byte{2}
	out = binary.BigEndian.AppendUint64(out, uint64(minTime.UnixNano()))
	out = binary.BigEndian.AppendUint64(out, uint64(maxTime.UnixNano()))
	return b.encodeAt(key, append(out, 0))
}

// encodeAt appends the filters to out, whose last byte is the filter count.
func (b *IndexBuilder) encodeAt(key []byte, out []byte) []byte {
	h := newBloomHasher(key)
	count := len(out) - 1
	for f := Field(1); f <= maxField; f++ {
		vals := &b.values[f]
		if vals.len() == 0 {
			continue
		}
		bits := uint64(vals.len()) * bitsPerValue
		if bits < minBits {
			bits = minBits
		}
		if bits > math.MaxUint32 {
			bits = math.MaxUint32
		}
		fl := filter{k: bloomK, bits: uint32(bits), data: make([]byte, (bits+7)/8)}
		vals.each(func(v []byte) { fl.set(h.sum(f, v)) })
		out = append(out, byte(f), fl.k)
		out = binary.BigEndian.AppendUint32(out, fl.bits)
		out = append(out, fl.data...)
		out[count]++
	}
	return out
}

// Index answers "may this segment hold an event with field = value?".
// A false answer is certain; a true answer may be a false positive.
type Index struct {
	hasher  *bloomHasher
	filters [maxField + 1]*filter
	// MinTime and MaxTime are the segment's first and last event times,
	// set from a v2 index (v1 keeps them in the header).
	MinTime, MaxTime time.Time
}

func decodeIndex(b []byte, key []byte) (*Index, error) {
	ix := &Index{hasher: newBloomHasher(key)}
	switch {
	case len(b) >= 2 && b[0] == indexVersion:
		b = b[1:]
	case len(b) >= 18 && b[0] == 2:
		ix.MinTime = time.Unix(0, int64(binary.BigEndian.Uint64(b[1:9]))).UTC()
		ix.MaxTime = time.Unix(0, int64(binary.BigEndian.Uint64(b[9:17]))).UTC()
		b = b[17:]
	default:
		return nil, fmt.Errorf("index version or length invalid")
	}
	n, p := int(b[0]), b[1:]
	for i := 0; i < n; i++ {
		if len(p) < 6 {
			return nil, fmt.Errorf("index filter %d truncated", i)
		}
		f, k, bits := Field(p[0]), p[1], binary.BigEndian.Uint32(p[2:6])
		size := (uint64(bits) + 7) / 8
		if f == 0 || f > maxField || ix.filters[f] != nil || k == 0 || bits == 0 || uint64(len(p)-6) < size {
			return nil, fmt.Errorf("index filter %d malformed", i)
		}
		ix.filters[f] = &filter{k: k, bits: bits, data: p[6 : 6+size]}
		p = p[6+size:]
	}
	if len(p) != 0 {
		return nil, fmt.Errorf("index has %d trailing bytes", len(p))
	}
	return ix, nil
}

// MayContain reports whether the segment may hold value under f. A field
// with no filter held no values at all, so nothing matches it.
func (ix *Index) MayContain(f Field, value string) bool {
	if f == 0 || f > maxField {
		return true
	}
	fl := ix.filters[f]
	if fl == nil {
		return false
	}
	return fl.test(ix.hasher.sum(f, []byte(value)))
}

// MayContainPrefix reports whether any address within p may be present. It
// consults the /24 (/48) filter for prefixes at least that long and cannot
// prune shorter ones, for which it returns true.
func (ix *Index) MayContainPrefix(p netip.Prefix) bool {
	p = p.Masked()
	if p.Addr().Is4() && p.Bits() >= 24 || p.Addr().Is6() && p.Bits() >= 48 {
		return ix.MayContain(FieldIPPrefix, IPPrefix(p.Addr()).String())
	}
	return true
}
