//go:build benchend

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/export"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/serve"
)

// BenchmarkExport: a disclosure of ~10,000,000 events (every connection
// event of one day of the shared realistic dataset, ~12.9M events in all,
// 78% connections) through `custody serve` as a process: the engine reads
// and merges, the package writer streams the zip into a sealed temporary
// file, which is then stored. Reports events/s, the package's size, and
// the service's peak resident memory (VmHWM), which issue 13 bounds at 256
// MiB. CUSTODY_BENCH_EXPORT_EVENTS sets the day's total.
func BenchmarkExport(b *testing.B) {
	st := stacktest.Get(b)
	dir := b.TempDir()
	bin := buildCustody(b, dir)
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 400}}}
	s, sc := archivetest.NewStore(b, st, ret)
	d0 := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	kr := archivetest.KeysAt(b, d0)
	crypto := kr.Save(b, dir)
	total := 12_900_000
	if v, err := strconv.Atoi(os.Getenv("CUSTODY_BENCH_EXPORT_EVENTS")); err == nil && v > 0 {
		total = v
	}
	buildStart := time.Now()
	segs, _, _, _, _ := buildArchive(b, s, kr, d0, 1, total, 6)
	b.Logf("archive: %d events in %d segments, built in %s", total, segs, time.Since(buildStart).Round(time.Second))

	const legalTok = "cst_bench_legal_0123456789abcdef0123"
	listen, metrics := stacktest.FreePort(b), stacktest.FreePort(b)
	cfg := filepath.Join(dir, "custody.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
s3:
  bucket: %s
%squery:
  concurrency: 4
retention:
  mode: GOVERNANCE
  classes: [{name: security, days: 400}]
serve:
  listen: %s
  metrics_listen: %s
  exports:
    max_events: 20000000
    temp_dir: %s
  tokens:
    - {name: bench-legal, sha256: %s, role: legal}
`, strings.Join(st.KafkaBrokers, ","), stacktest.Topic(b, st, 1), sc.Bucket, crypto, listen, metrics, dir, serve.HashToken(legalTok))), 0o600)
	cmd, logs := startService(b, bin, metrics, false, "serve", "--config", cfg, "--log-level", "warn")
	base := "http://" + listen
	call := func(method, path string, body any) []byte {
		var rd io.Reader
		if body != nil {
			bb, _ := json.Marshal(body)
			rd = bytes.NewReader(bb)
		}
		req, _ := http.NewRequest(method, base+path, rd)
		req.Header.Set("Authorization", "Bearer "+legalTok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 300 {
			b.Fatalf("%s %s: %d %s\n%s", method, path, resp.StatusCode, out, logs.String())
		}
		return out
	}
	call("POST", "/v1/cases", serve.CaseRequest{ID: "BENCH-X", Title: "bench", LegalBasis: "benchmark"})
	day := d0.Format("2006-01-02")
	b.ResetTimer()
	start := time.Now()
	var e serve.Export
	json.Unmarshal(call("POST", "/v1/exports", serve.ExportRequest{QueryRequest: serve.QueryRequest{Case: "BENCH-X", Purpose: "bench", From: day, To: day, Kind: "connection"}}), &e)
	for e.Result == nil {
		time.Sleep(500 * time.Millisecond)
		json.Unmarshal(call("GET", "/v1/exports/"+e.ID, nil), &e)
	}
	took := time.Since(start)
	b.StopTimer()
	if e.Status != serve.ExportReady {
		b.Fatalf("export %s: %s\n%s", e.ID, e.Result.Error, logs.String())
	}
	rss := peakRSS(b, cmd.Process.Pid)
	cpu := procCPU(b, cmd.Process.Pid)
	b.Logf("export of %d events (%d segments): %s, %.0f events/s, %.0f events per CPU-second; package %.1f MiB; serve's peak RSS %d MiB",
		e.Result.Events, e.Result.Segments, took.Round(time.Second), float64(e.Result.Events)/took.Seconds(), float64(e.Result.Events)/cpu.Seconds(),
		float64(e.Result.Size)/(1<<20), rss>>20)
	b.ReportMetric(float64(e.Result.Events), "events")
	b.ReportMetric(float64(e.Result.Events)/took.Seconds(), "events/s")
	b.ReportMetric(float64(rss>>20), "peak-rss-MiB")
	b.ReportMetric(float64(e.Result.Size)/(1<<20), "package-MiB")

	// The package, downloaded to a file, verifies offline.
	req, _ := http.NewRequest("GET", base+"/v1/exports/"+e.ID+"/package", nil)
	req.Header.Set("Authorization", "Bearer "+legalTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "package.zip"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	n, err := io.Copy(f, resp.Body)
	resp.Body.Close()
	if err != nil || n != e.Result.Size {
		b.Fatalf("download: %d of %d bytes, %v", n, e.Result.Size, err)
	}
	keys := export.Keys{}
	keys.Add(kr.Signer.ID, kr.Signer.Public().Public)
	verifyStart := time.Now()
	res, err := export.Verify(f, n, keys)
	if err != nil || len(res.Findings) != 0 {
		b.Fatalf("the package does not verify: %v %v", err, res.Findings)
	}
	b.Logf("export verify: %s", time.Since(verifyStart).Round(time.Second))
}
