package pipeline

import (
	"bytes"
	"fmt"
	"time"

	json "github.com/segmentio/encoding/json"

	"github.com/custodylog/custody/event"
)

// fields are the members of a canonical event the archiver needs: where
// the event goes (class, kind, hour) and what the segment index records.
// The event's bytes themselves are archived as they are, never re-encoded.
type fields struct {
	V       int    `json:"v"`
	ID      string `json:"id"`
	Time    string `json:"time"`
	Kind    string `json:"kind"`
	Class   string `json:"class"`
	Tenant  string `json:"tenant"`
	App     string `json:"app"`
	IP      string `json:"ip"`
	Session string `json:"session"`
	Login   string `json:"login"`
	Repo    string `json:"repo"`

	t time.Time
}

// invalidError is why a record goes to the dead-letter topic.
type invalidError struct{ reason string }

func (e *invalidError) Error() string { return e.reason }

func invalid(format string, args ...any) error {
	return &invalidError{reason: fmt.Sprintf(format, args...)}
}

var validKinds = map[string]bool{}

func init() {
	for _, k := range event.Kinds {
		validKinds[string(k)] = true
	}
}

// extract reads the routing and index members of one record. Records that
// are not canonical v1 events (as ingest, the agent and the CLI write them)
// get an *invalidError naming the problem; they go to the dead-letter
// topic and never block their partition.
func extract(value []byte, classes map[string]bool, f *fields) error {
	*f = fields{}
	if len(value) == 0 {
		return invalid("empty record")
	}
	if value[0] != '{' || bytes.IndexByte(value, '\n') >= 0 {
		return invalid("not a one-line JSON object")
	}
	// ZeroCopy: the strings point into value, which the buffer keeps.
	rest, err := json.Parse(value, f, json.ZeroCopy|json.DontMatchCaseInsensitiveStructFields)
	if err != nil {
		return invalid("invalid JSON: %v", trimErr(err))
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return invalid("data after the JSON object")
	}
	switch {
	case f.V != event.Version:
		return invalid("v is %d; want %d", f.V, event.Version)
	case f.ID == "":
		return invalid("id is missing")
	case !validKinds[f.Kind]:
		return invalid("kind %q is unknown", f.Kind)
	case f.Tenant == "":
		return invalid("tenant is missing")
	case f.Class == "":
		// Ingest fills the default class; a record produced straight to
		// the topic must carry it (docs/EVENTS.md §7): the archiver does
		// not rewrite records, since what it stores is what was produced.
		return invalid("class is missing (producers writing to the topic directly must set it; docs/EVENTS.md §7)")
	case !classes[f.Class]:
		return invalid("class %q is not a configured retention class", f.Class)
	}
	if f.t, err = event.ParseTime(f.Time); err != nil {
		return invalid("time %q is not a canonical UTC time", f.Time)
	}
	return nil
}

func trimErr(err error) string {
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}
