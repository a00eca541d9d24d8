package export

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"time"
)

//go:embed summary.html.tmpl
var summaryText string

var summaryTmpl = template.Must(template.New("summary").Funcs(template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"sorted":    sortedKeys,
	"sortedStr": func(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) },
	"sortedInt": func(m map[string]int) []string { return slices.Sorted(maps.Keys(m)) },
}).Parse(summaryText))

// renderSummary is summary.html: the cover page a person reads first.
// html/template escapes every value taken from the request or the events.
func renderSummary(m Manifest) ([]byte, error) {
	var b bytes.Buffer
	if err := summaryTmpl.Execute(&b, m); err != nil {
		return nil, fmt.Errorf("cannot render %s: %w", SummaryHTML, err)
	}
	return b.Bytes(), nil
}
