package kafkaconn_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// TestDeployACLs runs the kafka-acls commands of docs/DEPLOY.md, with
// Kafka's own AclCommand, on a fresh events topic, dead-letter topic and
// group of the secure stack, then checks every role's principal and a
// foreign one against every operation Custody uses: what the document
// allows works, everything else is refused by the broker's authorizer (an
// authorization error, not any error, so a broken connection cannot pass
// for a refusal).
func TestDeployACLs(t *testing.T) {
	st := stacktest.Get(t)
	if !st.Secure() {
		t.Fatal("the ACL test needs the secure stack: scripts/stack up --secure (make test starts it)")
	}
	events, dlq, group := stacktest.Topic(t, st, 1), stacktest.Topic(t, st, 1), stacktest.Name(t, "g")
	for _, args := range deployACLCommands(t, "acls", map[string]string{"custody.events": events, "custody.events.dlq": dlq, "custody-archiver": group}) {
		stacktest.KafkaTool(t, st, "org.apache.kafka.tools.AclCommand", args...)
	}

	type op struct {
		name  string
		topic string // the topic the operation needs
		do    func(ctx context.Context, cl *kafka.Client) error
	}
	ops := []op{
		{"produce events", events, func(ctx context.Context, cl *kafka.Client) error { return produce(ctx, cl, events) }},
		{"produce dlq", dlq, func(ctx context.Context, cl *kafka.Client) error { return produce(ctx, cl, dlq) }},
		{"read events", events, func(ctx context.Context, cl *kafka.Client) error { return fetch(ctx, cl, events) }},
		{"commit as the archivers' group", events, func(ctx context.Context, cl *kafka.Client) error { return commit(ctx, cl, group, events) }},
	}
	allowed := map[string]map[string]bool{
		"custody-ingest":   {"produce events": true},
		"custody-archiver": {"produce dlq": true, "read events": true, "commit as the archivers' group": true},
		"custody-serve":    {"produce events": true, "read events": true},
		"custody-foreign":  {},
	}
	for user, may := range allowed {
		as := st.As(t, user)
		cl := &kafka.Client{Addr: kafka.TCP(as.KafkaBrokers...), Transport: as.Transport(), Timeout: 20 * time.Second}
		for _, o := range ops {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := o.do(ctx, cl)
			switch {
			case may[o.name] && err != nil:
				t.Errorf("%s: %s refused: %v", user, o.name, err)
			case !may[o.name] && !refused(err) && !hidden(ctx, as, o.topic):
				t.Errorf("%s: %s = %v; want an authorization refusal", user, o.name, err)
			}
			cancel()
		}
	}

	// Custody's own start-up calls work with exactly these rights: the
	// topic exists, so ensuring it asks for no Create right.
	for _, c := range []struct{ user, topic string }{{"custody-ingest", events}, {"custody-serve", events}, {"custody-archiver", dlq}} {
		kc := st.As(t, c.user).Kafka()
		kc.Topic = c.topic
		cl, err := kc.NewClient()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := cl.EnsureTopic(ctx, c.topic); err != nil {
			t.Errorf("%s: EnsureTopic(%s): %v", c.user, c.topic, err)
		}
		cancel()
		cl.Close()
	}
	// The producing side's idempotent producer (franz-go: InitProducerID,
	// then produce with a producer ID) needs no right beyond Write on the
	// topic (KIP-679): ingest and serve produce with exactly these.
	for _, user := range []string{"custody-ingest", "custody-serve"} {
		kc := st.As(t, user).Kafka()
		opts, err := kc.ProducerOpts()
		if err != nil {
			t.Fatal(err)
		}
		p, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic(events), kgo.RequiredAcks(kgo.AllISRAcks()))...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := p.ProduceSync(ctx, &kgo.Record{Value: []byte("idempotent acl probe")}).FirstErr(); err != nil {
			t.Errorf("%s: idempotent produce to the events topic: %v", user, err)
		}
		cancel()
		p.Close()
	}

	// A topic that is not there cannot be created by a role, and the
	// error says what to do.
	kc := st.As(t, "custody-ingest").Kafka()
	kc.Topic = stacktest.Name(t, "absent")
	cl, err := kc.NewClient()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.EnsureTopic(ctx, kc.Topic); err == nil || !strings.Contains(err.Error(), "may not create it: create the topic") {
		t.Errorf("EnsureTopic of an absent topic without Create: %v", err)
	}
}

