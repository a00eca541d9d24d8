package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/custodylog/custody/archive/store"
	"github.com/custodylog/custody/export"
	"github.com/custodylog/custody/internal/testkit/browsertest"
)

// The console in a real browser: Debian's Chromium, headless, driven over
// the DevTools protocol by chromedp (internal/testkit/browsertest), against
// custody serve's handler on the real Kafka and MinIO (the rig).
// CUSTODY_CONSOLE_SCREENSHOTS=DIR saves a screenshot of each main page
// there (docs/console/ holds the ones the README links).

func signOut(t *testing.T, ctx context.Context) {
	t.Helper()
	browsertest.Do(t, ctx, "sign out", chromedp.Click(chromedp.CSS("form.signout button")), chromedp.WaitVisible(chromedp.CSS("#token")))
}

// search fills the search form (every filter not in set is cleared) and
// runs it, waiting for the answer's end; it returns the IDs in the table.
func search(t *testing.T, ctx context.Context, r *rig, caseID string, set map[string]string) []string {
	t.Helper()
	from, to := r.hour.Format("2006-01-02T15:04"), r.hour.Add(time.Hour).Format("2006-01-02T15:04")
	browsertest.Do(t, ctx, "search page",
		chromedp.Navigate(strings.TrimSuffix(r.url, "/")+"/#search"),
		browsertest.WaitJS(`document.querySelector('#search-form select[name=case]').options.length > 0`),
	)
	values := map[string]string{"case": caseID, "purpose": "browser test", "from": from, "to": to}
	for _, n := range []string{"ip", "login", "kind", "tenant", "app", "repo", "session"} {
		values[n] = set[n]
	}
	browsertest.Fill(t, ctx, "#search-form", values)
	actions := []chromedp.Action[chromedp.Void]{
		chromedp.Click(chromedp.CSS("#search-run")),
		browsertest.WaitJS(`document.body.dataset.search === 'done'`),
	}
	browsertest.Do(t, ctx, "search", actions...)
	return browsertest.Eval[[]string](t, ctx, `[...document.querySelectorAll('#results-table tbody tr')].map(r => r.dataset.id)`)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// custodyBinary builds cmd/custody once for the package's tests.
func custodyBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "custody-console-test")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "custody")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/custody").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("%v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// The investigator's path: sign in, open the case (as legal), search for
// an IP, read a row, and the rows are exactly what the CLI answers to the
// command line the console copies. Then an unreadable segment shows as a
// message beside the rows, not as a silent gap.
func TestConsoleSearchMatchesCLI(t *testing.T) {
	r := newRig(t)
	ctx, _ := browsertest.New(t)

	browsertest.Do(t, ctx, "sign-in page", chromedp.Navigate(r.url+"/"), chromedp.WaitVisible(chromedp.CSS("#token")))
	browsertest.Screenshot(t, ctx, "sign-in")
	browsertest.Accessible(t, ctx, "sign-in")
	browsertest.SignIn(t, ctx, r.url, r.tokens["legal"])
	if who := browsertest.Text(t, ctx, "#who"); !strings.Contains(who, "legal · legal") || !strings.Contains(who, "all tenants") {
		t.Errorf("header shows %q; want the identity, its role and its tenants", who)
	}
	browsertest.Do(t, ctx, "open a case",
		chromedp.WaitVisible(chromedp.CSS("#case-form")),
		chromedp.SetValue(chromedp.CSS(`#case-form [name=id]`), "WEB-1"),
		chromedp.SetValue(chromedp.CSS(`#case-form [name=title]`), "Account takeover, acme"),
		chromedp.SetValue(chromedp.CSS(`#case-form [name=legal_basis]`), "art. 60-1 CPP"),
		chromedp.SetValue(chromedp.CSS(`#case-form [name=authority]`), "Tribunal judiciaire de Paris"),
		chromedp.Click(chromedp.CSS(`#case-form button[type=submit]`)),
		browsertest.WaitJS(`[...document.querySelectorAll('#cases-table tbody th')].some(th => th.textContent === 'WEB-1')`),
	)
	browsertest.Screenshot(t, ctx, "cases")
	browsertest.Accessible(t, ctx, "cases")

	got := search(t, ctx, r, "WEB-1", map[string]string{"ip": "203.0.113.7", "kind": "login"})
	want := []string{"acme-0", "globex-0", "acme-1", "globex-1", "acme-2", "globex-2"}
	if !slices.Equal(got, want) {
		t.Fatalf("the console shows %v; want %v", got, want)
	}
	if n := browsertest.Text(t, ctx, "#histogram .legend"); !strings.Contains(n, "login") {
		t.Errorf("histogram legend %q; want the login kind", n)
	}
	browsertest.Screenshot(t, ctx, "search")
	browsertest.Accessible(t, ctx, "search at 1280x800")
	// A narrow window: still usable, no sideways scrolling.
	browsertest.Do(t, ctx, "narrow window", chromedp.EmulateViewport(400, 800))
	browsertest.Accessible(t, ctx, "search at 400x800")
	browsertest.Screenshot(t, ctx, "search-narrow")
	browsertest.Do(t, ctx, "wide window", chromedp.EmulateViewport(1280, 800))

	// A row opens the full event, by keyboard.
	browsertest.Do(t, ctx, "open a row",
		chromedp.Focus(chromedp.CSS(`#results-table tbody tr`)),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(chromedp.CSS("#event-dialog")),
	)
	detail := browsertest.Text(t, ctx, "#event-json")
	if !strings.Contains(detail, `"id": "acme-0"`) || !strings.Contains(detail, `"ip": "203.0.113.7"`) {
		t.Errorf("event dialog shows:\n%s", detail)
	}
	browsertest.Screenshot(t, ctx, "event")
	browsertest.Do(t, ctx, "close the event", chromedp.Click(chromedp.CSS(`#event-dialog button`)), chromedp.WaitNotVisible(chromedp.CSS("#event-dialog")))

	// The command line the console copies, run as is: the same events.
	browsertest.Do(t, ctx, "copy as command line", chromedp.Click(chromedp.CSS("#search-copy")), browsertest.WaitJS(`document.querySelector('#message').textContent.includes('custody query')`))
	line := browsertest.Text(t, ctx, "#message")
	line = line[strings.Index(line, "custody query"):]
	bin := custodyBinary(t)
	cmd := exec.Command("sh", "-c", line)
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+":"+os.Getenv("PATH"), "CUSTODY_TOKEN="+r.tokens["legal"])
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", line, err, stderr.String())
	}
	var cli []string
	for sc := bufio.NewScanner(bytes.NewReader(out)); sc.Scan(); {
		var e struct{ ID string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("CLI line %q: %v", sc.Text(), err)
		}
		cli = append(cli, e.ID)
	}
	if !slices.Equal(cli, got) {
		t.Errorf("the CLI (%s) answers %v; the console showed %v", line, cli, got)
	}

	// Closing the case (legal), after the page's own confirmation: no
	// search can name it any more.
	browsertest.Do(t, ctx, "close the case",
		chromedp.Navigate(r.url+"/#cases"),
		browsertest.Click(`#cases-table button[aria-label="Close case WEB-1"]`),
		chromedp.WaitVisible(chromedp.CSS("#confirm-dialog")),
		chromedp.Click(chromedp.CSS("#confirm-yes")),
		browsertest.WaitJS(`document.querySelector('#message').textContent.includes('Case WEB-1 closed')`),
	)
	if row := browsertest.Text(t, ctx, "#cases-table tbody tr"); !strings.Contains(row, "closed") {
		t.Errorf("the closed case's row: %q", row)
	}
	r.openCase(t, "WEB-1b")
	browsertest.Do(t, ctx, "search page", chromedp.Navigate(r.url+"/#search"), browsertest.WaitJS(`document.querySelector('#search-form select[name=case]').options.length > 0`))
	if opts := browsertest.Eval[[]string](t, ctx, `[...document.querySelectorAll('#search-form select[name=case] option')].map(o => o.value)`); slices.Contains(opts, "WEB-1") {
		t.Errorf("the closed case is still offered for searches: %v", opts)
	}
	q := r.queryReq("WEB-1")
	if code, b := r.do(t, "legal", "POST", "/v1/query", q); code != 403 {
		t.Errorf("a query on the case closed in the console: %d %s", code, b)
	}

	// An unreadable segment in the range: named on the page.
	bad := fmt.Sprintf("security/login/%s/t+3+00000000000000000000.cseg", r.hour.Format("2006/01/02/15"))
	if err := r.s.Put(context.Background(), bad, strings.NewReader("not a segment"), 13, store.Lock{Mode: "GOVERNANCE", Until: time.Now().Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	search(t, ctx, r, "WEB-1b", map[string]string{"ip": "203.0.113.7"})
	if p := browsertest.Text(t, ctx, "#search-problems"); !strings.Contains(p, "could not be read") || !strings.Contains(p, "t+3+") {
		t.Errorf("with an unreadable segment the page says %q; want it named", p)
	}
}

// An investigator scoped to acme sees only acme, whatever the filter says,
// and a refusal is a message, not an empty table.
func TestConsoleTenantScope(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "WEB-2")
	ctx, _ := browsertest.New(t)
	browsertest.SignIn(t, ctx, r.url, r.tokens["inv-acme"])
	if who := browsertest.Text(t, ctx, "#who"); !strings.Contains(who, "tenants acme") {
		t.Errorf("header shows %q; want the tenant scope", who)
	}
	links := browsertest.Eval[[]string](t, ctx, `[...document.querySelectorAll('header nav a')].map(a => a.textContent)`)
	if !slices.Equal(links, []string{"Cases", "Search"}) {
		t.Errorf("an investigator's sections: %v", links)
	}
	got := search(t, ctx, r, "WEB-2", nil)
	if !slices.Equal(got, []string{"acme-0", "acme-1", "acme-2"}) {
		t.Errorf("acme-scoped search without a tenant filter shows %v", got)
	}
	got = search(t, ctx, r, "WEB-2", map[string]string{"tenant": "globex"})
	if p := browsertest.Text(t, ctx, "#search-problems"); len(got) != 0 || !strings.Contains(p, "may read only acme") {
		t.Errorf("acme-scoped search for globex: rows %v, message %q", got, p)
	}

	// A role bound to 2 results: the page shows 2 and says more match.
	r.url = r.serve(t, strings.Join(r.st.KafkaBrokers, ","), func(c *Config) { c.MaxResults = 2 })
	browsertest.SignIn(t, ctx, r.url, r.tokens["inv-acme"])
	got = search(t, ctx, r, "WEB-2", nil)
	if p := browsertest.Text(t, ctx, "#search-problems"); !slices.Equal(got, []string{"acme-0", "acme-1"}) || !strings.Contains(p, "Showing the first 2 events: more match") {
		t.Errorf("with max_results 2: rows %v, message %q", got, p)
	}
}

