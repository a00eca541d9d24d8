// Package dataset generates the realistic event stream every benchmark
// shares (issue 16 §1), so that compression and CPU figures are not
// flattered by repetitive synthetic events:
//
//   - 60 tenants, Zipf-distributed (s = 0.7 in rank weight 1/rank^s);
//   - 200,000 client IPs, 15% IPv6, each tied to one tenant, Zipf within it;
//   - logins tied to IPs (a person uses a few addresses);
//   - user agents from a list of real browser, bot and git-client strings;
//   - paths with query strings, methods and statuses in web-like shares;
//   - about 78% connection, 14% login and 8% source_change events;
//   - event times spread over 6 hours, 1% arriving 1-3 hours late;
//   - senders' own UUIDv7 IDs.
//
// The mean canonical event is about 490 bytes. A Generator is seeded: the
// same seed gives the same stream, byte for byte.
package dataset

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/custodylog/custody/event"
)

// Generator yields events. Not safe for concurrent use.
type Generator struct {
	r       *rand.Rand
	start   time.Time
	span    time.Duration
	tenants []string
	tw      []float64 // cumulative tenant weights
	ips     [][]netip.Addr
	iw      []float64 // cumulative weights of a tenant's IPs by rank
	logins  map[netip.Addr]string
	n       int
	total   int
}

// Options tune a Generator; zero values give the defaults above.
type Options struct {
	Seed    uint64
	Start   time.Time     // first event hour; default 2026-11-28T00:00Z
	Span    time.Duration // default 6 h
	Tenants int           // default 60
	IPs     int           // default 200,000
	// Total is how many events the caller will take, to spread their
	// times evenly over Span (required).
	Total int
}

// New returns a generator.
func New(o Options) *Generator {
	if o.Start.IsZero() {
		o.Start = time.Date(2026, 11, 28, 0, 0, 0, 0, time.UTC)
	}
	if o.Span == 0 {
		o.Span = 6 * time.Hour
	}
	if o.Tenants == 0 {
		o.Tenants = 60
	}
	if o.IPs == 0 {
		o.IPs = 200000
	}
	if o.Total == 0 {
		o.Total = 1000000
	}
	g := &Generator{r: rand.New(rand.NewPCG(o.Seed, 0x5eed)), start: o.Start, span: o.Span, total: o.Total, logins: map[netip.Addr]string{}}
	for i := 0; i < o.Tenants; i++ {
		g.tenants = append(g.tenants, fmt.Sprintf("%s-%d", tenantWords[i%len(tenantWords)], i))
	}
	g.tw = zipfCumulative(o.Tenants, 0.7)
	// Each tenant gets a share of the IPs proportional to its weight.
	g.ips = make([][]netip.Addr, o.Tenants)
	prev := 0.0
	for t := range g.tenants {
		n := max(10, int(float64(o.IPs)*(g.tw[t]-prev)))
		prev = g.tw[t]
		for i := 0; i < n; i++ {
			g.ips[t] = append(g.ips[t], g.randomIP())
		}
	}
	g.iw = zipfCumulative(len(g.ips[0]), 0.7) // reused by rank; smaller tenants clamp
	return g
}

func zipfCumulative(n int, s float64) []float64 {
	w := make([]float64, n)
	sum := 0.0
	for i := range w {
		sum += 1 / math.Pow(float64(i+1), s)
		w[i] = sum
	}
	for i := range w {
		w[i] /= sum
	}
	return w
}

func pick(r *rand.Rand, cum []float64) int {
	return sort.SearchFloat64s(cum, r.Float64())
}

func (g *Generator) randomIP() netip.Addr {
	if g.r.IntN(100) < 15 {
		var b [16]byte
		b[0], b[1] = 0x20, 0x01
		b[2], b[3] = byte(g.r.IntN(256)), byte(g.r.IntN(256))
		for i := 4; i < 16; i++ {
			b[i] = byte(g.r.IntN(256))
		}
		return netip.AddrFrom16(b)
	}
	return netip.AddrFrom4([4]byte{byte(1 + g.r.IntN(223)), byte(g.r.IntN(256)), byte(g.r.IntN(256)), byte(1 + g.r.IntN(254))})
}

