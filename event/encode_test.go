package event

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestAppendTime checks the direct formatter against time.AppendFormat,
// the definition of TimeLayout, over random instants of years -50 to
// 10050 (outside 0-9999 AppendTime falls back) and the edges of a year.
func TestAppendTime(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Date(-50, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(10050, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	check := func(tm time.Time) {
		t.Helper()
		want := tm.UTC().AppendFormat(nil, TimeLayout)
		if got := AppendTime([]byte("x"), tm); string(got) != "x"+string(want) {
			t.Fatalf("AppendTime(%v) = %q; want %q", tm, got[1:], want)
		}
	}
	for _, tm := range []time.Time{
		{}, time.Unix(0, 0), time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 12, 31, 23, 59, 59, 1, time.UTC),
		time.Date(2026, 12, 7, 21, 5, 9, 7, time.FixedZone("x", -7*3600)),
	} {
		check(tm)
	}
	for i := 0; i < 200000; i++ {
		tm := time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9))
		check(tm.In(time.FixedZone("z", (r.IntN(48)-24)*1800)))
	}
}
