// Package browsertest drives Debian's Chromium, headless, over the DevTools
// protocol (github.com/chromedp/chromedp), for the console's tests and
// benchmarks. CUSTODY_CHROMIUM names another binary;
// CUSTODY_CONSOLE_SCREENSHOTS=DIR makes Screenshot save PNGs there.
package browsertest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// Path is the Chromium binary, or a failed test saying how to install it.
func Path(t testing.TB) string {
	t.Helper()
	p := os.Getenv("CUSTODY_CHROMIUM")
	if p == "" {
		p = "/usr/bin/chromium"
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the console tests need Chromium at %s (apt-get install chromium, or set CUSTODY_CHROMIUM); scripts/test-deps installs it: %v", p, err)
	}
	return p
}

// New starts a headless Chromium with a profile of its own, at 1280×800,
// and returns a context for its first tab and the directory downloads
// land in. The browser stops when the test ends.
func New(t testing.TB) (context.Context, string) {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: drives Chromium (run without -short; make test installs it)")
	}
	downloads := t.TempDir()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Path(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // root in CI containers
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	err := chromedp.Do(ctx, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: downloads})
		return err
	}))
	if err != nil {
		t.Fatalf("cannot start Chromium: %v", err)
	}
	return ctx, downloads
}

// Do runs browser actions within 45 s and fails the test on error, with
// the page's text.
func Do(t testing.TB, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(cctx, actions...); err != nil {
		page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ''`))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, page)
	}
}

// Eval evaluates a JavaScript expression in the page.
func Eval[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, 45*time.Second)
	defer cancel()
	v, err := chromedp.Run(cctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("%s: %v", expr, err)
	}
	return v
}

// Text is the text content of the first element sel matches ("" if none).
func Text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	q, _ := json.Marshal(sel)
	return Eval[string](t, ctx, `(document.querySelector(`+string(q)+`) || {}).textContent || ''`)
}

// SignIn signs in to the console at base with an API token and waits for
// the console's header.
func SignIn(t testing.TB, ctx context.Context, base, token string) {
	t.Helper()
	Do(t, ctx, "sign in",
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.SendKeys(chromedp.CSS("#token"), token),
		chromedp.Submit(chromedp.CSS("#token")),
		chromedp.WaitVisible(chromedp.CSS("#who")),
	)
}

// Fill sets the values of a form's controls by name and fails the test if
// any control is missing or does not take its value (a select without
// that option, say).
func Fill(t testing.TB, ctx context.Context, form string, values map[string]string) {
	t.Helper()
	f, _ := json.Marshal(form)
	v, _ := json.Marshal(values)
	bad := Eval[[]string](t, ctx, `(() => {
		const f = document.querySelector(`+string(f)+`), bad = [];
		for (const [k, x] of Object.entries(`+string(v)+`)) {
			const c = f && f.elements[k];
			if (!c) { bad.push(k + ': no such control'); continue; }
			c.value = x;
			if (c.value !== x) bad.push(k + ': took ' + JSON.stringify(c.value) + ' for ' + JSON.stringify(x));
		}
		return bad;
	})()`)
	if len(bad) > 0 {
		t.Fatalf("filling %s: %v", form, bad)
	}
}

// a11yJS lists what a page gets wrong of a few WCAG 2.1 AA rules a
// script can check: text contrast (1.4.3: 4.5:1, or 3:1 for large text;
// disabled controls exempt), a name for every form control, button and
// link (1.3.1, 4.1.2), and no horizontal scrolling at the window's width
// (1.4.10 reflow).
const a11yJS = `(() => {
  const bad = [];
  const rgb = s => { const m = s.match(/rgba?\(([^)]+)\)/); if (!m) return null; const p = m[1].split(',').map(Number); return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 }; };
  const lum = c => { const f = v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }; return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const bg = el => { for (let e = el; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; } return { r: 255, g: 255, b: 255, a: 1 }; };
  const visible = el => { const r = el.getBoundingClientRect(); const cs = getComputedStyle(el); return r.width > 0 && r.height > 0 && cs.visibility !== 'hidden' && cs.display !== 'none' && !el.closest('[hidden], dialog:not([open])'); };
  const name = el => (el.getAttribute('aria-label') || el.textContent || el.getAttribute('title') || '').trim();
  for (const el of document.querySelectorAll('body *')) {
    if (!visible(el) || el.closest('svg')) continue;
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    if (own && !el.closest(':disabled')) {
      const cs = getComputedStyle(el), fg = rgb(cs.color), b = bg(el);
      const ratio = (Math.max(lum(fg), lum(b)) + 0.05) / (Math.min(lum(fg), lum(b)) + 0.05);
      const size = parseFloat(cs.fontSize), bold = Number(cs.fontWeight) >= 700;
      const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
      if (ratio < need) bad.push('contrast ' + ratio.toFixed(2) + ' < ' + need + ': ' + el.tagName + ' "' + el.textContent.trim().slice(0, 40) + '"');
    }
    if (el.matches('input:not([type=hidden]), select, textarea') && !(el.labels && el.labels.length) && !el.getAttribute('aria-label')) bad.push('no label: ' + el.outerHTML.slice(0, 80));
    if (el.matches('button, a[href]') && !name(el)) bad.push('no name: ' + el.outerHTML.slice(0, 80));
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) bad.push('horizontal scrolling: the page is ' + document.documentElement.scrollWidth + ' px wide in a ' + window.innerWidth + ' px window');
  return bad;
})()`

// Accessible checks the page against a11yJS and reports each problem as a
// test error.
func Accessible(t testing.TB, ctx context.Context, page string) {
	t.Helper()
	for _, p := range Eval[[]string](t, ctx, a11yJS) {
		t.Errorf("%s: %s", page, p)
	}
}

// WaitJS polls a JavaScript expression until it is true (40 s at most).
func WaitJS(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))
}

// Click clicks the element selector names as soon as it is there. The
// lookup and the click are one script run in the page, so a list the app
// re-renders between the two (replacing the node) cannot make the click
// miss, as chromedp.Click's separate node lookup can.
func Click(selector string) chromedp.Action[chromedp.Void] {
	q, _ := json.Marshal(selector)
	return WaitJS(`(() => { const e = document.querySelector(` + string(q) + `); if (!e) return false; e.click(); return true })()`)
}

// Screenshot saves the whole page as name.png in
// $CUSTODY_CONSOLE_SCREENSHOTS, when it is set.
func Screenshot(t testing.TB, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("CUSTODY_CONSOLE_SCREENSHOTS")
	if dir == "" {
		return
	}
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG (below it, JPEG)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), buf, 0o644); err != nil {
		t.Fatal(err)
	}
}
