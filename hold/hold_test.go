package hold

import (
	"bytes"
	"encoding/json"
	"testing"
)

const fuzzSegment = "short/login/2026/11/26/05/t-0-0-0.cseg"

func FuzzParseEscrow(f *testing.F) {
	good, _ := json.Marshal(Escrow{Version: 1, Case: "LE-114", Segment: fuzzSegment, KeyID: "short/2026-11-26.v1", SealedKey: make([]byte, 1168)})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := parseEscrow(b, "LE-114", fuzzSegment)
		if err != nil {
			return
		}
		if e.Case != "LE-114" || e.Segment != fuzzSegment || e.Version != 1 || len(e.SealedKey) > 4096 {
			t.Fatalf("parseEscrow accepted %+v", e)
		}
	})
}

func TestParseEscrowRefusesAnotherName(t *testing.T) {
	b, _ := json.Marshal(Escrow{Version: 1, Case: "LE-114", Segment: fuzzSegment, KeyID: "k", SealedKey: []byte{1}})
	if _, err := parseEscrow(b, "LE-115", fuzzSegment); err == nil {
		t.Error("an escrow of LE-114 was accepted as LE-115's")
	}
	if _, err := parseEscrow(b, "LE-114", fuzzSegment+"x"); err == nil {
		t.Error("an escrow of one segment was accepted as another's")
	}
	if _, err := parseEscrow(append(bytes.Clone(b[:len(b)-1]), []byte(`,"extra":1}`)...), "LE-114", fuzzSegment); err == nil {
		t.Error("an unknown member was accepted")
	}
	if e, err := parseEscrow(b, "LE-114", fuzzSegment); err != nil || e.KeyID != "k" {
		t.Errorf("parseEscrow = %+v, %v", e, err)
	}
}
