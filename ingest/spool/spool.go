// Package spool is the durable on-disk queue that ingest and the agent use
// while Kafka is unavailable: append-only files of CRC-framed records, a
// persisted read cursor, and a size cap that turns into backpressure.
//
// Crash contract: Append returns only after its records and their file are
// fsynced, so an acknowledged record survives kill -9 and power loss. Ack
// persists the cursor with write-temp, fsync, rename, fsync-directory, so
// after a crash reading resumes at the last acknowledged cursor or, if the
// crash came between a Kafka acknowledgement and Ack, slightly before it:
// records may be delivered twice, never lost. A record torn by a crash
// during Append (never acknowledged) is cut off when the spool is opened.
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/custodylog/custody/internal/atomicfile"
)

// ErrLocked is returned by Open when another process has the spool open.
var ErrLocked = errors.New("spool is in use by another process")

// ErrFull is returned by Append when the records would take the spool
// past its size cap. Callers must push back on their senders.
var ErrFull = errors.New("spool is full")

const (
	frameSize       = 8        // uint32 length ‖ uint32 CRC-32C of the payload
	maxRecord       = 16 << 20 // larger lengths can only be corruption
	fileSizeDefault = 64 << 20
	ext             = ".spool"
	cursorName      = "cursor"
	maxBatchLen     = 4 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// rollSize is the file size past which Append starts a new file; a
// variable so tests can exercise rolling without writing 64 MiB.
var rollSize int64 = fileSizeDefault

// Cursor is a position in the spool: a file sequence number and offset.
type Cursor struct {
	Seq uint64
	Off int64
}

// Spool is safe for concurrent Appends; Read and Ack belong to a single
// drainer.
type Spool struct {
	dir      string
	maxBytes int64
	lock     *os.File // holds an exclusive flock for the spool's lifetime

	mu     sync.Mutex
	seqs   []uint64 // files present, ascending
	w      *os.File // the last file, open for appending
	wSize  int64
	cursor Cursor
	size   int64         // bytes from cursor to the end
	signal chan struct{} // poked after each Append
}

// Open opens or creates the spool in dir.
func Open(dir string, maxBytes int64) (*Spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("cannot create spool %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open spool lock: %w", err)
	}
	// One process per spool: two appenders would interleave records and
	// two drainers would deliver everything twice.
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("%s: %w", dir, ErrLocked)
	}
	s, err := open(dir, maxBytes)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock = lock
	return s, nil
}

func open(dir string, maxBytes int64) (*Spool, error) {
	s := &Spool{dir: dir, maxBytes: maxBytes, signal: make(chan struct{}, 1)}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("cannot read spool %s: %w", dir, err)
	}
	for _, e := range ents {
		if n, ok := strings.CutSuffix(e.Name(), ext); ok {
			seq, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("spool %s: unexpected file %s", dir, e.Name())
			}
			s.seqs = append(s.seqs, seq)
		}
	}
	sort.Slice(s.seqs, func(i, j int) bool { return s.seqs[i] < s.seqs[j] })
	if err := s.loadCursor(); err != nil {
		return nil, err
	}
	if len(s.seqs) == 0 {
		s.seqs = []uint64{max(s.cursor.Seq, 1)}
	}
	last := s.seqs[len(s.seqs)-1]
	good, err := s.validLength(last)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(s.path(last), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("cannot open spool file: %w", err)
	}
	// Cut a record torn by a crash during Append; it was never acknowledged.
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("cannot repair spool file %s: %w", s.path(last), err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return nil, err
	}
	s.w, s.wSize = f, good
	if err := atomicfile.SyncDir(dir); err != nil {
		f.Close()
		return nil, err
	}
	if s.cursor.Seq < s.seqs[0] {
		s.cursor = Cursor{Seq: s.seqs[0]}
	}
	for _, seq := range s.seqs {
		if seq < s.cursor.Seq {
			continue
		}
		n := s.wSize
		if seq != last {
			fi, err := os.Stat(s.path(seq))
			if err != nil {
				return nil, err
			}
			n = fi.Size()
		}
		if seq == s.cursor.Seq {
			n -= s.cursor.Off
		}
		s.size += n
	}
	return s, nil
}

func (s *Spool) path(seq uint64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", seq, ext))
}

