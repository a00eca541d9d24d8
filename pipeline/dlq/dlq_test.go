package dlq_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/pipelinetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/pipeline/dlq"
)

// TestListAndReplay dead-letters a class the archiver does not know yet
// and a broken line, lists both with their reasons, replays them once the
// class is configured, and reads the archive back by ID: every event once.
// A second replay finds nothing pending; the broken line, dead-lettered
// again, is the only letter pending after that.
func TestListAndReplay(t *testing.T) {
	st := stacktest.Get(t)
	now := time.Now().UTC()
	topic, dlqTopic, group := stacktest.Topic(t, st, 2), stacktest.Topic(t, st, 2), stacktest.Name(t, "g")
	values := append(archivetest.Events(300, "ok", []string{"security"}, now), archivetest.Events(200, "later", []string{"short"}, now)...)
	values = append(values, []byte("not json at all"))
	want := archivetest.Produce(t, st, topic, values)

	securityOnly := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 100}}}
	both := securityOnly
	both.Classes = append(both.Classes, archive.Class{Name: "short", Days: 100})
	s, _ := archivetest.NewStore(t, st, both)
	kr := archivetest.Keyring(t)
	pipelinetest.Run(t, st, topic, dlqTopic, group, s, securityOnly, kr.Write(), 50)
	if got := archivetest.Read(t, s, kr); got.Events != 300 {
		t.Fatalf("archived %d events before the replay; want the 300 of class security", got.Events)
	}

	kc := st.Kafka()
	kc.Topic = topic
	cl, err := kc.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// The dead letters arrive as the archiver meets them.
	var letters []dlq.Letter
	for deadline := time.Now().Add(time.Minute); ; {
		letters = letters[:0]
		if err := dlq.List(ctx, cl, dlqTopic, func(l dlq.Letter) error { letters = append(letters, l); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(letters) >= 201 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(letters) != 201 {
		t.Fatalf("%d dead letters; want 201", len(letters))
	}
	reasons := map[string]int{}
	for _, l := range letters {
		switch {
		case strings.Contains(l.Reason, `class "short" is not a configured retention class`) && strings.HasPrefix(l.ID, "later-") && l.Tenant != "":
			reasons["class"]++
		case strings.Contains(l.Reason, "not a one-line JSON object") && l.ID == "":
			reasons["broken"]++
		default:
			t.Errorf("unexpected letter %+v", l)
		}
		if !strings.HasPrefix(l.Source, topic+"/") {
			t.Errorf("letter %d/%d names source %q; want %s/…", l.Partition, l.Offset, l.Source, topic)
		}
	}
	if reasons["class"] != 200 || reasons["broken"] != 1 {
		t.Fatalf("letters by reason %v; want 200 of the missing class and 1 broken line", reasons)
	}

	// The cause fixed (class short configured), replay.
	pending, err := dlq.Pending(ctx, cl, dlqTopic, group+"-replay")
	if err != nil {
		t.Fatal(err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(st.KafkaBrokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{}, Transport: st.Transport(), BatchTimeout: time.Millisecond}
	defer w.Close()
	res, err := dlq.Replay(ctx, cl, w, dlqTopic, group+"-replay", pending)
	if err != nil {
		t.Fatal(err)
	}
	if res.Replayed != 201 {
		t.Fatalf("replayed %d; want 201", res.Replayed)
	}
	if again, err := dlq.Pending(ctx, cl, dlqTopic, group+"-replay"); err != nil || len(again) != 0 {
		t.Fatalf("pending after the replay: %v, %v; want none", again, err)
	}

	pipelinetest.Run(t, st, topic, dlqTopic, group, s, both, kr.Write(), 50)
	got := archivetest.Read(t, s, kr)
	lost, doubled := archivetest.Compare(want, got)
	if len(lost) > 0 || len(doubled) > 0 {
		t.Fatalf("after the replay: %d lost (%.5v), %d doubled (%.5v)", len(lost), lost, len(doubled), doubled)
	}
	// The broken line went back to the dead-letter topic, the only
	// letter pending now.
	for deadline := time.Now().Add(time.Minute); ; {
		p, err := dlq.Pending(ctx, cl, dlqTopic, group+"-replay")
		if err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, sp := range p {
			n += sp.To - sp.From
		}
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pending letters after the second archiver run: %v; want the broken line only", p)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d events archived once each; 201 letters replayed", got.Events)
}
