package serve

import (
	"context"
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.uber.org/zap"
	yaml "go.yaml.in/yaml/v3"
)

type spec struct {
	Paths      map[string]map[string]any `yaml:"paths"`
	Components struct {
		Schemas map[string]struct {
			Required   []string       `yaml:"required"`
			Properties map[string]any `yaml:"properties"`
		} `yaml:"schemas"`
	} `yaml:"components"`
}

func loadSpec(t *testing.T) spec {
	b, err := os.ReadFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var s spec
	if err := yaml.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

// jsonFields are the JSON member names of a struct type, those of
// embedded structs included.
func jsonFields(v any) []string {
	var out []string
	var walk func(rt reflect.Type)
	walk = func(rt reflect.Type) {
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case f.Anonymous && name == "":
				walk(f.Type)
			case name != "" && name != "-" && f.IsExported():
				out = append(out, name)
			}
		}
	}
	walk(reflect.TypeOf(v))
	sort.Strings(out)
	return out
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// The spec and the handlers agree: the same endpoints, and the request
// and response objects with the same members.
func TestOpenAPIMatchesHandlers(t *testing.T) {
	sp := loadSpec(t)
	var inSpec []string
	for path, ops := range sp.Paths {
		for method := range ops {
			inSpec = append(inSpec, strings.ToUpper(method)+" "+path)
		}
	}
	srv, err := New(context.Background(), Defaults(), Deps{Log: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, r := range srv.routes() {
		served = append(served, r.pattern)
	}
	sort.Strings(inSpec)
	sort.Strings(served)
	if !slices.Equal(inSpec, served) {
		t.Errorf("api/openapi.yaml has %v;\nthe server routes %v", inSpec, served)
	}
	for name, v := range map[string]any{"QueryRequest": QueryRequest{}, "CaseRequest": CaseRequest{}, "Trailer": Trailer{}, "Progress": Progress{}, "Case": Case{}, "Identity": Identity{},
		"ExportRequest": ExportRequest{}, "Export": Export{}, "ExportResult": ExportResult{},
		"SubjectExportRequest": SubjectExportRequest{}, "RightsRequestBody": RightsRequestBody{}, "ReplyBody": ReplyBody{}, "RightsRequest": RightsRequest{}} {
		sc, ok := sp.Components.Schemas[name]
		if !ok {
			t.Errorf("schema %s missing from the spec", name)
			continue
		}
		if got, want := keys(sc.Properties), jsonFields(v); !slices.Equal(got, want) {
			t.Errorf("schema %s has %v; the Go type has %v", name, got, want)
		}
	}
}
