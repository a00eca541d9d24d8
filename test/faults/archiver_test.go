//go:build faults

package faults

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// faultRetention keeps fault-test segments under GOVERNANCE lock, long
// enough for archivetest's months-old events, on the throwaway stack.
var faultRetention = archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE",
	Classes: []archive.Class{{Name: "security", Days: 120}}}

// archiveRig is one topic, one bucket and one consumer group, with the
// configuration `custody archive run` reads for them.
type archiveRig struct {
	st     stacktest.Stack
	topic  string
	group  string
	store  *store.Store
	kr     archivetest.Keys
	crypto string // the crypto section naming kr's files
	dir    string
	want   map[string]int
	wantMu sync.Mutex
}

func newArchiveRig(t *testing.T, partitions int) *archiveRig {
	st := stacktest.Get(t)
	r := &archiveRig{st: st, topic: stacktest.Topic(t, st, partitions), group: stacktest.Name(t, "g"), dir: t.TempDir(), want: map[string]int{}}
	var sc store.Config
	r.store, sc = archivetest.NewStore(t, st, faultRetention)
	r.kr = archivetest.Keyring(t)
	r.crypto = r.kr.Save(t, r.dir)
	t.Setenv("CUSTODY_S3_BUCKET", sc.Bucket)
	t.Setenv("CUSTODY_S3_ENDPOINT", st.S3Endpoint)
	t.Setenv("CUSTODY_KEYRING", "")
	return r
}

// config writes a configuration for one archiver process; each gets its
// own metrics port.
func (r *archiveRig) config(t *testing.T, metricsPort int) string {
	return r.configFormat(t, metricsPort, 3)
}

