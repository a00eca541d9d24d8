package segment

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"sort"
	"testing"
)

// TestValueSet checks the open-addressing set against a Go map: 200,000
// adds of 60,000 distinct values (so the table grows many times), and
// values forced onto one hash (the collision path keeps each of them).
func TestValueSet(t *testing.T) {
	seed := maphash.MakeSeed()
	r := rand.New(rand.NewPCG(3, 4))
	var v valueSet
	want := map[string]bool{}
	for i := 0; i < 200000; i++ {
		s := fmt.Sprintf("198.51.%d.%d", r.IntN(300), r.IntN(200))
		if got, isNew := v.add(seed, s), !want[s]; got != isNew {
			t.Fatalf("add(%q) = %v; want %v", s, got, isNew)
		}
		want[s] = true
	}
	// Three values under one hash, each added twice.
	for _, s := range []string{"a", "b", "c", "a", "b", "c"} {
		if got, isNew := v.addHash(42, "collide-"+s), !want["collide-"+s]; got != isNew {
			t.Fatalf("addHash(42, %q) = %v; want %v", s, got, isNew)
		}
		want["collide-"+s] = true
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
	if n := len(v.slots); n&(n-1) != 0 || 2*len(v.spans) > n {
		t.Fatalf("%d slots for %d values: not a power of two at most half full", n, len(v.spans))
	}
}
