package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"github.com/custodylog/custody/internal/atomicfile"
)

// fileID identifies a file across renames: rotation renames the file we
// are reading and creates a new one under the same path.
type fileID struct {
	Dev uint64 `json:"dev"`
	Ino uint64 `json:"ino"`
}

func idOf(fi os.FileInfo) fileID {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return fileID{Dev: uint64(st.Dev), Ino: st.Ino}
	}
	return fileID{}
}

// position is how far a file has been shipped (acknowledged by Kafka or
// the spool).
type position struct {
	fileID
	Offset int64 `json:"offset"`
}

// maxLine bounds one line read; longer lines are cut and rejected.
const maxLine = 64 << 10

// line is one complete line and where it starts.
type line struct {
	data []byte
	off  int64
}

// tailer follows one path. Not safe for concurrent use.
type tailer struct {
	path string
	f    *os.File
	id   fileID
	off  int64 // next byte to read = committed position once acknowledged
	buf  []byte
}

// open positions the tailer from a saved position. With no saved position
// it starts at the beginning: everything in the file is shipped.
func (t *tailer) open(pos *position) error {
	fi, err := os.Stat(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil // not created yet; poll retries
	}
	if err != nil {
		return fmt.Errorf("cannot stat %s: %w", t.path, err)
	}
	if pos != nil && pos.fileID != idOf(fi) {
		// Rotated while the agent was down: finish the old file first if
		// it is still next to the new one.
		if old := findByID(filepath.Dir(t.path), pos.fileID); old != "" {
			f, err := os.Open(old)
			if err == nil {
				t.f, t.id, t.off = f, pos.fileID, pos.Offset
				return nil
			}
		}
		pos = nil
	}
	f, err := os.Open(t.path)
	if err != nil {
		return fmt.Errorf("cannot open %s: %w", t.path, err)
	}
	t.f, t.id, t.off = f, idOf(fi), 0
	if pos != nil && pos.Offset <= fi.Size() {
		t.off = pos.Offset
	}
	return nil
}

func findByID(dir string, id fileID) string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return ""
	}
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() && idOf(fi) == id {
			return filepath.Join(dir, e.Name())
		}
	}
	return ""
}

// read returns up to maxLines complete lines after t.off (and about
// maxBytes), without advancing t.off: the caller commits with advance once
// the lines are acknowledged. At the end of the file it follows rotation
// and truncation.
func (t *tailer) read(maxLines, maxBytes int) ([]line, int64, error) {
	if t.f == nil {
		if err := t.open(nil); err != nil || t.f == nil {
			return nil, t.off, err
		}
	}
	if cap(t.buf) < maxBytes+maxLine {
		t.buf = make([]byte, maxBytes+maxLine)
	}
	buf := t.buf[:maxBytes+maxLine]
	n, err := t.f.ReadAt(buf, t.off)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, t.off, fmt.Errorf("cannot read %s: %w", t.path, err)
	}
	buf = buf[:n]
	var lines []line
	end := t.off
	for len(lines) < maxLines && int(end-t.off) < maxBytes {
		rest := buf[end-t.off:]
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if len(rest) >= maxLine {
				// No newline in maxLine bytes: ship the piece, which will be
				// rejected as too long, and go on.
				lines = append(lines, line{data: rest[:maxLine], off: end})
				end += maxLine
				continue
			}
			break
		}
		lines = append(lines, line{data: rest[:i+1], off: end})
		end += int64(i + 1)
	}
	if len(lines) > 0 {
		return lines, end, nil
	}
	// Nothing complete after t.off: check for rotation and truncation.
	fi, err := os.Stat(t.path)
	if err != nil {
		return nil, t.off, nil // renamed away, new file not created yet
	}
	cur, err := t.f.Stat()
	if err != nil {
		return nil, t.off, fmt.Errorf("cannot stat %s: %w", t.path, err)
	}
	switch {
	case idOf(fi) != t.id:
		if t.off < cur.Size() {
			if int(cur.Size()-t.off) > len(buf) {
				return nil, t.off, nil // grew since ReadAt; read it next time
			}
			// The rotated file ends in a line without a newline; ship it
			// before moving on, since nothing will ever complete it.
			return []line{{data: buf[:cur.Size()-t.off], off: t.off}}, cur.Size(), nil
		}
		t.f.Close()
		t.f = nil
		if err := t.open(nil); err != nil {
			return nil, t.off, err
		}
	case cur.Size() < t.off:
		t.off = 0 // truncated in place (copytruncate)
	}
	return nil, t.off, nil
}

// advance commits the position after lines up to end were acknowledged.
func (t *tailer) advance(end int64) { t.off = end }

func (t *tailer) position() position { return position{fileID: t.id, Offset: t.off} }

func (t *tailer) close() {
	if t.f != nil {
		t.f.Close()
	}
}

// loadPositions reads the positions file; a missing file means none.
func loadPositions(path string) (map[string]position, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]position{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read positions: %w", err)
	}
	m := map[string]position{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("positions file %s is corrupt: %w", path, err)
	}
	return m, nil
}

// savePositions writes the positions file so that a crash leaves either
// the old or the new content: temp file, fsync, rename, fsync directory.
func savePositions(path string, m map[string]position) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}
