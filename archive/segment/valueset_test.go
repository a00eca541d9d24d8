package segment

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestValueSet checks the open-addressing set against a Go map: 200,000
// adds of 60,000 distinct values (so the table grows many times), with
// the real hash and with hashes forced to collide (every value on a few
// hashes and tags: probing and the value comparison keep each value once).
func TestValueSet(t *testing.T) {
	for name, hash := range map[string]func([]byte) uint64{
		"maphash": nil,
		"collide": func(b []byte) uint64 { return uint64(len(b)%3) * 0x9e3779b97f4a7c15 },
	} {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(3, 4))
			seed := maphash.MakeSeed()
			v := valueSet{hash: hash}
			want := map[string]bool{}
			n := 200000
			if hash != nil {
				n = 6000 // every probe walks the cluster: quadratic
			}
			for i := 0; i < n; i++ {
				s := fmt.Sprintf("198.51.%d.%d", r.IntN(300), r.IntN(200))
				if got, isNew := v.add(seed, s), !want[s]; got != isNew {
					t.Fatalf("add(%q) = %v; want %v", s, got, isNew)
				}
				want[s] = true
			}
			if v.len() != len(want) {
				t.Fatalf("len = %d; want %d", v.len(), len(want))
			}
			var got, all []string
			v.each(func(b []byte) { got = append(got, string(b)) })
			for s := range want {
				all = append(all, s)
			}
			sort.Strings(got)
			sort.Strings(all)
			if fmt.Sprint(got) != fmt.Sprint(all) {
				t.Fatalf("each yields %d values, not the %d added", len(got), len(all))
			}
			if m := len(v.slots); m&(m-1) != 0 || 4*len(v.spans) > 3*m {
				t.Fatalf("%d slots for %d values: not a power of two at most three quarters full", m, len(v.spans))
			}
		})
	}
}
