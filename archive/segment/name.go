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
// "<class>/<kind>/<yyyy>/<mm>/<dd>/<hh>/".
func HourPrefix(class, kind string, hour time.Time) string {
	return fmt.Sprintf("%s/%s/%s/", class, kind, hour.UTC().Format("2006/01/02/15"))
}

// Name is the object key of a segment. It is a function of the header alone
// (class, kind, hour, topic, partition, first offset), so replaying the same
// records after a crash produces the same name:
//
//	<class>/<kind>/<yyyy>/<mm>/<dd>/<hh>/<topic>+<partition>+<first offset, 20 digits>.cseg
func Name(m *Meta) string {
	return fmt.Sprintf("%s%s+%d+%020d%s", HourPrefix(m.Class, m.Kind, m.Hour), m.Topic, m.Partition, m.FirstOffset, Ext)
}

// NameParts is what an object name says about its segment.
type NameParts struct {
	Class, Kind string
	Hour        time.Time
	Topic       string
	Partition   int32
	FirstOffset int64
}

// ParseName splits an object key made by Name. It lets a lister prune by
// hour and resume by offset without fetching the object.
func ParseName(name string) (NameParts, error) {
	var p NameParts
	parts := strings.Split(name, "/")
	if len(parts) != 7 || !strings.HasSuffix(parts[6], Ext) {
		return p, fmt.Errorf("object name %q is not <class>/<kind>/<yyyy>/<mm>/<dd>/<hh>/<topic>+<partition>+<offset>%s", name, Ext)
	}
	p.Class, p.Kind = parts[0], parts[1]
	h, err := time.Parse("2006/01/02/15", strings.Join(parts[2:6], "/"))
	if err != nil {
		return p, fmt.Errorf("object name %q: bad hour path: %v", name, err)
	}
	p.Hour = h
	base := strings.TrimSuffix(parts[6], Ext)
	i := strings.LastIndexByte(base, '+')
	j := strings.LastIndexByte(base[:max(i, 0)], '+')
	if i < 0 || j < 0 {
		return p, fmt.Errorf("object name %q: want <topic>+<partition>+<offset>", name)
	}
	p.Topic = base[:j]
	part, err := strconv.ParseInt(base[j+1:i], 10, 32)
	if err != nil || part < 0 {
		return p, fmt.Errorf("object name %q: bad partition %q", name, base[j+1:i])
	}
	p.Partition = int32(part)
	off := base[i+1:]
	if len(off) != 20 {
		return p, fmt.Errorf("object name %q: offset %q is not 20 digits", name, off)
	}
	if p.FirstOffset, err = strconv.ParseInt(off, 10, 64); err != nil || p.FirstOffset < 0 {
		return p, fmt.Errorf("object name %q: bad offset %q", name, off)
	}
	return p, nil
}