// Kafka down: the search is refused before anything is read, and the page
// says why.
func TestConsoleAuditRefusal(t *testing.T) {
	r := newRig(t)
	r.openCase(t, "WEB-3")
	r.url = r.serve(t, "127.0.0.1:1") // no Kafka there
	ctx, _ := browsertest.New(t)
	browsertest.SignIn(t, ctx, r.url, r.tokens["inv-all"])
	gets := r.seg.gets.Load()
	got := search(t, ctx, r, "WEB-3", map[string]string{"ip": "203.0.113.7"})
	if p := browsertest.Text(t, ctx, "#search-problems"); len(got) != 0 || !strings.Contains(p, "Refused") || !strings.Contains(p, "Nothing was read") {
		t.Errorf("with Kafka down: rows %v, message %q", got, p)
	}
	if n := r.seg.gets.Load() - gets; n != 0 {
		t.Errorf("%d segment reads with Kafka down; want none", n)
	}
}

// Legal staff export the results, a second legal identity approves (four
// eyes), the package downloads from the console and custody export verify
// accepts it; the auditor then sees every step in the access log and no
// event content.
func TestConsoleExportAndAccessLog(t *testing.T) {
	r := newRig(t)
	r.url = r.serve(t, strings.Join(r.st.KafkaBrokers, ","), func(c *Config) { c.Exports.Approvals = 2 })
	r.openCase(t, "WEB-4")
	ctx, downloads := browsertest.New(t)
	browsertest.SignIn(t, ctx, r.url, r.tokens["legal"])
	search(t, ctx, r, "WEB-4", map[string]string{"ip": "203.0.113.7"})
	browsertest.Do(t, ctx, "request the export",
		chromedp.Click(chromedp.CSS("#search-export")),
		chromedp.WaitVisible(chromedp.CSS("#export-dialog")),
		chromedp.SetValue(chromedp.CSS(`#export-form [name=authority]`), "Tribunal judiciaire de Paris"),
		chromedp.SetValue(chromedp.CSS(`#export-form [name=legal_basis]`), "art. 60-1 CPP"),
		chromedp.Click(chromedp.CSS(`#export-form button[type=submit]`)),
		browsertest.WaitJS(`document.querySelector('#message').textContent.includes('requested (pending)')`),
	)
	msg := browsertest.Text(t, ctx, "#message")
	id := strings.Fields(strings.TrimPrefix(msg, "Export "))[0]
	browsertest.Do(t, ctx, "exports", chromedp.Navigate(r.url+"/#exports"), browsertest.WaitJS(`!!document.querySelector('#exports-table tr[data-id="`+id+`"]')`))
	if s := browsertest.Text(t, ctx, `#exports-table tr[data-id="`+id+`"]`); !strings.Contains(s, "1 of 2") || strings.Contains(s, "Approve") {
		t.Errorf("the requester's view of the pending export: %q (its requester counts once and cannot approve again)", s)
	}
	signOut(t, ctx)

	browsertest.SignIn(t, ctx, r.url, r.tokens["legal-2"])
	browsertest.Do(t, ctx, "approve",
		chromedp.Navigate(r.url+"/#exports"),
		browsertest.Click(`#exports-table tr[data-id="`+id+`"] button`),
		browsertest.WaitJS(`document.querySelector('#message').textContent.includes('approved')`),
	)
	r.waitExport(t, r.url, id)
	browsertest.Do(t, ctx, "download",
		chromedp.Reload(),
		browsertest.WaitJS(`!!document.querySelector('#exports-table tr[data-id="`+id+`"] a')`),
	)
	browsertest.Screenshot(t, ctx, "exports")
	browsertest.Accessible(t, ctx, "exports")
	browsertest.Do(t, ctx, "download", browsertest.Click(`#exports-table tr[data-id="`+id+`"] a`))
	pkg := filepath.Join(downloads, id+".zip")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if _, err := os.Stat(pkg); err == nil {
			break
		}
		if time.Now().After(deadline) {
			entries, _ := os.ReadDir(downloads)
			t.Fatalf("no %s downloaded; the directory holds %v", pkg, entries)
		}
		time.Sleep(100 * time.Millisecond)
	}
	pem := filepath.Join(t.TempDir(), "export.pem")
	os.WriteFile(pem, export.PEM(r.keys.Signer.ID, r.keys.Signer.Public().Public), 0o644)
	if out, err := exec.Command(custodyBinary(t), "export", "verify", pkg, "--pubkey", pem).CombinedOutput(); err != nil {
		t.Fatalf("custody export verify of the downloaded package: %v\n%s", err, out)
	}
	signOut(t, ctx)

	browsertest.SignIn(t, ctx, r.url, r.tokens["auditor"])
	links := browsertest.Eval[[]string](t, ctx, `[...document.querySelectorAll('header nav a')].map(a => a.textContent)`)
	if !slices.Equal(links, []string{"Cases", "Exports", "Access log"}) {
		t.Errorf("an auditor's sections: %v", links)
	}
	browsertest.Do(t, ctx, "access log",
		chromedp.Navigate(r.url+"/#access"),
		chromedp.WaitVisible(chromedp.CSS("#access-form")),
		chromedp.Click(chromedp.CSS(`#access-form button[type=submit]`)),
		browsertest.WaitJS(`document.querySelectorAll('#access-table tbody tr').length > 1`),
	)
	browsertest.Screenshot(t, ctx, "access-log")
	browsertest.Accessible(t, ctx, "access log")
	log := browsertest.Text(t, ctx, "#access-table")
	for _, want := range []string{"WEB-4", "query request", "query.result result", "browser test"} {
		if !strings.Contains(log, want) {
			t.Errorf("the access log lacks %q:\n%s", want, log)
		}
	}
	all := browsertest.Eval[string](t, ctx, `document.body.innerText`)
	if strings.Contains(all, "acme-0") || strings.Contains(all, "alice") {
		t.Errorf("the auditor's page shows event content:\n%s", all)
	}
}
