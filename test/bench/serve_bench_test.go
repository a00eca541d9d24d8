//go:build benchend

package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/custodylog/custody/archive"
	"github.com/custodylog/custody/internal/testkit/archivetest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/query"
	"github.com/custodylog/custody/serve"
)

// BenchmarkServe compares, in one run on the same archive (one day of
// 1,000,000 events of the shared realistic dataset, cut as the archiver
// cuts them), queries through `custody serve` over loopback HTTPS with the
// same queries run by the engine in-process:
//
//   - full: every login event of the day (the kind's segments all read);
//   - needle: one client address over the day (most segments pruned).
//
// Each is run 3 times, alternating, and the medians are reported, with
// the service's cost as a fraction of the in-process throughput. Then 50
// queries run at once through the service (max_concurrent 50), and the
// service's peak RSS is reported and checked against the bound the
// configuration implies (docs/SERVE.md §5).
func BenchmarkServe(b *testing.B) {
	st := stacktest.Get(b)
	dir := b.TempDir()
	bin := buildCustody(b, dir)
	ret := archive.Retention{DefaultClass: "security", Mode: "GOVERNANCE", Classes: []archive.Class{{Name: "security", Days: 400}}}
	s, sc := archivetest.NewStore(b, st, ret)
	d0 := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -2)
	kr := archivetest.KeysAt(b, d0)
	crypto := kr.Save(b, dir)
	perDay := 1000000
	if v, err := strconv.Atoi(os.Getenv("CUSTODY_BENCH_SERVE_EVENTS")); err == nil && v > 0 {
		perDay = v
	}
	segs, _, ip, _, _ := buildArchive(b, s, kr, d0, 1, perDay, 6)
	caFile, certFile, keyFile := writeCerts(b, dir)
	// CUSTODY_BENCH_SERVE_PLAIN=1: plain HTTP on loopback, to tell the
	// cost of TLS from the rest.
	plain := os.Getenv("CUSTODY_BENCH_SERVE_PLAIN") != ""
	tlsLine := fmt.Sprintf("  tls: {cert_file: %s, key_file: %s}\n", certFile, keyFile)
	if plain {
		tlsLine = ""
	}
	const invTok, legalTok = "cst_bench_investigator_0123456789abcdef", "cst_bench_legal_0123456789abcdef0123"
	listen, metrics := stacktest.FreePort(b), stacktest.FreePort(b)
	const memBudget, concurrency = 16 << 20, 4
	cfg := filepath.Join(dir, "custody.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
s3:
  bucket: %s
%squery:
  concurrency: %d
  memory_budget: %d
retention:
  mode: GOVERNANCE
  classes: [{name: security, days: 400}]
serve:
  listen: %s
  metrics_listen: %s
%s  max_concurrent: 50
  max_concurrent_per_identity: 50
  tokens:
    - {name: bench-inv, sha256: %s, role: investigator}
    - {name: bench-legal, sha256: %s, role: legal}
`, strings.Join(st.KafkaBrokers, ","), stacktest.Topic(b, st, 1), sc.Bucket, crypto, concurrency, memBudget, listen, metrics, tlsLine,
		serve.HashToken(invTok), serve.HashToken(legalTok))), 0o600)
	// CUSTODY_BENCH_SERVE_PROFILE=DIR: CPU profiles of the service and of
	// the in-process engine during full scans, to DIR/{serve,inproc}.pprof.
	profDir := os.Getenv("CUSTODY_BENCH_SERVE_PROFILE")
	cmd, logs := startService(b, bin, metrics, profDir != "", "serve", "--config", cfg, "--log-level", "warn")
	caPEM, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, MaxIdleConnsPerHost: 64}}
	base := "https://" + listen
	if plain {
		base = "http://" + listen
	}
	post := func(tok, path string, body any) (*http.Response, error) {
		bb, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", base+path, bytes.NewReader(bb))
		req.Header.Set("Authorization", "Bearer "+tok)
		return client.Do(req)
	}
	resp, err := post(legalTok, "/v1/cases", serve.CaseRequest{ID: "BENCH-1", Title: "bench", LegalBasis: "benchmark"})
	if err != nil || resp.StatusCode != 201 {
		b.Fatalf("open case: %v %v\n%s", resp, err, logs.String())
	}
	resp.Body.Close()

	day := d0.Format("2006-01-02")
	queries := map[string]serve.QueryRequest{
		"full":   {Case: "BENCH-1", Purpose: "bench", From: day, To: day, Kind: "login"},
		"needle": {Case: "BENCH-1", Purpose: "bench", From: day, To: day, IP: ip},
	}
	viaServe := func(q serve.QueryRequest) (int64, time.Duration) {
		t0 := time.Now()
		resp, err := post(invTok, "/v1/query", q)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("query: %v %v", resp, err)
		}
		defer resp.Body.Close()
		br := bufio.NewReaderSize(resp.Body, 1<<20)
		var n int64
		for {
			line, err := br.ReadSlice('\n')
			if len(line) > 0 && !bytes.HasPrefix(line, []byte(`{"trailer":`)) {
				n++
			}
			if err == io.EOF {
				break
			}
			if err != nil && err != bufio.ErrBufferFull {
				b.Fatal(err)
			}
		}
		return n, time.Since(t0)
	}
	eng := query.NewEngine(query.Config{Concurrency: concurrency, MaxSegmentBytes: 1 << 30, MemoryBudget: memBudget}, s, kr.Read(), []string{"security"})
	inProcess := func(q serve.QueryRequest) (int64, time.Duration) {
		f := query.Filter{From: d0, To: d0.AddDate(0, 0, 1), Kind: q.Kind}
		if q.IP != "" {
			p, _ := query.ParseIP(q.IP)
			f.IP = &p
		}
		t0 := time.Now()
		var n int64
		if _, err := eng.Run(context.Background(), f, query.Options{}, func([]byte) error { n++; return nil }); err != nil {
			b.Fatal(err)
		}
		return n, time.Since(t0)
	}
	// Medians of alternating runs: on two shared cores single runs vary
	// by ±10%, as much as the cost measured.
	runs := 7
	if v, err := strconv.Atoi(os.Getenv("CUSTODY_BENCH_SERVE_RUNS")); err == nil && v > 0 {
		runs = v
	}
	b.ResetTimer()
	for _, name := range []string{"full", "needle"} {
		q := queries[name]
		var ds, dl, cs, cl []time.Duration
		var ns, nl int64
		for i := 0; i < runs; i++ {
			c0 := selfCPU(b)
			n1, d1 := inProcess(q)
			c1 := selfCPU(b) - c0
			c0 = procCPU(b, cmd.Process.Pid)
			n2, d2 := viaServe(q)
			c2 := procCPU(b, cmd.Process.Pid) - c0
			if n1 != n2 {
				b.Fatalf("%s: in-process %d events, through serve %d", name, n1, n2)
			}
			nl, ns = n1, n2
			dl, ds, cl, cs = append(dl, d1), append(ds, d2), append(cl, c1), append(cs, c2)
		}
		ml, ms, mcl, mcs := median(dl), median(ds), median(cl), median(cs)
		cost := func(a, b time.Duration) float64 { return (b.Seconds() - a.Seconds()) / a.Seconds() * 100 }
		b.ReportMetric(ml.Seconds(), name+"-inproc-s")
		b.ReportMetric(ms.Seconds(), name+"-serve-s")
		b.ReportMetric(cost(ml, ms), name+"-cost-%")
		b.ReportMetric(mcl.Seconds(), name+"-inproc-cpu-s")
		b.ReportMetric(mcs.Seconds(), name+"-serve-cpu-s")
		b.ReportMetric(cost(mcl, mcs), name+"-cpu-cost-%")
		b.Logf("%s (%d events, %d segments): in-process %s (%.0f events/s), through serve %s (%.0f events/s): %+.1f%%; CPU: engine %s, service %s (%.0f events per CPU-second): %+.1f%%",
			name, nl, segs, ml.Round(time.Millisecond), float64(nl)/ml.Seconds(), ms.Round(time.Millisecond), float64(ns)/ms.Seconds(), cost(ml, ms),
			mcl.Round(time.Millisecond), mcs.Round(time.Millisecond), float64(ns)/mcs.Seconds(), cost(mcl, mcs))
	}
	if profDir != "" {
		profile(b, profDir, metrics, func() { viaServe(queries["full"]) }, func() { inProcess(queries["full"]) })
	}
	// 50 at once: each a day's full scan of the login kind.
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			viaServe(queries["full"])
		}()
	}
	wg.Wait()
	hwm := peakRSS(b, cmd.Process.Pid)
	bound := int64(50*(memBudget+concurrency*8<<20) + 256<<20)
	b.ReportMetric(float64(hwm)/(1<<20), "50x-peak-rss-MiB")
	b.Logf("50 concurrent full scans in %s; serve's peak RSS %d MiB (bound %d MiB: 50 × (memory_budget + concurrency × 8 MiB) + 256 MiB)",
		time.Since(t0).Round(time.Millisecond), hwm>>20, bound>>20)
	if hwm > bound {
		b.Errorf("peak RSS %d MiB over the bound %d MiB", hwm>>20, bound>>20)
	}
}

// profile records 8 s of CPU profile of the service (through its pprof
// endpoint) while viaServe runs in a loop, then 8 s of this process while
// inProcess does.
func profile(b *testing.B, dir, metrics string, viaServe, inProcess func()) {
	loop := func(fn func(), record func()) {
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				select {
				case <-stop:
					return
				default:
					fn()
				}
			}
		}()
		record()
		close(stop)
		<-done
	}
	loop(viaServe, func() {
		resp, err := http.Get("http://" + metrics + "/debug/pprof/profile?seconds=8")
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		f, _ := os.Create(filepath.Join(dir, "serve.pprof"))
		defer f.Close()
		io.Copy(f, resp.Body)
	})
	loop(inProcess, func() {
		f, _ := os.Create(filepath.Join(dir, "inproc.pprof"))
		defer f.Close()
		pprof.StartCPUProfile(f)
		time.Sleep(8 * time.Second)
		pprof.StopCPUProfile()
	})
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// root is the repository's top directory.
func root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// buildCustody builds the binary into dir.
func buildCustody(b *testing.B, dir string) string {
	bin := filepath.Join(dir, "custody")
	if out, err := exec.Command("go", "build", "-o", bin, filepath.Join(root(), "cmd", "custody")).CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startService starts a long-running custody command (args after the
// binary; --pprof added when pprof) and waits for its /readyz on
// metrics. Its log is the returned buffer. The caller may stop it with
// SIGTERM and Wait; if it has not when the benchmark ends, cleanup does.
func startService(b *testing.B, bin, metrics string, pprof bool, args ...string) (*exec.Cmd, *bytes.Buffer) {
	if pprof {
		args = append(args, "--pprof")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = os.Environ()
	logs := &bytes.Buffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	})
	waitReady(b, metrics, logs)
	return cmd, logs
}

// waitReady waits for a service's /readyz (a minute at most).
func waitReady(b *testing.B, metrics string, logs *bytes.Buffer) {
	for deadline := time.Now().Add(60 * time.Second); ; {
		if resp, err := http.Get("http://" + metrics + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("not ready:\n%s", logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// peakRSS is a process's high-water resident set (VmHWM), in bytes.
func peakRSS(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}

// selfCPU is the CPU time this process has used (user and system).
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// procCPU is the CPU time process pid has used (user and system), from
// /proc/PID/stat (clock ticks of 10 ms).
func procCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is the first, utime the 12th, stime the 13th.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// writeCerts writes a CA and a certificate for 127.0.0.1 signed by it.
func writeCerts(b *testing.B, dir string) (caFile, certFile, keyFile string) {
	ck, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, _ := x509.CreateCertificate(rand.Reader, ca, ca, &ck.PublicKey, ck)
	sk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	caCert, _ := x509.ParseCertificate(caDER)
	leafDER, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &sk.PublicKey, ck)
	if err != nil {
		b.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(sk)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "serve.pem"), filepath.Join(dir, "serve-key.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	return
}
