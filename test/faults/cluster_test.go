//go:build faults && cluster

package faults

// The cluster fault suite (make test-cluster): three Kafka nodes in KRaft
// with replication factor 3 and min.insync.replicas 2, MinIO with four
// drives in one erasure set, all over TLS (scripts/stack up --secure
// --cluster). Each test breaks one component mid-stream and then reads the
// whole archive back by event ID.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

func newClusterRig(t *testing.T, partitions int) *archiveRig {
	t.Helper()
	st := stacktest.Get(t)
	if !st.Cluster {
		t.Fatal("the cluster suite runs on scripts/stack up --secure --cluster (make test-cluster starts it)")
	}
	return newArchiveRig(t, partitions)
}

// leaderNode returns the stack name (kafka-N) of the broker leading
// partition of topic.
func leaderNode(t *testing.T, st stacktest.Stack, topic string, partition int) string {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(st.KafkaBrokers...), Transport: st.Transport(), Timeout: 10 * time.Second}
	md, err := cl.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range md.Topics[0].Partitions {
		if p.ID == partition {
			return fmt.Sprintf("kafka-%d", p.Leader.ID)
		}
	}
	t.Fatalf("%s has no partition %d", topic, partition)
	return ""
}

// kill9Node kills a stack process with SIGKILL and waits until it is
// gone; the test's cleanup starts it again if the test did not.
func kill9Node(t *testing.T, st stacktest.Stack, name string) {
	t.Helper()
	t.Cleanup(func() { stack(t, "up", name) })
	b, err := os.ReadFile(filepath.Join(st.Dir, name, name+".pid"))
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s (pid %d): %v", name, pid, err)
	}
	for deadline := time.Now().Add(30 * time.Second); syscall.Kill(pid, 0) == nil; {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still alive 30 s after SIGKILL", name, pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("kill -9 %s (pid %d)", name, pid)
}

