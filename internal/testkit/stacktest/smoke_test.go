package stacktest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/lifecycle"
	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"
)

// TestKafkaGroupResume proves kafka-go works against the stack's Kafka 4.x
// through a consumer group: a committed offset survives closing the reader
// and a new member of the same group resumes right after it.
func TestKafkaGroupResume(t *testing.T) {
	st := Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	topic := Name(t, "smoke")
	group := Name(t, "smoke-group")

	client := &kafka.Client{Addr: kafka.TCP(st.KafkaBrokers...), Timeout: 30 * time.Second, Transport: st.Transport()}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: topic, NumPartitions: 1, ReplicationFactor: 1}}})
	if err != nil {
		t.Fatalf("CreateTopics: %v", err)
	}
	if err := resp.Errors[topic]; err != nil {
		t.Fatalf("CreateTopics %s: %v", topic, err)
	}

	w := &kafka.Writer{Addr: kafka.TCP(st.KafkaBrokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Compression: compress.Zstd, BatchTimeout: 10 * time.Millisecond, Transport: st.Transport()}
	var msgs []kafka.Message
	for i := 0; i < 10; i++ {
		msgs = append(msgs, kafka.Message{Key: []byte("tenant-a"), Value: []byte(fmt.Sprintf("msg-%d", i))})
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("WriteMessages: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("Writer.Close: %v", err)
	}

	newReader := func() *kafka.Reader {
		return kafka.NewReader(kafka.ReaderConfig{Brokers: st.KafkaBrokers, Dialer: st.Dialer(), GroupID: group, Topic: topic, StartOffset: kafka.FirstOffset, MaxWait: 100 * time.Millisecond})
	}
	r := newReader()
	var last kafka.Message
	for i := 0; i < 4; i++ {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("FetchMessage %d: %v", i, err)
		}
		if want := fmt.Sprintf("msg-%d", i); string(m.Value) != want || m.Offset != int64(i) {
			t.Fatalf("message %d = %q at offset %d; want %q at %d", i, m.Value, m.Offset, want, i)
		}
		last = m
	}
	if err := r.CommitMessages(ctx, last); err != nil {
		t.Fatalf("CommitMessages: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Reader.Close: %v", err)
	}

	off, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {0}}})
	if err != nil {
		t.Fatalf("OffsetFetch: %v", err)
	}
	if got := off.Topics[topic][0].CommittedOffset; got != 4 {
		t.Fatalf("committed offset = %d; want 4", got)
	}

	r = newReader()
	defer r.Close()
	m, err := r.FetchMessage(ctx)
	if err != nil {
		t.Fatalf("FetchMessage after reopen: %v", err)
	}
	if string(m.Value) != "msg-4" || m.Offset != 4 {
		t.Fatalf("after reopen got %q at offset %d; want msg-4 at offset 4", m.Value, m.Offset)
	}
}

// TestMinIOObjectLock proves the S3 features the archive depends on: an
// object-locked (hence versioned) bucket, a lifecycle rule read back, a
// COMPLIANCE retention on a put, and the refusal to delete that version.
func TestMinIOObjectLock(t *testing.T) {
	st := Get(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mc := st.MinIO(t)
	bucket := Name(t, "smoke")
	if err := mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{ObjectLocking: true}); err != nil {
		t.Fatalf("MakeBucket with object locking: %v", err)
	}
	enabled, _, _, _, err := mc.GetObjectLockConfig(ctx, bucket)
	if err != nil || enabled != "Enabled" {
		t.Fatalf("GetObjectLockConfig = %q, %v; want Enabled", enabled, err)
	}
	vc, err := mc.GetBucketVersioning(ctx, bucket)
	if err != nil || !vc.Enabled() {
		t.Fatalf("versioning = %+v, %v; object locking must enable it", vc, err)
	}

	lc := lifecycle.NewConfiguration()
	lc.Rules = []lifecycle.Rule{{
		ID:                          "security",
		Status:                      "Enabled",
		RuleFilter:                  lifecycle.Filter{Prefix: "security/"},
		Expiration:                  lifecycle.Expiration{Days: 365},
		NoncurrentVersionExpiration: lifecycle.NoncurrentVersionExpiration{NoncurrentDays: 1},
	}}
	if err := mc.SetBucketLifecycle(ctx, bucket, lc); err != nil {
		t.Fatalf("SetBucketLifecycle: %v", err)
	}
	got, err := mc.GetBucketLifecycle(ctx, bucket)
	if err != nil {
		t.Fatalf("GetBucketLifecycle: %v", err)
	}
	if len(got.Rules) != 1 || got.Rules[0].ID != "security" || got.Rules[0].Expiration.Days != 365 ||
		got.Rules[0].RuleFilter.Prefix != "security/" || got.Rules[0].NoncurrentVersionExpiration.NoncurrentDays != 1 {
		t.Fatalf("lifecycle read back = %+v; want the rule just set", got.Rules)
	}

	until := time.Now().UTC().Add(24 * time.Hour).Truncate(time.Second)
	body := []byte("sealed segment stand-in")
	info, err := mc.PutObject(ctx, bucket, "security/connection/x", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{
		Mode: minio.Compliance, RetainUntilDate: until,
	})
	if err != nil {
		t.Fatalf("PutObject with COMPLIANCE retention: %v", err)
	}
	if info.VersionID == "" {
		t.Fatal("PutObject returned no version ID on a versioned bucket")
	}
	mode, ru, err := mc.GetObjectRetention(ctx, bucket, "security/connection/x", info.VersionID)
	if err != nil || mode == nil || *mode != minio.Compliance || ru == nil || !ru.Equal(until) {
		t.Fatalf("GetObjectRetention = %v %v %v; want COMPLIANCE until %v", mode, ru, err, until)
	}
	err = mc.RemoveObject(ctx, bucket, "security/connection/x", minio.RemoveObjectOptions{VersionID: info.VersionID, GovernanceBypass: true})
	if err == nil {
		t.Fatal("deleting a COMPLIANCE-locked version succeeded; it must be refused")
	}
	t.Logf("delete refused as expected: %v", err)
	obj, err := mc.GetObject(ctx, bucket, "security/connection/x", minio.GetObjectOptions{VersionID: info.VersionID})
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(obj)
	if err != nil || !bytes.Equal(b, body) {
		t.Fatalf("locked object after refused delete = %q, %v; want it intact", b, err)
	}
}
