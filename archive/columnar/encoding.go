package columnar

import (
	"encoding/binary"
	"net/netip"
)

// Value encodings of a column (docs/FORMAT.md v3.5). Every encoding but
// raw applies only when every value of the column in the block has the
// exact text that decoding produces; the writer checks each value and
// falls back to raw, so a reader always returns the bytes written.
const (
	encRaw  = 0 // n × (uvarint length ‖ bytes)
	encDict = 1 // uvarint d ‖ d × (uvarint length ‖ bytes) ‖ byte w (1 or 2) ‖ n × w-byte big-endian index
	encTime = 2 // n × zigzag uvarint delta of Unix seconds ‖ n × uint32 nanoseconds, in byte planes
	encUUID = 3 // n × zigzag uvarint delta of the first 6 bytes ‖ n × last 10 bytes, in byte planes
	encHex  = 4 // n × uvarint byte length ‖ the bytes, concatenated
	encIP   = 5 // n × byte (4 or 16) ‖ the addresses, concatenated
	encInt  = 6 // byte w (1, 2, 4 or 8) ‖ zigzag uvarint minimum ‖ n × w-byte big-endian value − minimum, in byte planes (all first bytes, then all second bytes…)
	// The relative encodings store a value against the same row's value
	// of a time column (the reference, itself encTime): an event's
	// received time is milliseconds after its time, and a UUIDv7's first
	// 48 bits are a Unix time in milliseconds.
	encTimeRel = 7 // uvarint reference column ‖ deltas in nanoseconds as encInt's body (w ‖ minimum ‖ n × w bytes)
	encUUIDRel = 8 // uvarint reference column ‖ (first 6 bytes − reference milliseconds) as encInt's body ‖ n × last 10 bytes in byte planes
	encMax     = encUUIDRel
)

var encNames = [...]string{"raw", "dict", "time", "uuid", "hex", "ip", "int", "time-rel", "uuid-rel"}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// timeLen is the length of a canonical event time with its quotes:
// "2026-11-29T05:00:00.123456789Z" (docs/EVENTS.md §6).
const timeLen = 32

// parseTime returns the Unix seconds and nanoseconds of a canonical
// event time, quotes included, and false for any other text (including
// a valid time spelt otherwise, which formatTime would not give back).
func parseTime(v []byte) (sec int64, nsec uint32, ok bool) {
	if len(v) != timeLen {
		return 0, 0, false
	}
	v = v[:timeLen]
	if v[0] != '"' || v[31] != '"' || v[5] != '-' || v[8] != '-' || v[11] != 'T' ||
		v[14] != ':' || v[17] != ':' || v[20] != '.' || v[30] != 'Z' {
		return 0, 0, false
	}
	// Every other byte is a digit: subtract '0' and check each is ≤ 9
	// in one pass.
	var d [32]byte
	for i := 1; i < 30; i++ {
		d[i] = v[i] - '0'
	}
	for _, i := range digitAt {
		if d[i] > 9 {
			return 0, 0, false
		}
	}
	y := int(d[1])*1000 + int(d[2])*100 + int(d[3])*10 + int(d[4])
	mo := int(d[6])*10 + int(d[7])
	dd := int(d[9])*10 + int(d[10])
	h := int(d[12])*10 + int(d[13])
	mi := int(d[15])*10 + int(d[16])
	s := int(d[18])*10 + int(d[19])
	ns := 0
	for i := 21; i < 30; i++ {
		ns = ns*10 + int(d[i])
	}
	if mo < 1 || mo > 12 || dd < 1 || dd > daysIn(mo, y) || h > 23 || mi > 59 || s > 59 {
		return 0, 0, false
	}
	return civilToUnix(y, mo, dd) + int64(h*3600+mi*60+s), uint32(ns), true
}

