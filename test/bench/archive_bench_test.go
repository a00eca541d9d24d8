//go:build benchend

// Package bench holds the end-to-end benchmarks that need the real stack
// and a built binary: `make bench-archive`.
package bench

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/event"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/dataset"
	"github.com/custodylog/custody/internal/testkit/stacktest"
)

// BenchmarkArchive2M produces 2,000,000 events of the shared realistic
// dataset (about 515 bytes; the mean is reported as raw-B/event) to a
// fresh 6-partition topic, then times `custody archive run` (a separate
// process, default flush settings) from start until it has consumed them
// all and, on SIGTERM, flushed and committed. It reports events/s, the
// archiver's own CPU seconds per million events (getrusage of the child)
// and stored bytes per event, for each segment format: v2 (zstd of JSON
// lines) and v3 (columnar), on the same data in one run. Run with
// -benchtime 1x.
func BenchmarkArchive2M(b *testing.B) {
	const total = 2000000
	st := stacktest.Get(b)
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	dir := b.TempDir()
	bin := filepath.Join(dir, "custody")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root, "cmd", "custody")).CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 30}}}
	// CUSTODY_BENCH_FORMATS=3 runs one format only; CUSTODY_BENCH_MEMORY_CAP
	// sets archive.memory_cap (default 512MiB).
	formats := []int{2, 3}
	if v, err := strconv.Atoi(os.Getenv("CUSTODY_BENCH_FORMATS")); err == nil {
		formats = []int{v}
	}
	for _, format := range formats {
		b.Run(fmt.Sprintf("v%d", format), func(b *testing.B) { benchArchive(b, st, bin, dir, ret, total, format) })
	}
}

