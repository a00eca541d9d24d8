//go:build benchend

package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodylog/custody/internal/testkit/browsertest"
	"github.com/custodylog/custody/internal/testkit/stacktest"
	"github.com/custodylog/custody/serve"
)

// BenchmarkConsoleFirstRow measures, in headless Chromium, the time from
// the console's Search click to the first row drawn, for a needle query
// (one busy client address) over the 30-day benchmark archive (30 days ×
// CUSTODY_BENCH_CONSOLE_EVENTS a day, default 1,000,000, of the shared
// realistic dataset, cut as the archiver cuts them), through `custody
// serve` as a process; and the time until the search has read its last
// segment. Five searches, medians. Issue 15 asks for the first row within
// 1 s.
func BenchmarkConsoleFirstRow(b *testing.B) {
	st := stacktest.Get(b)
	dir := b.TempDir()
	bin := buildCustody(b, dir)
	const days = monthDays
	m := buildMonth(b, st, "CUSTODY_BENCH_CONSOLE_EVENTS")
	d0, segs, ip := m.d0, m.segs, m.ip
	crypto := m.kr.Save(b, dir)

	const invTok, legalTok = "cst_bench_investigator_0123456789abcdef", "cst_bench_legal_0123456789abcdef0123"
	listen, metrics := stacktest.FreePort(b), stacktest.FreePort(b)
	cfg := filepath.Join(dir, "custody.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`kafka:
  brokers: [%s]
  topic: %s
s3:
  bucket: %s
%sretention:
  mode: GOVERNANCE
  classes: [{name: security, days: 400}]
serve:
  listen: %s
  metrics_listen: %s
  tokens:
    - {name: bench-inv, sha256: %s, role: investigator}
    - {name: bench-legal, sha256: %s, role: legal}
`, strings.Join(st.KafkaBrokers, ","), stacktest.Topic(b, st, 1), m.bucket, crypto, listen, metrics, serve.HashToken(invTok), serve.HashToken(legalTok))), 0o600)
	_, logs := startService(b, bin, metrics, false, "serve", "--config", cfg, "--log-level", "warn")
	base := "http://" + listen
	body, _ := json.Marshal(serve.CaseRequest{ID: "BENCH-UI", Title: "console bench", LegalBasis: "benchmark"})
	req, _ := http.NewRequest("POST", base+"/v1/cases", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+legalTok)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 201 {
		b.Fatalf("open case: %v %v\n%s", resp, err, logs.String())
	}

	ctx, _ := browsertest.New(b)
	browsertest.SignIn(b, ctx, base, invTok)
	from, to := d0.Format("2006-01-02T15:04"), d0.AddDate(0, 0, days).Format("2006-01-02T15:04")
	var first, all []time.Duration
	var rows int
	b.ResetTimer()
	for i := 0; i < 5; i++ {
		t0 := time.Now()
		browsertest.Do(b, ctx, "search",
			chromedp.Navigate(base+"/#search"),
			browsertest.WaitJS(`document.querySelector('#search-form select[name=case]').options.length > 0`),
			chromedp.SetValue(chromedp.CSS(`#search-form [name=case]`), "BENCH-UI"),
			chromedp.SetValue(chromedp.CSS(`#search-form [name=purpose]`), "console benchmark"),
			chromedp.SetValue(chromedp.CSS(`#search-form [name=from]`), from),
			chromedp.SetValue(chromedp.CSS(`#search-form [name=to]`), to),
			chromedp.SetValue(chromedp.CSS(`#search-form [name=ip]`), ip),
			chromedp.Click(chromedp.CSS("#search-run")),
			browsertest.WaitJS(`!!document.querySelector('#results').dataset.firstRowMs`),
		)
		ms, _ := strconv.Atoi(browsertest.Eval[string](b, ctx, `document.querySelector('#results').dataset.firstRowMs`))
		browsertest.Do(b, ctx, "search end", chromedp.Poll[chromedp.Void](`!document.querySelector('#search-run').disabled`, chromedp.WithPollingTimeout(10*time.Minute)))
		all = append(all, time.Since(t0))
		first = append(first, time.Duration(ms)*time.Millisecond)
		rows = browsertest.Eval[int](b, ctx, `document.querySelectorAll('#results-table tbody tr').length`)
		if rows == 0 {
			b.Fatalf("the needle search found nothing:\n%s", browsertest.Text(b, ctx, "#search-problems"))
		}
	}
	med := func(ds []time.Duration) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2]
	}
	b.ReportMetric(med(first).Seconds()*1000, "first-row-ms")
	b.ReportMetric(med(all).Seconds(), "whole-search-s")
	b.Logf("needle %s over %d days (%d segments): first row after %s (median of %v), whole search %s (median of %v); %s",
		ip, days, segs, med(first), first, med(all).Round(time.Millisecond), all, browsertest.Text(b, ctx, "#search-progress .text"))
}