// configFormat is config with archive.segment_format set (its file named
// by both).
func (r *archiveRig) configFormat(t *testing.T, metricsPort, format int) string {
	doc := fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
  dlq_topic: %s.dlq
  replication_factor: %d
%sarchive:
  group_id: %s
  metrics_listen: 127.0.0.1:%d
  flush_events: 1500
  flush_age: 1s
  late_flush_age: 2s
  shutdown_timeout: 30s
  segment_format: %d
retention:
  default_class: security
  mode: GOVERNANCE
  classes:
    - name: security
      days: 120
`, strings.Join(r.st.KafkaBrokers, ", "), r.topic, r.topic, r.st.ReplicationFactor, r.crypto, r.group, metricsPort, format)
	p := filepath.Join(r.dir, fmt.Sprintf("archiver-%d-v%d.yaml", metricsPort, format))
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// produce sends n events named prefix-i and records them as wanted.
func (r *archiveRig) produce(t *testing.T, n int, prefix string) {
	got := archivetest.Produce(t, r.st, r.topic, archivetest.Events(n, prefix, []string{"security"}, time.Now().UTC()))
	r.wantMu.Lock()
	defer r.wantMu.Unlock()
	for id, c := range got {
		r.want[id] += c
	}
}

// finish waits until the group has committed everything, stops p cleanly
// and compares the archive with what was sent.
func (r *archiveRig) finish(t *testing.T, procs ...*proc) archivetest.Contents {
	deadline := time.Now().Add(90 * time.Second)
	for !stacktest.CaughtUp(r.st, r.group, r.topic) {
		if time.Now().After(deadline) {
			for _, p := range procs {
				t.Logf("archiver log:\n%s", tail(p.stderr.String()))
			}
			_, progress := stacktest.Progress(r.st, r.group, r.topic)
			t.Fatalf("the archiver did not commit every partition within 4 minutes:\n%s", progress)
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, p := range procs {
		p.stop(t)
	}
	got := archivetest.Read(t, r.store, r.kr)
	lost, doubled := archivetest.Compare(r.want, got)
	if len(lost) > 0 || len(doubled) > 0 {
		t.Fatalf("archive differs from what was sent: %d of %d lost (%.5v), %d doubled (%.5v)", len(lost), len(r.want), lost, len(doubled), doubled)
	}
	return got
}

func (r *archiveRig) start(t *testing.T, cfg string) *proc {
	return start(t, "archive", "run", "--config", cfg, "--log-level", "info")
}

// TestArchiverKill9 kills the archiver with SIGKILL 24 times at random
// moments while events keep arriving, restarting it each time. The archive
// must then hold exactly the events sent, by ID: none lost, none twice.
func TestArchiverKill9(t *testing.T) {
	r := newArchiveRig(t, 6)
	cfg := r.config(t, 19301)
	r.produce(t, 20000, "a")
	var producing sync.WaitGroup
	producing.Add(1)
	go func() {
		defer producing.Done()
		for i := 0; i < 8; i++ {
			r.produce(t, 5000, fmt.Sprintf("b%d", i))
			time.Sleep(500 * time.Millisecond) // arrivals spread over the kills
		}
	}()
	for i := 0; i < 24; i++ {
		p := r.start(t, cfg)
		time.Sleep(time.Duration(300+rand.IntN(1700)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
	producing.Wait()
	p := r.start(t, cfg)
	got := r.finish(t, p)
	t.Logf("24 kill -9: %d events in %d segments, exactly as sent", got.Events, got.Segments)
}

// TestArchiverKill9FormatSwitch kills the archiver with SIGKILL 16 times
// while events arrive, and restarts it with archive.segment_format set to
// 2 and 3 in turn: each restart changes the key scheme (one kind per
// segment, or every kind), so every replay starts under the scheme of the
// owner before, which the kill interrupted (docs/PIPELINE.md §3). The
// archive must hold exactly the events sent, by ID, in both kinds of
// segment.
func TestArchiverKill9FormatSwitch(t *testing.T) {
	r := newArchiveRig(t, 6)
	cfgs := map[int]string{2: r.configFormat(t, 19302, 2), 3: r.configFormat(t, 19302, 3)}
	r.produce(t, 10000, "a")
	// Events arrive throughout, so that a run that reaches the high
	// watermark of its first fetch, and switches, writes under the new
	// scheme before the next kill.
	stop := make(chan struct{})
	var producing sync.WaitGroup
	producing.Add(1)
	go func() {
		defer producing.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			r.produce(t, 1000, fmt.Sprintf("b%d", i))
		}
	}()
	for i := 0; i < 16; i++ {
		p := r.start(t, cfgs[2+i%2])
		time.Sleep(time.Duration(1000+rand.IntN(2500)) * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
	close(stop)
	producing.Wait()
	// The last run catches up (under the scheme each partition's commit
	// names, then its own), and more events arrive after that.
	p := r.start(t, cfgs[3])
	for deadline := time.Now().Add(90 * time.Second); !stacktest.CaughtUp(r.st, r.group, r.topic); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the last run did not catch up\n%s", tail(p.stderr.String()))
		}
	}
	r.produce(t, 3000, "c")
	got := r.finish(t, p)
	// Both schemes were written: names with a kind and names without.
	var oneKind, everyKind int
	for o, err := range r.store.List(t.Context(), "security/") {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(o.Name, "security/2") {
			everyKind++
		} else {
			oneKind++
		}
	}
	if oneKind == 0 || everyKind == 0 {
		t.Fatalf("%d segments of one kind, %d of every kind: the scheme never changed", oneKind, everyKind)
	}
	t.Logf("16 kill -9 across format 2 and 3: %d events in %d segments (%d of one kind, %d of every kind), exactly as sent", got.Events, got.Segments, oneKind, everyKind)
}

// TestArchiverChainCrashPoints kills the archiver at each step of the
// storage protocol (docs/CHAIN.md §3): after a segment's upload and before
// the checkpoint that lists it, after the checkpoint and before the
// offset commit, and after the commit; each at its 1st, 3rd, 8th and 20th
// passage, restarting each time. The archive must hold exactly what was
// sent, and its chains verify with no finding (archivetest.Read).
func TestArchiverChainCrashPoints(t *testing.T) {
	r := newArchiveRig(t, 3)
	cfg := r.config(t, 19321)
	r.produce(t, 20000, "c")
	crashed := 0
	for _, step := range []string{"after-upload", "after-checkpoint", "after-commit"} {
		for i, n := range []int{1, 3, 8, 20} {
			r.produce(t, 3000, fmt.Sprintf("%s-%d", step, i))
			p := start(t, "archive", "run", "--config", cfg, "--log-level", "warn", "--test-crash-at", fmt.Sprintf("%s:%d", step, n))
			exited := make(chan error, 1)
			go func() { exited <- p.cmd.Wait() }()
			select {
			case err := <-exited:
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
					t.Fatalf("%s:%d: the archiver ended with %v, not its own SIGKILL\n%s", step, n, err, tail(p.stderr.String()))
				}
				crashed++
			case <-time.After(60 * time.Second):
				t.Fatalf("%s:%d: the archiver did not reach the step within 60 s\n%s", step, n, tail(p.stderr.String()))
			}
		}
	}
	p := r.start(t, cfg)
	got := r.finish(t, p)
	t.Logf("%d kills at protocol steps: %d events in %d segments, exactly as sent, chains verified", crashed, got.Events, got.Segments)
}

// TestArchiverMinIOOutage stops MinIO for 30 s while the archiver works:
// it must report not-ready, lose nothing, and catch up once MinIO is back.
func TestArchiverMinIOOutage(t *testing.T) {
	r := newArchiveRig(t, 3)
	cfg := r.config(t, 19311)
	p := r.start(t, cfg)
	waitHTTP(t, "http://127.0.0.1:19311/healthz", 30*time.Second)
	r.produce(t, 10000, "before")
	stack(t, "down", "minio")
	restarted := false
	defer func() {
		if !restarted {
			stack(t, "up", "minio")
		}
	}()
	down := time.Now()
	r.produce(t, 10000, "during")
	// Readiness must say S3 is failing while it is down.
	sawNotReady := false
	for time.Since(down) < 30*time.Second {
		resp, err := http.Get("http://127.0.0.1:19311/readyz")
		if err == nil {
			resp.Body.Close()
			sawNotReady = sawNotReady || resp.StatusCode == http.StatusServiceUnavailable
		}
		time.Sleep(500 * time.Millisecond)
	}
	stack(t, "up", "minio")
	restarted = true
	if !sawNotReady {
		t.Error("/readyz never reported 503 during a 30 s MinIO outage")
	}
	r.produce(t, 5000, "after")
	got := r.finish(t, p)
	t.Logf("MinIO down 30 s: %d events in %d segments, exactly as sent", got.Events, got.Segments)
}

// TestArchiverKafkaRestart restarts the broker under a running archiver.
func TestArchiverKafkaRestart(t *testing.T) {
	r := newArchiveRig(t, 3)
	cfg := r.config(t, 19321)
	p := r.start(t, cfg)
	r.produce(t, 10000, "before")
	stack(t, "down", "kafka")
	time.Sleep(3 * time.Second) // the outage itself, not synchronisation
	stack(t, "up", "kafka")
	r.produce(t, 10000, "after")
	got := r.finish(t, p)
	t.Logf("Kafka restarted: %d events in %d segments, exactly as sent", got.Events, got.Segments)
}

// TestTwoArchivers runs two archivers in one group, kills one with SIGKILL
// while both hold partitions and events are flowing, and lets the other
// take over.
func TestTwoArchivers(t *testing.T) {
	r := newArchiveRig(t, 6)
	a := r.start(t, r.config(t, 19331))
	b := r.start(t, r.config(t, 19332))
	// Both must hold partitions before the kill, or it proves nothing.
	for _, port := range []int{19331, 19332} {
		deadline := time.Now().Add(time.Minute)
		for !metricAbove(fmt.Sprintf("http://127.0.0.1:%d/metrics", port), "custody_archiver_assigned_partitions", 0) {
			if time.Now().After(deadline) {
				t.Logf("archiver a:\n%s\narchiver b:\n%s", tail(a.stderr.String()), tail(b.stderr.String()))
				t.Fatalf("archiver on %d never got a partition: the group did not split them", port)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	r.produce(t, 20000, "first")
	b.cmd.Process.Signal(syscall.SIGKILL)
	b.cmd.Wait()
	r.produce(t, 15000, "second")
	got := r.finish(t, a)
	t.Logf("two archivers, one killed mid-stream: %d events in %d segments, exactly as sent", got.Events, got.Segments)
}

// metricAbove reports whether the Prometheus counter at url exceeds v.
func metricAbove(url, name string, v float64) bool {
	x, ok := metricValue(url, name)
	return ok && x > v
}

// metricValue reads one series (name with its labels, as the exposition
// format writes them) from the Prometheus endpoint at url.
func metricValue(url, series string) (float64, bool) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			x, err := strconv.ParseFloat(v, 64)
			return x, err == nil
		}
	}
	return 0, false
}

// TestArchiverTakesNewKeysWithoutRestart: an archiver whose public keyring
// has no key for its events' class stores nothing, says why in /readyz
// and shows a key horizon of 0; once `custody keys generate` (here: the
// test) writes the keys and the archiver gets SIGHUP, it seals and stores
// every event exactly once, without a restart, and the horizon moves.
func TestArchiverTakesNewKeysWithoutRestart(t *testing.T) {
	r := newArchiveRig(t, 2)
	pubPath := filepath.Join(r.dir, "public-keyring.json")
	// The keyring with its signer but without a single key pair.
	empty := keyring.NewPublic()
	empty.AddSigner(r.kr.Signer.Public())
	if err := empty.Save(pubPath); err != nil {
		t.Fatal(err)
	}
	const port = 19341
	cfg := r.config(t, port)
	metrics := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	horizon := `custody_archiver_key_horizon_seconds{class="security"}`
	r.produce(t, 3000, "k")
	p := r.start(t, cfg)
	var ready string
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", port)); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			ready = string(b)
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(ready, "no public key for class security") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz never named the missing key; last: %q\n%s", ready, tail(p.stderr.String()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	if h, ok := metricValue(metrics, horizon); !ok || h != 0 {
		t.Fatalf("%s = %v (found %v) with no keys; want 0", horizon, h, ok)
	}
	if n := archivetest.Read(t, r.store, r.kr).Segments; n != 0 {
		t.Fatalf("%d segments stored without a key", n)
	}
	if err := r.kr.Public.Save(pubPath); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	for deadline := time.Now().Add(time.Minute); ; {
		// archivetest's keys reach a month ahead.
		if h, ok := metricValue(metrics, horizon); ok && h > 27*24*3600 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the key horizon did not move after SIGHUP\n%s", tail(p.stderr.String()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	got := r.finish(t, p)
	if !strings.Contains(p.stderr.String(), "public keyring reloaded") {
		t.Errorf("no reload in the log:\n%s", tail(p.stderr.String()))
	}
	t.Logf("%d events in %d segments after the keys came, exactly as sent", got.Events, got.Segments)
}
