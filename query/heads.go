package query

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/custodylog/custody/internal/bytesize"
)

// HeadCacheConfig is `query.head_cache` (docs/QUERY.md §6).
type HeadCacheConfig struct {
	// Dir holds the cache, relative to the configuration file's
	// directory; empty turns it off. It must not be shared by two
	// processes.
	Dir string `yaml:"dir"`
	// MaxBytes bounds the files' total size; the least recently used
	// heads go first.
	MaxBytes bytesize.Size `yaml:"max_bytes"`
}

// Validate reports each problem as "key: reason".
func (c *HeadCacheConfig) Validate() error {
	if c.Dir == "" {
		return nil
	}
	if c.MaxBytes < 1<<20 {
		return fmt.Errorf("head_cache.max_bytes: %s is below the 1 MiB minimum", c.MaxBytes)
	}
	return nil
}

// HeadCache keeps segments' heads (preamble, header and sealed index:
// what pruning reads) on local disk, exactly as stored, so that a query
// over many hours decides most segments without a request to the store.
// A needle query's time is in those requests, one per segment, not in
// their bytes (docs/BENCHMARKS.md).
//
// What it holds is the stored ciphertext: the index stays sealed to the
// period's key, so the cache reveals no more than read access to the
// bucket does, and shredding a period's key makes its cached heads
// unreadable as it makes the segments. Each head is also deleted from the
// cache when its segment's retention ends (the expires function), whether
// or not it was used since. A cached head is used only for an object the
// store still lists, and only if it opens: the segment's authentication
// binds the object name, so a corrupt, truncated or swapped file fails
// and the head is fetched again (OpenStored).
//
// Objects are written once (uploads are conditional on the name being
// free), so a name and a size identify a head. Safe for concurrent use.
// Files are written to a temporary name and renamed, without fsync: a
// file torn by a crash fails its checks and is fetched again.
type HeadCache struct {
	dir     string
	max     int64
	expires func(name string) time.Time
	now     func() time.Time

	mu      sync.Mutex
	entries map[string]*list.Element // by object name; values *headEntry
	lru     list.List                // front: most recently used
	size    int64                    // file bytes held
	swept   time.Time

	hits, misses, evicted, invalid atomic.Int64
}

type headEntry struct {
	name    string
	objSize int64
	file    int64 // bytes on disk
}

// headMagic starts every cache file: "custody head cache v1".
const headMagic = "CSTHEAD1"

// OpenHeadCache opens (creating it, mode 0700) the cache in c.Dir and
// takes stock of the heads already there: those expired, unreadable or
// over the size bound are deleted. expires says when a segment's
// retention ends (its class's RetainUntil); a name it cannot place should
// give a time in the past.
func OpenHeadCache(c HeadCacheConfig, expires func(name string) time.Time) (*HeadCache, error) {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create the head cache %s: %w", c.Dir, err)
	}
	h := &HeadCache{dir: c.Dir, max: int64(c.MaxBytes), expires: expires, now: time.Now, entries: map[string]*list.Element{}}
	type found struct {
		e   headEntry
		mod time.Time
	}
	var all []found
	// Only what the cache writes is looked at, or deleted: files named by
	// 64 hex digits (or left temporary, ".tmp-*") in directories named
	// by 2. Anything else in the directory is left alone, so a dir set
	// by mistake to a directory of other files loses none of them.
	err := filepath.WalkDir(c.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != c.Dir && !isHex(d.Name(), 2) {
				return filepath.SkipDir
			}
			return nil
		}
		if filepath.Dir(path) == c.Dir {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".tmp-") {
			os.Remove(path) // a write a crash interrupted
			return nil
		}
		if !isHex(d.Name(), 64) {
			return nil
		}
		name, objSize, ok := readHeadName(path)
		info, ierr := d.Info()
		if !ok || ierr != nil || d.Name() != headFile(name) {
			os.Remove(path) // torn, or not the head it is named for
			return nil
		}
		all = append(all, found{headEntry{name: name, objSize: objSize, file: info.Size()}, info.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cannot read the head cache %s: %w", c.Dir, err)
	}
	// Oldest first, so that the most recently written end up in front.
	slices.SortFunc(all, func(a, b found) int { return a.mod.Compare(b.mod) })
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range all {
		e := f.e
		h.entries[e.name] = h.lru.PushFront(&e)
		h.size += e.file
	}
	h.sweepLocked()
	h.shrinkLocked()
	return h, nil
}

// headFile is the file name of a head: the SHA-256 of its object name,
// so that names of any length and character fit any file system.
func headFile(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func (h *HeadCache) path(name string) string {
	f := headFile(name)
	return filepath.Join(h.dir, f[:2], f)
}

// isHex reports whether s is n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// readHeadName reads a cache file's object name and size.
func readHeadName(path string) (name string, objSize int64, ok bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, false
	}
	defer f.Close()
	var pre [len(headMagic) + 8 + 2]byte
	if _, err := io.ReadFull(f, pre[:]); err != nil || string(pre[:len(headMagic)]) != headMagic {
		return "", 0, false
	}
	objSize = int64(binary.BigEndian.Uint64(pre[len(headMagic):]))
	n := int(binary.BigEndian.Uint16(pre[len(headMagic)+8:]))
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		return "", 0, false
	}
	return string(b), objSize, true
}

