package stacktest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// Topic creates a fresh topic with the given partitions and returns its name.
func Topic(t testing.TB, st Stack, partitions int) string {
	t.Helper()
	name := Name(t, "t")
	// A Transport of its own: kafka-go's shared default one pools
	// connections, which are dead after a fault test restarted the broker.
	cl := &kafka.Client{Addr: kafka.TCP(st.KafkaBrokers...), Timeout: 30 * time.Second, Transport: st.Transport()}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: partitions, ReplicationFactor: st.ReplicationFactor}}})
	if err != nil {
		t.Fatalf("CreateTopics %s: %v", name, err)
	}
	if err := resp.Errors[name]; err != nil {
		t.Fatalf("CreateTopics %s: %v", name, err)
	}
	return name
}

// ReadAll reads every partition of topic from the beginning until it has
// at least want messages or timeout passes, and returns what it read. It
// uses no consumer group.
func ReadAll(t testing.TB, st Stack, topic string, want int, timeout time.Duration) []kafka.Message {
	t.Helper()
	return ReadUntil(t, st, topic, func(msgs []kafka.Message) bool { return len(msgs) >= want }, timeout)
}

// ReadUntil reads every partition of topic from the beginning, passing
// everything read so far to done after each pass, until done returns true
// or timeout passes. Duplicates are kept, so done must count what it needs
// (distinct IDs, say) rather than messages.
func ReadUntil(t testing.TB, st Stack, topic string, done func([]kafka.Message) bool, timeout time.Duration) []kafka.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(st.KafkaBrokers...), Timeout: 10 * time.Second, Transport: st.Transport()}
	var md *kafka.MetadataResponse
	for {
		var err error
		md, err = cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
		if err == nil && len(md.Topics) == 1 && md.Topics[0].Error == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Metadata %s: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond) // broker restarting
	}
	next := map[int]int64{} // per partition: next offset to read
	var out []kafka.Message
	for ctx.Err() == nil {
		for _, p := range md.Topics[0].Partitions {
			end, err := lastOffset(ctx, st, topic, p.ID)
			if err != nil {
				// Right after a broker restart a partition may have no
				// leader yet: try again on the next pass.
				continue
			}
			if next[p.ID] >= end {
				continue
			}
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: st.KafkaBrokers, Dialer: st.Dialer(), Topic: topic, Partition: p.ID, MaxWait: 50 * time.Millisecond, MaxBytes: 16 << 20})
			r.SetOffset(next[p.ID])
			for next[p.ID] < end {
				m, err := r.ReadMessage(ctx)
				if err != nil {
					break
				}
				out = append(out, m)
				next[p.ID] = m.Offset + 1
			}
			r.Close()
		}
		if done(out) {
			return out
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	return out
}

func lastOffset(ctx context.Context, st Stack, topic string, partition int) (int64, error) {
	conn, err := st.Dialer().DialLeader(ctx, "tcp", st.KafkaBrokers[0], topic, partition)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	return conn.ReadLastOffset()
}

// CaughtUp reports whether consumer group has committed every partition of
// topic up to its end.
func CaughtUp(st Stack, group, topic string) bool {
	ok, _ := Progress(st, group, topic)
	return ok
}

// Progress is CaughtUp with a description of each partition's committed
// and end offsets, for failure messages.
func Progress(st Stack, group, topic string) (bool, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl := &kafka.Client{Addr: kafka.TCP(st.KafkaBrokers...), Transport: st.Transport(), Timeout: 10 * time.Second}
	md, err := cl.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil || len(md.Topics) != 1 {
		return false, fmt.Sprintf("metadata of %s: %v", topic, err)
	}
	var ps []int
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		ps = append(ps, p.ID)
		reqs = append(reqs, kafka.LastOffsetOf(p.ID))
	}
	off, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		return false, err.Error()
	}
	ends, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return false, err.Error()
	}
	end := map[int]int64{}
	for _, p := range ends.Topics[topic] {
		end[p.Partition] = p.LastOffset
	}
	ok := len(off.Topics[topic]) == len(ps)
	var b strings.Builder
	for _, p := range off.Topics[topic] {
		fmt.Fprintf(&b, "partition %d: committed %d of %d (%v) metadata %q\n", p.Partition, p.CommittedOffset, end[p.Partition], p.Error, p.Metadata)
		// An empty partition has nothing to commit.
		if p.Error != nil || p.CommittedOffset < end[p.Partition] && end[p.Partition] > 0 {
			ok = false
		}
	}
	return ok, b.String()
}

// KafkaTool runs one of Kafka's command-line tools (class, such as
// org.apache.kafka.tools.AclCommand for kafka-acls.sh) from the stack's
// Kafka install, as the stack's principal, and returns its output or ends
// the test. In args, "$BOOTSTRAP" stands for the brokers and
// "admin.properties" for a client configuration file of the principal
// (SASL_SSL with SCRAM on the secure stack), as Kafka's documentation
// writes them.
func KafkaTool(t testing.TB, st Stack, class string, args ...string) []byte {
	t.Helper()
	libs := os.Getenv("CUSTODY_KAFKA_LIBS")
	if libs == "" {
		t.Fatal("CUSTODY_KAFKA_LIBS is not set: source .stack/env (make test does)")
	}
	props := filepath.Join(t.TempDir(), "admin.properties")
	var conf string
	if st.Secure() {
		conf = fmt.Sprintf("security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"+
			"sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"%s\" password=\"%s\";\n"+
			"ssl.truststore.type=PEM\nssl.truststore.location=%s\n", st.KafkaUser, st.KafkaPassword, st.KafkaCAFile)
	}
	if err := os.WriteFile(props, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	args = slices.Clone(args)
	for i, a := range args {
		switch a {
		case `"$BOOTSTRAP"`, "$BOOTSTRAP":
			args[i] = strings.Join(st.KafkaBrokers, ",")
		case "admin.properties":
			args[i] = props
		}
	}
	out, err := exec.Command("java", append([]string{"-Xmx256m", "-cp", filepath.Join(libs, "*"), class}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", class, strings.Join(args, " "), err, out)
	}
	return out
}
