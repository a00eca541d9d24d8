package announce

import (
	"encoding/json"
	"testing"

	"github.com/custodylog/custody/event"
)

// Regression test: an int in the attributes made event.AppendJSON panic
// inside custody serve's request handler.
func TestNormaliseGivesEventTypes(t *testing.T) {
	in := map[string]any{"n": 3, "big": int64(1) << 40, "f": 1.5, "ok": true, "s": "x", "list": []string{"a"},
		"m": map[string]string{"k": "v"}, "nested": []any{map[string]any{"n": 1}}, "odd": struct{ A int }{1}}
	e := &event.Event{ID: "x", Kind: event.KindActivity, Tenant: "platform", Attrs: normalise(in).(map[string]any)}
	line := event.AppendJSON(nil, e)
	var back struct{ Attrs map[string]any }
	if err := json.Unmarshal(line, &back); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
	if back.Attrs["n"] != float64(3) || back.Attrs["big"] != float64(1<<40) || back.Attrs["odd"] != "{1}" || back.Attrs["m"].(map[string]any)["k"] != "v" {
		t.Errorf("attrs came back as %v", back.Attrs)
	}
}