// get returns the cached head of the object, or nil.
func (h *HeadCache) get(name string, objSize int64) []byte {
	h.mu.Lock()
	el, ok := h.entries[name]
	if ok {
		h.lru.MoveToFront(el)
	}
	h.mu.Unlock()
	if !ok || el.Value.(*headEntry).objSize != objSize {
		h.misses.Add(1)
		return nil
	}
	if !h.now().Before(h.expires(name)) { // not swept yet
		h.mu.Lock()
		if el, ok := h.entries[name]; ok {
			h.removeLocked(el)
		}
		h.mu.Unlock()
		h.misses.Add(1)
		return nil
	}
	b, err := os.ReadFile(h.path(name))
	head, ok := parseHeadFile(b, name, objSize)
	if err != nil || !ok {
		h.drop(name)
		h.misses.Add(1)
		return nil
	}
	h.hits.Add(1)
	return head
}

// parseHeadFile checks a cache file's framing and returns the head.
func parseHeadFile(b []byte, name string, objSize int64) ([]byte, bool) {
	p := len(headMagic) + 8 + 2
	if len(b) < p || string(b[:len(headMagic)]) != headMagic || int64(binary.BigEndian.Uint64(b[len(headMagic):])) != objSize {
		return nil, false
	}
	n := int(binary.BigEndian.Uint16(b[len(headMagic)+8:]))
	if len(b) < p+n || string(b[p:p+n]) != name {
		return nil, false
	}
	return b[p+n:], true
}

// put keeps the head of an object whose head has just opened (so was
// authentic). An error is the disk's; the query goes on without the cache.
func (h *HeadCache) put(name string, objSize int64, head []byte) error {
	if len(name) > 1<<16-1 || !h.now().Before(h.expires(name)) {
		return nil
	}
	b := make([]byte, 0, len(headMagic)+8+2+len(name)+len(head))
	b = append(b, headMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(objSize))
	b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
	b = append(b, name...)
	b = append(b, head...)
	path := h.path(name)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("cannot write the head of %s to the cache: %w", name, err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("cannot write the head of %s to the cache: %w", name, err)
	}
	_, werr := tmp.Write(b)
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cannot write the head of %s to the cache: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("cannot write the head of %s to the cache: %w", name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.entries[name]; ok { // two queries fetched it at once
		h.size -= el.Value.(*headEntry).file
		h.lru.Remove(el)
	}
	h.entries[name] = h.lru.PushFront(&headEntry{name: name, objSize: objSize, file: int64(len(b))})
	h.size += int64(len(b))
	if h.now().Sub(h.swept) >= time.Hour {
		h.sweepLocked()
	}
	h.shrinkLocked()
	return nil
}

// drop deletes a head that failed its checks.
func (h *HeadCache) drop(name string) {
	h.invalid.Add(1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if el, ok := h.entries[name]; ok {
		h.removeLocked(el)
	}
}

func (h *HeadCache) removeLocked(el *list.Element) {
	e := el.Value.(*headEntry)
	h.lru.Remove(el)
	delete(h.entries, e.name)
	h.size -= e.file
	os.Remove(h.path(e.name))
}

// sweepLocked deletes the heads whose segments' retention has ended.
func (h *HeadCache) sweepLocked() {
	now := h.now()
	h.swept = now
	for el := h.lru.Front(); el != nil; {
		next := el.Next()
		if !now.Before(h.expires(el.Value.(*headEntry).name)) {
			h.removeLocked(el)
		}
		el = next
	}
}

// shrinkLocked deletes the least recently used heads until the cache is
// within its bound.
func (h *HeadCache) shrinkLocked() {
	for h.size > h.max && h.lru.Len() > 0 {
		h.removeLocked(h.lru.Back())
		h.evicted.Add(1)
	}
}

// Register exports the cache's counters to r.
func (h *HeadCache) Register(r prometheus.Registerer) error {
	load := func(v *atomic.Int64) func() float64 { return func() float64 { return float64(v.Load()) } }
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "custody_query_head_cache_hits_total",
			Help: "Segment heads read from the local head cache."}, load(&h.hits)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "custody_query_head_cache_misses_total",
			Help: "Segment heads fetched from the store because the head cache did not hold them."}, load(&h.misses)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "custody_query_head_cache_evictions_total",
			Help: "Segment heads deleted from the head cache to stay within max_bytes."}, load(&h.evicted)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "custody_query_head_cache_invalid_total",
			Help: "Cached segment heads that failed their checks and were fetched again."}, load(&h.invalid)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custody_query_head_cache_bytes",
			Help: "Bytes of segment heads in the head cache."}, func() float64 { return float64(h.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "custody_query_head_cache_max_bytes",
			Help: "The head cache's bound, query.head_cache.max_bytes."}, func() float64 { return float64(h.max) }),
	} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("cannot register the head cache's metrics: %w", err)
		}
	}
	return nil
}

// HeadCacheStats are the cache's counters since it was opened, and what
// it holds now.
type HeadCacheStats struct {
	Hits, Misses, Evicted, Invalid int64
	Heads                          int
	Bytes                          int64
}

// Stats returns the counters.
func (h *HeadCache) Stats() HeadCacheStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HeadCacheStats{Hits: h.hits.Load(), Misses: h.misses.Load(), Evicted: h.evicted.Load(), Invalid: h.invalid.Load(), Heads: h.lru.Len(), Bytes: h.size}
}
