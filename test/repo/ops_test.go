package repo

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// promtool finds Prometheus's promtool: $CUSTODY_PROMTOOL, the PATH, or
// where scripts/test-deps puts Debian's.
func promtool(t *testing.T) string {
	if p := os.Getenv("CUSTODY_PROMTOOL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("promtool"); err == nil {
		return p
	}
	cache := os.Getenv("CUSTODY_STACK_CACHE")
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		cache = filepath.Join(dir, "custody-stack")
	}
	p := filepath.Join(cache, "promtool", "promtool")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("promtool not found (run scripts/test-deps, or set CUSTODY_PROMTOOL): %v", err)
	}
	return p
}

// TestAlertRules checks docs/prometheus/custody-alerts.yml with the real
// promtool and runs its unit tests (custody-alerts_test.yml): every alert
// fires on the series that should raise it, with its labels and
// annotations, and stays quiet on healthy series.
func TestAlertRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs promtool, an external tool (make test runs it)")
	}
	dir := filepath.Join(root(t), "docs", "prometheus")
	tool := promtool(t)
	for _, args := range [][]string{{"check", "rules", "custody-alerts.yml"}, {"test", "rules", "custody-alerts_test.yml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// Every alert has a test that makes it fire.
	rules, _ := os.ReadFile(filepath.Join(dir, "custody-alerts.yml"))
	tests, _ := os.ReadFile(filepath.Join(dir, "custody-alerts_test.yml"))
	alerts := regexp.MustCompile(`(?m)^\s*- alert: (\w+)`).FindAllStringSubmatch(string(rules), -1)
	if len(alerts) < 5 {
		t.Fatalf("%d alerts in custody-alerts.yml", len(alerts))
	}
	for _, a := range alerts {
		fires := regexp.MustCompile(`alertname: ` + a[1] + `\n\s+exp_alerts:\n\s+- exp_labels`)
		if !fires.Match(tests) {
			t.Errorf("alert %s has no test in which it fires", a[1])
		}
	}
}

// TestDashboard: docs/grafana/custody.json is a dashboard Grafana can
// import: a datasource variable, panels with unique IDs and a query each.
// test/demo checks the metrics it and the alert rules name against what
// the running services export.
func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root(t), "docs", "grafana", "custody.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID        string `json:"uid"`
		Templating struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int    `json:"id"`
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("custody.json: %v", err)
	}
	if d.UID == "" || len(d.Templating.List) == 0 || d.Templating.List[0].Type != "datasource" {
		t.Errorf("dashboard uid %q, templating %+v: want a uid and a datasource variable", d.UID, d.Templating.List)
	}
	ids := map[int]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type != "row" && (len(p.Targets) == 0 || p.Targets[0].Expr == "") {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
	if len(ids) < 10 {
		t.Errorf("%d panels", len(ids))
	}
}

// TestDashboardCoversMetrics: every metric a Custody command registers
// (a `Name: "custody_…"` in the source, and the archiver's
// `custody_archiver_` + name helper) is in some panel's query, so an
// operator who imports the dashboard sees all of them, and every name a
// panel queries is one of them.
func TestDashboardCoversMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root(t), "docs", "grafana", "custody.json"))
	if err != nil {
		t.Fatal(err)
	}
	named := regexp.MustCompile(`Name:\s*"(custody_[a-z0-9_]*[a-z0-9])"`) // not the helper's prefix
	archiver := regexp.MustCompile(`\bc\("([a-z0-9_]+)",`)
	metrics := map[string]string{}
	err = filepath.WalkDir(root(t), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, m := range named.FindAllSubmatch(src, -1) {
			metrics[string(m[1])] = p
		}
		if strings.HasSuffix(p, filepath.Join("pipeline", "archiver.go")) {
			for _, m := range archiver.FindAllSubmatch(src, -1) {
				metrics["custody_archiver_"+string(m[1])] = p
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(metrics) < 30 {
		t.Fatalf("found %d metrics in the source; the patterns no longer match how metrics are declared", len(metrics))
	}
	var d struct {
		Panels []struct {
			Targets []struct{ Expr string } `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	queried := map[string]bool{}
	word := regexp.MustCompile(`custody_[a-z0-9_]+`)
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			for _, m := range word.FindAllString(q.Expr, -1) {
				queried[strings.TrimSuffix(m, "_bucket")] = true
			}
		}
	}
	for m, src := range metrics {
		if !queried[m] {
			t.Errorf("metric %s (%s) is in no panel of docs/grafana/custody.json", m, src)
		}
	}
	// And the other way: every name a panel queries is declared (a typo
	// would draw an empty panel; test/demo checks the exported names of
	// the services make run starts).
	for m := range queried {
		if _, ok := metrics[m]; !ok {
			t.Errorf("docs/grafana/custody.json queries %s, which no Custody command declares", m)
		}
	}
}
