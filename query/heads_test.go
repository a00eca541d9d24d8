package query

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custodylog/custody/archive/store"
)

// countingStore counts the ranged GETs, and those that start at 0 (a
// segment's head).
type countingStore struct {
	*store.Store
	gets, heads atomic.Int64
}

func (c *countingStore) GetRange(ctx context.Context, name string, off, n int64) (io.ReadCloser, error) {
	c.gets.Add(1)
	if off == 0 {
		c.heads.Add(1)
	}
	return c.Store.GetRange(ctx, name, off, n)
}

// retainTestClass is expires for the test archive.
var retainTestClass = testRetention.SegmentRetainUntil

// TestHeadCache: with the head cache, a query repeated decides every
// segment without a request for its head and answers the same; a
// damaged, swapped or foreign file is refetched from the store, never
// trusted; heads of ended retention and over the bound are deleted.
func TestHeadCache(t *testing.T) {
	fx := archiveCorpus(t)
	dir := filepath.Join(t.TempDir(), "heads")
	hc, err := OpenHeadCache(HeadCacheConfig{Dir: dir, MaxBytes: 1 << 30}, retainTestClass)
	if err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{Store: fx.store}
	eng := NewEngine(Defaults(), cs, fx.keys, []string{"security"})
	eng.UseHeadCache(hc)
	p, _ := ParseIP("203.0.113.7")
	needle := Filter{From: fx.base.Add(-time.Hour), To: fx.base.Add(8 * 24 * time.Hour), IP: &p}
	want := strings.Join(reference(fx.evs, needle), ",")
	check := func(round string) Stats {
		t.Helper()
		cs.gets.Store(0)
		cs.heads.Store(0)
		got, stats, err := run(t, eng, needle, Options{})
		if err != nil || len(stats.Failed) > 0 || strings.Join(got, ",") != want {
			t.Fatalf("%s: %d events, %v, failed %v; want %d", round, len(got), err, stats.Failed, len(reference(fx.evs, needle)))
		}
		return stats
	}
	cold := check("cold")
	if cold.Pruned == 0 || cs.heads.Load() != cold.Total {
		t.Fatalf("cold: %d heads fetched for %d segments (%d pruned)", cs.heads.Load(), cold.Total, cold.Pruned)
	}
	st := hc.Stats()
	if st.Heads != int(cold.Total) || st.Misses != cold.Total || st.Hits != 0 {
		t.Fatalf("after the cold query the cache holds %+v; want %d heads", st, cold.Total)
	}
	warm := check("warm")
	// Only the bodies of the segments read: no head, and nothing at all
	// for the segments ruled out.
	if cs.heads.Load() != 0 || cs.gets.Load() != warm.Scanned || warm.Bytes >= cold.Bytes {
		t.Fatalf("warm: %d head GETs, %d GETs for %d bodies, %d bytes (cold %d)", cs.heads.Load(), cs.gets.Load(), warm.Scanned, warm.Bytes, cold.Bytes)
	}
	if st := hc.Stats(); st.Hits != cold.Total {
		t.Fatalf("warm: %+v; want %d hits", st, cold.Total)
	}
	// The engine remembered every segment's data key: the warm query
	// opened none (dekMemo).
	if n := eng.deks.lru.Len(); int64(n) != cold.Total {
		t.Errorf("%d data keys remembered; want %d, one a segment", n, cold.Total)
	}

	// Damage: a flipped byte in one head's sealed index, another head's
	// file moved over a third's (its name field still its own), and that
	// name field rewritten too (it then fails the segment's
	// authentication, which binds the object name).
	var names []string
	for o, err := range fx.store.List(context.Background(), "security/") {
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, o.Name)
	}
	flip := hc.path(names[0])
	b, _ := os.ReadFile(flip)
	b[len(b)-80] ^= 1
	os.WriteFile(flip, b, 0o600)
	other, _ := os.ReadFile(hc.path(names[1]))
	os.WriteFile(hc.path(names[2]), other, 0o600)
	check("one flipped, one moved")
	if st := hc.Stats(); st.Invalid != 2 {
		t.Fatalf("after the damage: %+v; want 2 invalid", st)
	}
	if len(names[1]) == len(names[3]) {
		renamed := strings.Replace(string(other), names[1], names[3], 1)
		os.WriteFile(hc.path(names[3]), []byte(renamed), 0o600)
		check("renamed")
		if st := hc.Stats(); st.Invalid != 3 {
			t.Fatalf("after the rename: %+v; want 3 invalid", st)
		}
	}
	cs.heads.Store(0)
	check("repaired")
	if cs.heads.Load() != 0 {
		t.Fatalf("the damaged heads were not cached again: %d head GETs", cs.heads.Load())
	}

	// Reopened: the same heads; a torn head and a temporary file left by
	// a crash are deleted; files the cache did not write are left alone.
	stray := filepath.Join(dir, "ab", strings.Repeat("ab", 32))
	tmp := filepath.Join(dir, "ab", ".tmp-123")
	os.MkdirAll(filepath.Dir(stray), 0o700)
	os.WriteFile(stray, []byte("CSTHEAD1 torn"), 0o600)
	os.WriteFile(tmp, []byte("half a head"), 0o600)
	foreign := []string{filepath.Join(dir, "README"), filepath.Join(dir, "ab", "notes.txt"), filepath.Join(dir, "keys", strings.Repeat("cd", 32))}
	for _, f := range foreign {
		os.MkdirAll(filepath.Dir(f), 0o700)
		os.WriteFile(f, []byte("not the cache's"), 0o600)
	}
	again, err := OpenHeadCache(HeadCacheConfig{Dir: dir, MaxBytes: 1 << 30}, retainTestClass)
	if err != nil {
		t.Fatal(err)
	}
	if s := again.Stats(); s.Heads != int(cold.Total) || s.Bytes != hc.Stats().Bytes {
		t.Fatalf("reopened: %+v; want %+v", s, hc.Stats())
	}
	for _, f := range []string{stray, tmp} {
		if _, err := os.Stat(f); !os.IsNotExist(err) {
			t.Errorf("%s survived the reopening: %v", f, err)
		}
	}
	for _, f := range foreign {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("a file the cache did not write was touched: %v", err)
		}
		os.Remove(f)
	}
	os.Remove(filepath.Join(dir, "keys"))

	// The bound: a third of what is held, least recently used out first.
	// names[0] was written first; used now, it must stay.
	third := again.Stats().Bytes / 3
	var o0 store.Object
	for o, err := range fx.store.List(context.Background(), names[0]) {
		if err != nil {
			t.Fatal(err)
		}
		o0 = o
	}
	if again.get(names[0], o0.Size) == nil {
		t.Fatalf("%s is not in the reopened cache", names[0])
	}
	again.mu.Lock()
	again.max = third
	again.shrinkLocked()
	again.mu.Unlock()
	if s := again.Stats(); s.Bytes > third || s.Evicted == 0 || countFiles(t, dir) != s.Heads {
		t.Fatalf("bounded to %d bytes: %+v, %d files", third, s, countFiles(t, dir))
	}
	if again.get(names[0], o0.Size) == nil {
		t.Errorf("the most recently used head was evicted")
	}

	// Retention: a year on, every head has expired; opening deletes them,
	// and a head whose retention has ended is never stored.
	later := func(name string) time.Time { return retainTestClass(name).AddDate(-1, 0, 0) }
	gone, err := OpenHeadCache(HeadCacheConfig{Dir: dir, MaxBytes: 1 << 30}, later)
	if err != nil {
		t.Fatal(err)
	}
	if s := gone.Stats(); s.Heads != 0 || s.Bytes != 0 || countFiles(t, dir) != 0 {
		t.Fatalf("after every retention ended: %+v, %d files", s, countFiles(t, dir))
	}
	eng.UseHeadCache(gone)
	check("expired")
	if s := gone.Stats(); s.Heads != 0 || countFiles(t, dir) != 0 {
		t.Fatalf("heads past their retention were stored: %+v", s)
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

func TestHeadCacheConfig(t *testing.T) {
	for _, tc := range []struct {
		c    HeadCacheConfig
		want string
	}{
		{HeadCacheConfig{}, ""},
		{HeadCacheConfig{Dir: "/var/cache/custody/heads", MaxBytes: 1 << 30}, ""},
		{HeadCacheConfig{Dir: "/x"}, "head_cache.max_bytes: 0 B is below the 1 MiB minimum"},
		{HeadCacheConfig{Dir: "/x", MaxBytes: 1000}, "head_cache.max_bytes: 1000 B is below the 1 MiB minimum"},
	} {
		err := tc.c.Validate()
		if got := ""; err != nil {
			got = err.Error()
			if got != tc.want {
				t.Errorf("%+v: %q; want %q", tc.c, got, tc.want)
			}
		} else if tc.want != "" {
			t.Errorf("%+v: accepted; want %q", tc.c, tc.want)
		}
	}
}
