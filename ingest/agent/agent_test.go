package agent

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/ingest"
)

// recorder is a sink that keeps what it was given, and can refuse.
type recorder struct {
	mu      sync.Mutex
	events  []*event.Event
	refuse  int // refuse this many Submits with ErrBusy first
	refused int
}

func (r *recorder) Submit(_ context.Context, recs []ingest.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refused < r.refuse {
		r.refused++
		return ingest.ErrBusy
	}
	for _, rec := range recs {
		e, err := event.Parse(rec.Value)
		if err != nil {
			return err
		}
		r.events = append(r.events, e)
	}
	return nil
}

func (r *recorder) snapshot() []*event.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*event.Event(nil), r.events...)
}

// waitFor polls until cond holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type harness struct {
	t      *testing.T
	dir    string
	cfg    Config
	rec    *recorder
	cancel context.CancelFunc
	done   chan error
}

func newHarness(t *testing.T, files ...File) *harness {
	dir := t.TempDir()
	cfg := Defaults()
	cfg.Name = "host1"
	cfg.PositionsFile = filepath.Join(dir, "positions.json")
	cfg.PollInterval = 10 * time.Millisecond
	for i := range files {
		files[i].Path = filepath.Join(dir, files[i].Path)
	}
	cfg.Files = files
	return &harness{t: t, dir: dir, cfg: cfg, rec: &recorder{}}
}

func (h *harness) start() {
	a, err := New(h.cfg, event.Options{DefaultClass: "security"}, h.rec, zap.NewNop(), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	a.now = func() time.Time { return time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC) }
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel, h.done = cancel, make(chan error, 1)
	go func() { h.done <- a.Run(ctx) }()
}

func (h *harness) stop() {
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Fatalf("Run: %v", err)
	}
}

func (h *harness) appendLines(name string, lines ...string) {
	f, err := os.OpenFile(filepath.Join(h.dir, name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l); err != nil {
			h.t.Fatal(err)
		}
	}
}

func jsonLine(i int) string {
	return fmt.Sprintf(`{"id":"j-%d","time":"2026-11-29T05:00:00Z","kind":"activity","tenant":"acme","login":"a","action":"x"}`+"\n", i)
}

func ids(evs []*event.Event) string {
	var s []string
	for _, e := range evs {
		s = append(s, e.ID)
	}
	return strings.Join(s, ",")
}

func TestRotationTruncationRestart(t *testing.T) {
	h := newHarness(t, File{Path: "app.log", Format: "json", Tenants: []string{"acme"}})
	h.appendLines("app.log", jsonLine(1), jsonLine(2), `{"id":"partial"`) // a line still being written
	h.start()
	waitFor(t, "2 events", func() bool { return len(h.rec.snapshot()) == 2 })
	h.appendLines("app.log", `,"kind":"activity","tenant":"acme","login":"a","action":"x"}`+"\n")
	waitFor(t, "the completed partial line", func() bool { return len(h.rec.snapshot()) == 3 })

	// Rotation by rename: the old file's tail is read, then the new file.
	h.appendLines("app.log", jsonLine(4))
	if err := os.Rename(filepath.Join(h.dir, "app.log"), filepath.Join(h.dir, "app.log.1")); err != nil {
		t.Fatal(err)
	}
	h.appendLines("app.log.1", jsonLine(5)) // written by the app before it reopened
	h.appendLines("app.log", jsonLine(6), jsonLine(60), jsonLine(61))
	waitFor(t, "events 4-61", func() bool { return len(h.rec.snapshot()) == 8 })

	// copytruncate: the file is emptied in place. The new content is
	// shorter than the old position, which is how a tailer can tell.
	if err := os.Truncate(filepath.Join(h.dir, "app.log"), 0); err != nil {
		t.Fatal(err)
	}
	h.appendLines("app.log", jsonLine(7))
	waitFor(t, "event 7", func() bool { return len(h.rec.snapshot()) == 9 })
	h.stop()

	// Restart: nothing is shipped twice, new lines are.
	h.appendLines("app.log", jsonLine(8))
	h.start()
	waitFor(t, "event 8", func() bool { return len(h.rec.snapshot()) == 10 })
	h.stop()
	if got, want := ids(h.rec.snapshot()), "j-1,j-2,partial,j-4,j-5,j-6,j-60,j-61,j-7,j-8"; got != want {
		t.Errorf("shipped %s; want %s", got, want)
	}
}