// The operator's rights for `custody dlq replay` (docs/DEPLOY.md §3), run
// as written for a principal made for the test: read the dead letters and
// commit as the replay group, write to the events topic; nothing of the
// archivers' (their group) nor reading the events.
func TestDeployOperatorACLs(t *testing.T) {
	st := stacktest.Get(t)
	if !st.Secure() {
		t.Fatal("the ACL test needs the secure stack: scripts/stack up --secure (make test starts it)")
	}
	user, pass := stacktest.Name(t, "operator"), stacktest.Name(t, "pw")
	stacktest.KafkaTool(t, st, "org.apache.kafka.tools.ConfigCommand", "--bootstrap-server", "$BOOTSTRAP", "--command-config", "admin.properties",
		"--alter", "--add-config", "SCRAM-SHA-512=[password="+pass+"]", "--entity-type", "users", "--entity-name", user)
	events, dlq, replay, archivers := stacktest.Topic(t, st, 1), stacktest.Topic(t, st, 1), stacktest.Name(t, "replay"), stacktest.Name(t, "archivers")
	for _, args := range deployACLCommands(t, "acls-operator", map[string]string{"custody.events": events, "custody.events.dlq": dlq, "custody-archiver-dlq-replay": replay}) {
		for i, a := range args {
			if a == "User:custody-operator" {
				args[i] = "User:" + user
			}
		}
		stacktest.KafkaTool(t, st, "org.apache.kafka.tools.AclCommand", args...)
	}
	as := st
	as.KafkaUser, as.KafkaPassword = user, pass
	cl := &kafka.Client{Addr: kafka.TCP(as.KafkaBrokers...), Transport: as.Transport(), Timeout: 20 * time.Second}
	// A new SCRAM credential reaches every broker through the metadata
	// log: the first requests may still be refused as unauthenticated.
	for deadline := time.Now().Add(30 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := fetch(ctx, cl, dlq)
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s cannot read the dead-letter topic with the documented rights: %v", user, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for _, c := range []struct {
		name string
		may  bool
		do   func(ctx context.Context) error
		on   string
	}{
		{"read the dead letters", true, func(ctx context.Context) error { return fetch(ctx, cl, dlq) }, dlq},
		{"commit as the replay group", true, func(ctx context.Context) error { return commit(ctx, cl, replay, dlq) }, dlq},
		{"produce events", true, func(ctx context.Context) error { return produce(ctx, cl, events) }, events},
		{"read the events", false, func(ctx context.Context) error { return fetch(ctx, cl, events) }, events},
		{"commit as the archivers' group", false, func(ctx context.Context) error { return commit(ctx, cl, archivers, events) }, events},
		{"produce dead letters", false, func(ctx context.Context) error { return produce(ctx, cl, dlq) }, dlq},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := c.do(ctx)
		switch {
		case c.may && err != nil:
			t.Errorf("operator: %s refused: %v", c.name, err)
		case !c.may && !refused(err) && !hidden(ctx, as, c.on):
			t.Errorf("operator: %s = %v; want an authorization refusal", c.name, err)
		}
		cancel()
	}
}

// deployACLCommands returns the kafka-acls lines between the marker's
// begin and end comments in docs/DEPLOY.md as argument lists, with topic
// and group names renamed by names.
func deployACLCommands(t *testing.T, marker string, names map[string]string) [][]string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "DEPLOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(doc), "<!-- "+marker+":begin -->")
	block, _, ok2 := strings.Cut(block, "<!-- "+marker+":end -->")
	if !ok || !ok2 {
		t.Fatalf("docs/DEPLOY.md has no <!-- %[1]s:begin --> ... <!-- %[1]s:end --> block", marker)
	}
	var cmds [][]string
	for _, line := range strings.Split(block, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "kafka-acls.sh" {
			continue
		}
		args := f[1:]
		for i := 1; i < len(args); i++ {
			if args[i-1] == "--topic" || args[i-1] == "--group" {
				n, ok := names[args[i]]
				if !ok {
					t.Fatalf("docs/DEPLOY.md: %s %s is not a name the test knows", args[i-1], args[i])
				}
				args[i] = n
			}
		}
		cmds = append(cmds, args)
	}
	if len(cmds) == 0 {
		t.Fatal("docs/DEPLOY.md: no kafka-acls.sh line in the acls block")
	}
	return cmds
}

// hidden reports whether the broker refuses to describe topic to the
// client's principal: without Describe a topic is invisible, and a client
// that looks it up in its cached metadata (kafka-go's Client does) reports
// "topic not found"; a metadata request naming the topic, on a connection
// of the principal's own, shows the broker's refusal.
func hidden(ctx context.Context, as stacktest.Stack, topic string) bool {
	conn, err := as.Dialer().DialContext(ctx, "tcp", as.KafkaBrokers[0])
	if err != nil {
		return false
	}
	defer conn.Close()
	_, err = conn.ReadPartitions(topic)
	return errors.Is(err, kafka.TopicAuthorizationFailed)
}

func refused(err error) bool {
	return errors.Is(err, kafka.TopicAuthorizationFailed) || errors.Is(err, kafka.GroupAuthorizationFailed) || errors.Is(err, kafka.ClusterAuthorizationFailed)
}

func produce(ctx context.Context, cl *kafka.Client, topic string) error {
	resp, err := cl.Produce(ctx, &kafka.ProduceRequest{Topic: topic, Partition: 0, RequiredAcks: kafka.RequireAll,
		Records: kafka.NewRecordReader(kafka.Record{Value: kafka.NewBytes([]byte("acl probe"))})})
	if err != nil {
		return err
	}
	return resp.Error
}

func fetch(ctx context.Context, cl *kafka.Client, topic string) error {
	resp, err := cl.Fetch(ctx, &kafka.FetchRequest{Topic: topic, Partition: 0, Offset: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
	if err != nil {
		return err
	}
	return resp.Error
}

func commit(ctx context.Context, cl *kafka.Client, group, topic string) error {
	resp, err := cl.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: 0, Offset: 0}}}})
	if err != nil {
		return err
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return p.Error
		}
	}
	return nil
}
