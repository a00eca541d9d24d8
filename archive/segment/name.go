package segment

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Ext is the object name suffix of v1 segments.
const Ext = ".cseg"

// HourPrefix is the key prefix of one retention class, kind and event hour:
// "<class>/<kind>/<yyyy>/<mm>/<dd>/<hh>/"; with kind "", that of the
// class's segments of every kind, "<class>/<yyyy>/<mm>/<dd>/<hh>/" (a
// kind name never starts with a digit, so the two never collide).
func HourPrefix(class, kind string, hour time.Time) string {
	if kind == "" {
		return fmt.Sprintf("%s/%s/", class, hour.UTC().Format("2006/01/02/15"))
	}
	return fmt.Sprintf("%s/%s/%s/", class, kind, hour.UTC().Format("2006/01/02/15"))
}

// HourPrefixes are the prefixes under which segments that may hold events
// of the given kinds of one class and hour are stored: each kind's own,
// then that of segments of every kind.
func HourPrefixes(class string, kinds []string, hour time.Time) []string {
	out := make([]string, 0, len(kinds)+1)
	for _, k := range kinds {
		out = append(out, HourPrefix(class, k, hour))
	}
	return append(out, HourPrefix(class, "", hour))
}

// Name is the object key of a segment. It is a function of the header alone
// (class, kind, hour, topic, partition, first offset), so replaying the same
// records after a crash produces the same name:
//
//	<class>/<kind>/<yyyy>/<mm>/<dd>/<hh>/<topic>+<partition>+<first offset, 20 digits>.cseg
//
// and for a segment of every kind (Kind empty):
//
//	<class>/<yyyy>/<mm>/<dd>/<hh>/<topic>+<partition>+<first offset, 20 digits>.cseg
func Name(m *Meta) string {
	return fmt.Sprintf("%s%s+%d+%020d%s", HourPrefix(m.Class, m.Kind, m.Hour), m.Topic, m.Partition, m.FirstOffset, Ext)
}

// ParseName returns what a segment's object name encodes: class, kind
// (empty for a segment of every kind), hour, topic, partition and first
// offset (the other Meta fields are zero). It accepts exactly the names
// Name produces.
func ParseName(name string) (Meta, error) {
	bad := func(why string) (Meta, error) {
		return Meta{}, fmt.Errorf("segment name %q: %s", name, why)
	}
	parts := strings.Split(name, "/")
	kind := ""
	switch len(parts) {
	case 7:
		kind = parts[1]
		parts = append(parts[:1], parts[2:]...)
	case 6:
	default:
		return bad("not <class>/[<kind>/]<yyyy>/<mm>/<dd>/<hh>/<topic>+<partition>+<offset>" + Ext)
	}
	h, err := time.Parse("2006/01/02/15", strings.Join(parts[1:5], "/"))
	if err != nil {
		return bad("the hour is not yyyy/mm/dd/hh")
	}
	base, ok := strings.CutSuffix(parts[5], Ext)
	if !ok {
		return bad("no " + Ext + " suffix")
	}
	// Kafka topic names cannot hold '+' ([a-zA-Z0-9._-]), so the last
	// two separate the partition and the offset.
	i := strings.LastIndexByte(base, '+')
	j := -1
	if i > 0 {
		j = strings.LastIndexByte(base[:i], '+')
	}
	if j <= 0 {
		return bad("the file name is not <topic>+<partition>+<offset>")
	}
	p, perr := strconv.ParseInt(base[j+1:i], 10, 32)
	off, oerr := strconv.ParseInt(base[i+1:], 10, 64)
	if perr != nil || oerr != nil || p < 0 || off < 0 || len(base)-i-1 != 20 {
		return bad("partition or offset is not a number (the offset has 20 digits)")
	}
	m := Meta{Class: parts[0], Kind: kind, Hour: h, Topic: base[:j], Partition: int32(p), FirstOffset: off}
	if m.Class == "" || Name(&m) != name {
		return bad("not in canonical form")
	}
	return m, nil
}
