package openapi

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// modelNamer is a type with a definition of its own, which properties of its type refer to.
type modelNamer interface{ OpenAPIModelName() string }

// swaggerDocumented is a type of k8s.io/api or apimachinery with the descriptions of its
// fields (its own under "").
type swaggerDocumented interface{ SwaggerDoc() map[string]string }

// jsonField is one field of a struct as encoding/json writes it.
type jsonField struct {
	name      string
	typ       reflect.Type
	omitEmpty bool
	doc       string // from the SwaggerDoc of the struct declaring the field
}

// jsonFields lists the JSON fields of struct type t, with those of embedded structs
// (TypeMeta) inlined, as encoding/json writes them.
func jsonFields(t reflect.Type) []jsonField {
	var docs map[string]string
	if documented, ok := reflect.Zero(t).Interface().(swaggerDocumented); ok {
		docs = documented.SwaggerDoc()
	}
	var out []jsonField
	for f := range t.Fields() {
		name, options, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
		case f.Anonymous && name == "":
			out = append(out, jsonFields(f.Type)...)
		case name != "":
			omitEmpty := slices.Contains(strings.Split(options, ","), "omitempty")
			out = append(out, jsonField{name: name, typ: f.Type, omitEmpty: omitEmpty, doc: docs[name]})
		}
	}
	return out
}

var jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()

// openAPIGenDefault is the default openapi-gen gives a field of type t (mustEnforceDefault
// in k8s.io/kube-openapi's generator): none for a type that unmarshals itself (its empty
// value is null, as metav1.Time's), a pointer, slice or map; {} for a struct held by value;
// the zero value for a scalar that JSON carries even when empty (no omitempty).
func openAPIGenDefault(t reflect.Type, omitEmpty bool) any {
	if reflect.PointerTo(t).Implements(jsonUnmarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Array, reflect.Interface:
		return nil
	case reflect.Struct:
		return map[string]any{}
	}
	if omitEmpty {
		return nil
	}
	zero, _ := common.OpenAPIZeroValue(t.Kind().String())
	return zero
}

// fieldSchema is the schema openapi-gen writes for a field of Go type t, without its
// description: a JSON type and format for a scalar, a reference for a struct or a pointer
// to one, an array of the element's schema for a slice.
func fieldSchema(ref common.ReferenceCallback, t reflect.Type) (spec.Schema, bool) {
	if t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		named, ok := reflect.Zero(t).Interface().(modelNamer)
		if !ok {
			return spec.Schema{}, false
		}
		return spec.Schema{SchemaProps: spec.SchemaProps{Ref: ref(named.OpenAPIModelName())}}, true
	case reflect.Slice:
		items, ok := fieldSchema(ref, t.Elem())
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{"array"}, Items: &spec.SchemaOrArray{Schema: &items}}}, ok
	default:
		typ, format := common.OpenAPITypeFormat(t.Kind().String()) // string, int32, ...
		return spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{typ}, Format: format}}, typ != ""
	}
}

// TestEventDefinitionsHaveEveryField keeps the hand-written schemas of core/v1 Event and the
// types it holds in step with k8s.io/api: a field added there and missing here would be
// dropped by server-side apply's typed conversion and unknown to kubectl explain, a
// property of another type than its field's would make server-side apply refuse or
// mangle the field, and each property is described and defaulted as openapi-gen does it
// for kube-apiserver.
func TestEventDefinitionsHaveEveryField(t *testing.T) {
	ref := func(path string) spec.Ref { return spec.MustCreateRef("#/definitions/" + path) }
	defs := GetOpenAPIDefinitionsWithEvents(ref)
	for _, obj := range []modelNamer{
		corev1.Event{}, corev1.EventList{}, corev1.ObjectReference{}, corev1.EventSource{}, corev1.EventSeries{},
	} {
		name := obj.OpenAPIModelName()
		def, ok := defs[name]
		if !ok {
			t.Errorf("no definition of %s", name)
			continue
		}
		fields := jsonFields(reflect.TypeOf(obj))
		var want, got []string
		for _, f := range fields {
			want = append(want, f.name)
		}
		for p := range def.Schema.Properties {
			got = append(got, p)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s: properties %v, want the JSON fields %v", name, got, want)
		}
		if want := obj.(swaggerDocumented).SwaggerDoc()[""]; def.Schema.Description != want {
			t.Errorf("%s: description %q, want %q", name, def.Schema.Description, want)
		}
		checkProperties(t, ref, name, def, fields)
		for _, dep := range def.Dependencies {
			if _, ok := defs[dep]; !ok {
				t.Errorf("%s depends on %s, which has no definition", name, dep)
			}
		}
		checkRefsDeclared(t, name, def)
		// +structType=atomic in k8s.io/api: server-side apply replaces the whole reference.
		wantExtensions := spec.Extensions(nil)
		if _, isReference := obj.(corev1.ObjectReference); isReference {
			wantExtensions = spec.Extensions{"x-kubernetes-map-type": "atomic"}
		}
		if !reflect.DeepEqual(def.Schema.Extensions, wantExtensions) {
			t.Errorf("%s: extensions %v, want %v", name, def.Schema.Extensions, wantExtensions)
		}
	}
}

// checkProperties checks that each property has the type, format, reference or items of
// its Go field, its description (kubectl explain shows it) and the default openapi-gen
// gives it.
func checkProperties(t *testing.T, ref common.ReferenceCallback, name string, def common.OpenAPIDefinition, fields []jsonField) {
	t.Helper()
	for _, f := range fields {
		got, ok := def.Schema.Properties[f.name]
		if !ok {
			continue // reported with the property names
		}
		want, ok := fieldSchema(ref, f.typ)
		if !ok {
			t.Errorf("%s.%s: no schema rule for a field of type %s", name, f.name, f.typ)
			continue
		}
		want.Description, want.Default = f.doc, openAPIGenDefault(f.typ, f.omitEmpty)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s.%s (%s): schema %s, want %s", name, f.name, f.typ, asJSON(t, got), asJSON(t, want))
		}
	}
}

func asJSON(t *testing.T, s spec.Schema) string {
	t.Helper()
	b, err := s.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
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