func (s *Spool) loadCursor() error {
	b, err := os.ReadFile(filepath.Join(s.dir, cursorName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read spool cursor: %w", err)
	}
	if _, err := fmt.Sscanf(string(b), "%d %d", &s.cursor.Seq, &s.cursor.Off); err != nil {
		return fmt.Errorf("spool cursor %q is corrupt: %w", b, err)
	}
	return nil
}

// validLength returns the length of the prefix of file seq made of whole,
// CRC-valid records.
func (s *Spool) validLength(seq uint64) (int64, error) {
	f, err := os.Open(s.path(seq))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var off int64
	for {
		p, err := readRecord(r)
		if err != nil {
			return off, nil
		}
		off += int64(frameSize + len(p))
	}
}

func readRecord(r io.Reader) ([]byte, error) {
	var h [frameSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(h[:4])
	if n > maxRecord {
		return nil, fmt.Errorf("record length %d is corrupt", n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return nil, err
	}
	if crc32.Checksum(p, castagnoli) != binary.BigEndian.Uint32(h[4:]) {
		return nil, errors.New("record checksum mismatch")
	}
	return p, nil
}

// Append writes records durably, all or none.
func (s *Spool) Append(records [][]byte) error {
	var n int64
	for _, r := range records {
		if len(r) > maxRecord {
			return fmt.Errorf("spool record of %d bytes exceeds %d", len(r), maxRecord)
		}
		n += int64(frameSize + len(r))
	}
	buf := make([]byte, 0, n)
	for _, r := range records {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r)))
		buf = binary.BigEndian.AppendUint32(buf, crc32.Checksum(r, castagnoli))
		buf = append(buf, r...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+n > s.maxBytes {
		return ErrFull
	}
	if s.wSize > 0 && s.wSize+n > rollSize {
		if err := s.roll(); err != nil {
			return err
		}
	}
	if _, err := s.w.Write(buf); err != nil {
		// Undo a partial write so the file stays a sequence of records.
		s.w.Truncate(s.wSize)
		s.w.Seek(s.wSize, io.SeekStart)
		return fmt.Errorf("cannot write spool: %w", err)
	}
	if err := s.w.Sync(); err != nil {
		return fmt.Errorf("cannot sync spool: %w", err)
	}
	s.wSize += n
	s.size += n
	select {
	case s.signal <- struct{}{}:
	default:
	}
	return nil
}

// roll starts a new file; called with mu held.
func (s *Spool) roll() error {
	next := s.seqs[len(s.seqs)-1] + 1
	f, err := os.OpenFile(s.path(next), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("cannot create spool file: %w", err)
	}
	if err := atomicfile.SyncDir(s.dir); err != nil {
		f.Close()
		return err
	}
	s.w.Close()
	s.w, s.wSize = f, 0
	s.seqs = append(s.seqs, next)
	return nil
}

// Size is the number of bytes not yet acknowledged.
func (s *Spool) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size
}

// MaxBytes is the cap.
func (s *Spool) MaxBytes() int64 { return s.maxBytes }

// Signal is poked after every Append, so a drainer can sleep until there
// is work.
func (s *Spool) Signal() <-chan struct{} { return s.signal }

// Read returns up to max records (and about maxBatchLen bytes) from the
// cursor, and the cursor after them, without consuming them. It returns no
// records when the spool is empty.
func (s *Spool) Read(max int) ([][]byte, Cursor, error) {
	s.mu.Lock()
	c, seqs, last, lastSize := s.cursor, append([]uint64(nil), s.seqs...), s.seqs[len(s.seqs)-1], s.wSize
	s.mu.Unlock()
	var out [][]byte
	var bytes int
	for _, seq := range seqs {
		if seq < c.Seq {
			continue
		}
		if seq > c.Seq {
			c = Cursor{Seq: seq}
		}
		limit := int64(-1)
		if seq == last {
			limit = lastSize // never read past what Append completed
		}
		f, err := os.Open(s.path(seq))
		if err != nil {
			return nil, c, fmt.Errorf("cannot read spool: %w", err)
		}
		if _, err := f.Seek(c.Off, io.SeekStart); err != nil {
			f.Close()
			return nil, c, err
		}
		var src io.Reader = f
		if limit >= 0 {
			src = io.LimitReader(f, limit-c.Off)
		}
		r := bufio.NewReaderSize(src, 256<<10)
		for len(out) < max && bytes < maxBatchLen {
			p, err := readRecord(r)
			if err == io.EOF {
				break
			}
			if err != nil {
				f.Close()
				return nil, c, fmt.Errorf("spool file %s is corrupt at offset %d: %w", s.path(seq), c.Off, err)
			}
			out = append(out, p)
			bytes += len(p)
			c.Off += int64(frameSize + len(p))
		}
		f.Close()
		if len(out) >= max || bytes >= maxBatchLen || seq == last {
			break
		}
	}
	return out, c, nil
}

// Ack consumes everything before c: the cursor is persisted, and files
// wholly before it are removed.
func (s *Spool) Ack(c Cursor) error {
	if err := atomicfile.Write(filepath.Join(s.dir, cursorName), fmt.Appendf(nil, "%d %d\n", c.Seq, c.Off), 0o600); err != nil {
		return fmt.Errorf("cannot save spool cursor: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.size -= s.distance(s.cursor, c)
	s.cursor = c
	var keep []uint64
	for _, seq := range s.seqs {
		if seq < c.Seq && seq != s.seqs[len(s.seqs)-1] {
			os.Remove(s.path(seq))
			continue
		}
		keep = append(keep, seq)
	}
	s.seqs = keep
	return nil
}

// distance is the number of bytes from a to b; called with mu held.
func (s *Spool) distance(a, b Cursor) int64 {
	if a.Seq == b.Seq {
		return b.Off - a.Off
	}
	var n int64
	for _, seq := range s.seqs {
		switch {
		case seq == a.Seq:
			n += s.fileLen(seq) - a.Off
		case seq > a.Seq && seq < b.Seq:
			n += s.fileLen(seq)
		case seq == b.Seq:
			n += b.Off
		}
	}
	return n
}

func (s *Spool) fileLen(seq uint64) int64 {
	if seq == s.seqs[len(s.seqs)-1] {
		return s.wSize
	}
	fi, err := os.Stat(s.path(seq))
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Close closes the tail file and releases the lock. Records appended are
// already durable.
func (s *Spool) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.w.Close()
	s.lock.Close()
	return err
}