// digitAt lists the positions of digits in a quoted canonical time.
var digitAt = [...]int{1, 2, 3, 4, 6, 7, 9, 10, 12, 13, 15, 16, 18, 19, 21, 22, 23, 24, 25, 26, 27, 28, 29}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

func daysIn(m, y int) int {
	switch m {
	case 2:
		if isLeap(y) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// civilToUnix is the Unix time of midnight UTC of a proleptic Gregorian
// date (Howard Hinnant's days_from_civil).
func civilToUnix(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era*146097+doe-719468) * 86400
}

// unixToCivil is the inverse of civilToUnix for the day of sec.
func unixToCivil(sec int64) (y, m, d int, rem int) {
	days := sec / 86400
	rem = int(sec % 86400)
	if rem < 0 {
		rem += 86400
		days--
	}
	z := int(days) + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	y = yoe + era*400
	if m <= 2 {
		y++
	}
	return
}

func appendDigits(dst []byte, v, width int) []byte {
	for i := width - 1; i >= 0; i-- {
		dst = append(dst, 0)
	}
	for i := len(dst) - 1; width > 0; i, width = i-1, width-1 {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	return dst
}

// timeFormatter formats times as appendTime does, remembering the last
// day's date: the times of a block are mostly of one day, and the
// calendar arithmetic is most of the cost.
type timeFormatter struct {
	day  int64
	date [11]byte // `"YYYY-MM-DD`
	ok   bool
}

// appendTime appends the canonical text of a time with its quotes. The
// year must be 0..9999 (parseTime accepts no other).
func (f *timeFormatter) appendTime(dst []byte, sec int64, nsec uint32) []byte {
	day := floorDiv(sec, 86400)
	if !f.ok || day != f.day {
		y, m, d, _ := unixToCivil(sec)
		b := append(f.date[:0], '"') // in place: f.date holds all 11 bytes
		b = appendDigits(b, y, 4)
		b = append(b, '-')
		b = appendDigits(b, m, 2)
		b = append(b, '-')
		appendDigits(b, d, 2)
		f.day, f.ok = day, true
	}
	rem := int(sec - day*86400)
	n := len(dst)
	dst = append(dst, f.date[:]...)
	dst = append(dst, "THH:MM:SS.nnnnnnnnnZ\""...)
	b := dst[n+11:]
	put2(b[1:], rem/3600)
	put2(b[4:], rem/60%60)
	put2(b[7:], rem%60)
	ns := int(nsec)
	put2(b[17:], ns%100)
	ns /= 100
	put2(b[15:], ns%100)
	ns /= 100
	put2(b[13:], ns%100)
	ns /= 100
	put2(b[11:], ns%100)
	b[10] = byte('0' + ns/100)
	return dst
}

const twoDigits = "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"

func put2(b []byte, v int) {
	b[0], b[1] = twoDigits[2*v], twoDigits[2*v+1]
}

const hexDigits = "0123456789abcdef"

// unhexTable maps a lowercase hex digit to its value and anything else
// to 0xff.
var unhexTable = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < 16; i++ {
		t[hexDigits[i]] = byte(i)
	}
	return
}()

// appendUnhex appends the bytes of lowercase hex text h (even length).
func appendUnhex(dst, h []byte) ([]byte, bool) {
	if len(h)%2 != 0 {
		return dst, false
	}
	for i := 0; i < len(h); i += 2 {
		a, b := unhexTable[h[i]], unhexTable[h[i+1]]
		if a|b == 0xff || (a|b)&0xf0 != 0 {
			return dst, false
		}
		dst = append(dst, a<<4|b)
	}
	return dst, true
}

func appendHex(dst, b []byte) []byte {
	for _, c := range b {
		dst = append(dst, hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// uuidLen is the length of a UUID in its canonical lowercase text with
// quotes: "01234567-89ab-cdef-0123-456789abcdef".
const uuidLen = 38

// parseUUID returns the 16 bytes of a quoted lowercase canonical UUID.
func parseUUID(v []byte) (u [16]byte, ok bool) {
	if len(v) != uuidLen || v[0] != '"' || v[37] != '"' || v[9] != '-' || v[14] != '-' || v[19] != '-' || v[24] != '-' {
		return u, false
	}
	var buf [32]byte
	h := append(append(append(append(append(buf[:0], v[1:9]...), v[10:14]...), v[15:19]...), v[20:24]...), v[25:37]...)
	out, ok := appendUnhex(u[:0], h)
	_ = out
	return u, ok
}

func appendUUID(dst []byte, u []byte) []byte {
	dst = append(dst, '"')
	dst = appendHex(dst, u[0:4])
	dst = append(dst, '-')
	dst = appendHex(dst, u[4:6])
	dst = append(dst, '-')
	dst = appendHex(dst, u[6:8])
	dst = append(dst, '-')
	dst = appendHex(dst, u[8:10])
	dst = append(dst, '-')
	dst = appendHex(dst, u[10:16])
	return append(dst, '"')
}

// parseIP returns the address of a quoted IP in the text netip gives
// back (dotted quad, RFC 5952), without a zone.
func parseIP(v []byte, scratch []byte) (netip.Addr, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || len(v) > 2+45 {
		return netip.Addr{}, false
	}
	if a, ok := parseIPv4(v[1 : len(v)-1]); ok {
		return a, true
	}
	a, err := netip.ParseAddr(string(v[1 : len(v)-1]))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	if string(a.AppendTo(scratch[:0])) != string(v[1:len(v)-1]) {
		return netip.Addr{}, false
	}
	return a, true
}

// parseIPv4 is the fast path of parseIP: a dotted quad without leading
// zeros, which is exactly the text netip gives back for an IPv4 address.
func parseIPv4(s []byte) (netip.Addr, bool) {
	var b [4]byte
	i := 0
	for f := 0; f < 4; f++ {
		if f > 0 {
			if i >= len(s) || s[i] != '.' {
				return netip.Addr{}, false
			}
			i++
		}
		start := i
		v := 0
		for i < len(s) && isDigit(s[i]) && i-start < 3 {
			v = v*10 + int(s[i]-'0')
			i++
		}
		if i == start || v > 255 || (s[start] == '0' && i-start > 1) {
			return netip.Addr{}, false
		}
		b[f] = byte(v)
	}
	if i != len(s) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(b), true
}

// parseInt returns a JSON integer without sign or fraction oddities:
// -?(0|[1-9][0-9]*) within int64, and not "-0".
func parseInt(v []byte) (int64, bool) {
	s := v
	neg := false
	if len(s) > 0 && s[0] == '-' {
		neg, s = true, s[1:]
	}
	if len(s) == 0 || len(s) > 19 || (s[0] == '0' && (len(s) > 1 || neg)) {
		return 0, false
	}
	var u uint64
	for _, c := range s {
		if !isDigit(c) {
			return 0, false
		}
		u = u*10 + uint64(c-'0')
	}
	if u > 1<<63-1 {
		return 0, false
	}
	if neg {
		return -int64(u), true
	}
	return int64(u), true
}

func putUint(dst []byte, v uint64, w int) []byte {
	switch w {
	case 1:
		return append(dst, byte(v))
	case 2:
		return binary.BigEndian.AppendUint16(dst, uint16(v))
	case 4:
		return binary.BigEndian.AppendUint32(dst, uint32(v))
	}
	return binary.BigEndian.AppendUint64(dst, v)
}

func getUint(b []byte, w int) uint64 {
	switch w {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.BigEndian.Uint16(b))
	case 4:
		return uint64(binary.BigEndian.Uint32(b))
	}
	return binary.BigEndian.Uint64(b)
}

func width(max uint64) int {
	switch {
	case max < 1<<8:
		return 1
	case max < 1<<16:
		return 2
	case max < 1<<32:
		return 4
	}
	return 8
}
