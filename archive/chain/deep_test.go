package chain

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/custodylog/custody/archive/segment"
	"github.com/custodylog/custody/crypto/keyring"
	"github.com/custodylog/custody/event"
)

// verify --deep checks a segment of every kind against its header's kinds
// (docs/FORMAT.md v3.10, docs/CHAIN.md): each event of a kind the header
// counts, and as many of each. A trusted archiver's header that counts
// kinds wrongly is a finding; a right one is not.
func TestDeepChecksKinds(t *testing.T) {
	hour := time.Date(2026, 11, 29, 5, 0, 0, 0, time.UTC)
	sk, pub := testSigner(t) // the public keyring trusts it
	priv := keyring.NewPrivate()
	if _, err := keyring.GeneratePairs(pub, priv, hour, []string{"security"}, keyring.PeriodDay, hour, hour); err != nil {
		t.Fatal(err)
	}
	pk, err := pub.Current("security", hour)
	if err != nil {
		t.Fatal(err)
	}
	var body []byte
	for i, k := range []event.Kind{event.KindLogin, event.KindConnection, event.KindLogin} {
		e := event.Event{ID: "e-" + string(rune('a'+i)), Time: hour.Add(time.Duration(i) * time.Minute), Kind: k, Class: "security", Tenant: "t"}
		body = event.AppendJSON(body, &e)
	}
	for _, c := range []struct {
		name  string
		kinds map[string]int64
		want  string // in the finding; "" for none
	}{
		{"right", map[string]int64{"login": 2, "connection": 1}, ""},
		{"miscounted", map[string]int64{"login": 1, "connection": 2}, "by kind"},
		{"a kind it does not count", map[string]int64{"login": 2, "source_change": 1}, "not of the segment's class, kind and hour"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := segment.Meta{Class: "security", Kinds: c.kinds, Hour: hour, Topic: "custody.events", FirstOffset: 10, LastOffset: 12, Count: 3,
				MinTime: hour, MaxTime: hour.Add(2 * time.Minute)}
			var seg bytes.Buffer
			w, err := segment.NewWriterV3(&seg, m, segment.NewIndexBuilder(), pk, sk)
			if err != nil {
				t.Fatal(err)
			}
			w.Write(body)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			v := &verifier{opts: Options{Deep: keyring.Set{Private: priv, Public: pub}}, rep: &Report{}}
			v.deep(w.Name(), listed{Segment: Segment{Name: w.Name(), First: 10, Last: 12, Count: 3}}, seg.Bytes())
			switch {
			case c.want == "" && len(v.rep.Findings) > 0:
				t.Errorf("findings on a right segment: %v", v.rep.Findings)
			case c.want != "" && (len(v.rep.Findings) != 1 || v.rep.Findings[0].Kind != Invalid || !strings.Contains(v.rep.Findings[0].Detail, c.want)):
				t.Errorf("findings %v; want one invalid naming %q", v.rep.Findings, c.want)
			}
			if c.want == "" && v.rep.Events != 3 {
				t.Errorf("%d events counted; want 3", v.rep.Events)
			}
		})
	}
}