// Next returns the next event.
func (g *Generator) Next() *event.Event {
	i := g.n
	g.n++
	r := g.r
	t := g.start.Add(time.Duration(float64(g.span) * float64(i) / float64(g.total)))
	t = t.Add(time.Duration(r.Int64N(int64(time.Second))))
	received := t
	if r.IntN(100) == 0 { // 1% late by 1-3 hours
		t = t.Add(-time.Hour - time.Duration(r.Int64N(int64(2*time.Hour))))
	}
	ti := pick(r, g.tw)
	ips := g.ips[ti]
	rank := min(pick(r, g.iw), len(ips)-1)
	ip := ips[rank]
	login, ok := g.logins[ip]
	if !ok {
		login = fmt.Sprintf("%s.%s%d@%s", firstNames[r.IntN(len(firstNames))], lastNames[r.IntN(len(lastNames))], r.IntN(100), mailDomains[r.IntN(len(mailDomains))])
		g.logins[ip] = login
	}
	e := &event.Event{
		ID: uuidv7(r, t), Time: t, Class: "security", Tenant: g.tenants[ti], Source: sources[r.IntN(len(sources))],
		Received: received.Add(time.Duration(r.Int64N(int64(200 * time.Millisecond)))), IP: ip, Port: uint16(1024 + r.IntN(64511)),
	}
	e.Late = e.Received.Sub(e.Time) > time.Hour
	switch x := r.IntN(100); {
	case x < 78:
		e.Kind = event.KindConnection
		e.App = apps[r.IntN(len(apps))]
		e.Session = fmt.Sprintf("%016x", r.Uint64())
		e.UserAgent = userAgents[pick(r, uaWeights)]
		e.Method = pickWeighted(r, methods)
		e.Path = g.path()
		e.Status = statuses[pick(r, statusWeights)]
		e.Protocol = []string{"HTTP/1.1", "HTTP/2.0", "HTTP/2.0", "HTTP/3.0"}[r.IntN(4)]
		if r.IntN(3) == 0 {
			e.Login = login
		}
	case x < 92:
		e.Kind = event.KindLogin
		e.Login = login
		e.Action = []string{"success", "success", "success", "success", "failure", "failure", "mfa", "logout"}[r.IntN(8)]
		e.UserAgent = userAgents[pick(r, uaWeights)]
		e.Session = fmt.Sprintf("%016x", r.Uint64())
		e.Attrs = map[string]any{"auth_method": []string{"password", "publickey", "oidc", "webauthn"}[r.IntN(4)]}
	default:
		e.Kind = event.KindSourceChange
		e.Login = login
		e.App = apps[r.IntN(len(apps))]
		e.Repo = e.Tenant + "/" + e.App
		e.Ref = []string{"refs/heads/main", "refs/heads/main", "refs/heads/develop", fmt.Sprintf("refs/heads/feature/%s-%d", words[r.IntN(len(words))], r.IntN(900)), fmt.Sprintf("refs/tags/v1.%d.%d", r.IntN(30), r.IntN(10))}[r.IntN(5)]
		e.OldCommit, e.NewCommit = hexN(r, 20), hexN(r, 20)
		e.Action = "modify"
		switch r.IntN(20) {
		case 0:
			e.Action, e.OldCommit = "create", "0000000000000000000000000000000000000000"
		case 1:
			e.Action, e.NewCommit = "delete", "0000000000000000000000000000000000000000"
		}
		e.Protocol = []string{"ssh", "https"}[r.IntN(2)]
		e.UserAgent = gitAgents[r.IntN(len(gitAgents))]
	}
	return e
}

// Line returns the next event in canonical form, without the newline:
// a Kafka record value.
func (g *Generator) Line() []byte {
	b := event.AppendJSON(nil, g.Next())
	return b[:len(b)-1]
}

func (g *Generator) path() string {
	r := g.r
	p := paths[r.IntN(len(paths))]
	if strings.Contains(p, "%d") {
		p = fmt.Sprintf(p, r.IntN(100000))
	}
	if r.IntN(100) < 45 {
		p += fmt.Sprintf("?%s=%d", queryKeys[r.IntN(len(queryKeys))], r.IntN(10000))
		if r.IntN(2) == 0 {
			p += fmt.Sprintf("&utm_source=%s&utm_medium=%s", words[r.IntN(len(words))], []string{"email", "cpc", "social", "referral"}[r.IntN(4)])
		}
	}
	return p
}