func TestRotatedWhileStopped(t *testing.T) {
	h := newHarness(t, File{Path: "app.log", Format: "json", Tenants: []string{"acme"}})
	h.appendLines("app.log", jsonLine(1))
	h.start()
	waitFor(t, "event 1", func() bool { return len(h.rec.snapshot()) == 1 })
	h.stop()
	h.appendLines("app.log", jsonLine(2))
	os.Rename(filepath.Join(h.dir, "app.log"), filepath.Join(h.dir, "app.log.1"))
	h.appendLines("app.log", jsonLine(3))
	h.start()
	waitFor(t, "events 2 and 3", func() bool { return len(h.rec.snapshot()) == 3 })
	h.stop()
	if got := ids(h.rec.snapshot()); got != "j-1,j-2,j-3" {
		t.Errorf("shipped %s; want j-1,j-2,j-3 (j-2 from the rotated file)", got)
	}
}

func TestFormatsAndBadLines(t *testing.T) {
	h := newHarness(t,
		File{Path: "access.log", Format: "combined", Tenant: "acme", App: "shop"},
		File{Path: "auth.log", Format: "sshd", Tenant: "acme"})
	h.appendLines("access.log",
		`203.0.113.7 - - [29/Nov/2026:05:10:00 +0000] "GET /login?token=abc123 HTTP/1.1" 200 512 "-" "curl/8.5"`+"\n",
		"garbage line\n",
		`198.51.100.4 - bob [29/Nov/2026:05:11:00 +0000] "POST /api HTTP/2.0" 201 3 "-" "app/1"`+"\n")
	h.appendLines("auth.log",
		"Nov 29 05:12:01 web1 sshd[1]: Accepted publickey for alice from 203.0.113.7 port 51234 ssh2\n",
		"Nov 29 05:12:02 web1 CRON[2]: session opened for user root\n",
		"Nov 29 05:13:00 web1 sshd[1]: Failed password for invalid user admin from 192.0.2.9 port 4444 ssh2\n")
	h.start()
	waitFor(t, "4 events", func() bool { return len(h.rec.snapshot()) == 4 })
	h.stop()
	var got []string
	for _, e := range h.rec.snapshot() {
		got = append(got, strings.TrimSuffix(string(event.AppendJSON(nil, e)), "\n"))
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		`"kind":"connection","class":"security","tenant":"acme","app":"shop","source":"host1"`,
		`"redacted":1,"ip":"203.0.113.7","user_agent":"curl/8.5","protocol":"HTTP/1.1","method":"GET","path":"/login?token=REDACTED","status":200`,
		`"ip":"198.51.100.4","login":"bob"`,
		`"kind":"login","class":"security","tenant":"acme","source":"host1"`,
		`"ip":"203.0.113.7","port":51234,"login":"alice","action":"success","protocol":"ssh","attrs":{"auth_method":"publickey","host":"web1"}`,
		`"login":"admin","action":"failure","protocol":"ssh","attrs":{"auth_method":"password","host":"web1","invalid_user":true}`,
	} {
		if !strings.Contains(all, want) {
			t.Errorf("shipped events lack %s:\n%s", want, all)
		}
	}
	if strings.Contains(all, "abc123") {
		t.Errorf("a token in a query string was shipped:\n%s", all)
	}
}

func TestBackpressureKeepsBatch(t *testing.T) {
	h := newHarness(t, File{Path: "app.log", Format: "json", Tenants: []string{"acme"}})
	h.rec.refuse = 3
	h.appendLines("app.log", jsonLine(1), jsonLine(2))
	h.start()
	waitFor(t, "events after refusals", func() bool { return len(h.rec.snapshot()) == 2 })
	h.stop()
	if h.rec.refused != 3 || ids(h.rec.snapshot()) != "j-1,j-2" {
		t.Errorf("refused %d times, shipped %s; want 3 and j-1,j-2 once", h.rec.refused, ids(h.rec.snapshot()))
	}
}

// TestStableIDs: lines without an ID get one derived from file and offset,
// the same after a restart that re-reads them.
func TestStableIDs(t *testing.T) {
	h := newHarness(t, File{Path: "app.log", Format: "json", Tenants: []string{"acme"}})
	line := `{"time":"2026-11-29T05:00:00Z","kind":"activity","tenant":"acme","login":"a","action":"x"}` + "\n"
	h.appendLines("app.log", line, line)
	h.start()
	waitFor(t, "2 events", func() bool { return len(h.rec.snapshot()) == 2 })
	h.stop()
	first := h.rec.snapshot()
	os.Remove(h.cfg.PositionsFile) // as if the crash came before positions were saved
	h.start()
	waitFor(t, "2 more events", func() bool { return len(h.rec.snapshot()) == 4 })
	h.stop()
	again := h.rec.snapshot()[2:]
	if first[0].ID == first[1].ID {
		t.Errorf("two identical lines at different offsets got the same ID %s", first[0].ID)
	}
	if ids(first) != ids(again) {
		t.Errorf("re-read lines got new IDs: %s then %s", ids(first), ids(again))
	}
}
