package segment

import (
	"fmt"
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
