package pipeline

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/custodylog/custody/archive/chain"
	"github.com/custodylog/custody/archive/segment"
)

// key is what a buffer (and so a segment) holds: one retention class, one
// event kind and one event hour, of one partition. The kind is empty when
// segments hold every kind (format v3, docs/FORMAT.md v3.10).
type key struct {
	class, kind string
	hour        int64 // Unix seconds of the hour's start
}

func (k key) Hour() time.Time { return time.Unix(k.hour, 0).UTC() }

// String is the key's form in the commit metadata and the chain's counts:
// class/kind/yyyymmddhh, with kind empty for a segment of every kind.
func (k key) String() string {
	return k.class + "/" + k.kind + "/" + k.Hour().Format("2006010215")
}

func parseKey(s string) (key, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return key{}, fmt.Errorf("key %q is not class/kind/yyyymmddhh", s)
	}
	h, err := time.Parse("2006010215", parts[2])
	if err != nil {
		return key{}, fmt.Errorf("key %q: %v", s, err)
	}
	return key{class: parts[0], kind: parts[1], hour: h.Unix()}, nil
}

// buffer accumulates one key's records, in offset order, until it is cut
// into a segment. For format v3 it holds them encoded (col: columnar
// blocks, a tenth of the bytes, and one open block of lines), otherwise
// the records' bytes as they came from Kafka (body).
type buffer struct {
	key     key
	first   int64 // offset of the first record: the segment's name
	last    int64
	count   int64
	col     *segment.Body
	body    [][]byte // canonical events, one per line, in chunks up to bodyChunk
	bodyLen int      // bytes of lines, either way
	bodyCap int
	offsets []int64
	ix      *segment.IndexBuilder
	minTime time.Time
	maxTime time.Time
	opened  time.Time // wall clock, for the age trigger
	// cum is the chain's per-key counts just before the first record
	// (chainState); nil when unknown (dropThrough).
	cum map[key]int64
	// kinds counts the events of each kind, for a key of every kind.
	kinds map[string]int64
}

// bodyChunk is the size of the body's pieces. A buffer grows by whole
// chunks instead of doubling one slice, which would copy every byte again
// at each growth and hold twice the memory while it does.
const bodyChunk = 1 << 20

// firstChunk is the size of a buffer's first chunk.
const firstChunk = 16 << 10

// newBuffer opens a buffer; columnar for a format v3 segment.
func newBuffer(k key, first int64, now time.Time, columnar bool) *buffer {
	b := &buffer{key: k, first: first, ix: segment.NewIndexBuilder(), opened: now}
	if columnar {
		b.col = segment.NewBody()
	}
	return b
}

func (b *buffer) add(offset int64, value []byte, f *fields) error {
	if b.col != nil {
		if err := b.col.Add(value); err != nil {
			return fmt.Errorf("cannot buffer record %d: %w", offset, err)
		}
	} else {
		b.addLine(value)
	}
	if b.count == 0 || f.t.Before(b.minTime) {
		b.minTime = f.t
	}
	if b.count == 0 || f.t.After(b.maxTime) {
		b.maxTime = f.t
	}
	b.bodyLen += len(value) + 1
	b.offsets = append(b.offsets, offset)
	b.last = offset
	b.count++
	if b.key.kind == "" {
		if b.kinds == nil {
			b.kinds = map[string]int64{}
		}
		b.kinds[f.Kind]++
	}
	b.ix.AddIP(f.IP)
	b.ix.Add(segment.FieldLogin, f.Login)
	b.ix.Add(segment.FieldSession, f.Session)
	b.ix.Add(segment.FieldRepo, f.Repo)
	b.ix.Add(segment.FieldTenant, f.Tenant)
	b.ix.Add(segment.FieldApp, f.App)
	return nil
}

// addLine appends one line to the raw body.
func (b *buffer) addLine(value []byte) {
	n := len(value) + 1
	if len(b.body) == 0 || cap(b.body[len(b.body)-1])-len(b.body[len(b.body)-1]) < n {
		// Chunks start small and double up to bodyChunk, so that hundreds of
		// buffers of late hours, each holding a few events, stay cheap.
		size := bodyChunk
		if len(b.body) > 0 {
			size = min(bodyChunk, 2*cap(b.body[len(b.body)-1]))
		} else {
			size = firstChunk
		}
		switch {
		case n > size:
			b.body = append(b.body, make([]byte, 0, n))
		case size == bodyChunk:
			b.body = append(b.body, (*chunks.Get().(*[]byte))[:0])
		default:
			b.body = append(b.body, make([]byte, 0, size))
		}
		b.bodyCap += cap(b.body[len(b.body)-1])
	}
	c := &b.body[len(b.body)-1]
	*c = append(*c, value...)
	*c = append(*c, '\n')
}

// size is the memory the buffer holds, for the memory cap.
func (b *buffer) size() int64 {
	n := int64(b.bodyCap + 8*cap(b.offsets) + b.ix.Size())
	if b.col != nil {
		n += b.col.Size()
	}
	return n
}