// waitFailover waits until every partition of topic has a leader other
// than the dead node: the controller fenced it (broker.session.timeout.ms)
// and moved its leaderships. Producers that give up sooner than that lose
// writes; ingest spools them, the test's producer waits here.
func waitFailover(t *testing.T, st stacktest.Stack, topic, dead string) {
	t.Helper()
	var alive []string
	for i, b := range st.KafkaBrokers {
		if fmt.Sprintf("kafka-%d", i+1) != dead {
			alive = append(alive, b)
		}
	}
	for deadline := time.Now().Add(time.Minute); ; {
		cl := &kafka.Client{Addr: kafka.TCP(alive...), Transport: st.Transport(), Timeout: 5 * time.Second}
		md, err := cl.Metadata(context.Background(), &kafka.MetadataRequest{Topics: []string{topic}})
		moved := err == nil && len(md.Topics) == 1 && len(md.Topics[0].Partitions) > 0
		if moved {
			for _, p := range md.Topics[0].Partitions {
				if fmt.Sprintf("kafka-%d", p.Leader.ID) == dead || p.Leader.Host == "" {
					moved = false
				}
			}
		}
		if moved {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions of %s still led by %s a minute after it died: %v", topic, dead, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitArchived waits until the archiver behind metrics port has archived
// more than n events.
func waitArchived(t *testing.T, p *proc, port int, n float64) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); !metricAbove(fmt.Sprintf("http://127.0.0.1:%d/metrics", port), "custody_archiver_events_archived_total", n); {
		if time.Now().After(deadline) {
			t.Fatalf("the archiver did not archive %g events within 2 minutes:\n%s", n, tail(p.stderr.String()))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestClusterLeaderKillMidArchive kills, with SIGKILL, the broker leading
// partition 0 while the archiver reads and events keep arriving, then
// brings it back.
func TestClusterLeaderKillMidArchive(t *testing.T) {
	r := newClusterRig(t, 6)
	r.produce(t, 30000, "a")
	p := r.start(t, r.config(t, 19401))
	waitArchived(t, p, 19401, 3000)
	node := leaderNode(t, r.st, r.topic, 0)
	kill9Node(t, r.st, node)
	waitFailover(t, r.st, r.topic, node)
	r.produce(t, 20000, "b") // two replicas of three: still min.insync.replicas
	stack(t, "up", node)
	r.produce(t, 5000, "c")
	got := r.finish(t, p)
	t.Logf("leader %s killed mid-archive: %d events in %d segments, exactly as sent", node, got.Events, got.Segments)
}

// TestClusterLeaderKillMidIngest kills the leader of partition 0 while a
// client posts to custody ingest; every acknowledged event must reach the
// archive, once. The produce requests the dead leader never answered are
// retried by ingest's idempotent producer, which the new leader
// deduplicates, and none is spooled while it may be in Kafka already.
func TestClusterLeaderKillMidIngest(t *testing.T) {
	r := newClusterRig(t, 3)
	cfg := writeConfig(t, r.st, r.topic, "")
	ing := start(t, "ingest", "--config", cfg, "--log-level", "error")
	waitHTTP(t, "http://127.0.0.1:19181/healthz", 30*time.Second)
	arch := r.start(t, r.config(t, 19411))

	acked := map[string]int{}
	var mu sync.Mutex
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 30 * time.Second}
		for batch := 0; ; batch++ {
			select {
			case <-stop:
				return
			default:
			}
			ids := postBatch(client, "i", batch)
			mu.Lock()
			for _, id := range ids {
				acked[id] = 1
			}
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	for deadline := time.Now().Add(time.Minute); count() < 5000; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d events acknowledged in a minute", count())
		}
		time.Sleep(50 * time.Millisecond)
	}
	node := leaderNode(t, r.st, r.topic, 0)
	kill9Node(t, r.st, node)
	before := count()
	for deadline := time.Now().Add(time.Minute); count() < before+5000; {
		if time.Now().After(deadline) {
			t.Fatalf("ingest acknowledged %d events in the minute after %s died; want 5000 (two replicas remain)", count()-before, node)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stack(t, "up", node)
	// A little more traffic with the node back, until a batch is
	// acknowledged.
	for after, deadline := count(), time.Now().Add(time.Minute); count() == after; {
		if time.Now().After(deadline) {
			t.Fatalf("ingest acknowledged nothing in the minute after %s came back", node)
		}
		time.Sleep(50 * time.Millisecond)
	}
	close(stop)
	wg.Wait()

	// Every acknowledged event reaches Kafka (from ingest's spool, if it
	// had to), then the archive.
	want := map[string]bool{}
	for id := range acked {
		want[id] = true
	}
	stacktest.ReadUntil(t, r.st, r.topic, allIDs(t, want), 3*time.Minute)
	ing.stop(t)
	r.want = acked
	for deadline := time.Now().Add(2 * time.Minute); !stacktest.CaughtUp(r.st, r.group, r.topic); {
		if time.Now().After(deadline) {
			t.Fatalf("the archiver did not catch up:\n%s", tail(arch.stderr.String()))
		}
		time.Sleep(200 * time.Millisecond)
	}
	arch.stop(t)
	lost, doubled := archivetest.Compare(r.want, archivetest.Read(t, r.store, r.kr))
	if len(lost) > 0 || len(doubled) > 0 {
		t.Fatalf("archive differs from what ingest acknowledged: %d of %d lost (%.5v), %d stored twice (%.5v)", len(lost), len(acked), lost, len(doubled), doubled)
	}
	t.Logf("leader %s killed mid-ingest: %d acknowledged events archived, each once", node, len(acked))
}

// TestClusterDriveLoss takes one of MinIO's four drives away (its
// directory moved aside) while the archiver writes. MinIO serves on from
// the other three, finds the empty drive, formats it as a replacement and
// heals it.
func TestClusterDriveLoss(t *testing.T) {
	r := newClusterRig(t, 6)
	drive := filepath.Join(r.st.Dir, "minio", "d2")
	r.produce(t, 20000, "a")
	p := r.start(t, r.config(t, 19421))
	waitArchived(t, p, 19421, 3000)
	gone := fmt.Sprintf("%s.away-%d", drive, time.Now().UnixNano())
	if err := os.Rename(drive, gone); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(gone) })
	r.produce(t, 20000, "b")
	got := r.finish(t, p)
	t.Logf("one drive of four taken away mid-archive: %d events in %d segments, exactly as sent", got.Events, got.Segments)
}

// quorumLeader asks Kafka's own kafka-metadata-quorum tool which node
// leads the KRaft quorum: the active controller.
func quorumLeader(t *testing.T, st stacktest.Stack) string {
	t.Helper()
	out := stacktest.KafkaTool(t, st, "org.apache.kafka.tools.MetadataQuorumCommand",
		"--bootstrap-server", "$BOOTSTRAP", "--command-config", "admin.properties", "describe", "--status")
	m := regexp.MustCompile(`LeaderId:\s+(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("kafka-metadata-quorum names no leader:\n%s", out)
	}
	return "kafka-" + string(m[1])
}

// TestClusterControllerRestart restarts the active controller while the
// archiver reads and events arrive.
func TestClusterControllerRestart(t *testing.T) {
	r := newClusterRig(t, 6)
	r.produce(t, 20000, "a")
	p := r.start(t, r.config(t, 19431))
	waitArchived(t, p, 19431, 3000)
	node := quorumLeader(t, r.st)
	stack(t, "down", node)
	waitFailover(t, r.st, r.topic, node)
	r.produce(t, 15000, "b")
	stack(t, "up", node)
	if now := quorumLeader(t, r.st); now == "" {
		t.Fatal("no quorum leader after the restart")
	}
	r.produce(t, 5000, "c")
	got := r.finish(t, p)
	t.Logf("controller %s restarted mid-archive: %d events in %d segments, exactly as sent", node, got.Events, got.Segments)
}

// TestClusterScaleArchivers archives a 1,000,000-event run while the group
// grows from one archiver to three and shrinks back to one.
func TestClusterScaleArchivers(t *testing.T) {
	r := newClusterRig(t, 6)
	// The events arrive in ten waves of 100,000 while the archivers work:
	// two waves with one member, four with three, four with one again.
	a := r.start(t, r.config(t, 19441))
	wave := 0
	produce := func(n int) {
		for ; n > 0; n-- {
			r.produce(t, 100000, fmt.Sprintf("s%d", wave))
			wave++
		}
	}
	produce(2)
	waitArchived(t, a, 19441, 50000)
	b := r.start(t, r.config(t, 19442))
	c := r.start(t, r.config(t, 19443))
	produce(4)
	for _, m := range []struct {
		p    *proc
		port int
	}{{a, 19441}, {b, 19442}, {c, 19443}} {
		waitArchived(t, m.p, m.port, 1000) // each took partitions and archived
	}
	b.stop(t)
	c.stop(t)
	produce(4)
	got := r.finish(t, a)
	if got.Events != 1000000 {
		t.Fatalf("%d events archived; want 1,000,000", got.Events)
	}
	t.Logf("1,000,000 events while the group went 1 → 3 → 1 archivers: %d segments, exactly as sent", got.Segments)
}
