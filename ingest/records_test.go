package ingest

import (
	"bytes"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/dataset"
)

// TestRecordsShareArrays checks records.of against RecordOf over the
// realistic dataset and events larger than an array's spare room, and its
// contract: a record handed out is never written again, and appending to
// its value cannot reach the next record's bytes.
func TestRecordsShareArrays(t *testing.T) {
	g := dataset.New(dataset.Options{Seed: 7, Total: 5000, Start: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)})
	var enc records
	var got []Record
	var want [][2][]byte
	for i := 0; i < 5000; i++ {
		e := g.Next()
		if i%997 == 0 {
			e.UserAgent = strings.Repeat("u", 12<<10) // more than the room left in any array
		}
		r := RecordOf(e)
		want = append(want, [2][]byte{bytes.Clone(r.Key), bytes.Clone(r.Value)})
		got = append(got, enc.of(e))
	}
	shared := 0
	for i, r := range got {
		if !bytes.Equal(r.Key, want[i][0]) || !bytes.Equal(r.Value, want[i][1]) {
			t.Fatalf("record %d: got %q %q; want %q %q", i, r.Key, r.Value, want[i][0], want[i][1])
		}
		if cap(r.Value) != len(r.Value) {
			t.Fatalf("record %d: value has capacity %d past its %d bytes: an append would write into the next record", i, cap(r.Value), len(r.Value))
		}
		// The value follows the previous one and its newline in the
		// same array.
		if i > 0 && uintptr(unsafe.Pointer(unsafe.SliceData(got[i-1].Value)))+uintptr(len(got[i-1].Value))+1 == uintptr(unsafe.Pointer(unsafe.SliceData(r.Value))) {
			shared++
		}
	}
	// ~450-byte events in arrays of up to 1 MiB: nearly every record
	// follows another in its array.
	if shared < len(got)*9/10 {
		t.Fatalf("%d of %d records follow the previous one in its array; want most", shared, len(got))
	}
	if _, err := event.Parse(got[len(got)-1].Value); err != nil {
		t.Fatalf("last record does not parse: %v", err)
	}
}