func benchArchive(b *testing.B, st stacktest.Stack, bin, dir string, ret archive.Retention, n, format int) {
	total := float64(n)
	memCap := cmp.Or(os.Getenv("CUSTODY_BENCH_MEMORY_CAP"), "512MiB")
	for i := 0; i < b.N; i++ {
		topic := stacktest.Topic(b, st, 6)
		s, sc := archivetest.NewStore(b, st, ret)
		kr := archivetest.Keyring(b)
		crypto := kr.Save(b, dir)
		rawBytes := produce(b, st, topic, n)
		cfg := filepath.Join(dir, "custody.yaml")
		os.WriteFile(cfg, []byte(fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
  dlq_topic: %s.dlq
s3:
  bucket: %s
%sarchive:
  group_id: bench-%s
  metrics_listen: 127.0.0.1:19401
  segment_format: %d
  memory_cap: %s
retention:
  mode: GOVERNANCE
  classes: [{name: security, days: 30}]
`, strings.Join(st.KafkaBrokers, ","), topic, topic, sc.Bucket, crypto, topic, format, memCap)), 0o600)

		b.ResetTimer()
		start := time.Now()
		args := []string{"archive", "run", "--config", cfg, "--log-level", "warn"}
		if os.Getenv("CUSTODY_BENCH_CPUPROFILE") != "" || os.Getenv("CUSTODY_BENCH_HEAPPROFILE") != "" {
			args = append(args, "--pprof") // the profile endpoint is off by default
		}
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		profiled := os.Getenv("CUSTODY_BENCH_CPUPROFILE") == ""
		heaped := os.Getenv("CUSTODY_BENCH_HEAPPROFILE") == ""
		for consumed(19401) < total {
			if !profiled && consumed(19401) > 0 {
				// Optional: a CPU profile of the archiver mid-run.
				profiled = true
				go exec.Command("curl", "-s", "-o", os.Getenv("CUSTODY_BENCH_CPUPROFILE"), "http://127.0.0.1:19401/debug/pprof/profile?seconds=5").Run()
			}
			if !heaped && consumed(19401) > total/2 {
				// Optional: the archiver's heap halfway through.
				heaped = true
				exec.Command("curl", "-s", "-o", os.Getenv("CUSTODY_BENCH_HEAPPROFILE"), "http://127.0.0.1:19401/debug/pprof/heap").Run()
			}
			time.Sleep(50 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			b.Fatalf("archiver: %v\n%s", err, stderr.String())
		}
		elapsed := time.Since(start)
		b.StopTimer()
		ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
		var stored int64
		for o, err := range s.List(context.Background(), "") {
			if err != nil {
				b.Fatal(err)
			}
			stored += o.Size
		}
		got := archivetest.Read(b, s, kr)
		if got.Events != n {
			b.Fatalf("archive holds %d events; want %d", got.Events, n)
		}
		b.ReportMetric(total/elapsed.Seconds(), "events/s")
		b.ReportMetric(cpu/(total/1e6), "cpu-s/Mevents")
		b.ReportMetric(float64(stored)/total, "stored-B/event")
		b.ReportMetric(float64(rawBytes)/float64(stored), "ratio")
		b.ReportMetric(float64(ru.Maxrss)/1024, "maxrss-MiB")
		b.ReportMetric(float64(rawBytes)/total, "raw-B/event")
		b.ReportMetric(float64(got.Segments)/(total/1e6), "objects/Mevents")
		b.Logf("%d events (%d raw bytes) archived in %s into %d segments: %.1f CPU-s, %d bytes stored", n, rawBytes, elapsed.Round(time.Millisecond), got.Segments, cpu, stored)

		// custody verify over the archive, as an auditor runs it (every
		// checkpoint read, every segment's bytes hashed), then with --deep
		// (every segment decrypted and its events checked).
		for _, deep := range []bool{false, true} {
			args, label := []string{"verify", "--config", cfg, "--format", "json"}, "verify"
			if deep {
				args, label = append(args, "--deep"), "verify-deep"
			}
			vstart := time.Now()
			vcmd := exec.Command(bin, args...)
			var vout, verr bytes.Buffer
			vcmd.Stdout, vcmd.Stderr = &vout, &verr
			if err := vcmd.Run(); err != nil {
				b.Fatalf("custody %s: %v\n%s%s", strings.Join(args, " "), err, vout.String(), verr.String())
			}
			vel := time.Since(vstart)
			vru := vcmd.ProcessState.SysUsage().(*syscall.Rusage)
			var rep struct {
				Checkpoints, Segments int
				Events                int64
			}
			json.Unmarshal(vout.Bytes(), &rep)
			b.ReportMetric(float64(rep.Segments)/vel.Seconds(), label+"-segments/s")
			b.ReportMetric(total/vel.Seconds(), label+"-events/s")
			b.Logf("custody %s: %d checkpoints, %d segments (%d bytes), %d events decrypted, in %s (%.1f CPU-s): %.0f segments/s, %.0f events/s, 0 findings",
				label, rep.Checkpoints, rep.Segments, stored, rep.Events, vel.Round(time.Millisecond), time.Duration(vru.Utime.Nano()+vru.Stime.Nano()).Seconds(),
				float64(rep.Segments)/vel.Seconds(), total/vel.Seconds())
		}
	}
}

// produce writes n events of the shared dataset (the last 6 hours, 1% late)
// and returns the raw JSON bytes sent.
func produce(b *testing.B, st stacktest.Stack, topic string, n int) int64 {
	w := &kafka.Writer{Addr: kafka.TCP(st.KafkaBrokers...), Topic: topic, RequiredAcks: kafka.RequireAll, Balancer: &kafka.Murmur2Balancer{},
		Compression: kafka.Zstd, BatchSize: 10000, BatchBytes: 1 << 20, BatchTimeout: 10 * time.Millisecond, Transport: st.Transport()}
	defer w.Close()
	// The shared realistic dataset (internal/testkit/dataset): 60 tenants,
	// 200k IPs, real user agents, 6 hours with 1% late.
	g := dataset.New(dataset.Options{Seed: 1, Total: n, Start: time.Now().UTC().Truncate(time.Hour).Add(-6 * time.Hour)})
	var raw int64
	msgs := make([]kafka.Message, 0, 10000)
	for i := 0; i < n; i++ {
		e := g.Next()
		line := event.AppendJSON(nil, e)
		v := line[:len(line)-1]
		raw += int64(len(line))
		msgs = append(msgs, kafka.Message{Key: []byte(e.Tenant), Value: v})
		if len(msgs) == cap(msgs) || i == n-1 {
			if err := w.WriteMessages(context.Background(), msgs...); err != nil {
				b.Fatal(err)
			}
			msgs = msgs[:0]
		}
	}
	return raw
}

func consumed(port int) float64 {
	resp, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(resp, "\n") {
		if strings.HasPrefix(line, "custody_archiver_events_consumed_total ") {
			var v float64
			fmt.Sscanf(strings.TrimPrefix(line, "custody_archiver_events_consumed_total "), "%g", &v)
			return v
		}
	}
	return 0
}
