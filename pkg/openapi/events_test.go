package openapi

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// jsonFields lists the JSON field names of struct type t, with those of embedded structs
// (TypeMeta) inlined, as encoding/json writes them.
func jsonFields(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "":
			out = append(out, jsonFields(f.Type)...)
		case name != "":
			out = append(out, name)
		}
	}
	return out
}

// TestEventDefinitionsHaveEveryField keeps the hand-written schemas of core/v1 Event and the
// types it holds in step with k8s.io/api: a field added there and missing here would be
// dropped by server-side apply's typed conversion and unknown to kubectl explain.
func TestEventDefinitionsHaveEveryField(t *testing.T) {
	defs := GetOpenAPIDefinitionsWithEvents(func(path string) spec.Ref { return spec.MustCreateRef("#/definitions/" + path) })
	for _, obj := range []interface{ OpenAPIModelName() string }{
		corev1.Event{}, corev1.EventList{}, corev1.ObjectReference{}, corev1.EventSource{}, corev1.EventSeries{},
	} {
		name := obj.OpenAPIModelName()
		def, ok := defs[name]
		if !ok {
			t.Errorf("no definition of %s", name)
			continue
		}
		want := jsonFields(reflect.TypeOf(obj))
		var got []string
		for p := range def.Schema.Properties {
			got = append(got, p)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: properties %v, want the JSON fields %v", name, got, want)
		}
		for _, dep := range def.Dependencies {
			if _, ok := defs[dep]; !ok {
				t.Errorf("%s depends on %s, which has no definition", name, dep)
			}
		}
		checkRefsDeclared(t, name, def)
	}
}

// checkRefsDeclared checks that every property referring to another definition lists it as a
// dependency, which the OpenAPI builders follow to include it.
func checkRefsDeclared(t *testing.T, name string, def common.OpenAPIDefinition) {
	t.Helper()
	for p, s := range def.Schema.Properties {
		if s.Items != nil && s.Items.Schema != nil {
			s = *s.Items.Schema
		}
		ref := s.Ref.String()
		if ref == "" {
			continue
		}
		target := strings.TrimPrefix(ref, "#/definitions/")
		if !slices.Contains(def.Dependencies, target) {
			t.Errorf("%s.%s refers to %s without listing it as a dependency", name, p, target)
		}
	}
}