func hexN(r *rand.Rand, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.IntN(256))
	}
	return hex.EncodeToString(b)
}

// uuidv7 is an RFC 9562 version 7 UUID: 48-bit milliseconds, random rest.
func uuidv7(r *rand.Rand, t time.Time) string {
	var u [16]byte
	ms := uint64(t.UnixMilli())
	for i := 0; i < 6; i++ {
		u[i] = byte(ms >> (40 - 8*i))
	}
	for i := 6; i < 16; i++ {
		u[i] = byte(r.IntN(256))
	}
	u[6] = 0x70 | u[6]&0x0f
	u[8] = 0x80 | u[8]&0x3f
	h := hex.EncodeToString(u[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

type weighted struct {
	v string
	w int
}

func pickWeighted(r *rand.Rand, ws []weighted) string {
	sum := 0
	for _, x := range ws {
		sum += x.w
	}
	n := r.IntN(sum)
	for _, x := range ws {
		if n < x.w {
			return x.v
		}
		n -= x.w
	}
	return ws[0].v
}

var (
	tenantWords = []string{"acme", "globex", "initech", "umbrella", "hooli", "vandelay", "stark", "wayne", "tyrell", "cyberdyne", "soylent", "wonka"}
	firstNames  = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "yasmin", "zoe", "amir", "bea", "chen", "dmitri", "elif", "farah", "goran", "hana", "ines"}
	lastNames   = []string{"martin", "bernard", "dubois", "thomas", "robert", "richard", "petit", "durand", "leroy", "moreau", "simon", "laurent", "lefebvre", "michel", "garcia", "smith", "nguyen", "kowalski", "rossi", "muller"}
	mailDomains = []string{"example.org", "example.com", "mail.example.net", "corp.example"}
	sources     = []string{"web-frontend", "api-gateway", "web1", "web2", "git-server", "lb-eu-west"}
	apps        = []string{"shop", "blog", "api", "admin", "docs", "status", "billing", "auth"}
	words       = []string{"newsletter", "google", "partner", "summer", "launch", "retarget", "spring", "search", "invoice", "cart", "promo", "login"}
	queryKeys   = []string{"page", "q", "id", "ref", "sort", "lang", "item", "offset", "session_hint", "variant"}
	paths       = []string{"/", "/products/%d", "/products/%d/reviews", "/cart", "/checkout", "/api/v1/orders/%d", "/api/v1/users/%d/profile", "/static/js/app.%d.js",
		"/static/css/site.%d.css", "/images/p/%d.webp", "/search", "/account/settings", "/blog/2026/11/post-%d", "/docs/guide/%d", "/login", "/logout", "/health"}
	methods       = []weighted{{"GET", 82}, {"POST", 12}, {"PUT", 2}, {"DELETE", 1}, {"HEAD", 2}, {"OPTIONS", 1}}
	statuses      = []int{200, 304, 301, 302, 404, 401, 403, 500, 502, 201, 204}
	statusWeights = cumulative([]float64{70, 9, 2, 4, 6, 2, 1, 1, 0.5, 3, 1.5})
	userAgents    = []string{
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.2849.80",
		"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
		"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.6778.39 Mobile Safari/537.36",
		"Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
		"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:132.0) Gecko/20100101 Firefox/132.0",
		"Mozilla/5.0 (iPad; CPU OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.6 Mobile/15E148 Safari/604.1",
		"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
		"Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
		"Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.2; +https://openai.com/gptbot)",
		"curl/8.5.0", "python-requests/2.32.3", "Go-http-client/2.0", "okhttp/4.12.0",
	}
	uaWeights = cumulative([]float64{30, 8, 10, 14, 12, 4, 3, 3, 4, 2, 1, 3, 3, 2, 1})
	gitAgents = []string{"git/2.47.0", "git/2.43.0", "git/2.39.5", "JGit/6.10.0", "git/2.45.2.windows.1"}
)

func cumulative(w []float64) []float64 {
	out := make([]float64, len(w))
	sum := 0.0
	for i, x := range w {
		sum += x
		out[i] = sum
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
