// Package pipelinetest runs the real archiver in-process over a topic of
// the test stack, for tests that need an archive built the way production
// builds it. (It is not in archivetest, which the pipeline's own tests
// import.)
package pipelinetest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/internal/kafkaconn"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/pipeline"
)

// Archive runs an archiver on topic into s until its group has committed
// every partition, then stops it (which flushes and commits), so the
// archive holds everything produced before the call. Segments are cut every
// flushEvents events or second, late hours included, so a small test
// produces many. It returns the archiver's consumer group.
func Archive(t testing.TB, st stacktest.Stack, topic string, s *store.Store, ret archive.Retention, keys keyring.WriteKeys, flushEvents int) string {
	t.Helper()
	kc := kafkaconn.Defaults()
	kc.Brokers, kc.Topic, kc.DLQTopic = st.KafkaBrokers, topic, stacktest.Topic(t, st, 1)
	pc := pipeline.Defaults()
	pc.GroupID, pc.MetricsListen, pc.FlushEvents, pc.FlushAge, pc.LateFlushAge = stacktest.Name(t, "g"), "127.0.0.1:0", flushEvents, time.Second, time.Second
	a, err := pipeline.New(pc, kc, ret, s, keys, zap.NewNop(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	for deadline := time.Now().Add(2 * time.Minute); !stacktest.CaughtUp(st, pc.GroupID, topic); {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatal("the archiver did not commit every partition within 2 minutes")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return pc.GroupID
}
