package spool

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func recs(from, n int) [][]byte {
	var out [][]byte
	for i := from; i < from+n; i++ {
		out = append(out, []byte(fmt.Sprintf("record-%06d", i)))
	}
	return out
}

// drain reads and acks everything, returning the payloads in order.
func drain(t *testing.T, s *Spool, batch int) []string {
	t.Helper()
	var got []string
	for {
		rs, c, err := s.Read(batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(rs) == 0 {
			return got
		}
		for _, r := range rs {
			got = append(got, string(r))
		}
		if err := s.Ack(c); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOrderReopenAndRoll(t *testing.T) {
	old := rollSize
	rollSize = 200
	defer func() { rollSize = old }()
	dir := t.TempDir()
	s, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i += 10 {
		if err := s.Append(recs(i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	if len(files) < 5 {
		t.Fatalf("%d spool files; want rolling to have made several", len(files))
	}
	// Consume 35, then reopen.
	rs, c, err := s.Read(35)
	if err != nil || len(rs) != 35 {
		t.Fatalf("Read(35) = %d records, %v", len(rs), err)
	}
	if err := s.Ack(c); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, 1<<20); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open while the first is open: %v; want ErrLocked", err)
	}
	s.Close()
	s2, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(65 * (frameSize + 13)); s2.Size() != want {
		t.Errorf("Size after reopen = %d; want %d", s2.Size(), want)
	}
	got := drain(t, s2, 7)
	if len(got) != 65 || got[0] != "record-000035" || got[64] != "record-000099" {
		t.Fatalf("after reopen read %d records from %q to %q; want 35..99", len(got), got[0], got[len(got)-1])
	}
	for i, g := range got {
		if g != fmt.Sprintf("record-%06d", 35+i) {
			t.Fatalf("record %d = %q; out of order", i, g)
		}
	}
	if s2.Size() != 0 {
		t.Errorf("Size after draining = %d; want 0", s2.Size())
	}
	files, _ = filepath.Glob(filepath.Join(dir, "*"+ext))
	if len(files) != 1 {
		t.Errorf("%d files left after draining; want only the tail", len(files))
	}
}

func TestTornTailRepaired(t *testing.T) {
	dir := t.TempDir()
	s, _ := Open(dir, 1<<20)
	s.Append(recs(0, 5))
	s.Close()
	files, _ := filepath.Glob(filepath.Join(dir, "*"+ext))
	f, _ := os.OpenFile(files[0], os.O_APPEND|os.O_WRONLY, 0)
	f.Write([]byte{0, 0, 0, 40, 1, 2, 3, 4, 'p', 'a', 'r'}) // a record cut short by a crash
	f.Close()
	s, err := Open(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Append(recs(5, 2)); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s, 100)
	if strings.Join(got, ",") != strings.Join(func() []string {
		var w []string
		for _, r := range recs(0, 7) {
			w = append(w, string(r))
		}
		return w
	}(), ",") {
		t.Fatalf("after repair read %q; want records 0-6", got)
	}
}

func TestFullIsBackpressure(t *testing.T) {
	s, _ := Open(t.TempDir(), 100)
	if err := s.Append(recs(0, 4)); err != nil { // 4 × 21 = 84 bytes
		t.Fatal(err)
	}
	if err := s.Append(recs(4, 1)); err != ErrFull {
		t.Fatalf("Append past the cap = %v; want ErrFull", err)
	}
	rs, c, _ := s.Read(2)
	if len(rs) != 2 {
		t.Fatal("Read(2)")
	}
	s.Ack(c)
	if err := s.Append(recs(4, 1)); err != nil {
		t.Fatalf("Append after Ack freed space = %v", err)
	}
}

// TestKill9 appends from a child process that is killed with SIGKILL at
// random moments, many times. Every record the child reported as appended
// (Append returned nil) must be in the spool, in order, exactly once.
func TestKill9(t *testing.T) {
	dir := t.TempDir()
	acked := map[int]bool{}
	next := 0
	for round := 0; round < 25; round++ {
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), "SPOOL_CHILD=1", "SPOOL_DIR="+dir, "SPOOL_FROM="+strconv.Itoa(next))
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(out)
		deadline := time.After(time.Duration(5+rand.IntN(60)) * time.Millisecond)
		lines := make(chan string)
		go func() {
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
	wait:
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					break wait
				}
				if n, err := strconv.Atoi(strings.TrimPrefix(l, "acked ")); err == nil {
					acked[n] = true
					next = max(next, n+1)
				}
			case <-deadline:
				cmd.Process.Signal(syscall.SIGKILL)
				for l := range lines {
					if n, err := strconv.Atoi(strings.TrimPrefix(l, "acked ")); err == nil {
						acked[n] = true
						next = max(next, n+1)
					}
				}
				break wait
			}
		}
		cmd.Wait()
		next += 1000 // records the child may have written but not reported get fresh numbers next round
	}
	s, err := Open(dir, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	got := drain(t, s, 1000)
	seen := map[int]bool{}
	last := -1
	for _, g := range got {
		n, err := strconv.Atoi(strings.TrimPrefix(g, "record-"))
		if err != nil {
			t.Fatalf("corrupt record %q", g)
		}
		if seen[n] {
			t.Fatalf("record %d stored twice", n)
		}
		if n <= last {
			t.Fatalf("record %d after %d: out of order", n, last)
		}
		seen[n], last = true, n
	}
	for n := range acked {
		if !seen[n] {
			t.Errorf("acknowledged record %d lost", n)
		}
	}
	if len(acked) < 100 {
		t.Fatalf("only %d records acknowledged over 25 kills; the test did not exercise anything", len(acked))
	}
	t.Logf("%d acknowledged records across 25 kill -9, %d stored, none lost", len(acked), len(got))
}

// TestMain turns the test binary into TestKill9's child when asked: it
// appends batches forever, printing each acknowledged record number.
func TestMain(m *testing.M) {
	if os.Getenv("SPOOL_CHILD") == "" {
		os.Exit(m.Run())
	}
	s, err := Open(os.Getenv("SPOOL_DIR"), 1<<30)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	n, _ := strconv.Atoi(os.Getenv("SPOOL_FROM"))
	for {
		if err := s.Append(recs(n, 3)); err != nil {
			fmt.Println("append:", err)
			os.Exit(1)
		}
		for i := n; i < n+3; i++ {
			fmt.Printf("acked %d\n", i)
		}
		n += 3
	}
}
