package query

import (
	"bufio"
	"container/heap"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/custodylog/custody/crypto/seal"
)

// hourHits gathers the sorted matches of one hour's segments and replays
// them merged. Past the memory budget it writes what it holds to a
// temporary file as one sorted run, so an hour with more matches than fit
// in memory still comes out in order. Safe for concurrent add.
type hourHits struct {
	budget int64
	dir    string

	mu    sync.Mutex
	runs  [][]hit // sorted, in memory
	bytes int64
	files []spillFile // sorted runs on disk, sealed
}

// spillFile is one sorted run on disk. Its content is sealed (crypto/seal,
// the segment body's AEAD stream) under a key that exists only in this
// process's memory: matched events are plaintext, and a spill file never
// needs to survive a crash, so nothing readable is ever left on the disk.
// The file is unlinked as soon as it is created.
type spillFile struct {
	f      *os.File
	key    []byte
	prefix [seal.NoncePrefixSize]byte
}

// spillAAD labels the spill stream, so a spill can never be mistaken for
// (or spliced into) a segment body sealed under the same construction.
var spillAAD = []byte("custody query spill v1")

const hitOverhead = 64

func (h *hourHits) add(hits []hit) error {
	if len(hits) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs = append(h.runs, hits)
	for _, x := range hits {
		h.bytes += int64(len(x.line) + len(x.key) + hitOverhead)
	}
	if h.budget > 0 && h.bytes > h.budget {
		return h.spill()
	}
	return nil
}

// adopt moves another hourHits' runs and spill files into h (spilling if
// that takes h over its budget); other is empty afterwards.
func (h *hourHits) adopt(other *hourHits) error {
	other.mu.Lock()
	runs, files, n := other.runs, other.files, other.bytes
	other.runs, other.files, other.bytes = nil, nil, 0
	other.mu.Unlock()
	if len(runs) == 0 && len(files) == 0 {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.runs = append(h.runs, runs...)
	h.files = append(h.files, files...)
	h.bytes += n
	if h.budget > 0 && h.bytes > h.budget {
		return h.spill()
	}
	return nil
}

// spill merges the in-memory runs into one file; called with mu held.
// Record: int64 unix nanoseconds, uint16 key length, key, uint32 line length, line.
func (h *hourHits) spill() error {
	f, err := os.CreateTemp(h.dir, "custody-query-*.run")
	if err != nil {
		return fmt.Errorf("cannot spill query results: %w", err)
	}
	os.Remove(f.Name()) // unlinked: the space goes when the file is closed
	sf := spillFile{f: f, key: make([]byte, seal.KeySize)}
	if _, err := rand.Read(sf.key); err != nil {
		f.Close()
		return fmt.Errorf("cannot spill query results: %w", err)
	}
	rand.Read(sf.prefix[:])
	sw, err := seal.NewWriter(f, sf.key, sf.prefix, spillAAD)
	if err != nil {
		f.Close()
		return err
	}
	w := bufio.NewWriterSize(sw, 1<<20)
	var hdr [14]byte
	err = mergeRuns(memSources(h.runs), func(x hit) error {
		binary.BigEndian.PutUint64(hdr[0:8], uint64(x.t.UnixNano()))
		binary.BigEndian.PutUint16(hdr[8:10], uint16(len(x.key)))
		w.Write(hdr[:10])
		w.WriteString(x.key)
		binary.BigEndian.PutUint32(hdr[10:14], uint32(len(x.line)))
		w.Write(hdr[10:14])
		_, err := w.Write(x.line)
		return err
	})
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = sw.Close()
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("cannot spill query results: %w", err)
	}
	h.files = append(h.files, sf)
	h.runs, h.bytes = nil, 0
	return nil
}

// each calls fn for every hit in order, dropping repeated (tenant, ID)
// keys (a repeat has the same time and key, so it sorts next to the first).
func (h *hourHits) each(fn func(hit) error, st *counters) error {
	srcs := memSources(h.runs)
	for _, sf := range h.files {
		if _, err := sf.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		sr, err := seal.NewReader(bufio.NewReaderSize(sf.f, 128<<10), sf.key, sf.prefix, spillAAD)
		if err != nil {
			return err
		}
		srcs = append(srcs, &fileSource{r: bufio.NewReaderSize(sr, 64<<10)})
	}
	var last hit
	first := true
	return mergeRuns(srcs, func(x hit) error {
		if !first && x.key == last.key && x.t.Equal(last.t) {
			st.dupes.Add(1)
			return nil
		}
		first, last = false, x
		return fn(x)
	})
}

// memBytes is what the hour holds in memory (spilled runs excluded).
func (h *hourHits) memBytes() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bytes
}

func (h *hourHits) close() {
	for _, sf := range h.files {
		sf.f.Close()
	}
	h.files = nil
}

// source yields a sorted run.
type source interface {
	next() (hit, bool, error)
}

type memSource struct{ hits []hit }

func (m *memSource) next() (hit, bool, error) {
	if len(m.hits) == 0 {
		return hit{}, false, nil
	}
	x := m.hits[0]
	m.hits = m.hits[1:]
	return x, true, nil
}

func memSources(runs [][]hit) []source {
	var out []source
	for _, r := range runs {
		out = append(out, &memSource{hits: r})
	}
	return out
}

type fileSource struct{ r *bufio.Reader }

func (f *fileSource) next() (hit, bool, error) {
	var hdr [10]byte
	if _, err := io.ReadFull(f.r, hdr[:]); err != nil {
		if err == io.EOF {
			return hit{}, false, nil
		}
		return hit{}, false, err
	}
	key := make([]byte, binary.BigEndian.Uint16(hdr[8:10]))
	if _, err := io.ReadFull(f.r, key); err != nil {
		return hit{}, false, err
	}
	var ln [4]byte
	if _, err := io.ReadFull(f.r, ln[:]); err != nil {
		return hit{}, false, err
	}
	line := make([]byte, binary.BigEndian.Uint32(ln[:]))
	if _, err := io.ReadFull(f.r, line); err != nil {
		return hit{}, false, err
	}
	return hit{t: time.Unix(0, int64(binary.BigEndian.Uint64(hdr[0:8]))).UTC(), key: string(key), line: line}, true, nil
}

// mergeRuns is a k-way merge of sorted sources.
func mergeRuns(srcs []source, fn func(hit) error) error {
	hp := &hitHeap{}
	for _, s := range srcs {
		x, ok, err := s.next()
		if err != nil {
			return err
		}
		if ok {
			hp.items = append(hp.items, heapItem{x, s})
		}
	}
	heap.Init(hp)
	for hp.Len() > 0 {
		top := hp.items[0]
		if err := fn(top.h); err != nil {
			return err
		}
		x, ok, err := top.s.next()
		if err != nil {
			return err
		}
		if ok {
			hp.items[0] = heapItem{x, top.s}
			heap.Fix(hp, 0)
		} else {
			heap.Pop(hp)
		}
	}
	return nil
}

type heapItem struct {
	h hit
	s source
}

type hitHeap struct{ items []heapItem }

func (h *hitHeap) Len() int           { return len(h.items) }
func (h *hitHeap) Less(i, j int) bool { return compareHits(h.items[i].h, h.items[j].h) < 0 }
func (h *hitHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *hitHeap) Push(x any)         { h.items = append(h.items, x.(heapItem)) }
func (h *hitHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}
