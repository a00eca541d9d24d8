package query

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/custodylog/custody/crypto/seal"
)

// TestHourHitsSpillAndDedupe feeds sorted runs from several goroutines
// under a budget that forces spills, with repeated IDs, and checks the
// merged output is sorted and each ID appears once.
func TestHourHitsSpillAndDedupe(t *testing.T) {
	base := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	for _, budget := range []int64{0, 1, 4 << 10} {
		hh := &hourHits{budget: budget, dir: t.TempDir()}
		r := rand.New(rand.NewPCG(1, uint64(budget)))
		var all []hit
		var mu sync.Mutex
		var wg sync.WaitGroup
		for g := 0; g < 8; g++ {
			var run []hit
			for i := 0; i < 300; i++ {
				n := r.IntN(1000) // repeats across and within runs
				x := hit{t: base.Add(time.Duration(n) * time.Millisecond), key: fmt.Sprintf("id-%04d", n), line: []byte(fmt.Sprintf(`{"id":"id-%04d"}`, n))}
				run = append(run, x)
			}
			slices.SortFunc(run, compareHits)
			mu.Lock()
			all = append(all, run...)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := hh.add(run); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if budget == 1 && len(hh.files) == 0 {
			t.Fatal("a 1-byte budget did not spill")
		}
		var st counters
		var got []string
		err := hh.each(func(x hit) error {
			got = append(got, x.key)
			if want := fmt.Sprintf(`{"id":"%s"}`, x.key); string(x.line) != want {
				t.Fatalf("line %q for %s", x.line, x.key)
			}
			return nil
		}, &st)
		hh.close()
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(all, compareHits)
		var want []string
		for i, x := range all {
			if i == 0 || x.key != all[i-1].key {
				want = append(want, x.key)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("budget %d: merged %d IDs; want %d sorted and distinct", budget, len(got), len(want))
		}
		if int(st.dupes.Load()) != len(all)-len(want) {
			t.Errorf("budget %d: %d dupes counted; want %d", budget, st.dupes.Load(), len(all)-len(want))
		}
	}
}

func TestParseTimeAndIP(t *testing.T) {
	f := func(s string, end bool, want string) {
		t.Helper()
		got, err := ParseTime(s, end)
		if err != nil || got.Format(time.RFC3339Nano) != want {
			t.Errorf("ParseTime(%q, %v) = %v, %v; want %s", s, end, got, err, want)
		}
	}
	f("2026-11-03", false, "2026-11-03T00:00:00Z")
	f("2026-11-03", true, "2026-11-04T00:00:00Z")
	f("2026-11-03T05:00:00+02:00", true, "2026-11-03T03:00:00Z")
	if _, err := ParseTime("last week", false); err == nil {
		t.Error("ParseTime(last week) accepted")
	}
	for in, want := range map[string]string{"203.0.113.7": "203.0.113.7/32", "::ffff:203.0.113.7": "203.0.113.7/32", "fe80::1%eth0": "fe80::1/128",
		"198.51.100.77/24": "198.51.100.0/24", "::ffff:198.51.100.0/120": "198.51.100.0/24", "2001:db8::/32": "2001:db8::/32"} {
		p, err := ParseIP(in)
		if err != nil || p.String() != want {
			t.Errorf("ParseIP(%q) = %v, %v; want %s", in, p, err, want)
		}
	}
	for _, bad := range []string{"", "999.1.1.1", "10.0.0.0/33", "::ffff:0:0/90", "host"} {
		if _, err := ParseIP(bad); err == nil {
			t.Errorf("ParseIP(%q) accepted", bad)
		}
	}
}

// Spill files hold matched events, so they are sealed under a key that
// lives only in memory: no plaintext reaches the disk, and a changed byte
// fails the merge rather than changing a result.
func TestSpillIsSealed(t *testing.T) {
	base := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	const marker = "203.0.113.77-marker"
	hh := &hourHits{budget: 1, dir: t.TempDir()}
	var run []hit
	for i := 0; i < 200; i++ {
		run = append(run, hit{t: base.Add(time.Duration(i) * time.Second), key: fmt.Sprintf("k%03d", i), line: []byte(`{"ip":"` + marker + `"}`)})
	}
	if err := hh.add(run); err != nil {
		t.Fatal(err)
	}
	if len(hh.files) != 1 {
		t.Fatalf("%d spill files; want 1", len(hh.files))
	}
	f := hh.files[0].f
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	raw := make([]byte, fi.Size())
	if _, err := f.ReadAt(raw, 0); err != nil {
		t.Fatal(err)
	}
	if len(raw) < 200*len(marker) {
		t.Fatalf("spill file is %d bytes; too small to hold the run", len(raw))
	}
	if bytes.Contains(raw, []byte(marker)) || bytes.Contains(raw, []byte("k000")) {
		t.Fatal("the spill file holds plaintext")
	}
	n := 0
	if err := hh.each(func(hit) error { n++; return nil }, &counters{}); err != nil || n != 200 {
		t.Fatalf("merge of the sealed spill: %d hits, %v; want 200", n, err)
	}
	raw[len(raw)/2] ^= 1
	if _, err := f.WriteAt(raw[len(raw)/2:len(raw)/2+1], int64(len(raw)/2)); err != nil {
		t.Fatal(err)
	}
	if err := hh.each(func(hit) error { return nil }, &counters{}); !errors.Is(err, seal.ErrAuth) {
		t.Fatalf("merge of a changed spill file: %v; want an authentication failure", err)
	}
	hh.close()
}
