package segment

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math"
	"net/netip"
	"strings"
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
	values [maxField + 1]map[string]struct{}
	rawIPs map[string]struct{} // IP texts already added, to parse each once
	size   int                 // bytes of distinct values held
}

// NewIndexBuilder returns an empty builder.
func NewIndexBuilder() *IndexBuilder { return &IndexBuilder{} }

// Add records value under field. Empty values are ignored.
func (b *IndexBuilder) Add(f Field, value string) {
	if value == "" || f == 0 || f > maxField {
		return
	}
	m := b.values[f]
	if m == nil {
		m = make(map[string]struct{})
		b.values[f] = m
	}
	if _, ok := m[value]; !ok {
		// A copy: the caller's string may point into a larger buffer
		// (a Kafka record) that the builder must not keep alive.
		m[strings.Clone(value)] = struct{}{}
		b.size += len(value) + 16
	}
}

// Size is roughly the memory the builder holds.
func (b *IndexBuilder) Size() int { return b.size }

// AddIP records an address under FieldIP and its /24 or /48 under
// FieldIPPrefix. Unparseable text is ignored: ingest has already normalised
// every IP, so this only drops what could never match a query anyway.
func (b *IndexBuilder) AddIP(s string) {
	if s == "" {
		return
	}
	if _, seen := b.rawIPs[s]; seen {
		return
	}
	if b.rawIPs == nil {
		b.rawIPs = make(map[string]struct{})
	}
	b.rawIPs[strings.Clone(s)] = struct{}{}
	b.size += len(s) + 16
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
type bloomHasher struct{ mac hash.Hash }

func newBloomHasher(key []byte) *bloomHasher { return &bloomHasher{mac: hmac.New(sha256.New, key)} }

func (h *bloomHasher) sum(f Field, value string) (uint64, uint64) {
	h.mac.Reset()
	h.mac.Write([]byte{byte(f)})
	h.mac.Write([]byte(value))
	var s [sha256.Size]byte
	h.mac.Sum(s[:0])
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
	h := newBloomHasher(key)
	out := []byte{indexVersion, 0}
	for f := Field(1); f <= maxField; f++ {
		vals := b.values[f]
		if len(vals) == 0 {
			continue
		}
		bits := uint64(len(vals)) * bitsPerValue
		if bits < minBits {
			bits = minBits
		}
		if bits > math.MaxUint32 {
			bits = math.MaxUint32
		}
		fl := filter{k: bloomK, bits: uint32(bits), data: make([]byte, (bits+7)/8)}
		for v := range vals {
			fl.set(h.sum(f, v))
		}
		out = append(out, byte(f), fl.k)
		out = binary.BigEndian.AppendUint32(out, fl.bits)
		out = append(out, fl.data...)
		out[1]++
	}
	return out
}

// Index answers "may this segment hold an event with field = value?".
// A false answer is certain; a true answer may be a false positive.
type Index struct {
	hasher  *bloomHasher
	filters [maxField + 1]*filter
}

func decodeIndex(b []byte, key []byte) (*Index, error) {
	if len(b) < 2 || b[0] != indexVersion {
		return nil, fmt.Errorf("index version or length invalid")
	}
	ix := &Index{hasher: newBloomHasher(key)}
	n, p := int(b[1]), b[2:]
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
	return fl.test(ix.hasher.sum(f, value))
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
