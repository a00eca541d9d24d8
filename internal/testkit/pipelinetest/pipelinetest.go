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
	group := stacktest.Name(t, "g")
	Run(t, st, topic, stacktest.Topic(t, st, 1), group, s, ret, keys, flushEvents)
	return group
}

// Run is Archive with the dead-letter topic and the group named, so that a
// test can run the archiver again where it stopped (with another
// retention, say).
func Run(t testing.TB, st stacktest.Stack, topic, dlqTopic, group string, s *store.Store, ret archive.Retention, keys keyring.WriteKeys, flushEvents int) {
	t.Helper()
	kc := st.Kafka()
	kc.Topic, kc.DLQTopic = topic, dlqTopic
	pc := pipeline.Defaults()
	pc.GroupID, pc.MetricsListen, pc.FlushEvents, pc.FlushAge, pc.LateFlushAge = group, "127.0.0.1:0", flushEvents, time.Second, time.Second
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
}
