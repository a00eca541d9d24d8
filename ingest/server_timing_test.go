package ingest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
)

// benchBody is one request of n connection events of about 400 bytes.
func benchBody(n, seq int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"id":"bench-%d-%d","time":"2026-11-29T05:59:00.123456789Z","kind":"connection","tenant":"acme","app":"shop","ip":"203.0.113.%d","port":%d,"session":"sess-%08x","login":"user%d@example.org","user_agent":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36","method":"GET","path":"/products/%d?ref=abc","status":200}`+"\n",
			seq, i, i%250, 1024+i, i*7919, i%500, i)
	}
	return b.Bytes()
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

type discard struct{}

func (discard) Submit(context.Context, []Record) error { return nil }

// runIngestBench posts b.N requests of 1,000 events from 4 clients and
// reports events/s and events per CPU-second of this process (server,
// Kafka client and HTTP clients together: an upper bound on ingest's cost).
func runIngestBench(b *testing.B, sink submitter) {
	const perReq = 1000
	bodies := make([][]byte, 64)
	for i := range bodies {
		bodies[i] = benchBody(perReq, i)
	}
	runBench(b, sink, testConfig(), benchRequests{path: "/v1/events", bodies: bodies, perReq: perReq, status: http.StatusAccepted})
}

// benchRequests are the requests a benchmark posts, in turn.
type benchRequests struct {
	path, contentType string
	bodies            [][]byte
	perReq, status    int
}

func runBench(b *testing.B, sink submitter, cfg Config, r benchRequests) {
	srv, err := NewServer(cfg, baseOptions(), sink, zap.NewNop(), nil)
	if err != nil {
		b.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	bodies, perReq := r.bodies, r.perReq
	b.SetBytes(int64(len(bodies[0])))
	b.ReportAllocs()
	cpu0 := cpuSeconds()
	b.ResetTimer()
	var wg sync.WaitGroup
	work := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				req, _ := http.NewRequest(http.MethodPost, hs.URL+r.path, bytes.NewReader(bodies[i%len(bodies)]))
				req.Header.Set("Authorization", "Bearer "+tokenWeb)
				if r.contentType != "" {
					req.Header.Set("Content-Type", r.contentType)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					b.Error(err)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode != r.status {
					b.Errorf("status %d", resp.StatusCode)
				}
			}
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	b.StopTimer()
	events := float64(b.N * perReq)
	b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(events/(cpuSeconds()-cpu0), "events/cpu-s")
}

// BenchmarkIngestKafka is the whole ingest path: HTTP, decode, validate,
// redact, canonical encode, and produce to the real local Kafka with
// acks=all and zstd, answered 202 only after the acknowledgement.
func BenchmarkIngestKafka(b *testing.B) {
	f := newBenchFixture(b)
	runIngestBench(b, f)
}

// BenchmarkIngestNoKafka is the same without the producer, to show what
// the Kafka client costs.
func BenchmarkIngestNoKafka(b *testing.B) {
	runIngestBench(b, discard{})
}