// chunks recycles body chunks: a fresh megabyte costs page faults and
// zeroing, which showed up as a tenth of the archiver's CPU.
var chunks = sync.Pool{New: func() any { c := make([]byte, 0, bodyChunk); return &c }}

// release hands the body's chunks back for reuse; b must not be used after.
func (b *buffer) release() {
	for _, c := range b.body {
		if cap(c) == bodyChunk {
			c = c[:0]
			chunks.Put(&c)
		}
	}
	if b.col != nil {
		b.col.Release()
	}
	b.body, b.col = nil, nil
}

// writeBody writes the body to a fresh segment writer.
func (b *buffer) writeBody(w *segment.Writer) error {
	if b.col != nil {
		return w.WriteBody(b.col)
	}
	for _, c := range b.body {
		if _, err := w.Write(c); err != nil {
			return err
		}
	}
	return nil
}

func (b *buffer) meta(topic string, partition int) segment.Meta {
	return segment.Meta{
		Class: b.key.class, Kind: b.key.kind, Hour: b.key.Hour(), Topic: topic, Partition: int32(partition),
		FirstOffset: b.first, LastOffset: b.last, Count: b.count, MinTime: b.minTime, MaxTime: b.maxTime, Kinds: b.kinds,
	}
}

// dropThrough removes the records at or below offset (already stored by
// someone else) and returns what is left, or nil.
func (b *buffer) dropThrough(offset int64) (*buffer, error) {
	if b.last <= offset {
		return nil, nil
	}
	// Rebuild from the kept lines: rare (a fenced duplicate upload), so
	// simplicity beats speed here.
	var lines [][]byte
	if b.col != nil {
		if err := b.col.Lines(func(l []byte) error { lines = append(lines, bytes.Clone(l)); return nil }); err != nil {
			return nil, err
		}
	} else {
		for _, l := range strings.SplitAfter(string(bytes.Join(b.body, nil)), "\n") {
			lines = append(lines, []byte(strings.TrimSuffix(l, "\n")))
		}
	}
	nb := newBuffer(b.key, 0, b.opened, b.col != nil)
	for i, off := range b.offsets {
		if off <= offset {
			continue
		}
		var f fields
		v := lines[i]
		if err := extract(v, map[string]bool{b.key.class: true}, &f); err != nil {
			// It was valid when added; the bytes did not change.
			panic(fmt.Sprintf("pipeline: buffered record %d no longer parses: %v", off, err))
		}
		if nb.count == 0 {
			nb.first = off
		}
		if err := nb.add(off, v, &f); err != nil {
			return nil, err
		}
	}
	return nb, nil
}

// coverage maps each key to the highest offset known to be stored for it.
// Every record of that key at or below it, and at or above the committed
// offset, is in a stored segment.
type coverage map[key]int64

// Commit metadata versions: the key scheme of the partition's segments.
// "v1": one kind per segment; "v2": segments of every kind.
const (
	metadataKinds = "v1"
	metadataEvery = "v2"
)

// metadataVersion is the commit metadata version of a key scheme.
func metadataVersion(every bool) string {
	if every {
		return metadataEvery
	}
	return metadataKinds
}

// encode renders the coverage still relevant at commit offset c (entries
// at or above it) as commit metadata: "v1 class/kind/yyyymmddhh=offset ..."
// for segments of one kind, "v2 class//yyyymmddhh=offset ..." for
// segments of every kind.
func (cv coverage) encode(c int64, every bool) string {
	var b strings.Builder
	b.WriteString(metadataVersion(every))
	for k, off := range cv {
		if off < c {
			continue
		}
		b.WriteByte(' ')
		b.WriteString(k.String())
		b.WriteByte('=')
		b.WriteString(strconv.FormatInt(off, 10))
	}
	return b.String()
}

// prune drops entries below the commit offset c.
func (cv coverage) prune(c int64) {
	for k, off := range cv {
		if off < c {
			delete(cv, k)
		}
	}
}

// decodeCoverage parses commit metadata: the coverage, and the key scheme
// its writer used ("" when there is no metadata).
func decodeCoverage(s string) (coverage, string, error) {
	cv := coverage{}
	if s == "" {
		return cv, "", nil
	}
	f := strings.Fields(s)
	if f[0] != metadataKinds && f[0] != metadataEvery {
		return nil, "", fmt.Errorf("commit metadata %q is not v1 or v2", s)
	}
	for _, e := range f[1:] {
		if strings.HasPrefix(e, chain.HintPrefix) {
			continue // the chain's head, chain.ParseHint
		}
		ks, os, ok := strings.Cut(e, "=")
		if !ok {
			return nil, "", fmt.Errorf("commit metadata entry %q has no =", e)
		}
		k, err := parseKey(ks)
		if err != nil {
			return nil, "", err
		}
		if (k.kind == "") != (f[0] == metadataEvery) {
			return nil, "", fmt.Errorf("commit metadata entry %q does not fit a %s key", e, f[0])
		}
		off, err := strconv.ParseInt(os, 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("commit metadata entry %q: %v", e, err)
		}
		cv[k] = off
	}
	return cv, f[0], nil
}
