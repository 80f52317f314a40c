package openapi

import (
	"maps"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kube-openapi/pkg/common"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// GetOpenAPIDefinitionsWithEvents returns the generated definitions and those of core/v1
// Event and EventList, which the standalone server serves: server-side apply and managedFields need a schema
// of every type served, and `kubectl explain events` reads it. Written here rather than
// generated, since openapi-gen would generate the whole of core/v1 for these five types.
func GetOpenAPIDefinitionsWithEvents(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
	defs := GetOpenAPIDefinitions(ref)
	for name, def := range eventDefinitions(ref) {
		defs[name] = def
	}
	return defs
}

// eventDefinitions are the schemas of core/v1 Event and the types it holds, field for field
// as in k8s.io/api/core/v1.
func eventDefinitions(ref common.ReferenceCallback) map[string]common.OpenAPIDefinition {
	reference := corev1.ObjectReference{}.OpenAPIModelName()
	source := corev1.EventSource{}.OpenAPIModelName()
	series := corev1.EventSeries{}.OpenAPIModelName()
	meta := metav1.ObjectMeta{}.OpenAPIModelName()
	when := metav1.Time{}.OpenAPIModelName()
	micro := metav1.MicroTime{}.OpenAPIModelName()
	return map[string]common.OpenAPIDefinition{
		corev1.Event{}.OpenAPIModelName(): object(withTypeMeta(corev1.Event{}.SwaggerDoc()), []string{"metadata", "involvedObject"},
			map[string]spec.Schema{
				"kind": scalar("string"), "apiVersion": scalar("string"),
				"metadata": byValue(ref, meta), "involvedObject": byValue(ref, reference),
				"reason": scalar("string"), "message": scalar("string"), "source": byValue(ref, source),
				"firstTimestamp": refTo(ref, when), "lastTimestamp": refTo(ref, when),
				"count": scalar("integer"), "type": scalar("string"), "eventTime": refTo(ref, micro),
				"series": refTo(ref, series), "action": scalar("string"), "related": refTo(ref, reference),
				"reportingComponent": alwaysWrittenString(), "reportingInstance": alwaysWrittenString(),
			}, meta, reference, source, when, micro, series),
		corev1.EventList{}.OpenAPIModelName(): object(withTypeMeta(corev1.EventList{}.SwaggerDoc()), []string{"items"},
			map[string]spec.Schema{
				"kind": scalar("string"), "apiVersion": scalar("string"),
				"metadata": byValue(ref, metav1.ListMeta{}.OpenAPIModelName()),
				"items":    {SchemaProps: spec.SchemaProps{Type: []string{"array"}, Items: &spec.SchemaOrArray{Schema: ptrTo(refTo(ref, corev1.Event{}.OpenAPIModelName()))}}},
			}, metav1.ListMeta{}.OpenAPIModelName(), corev1.Event{}.OpenAPIModelName()),
		reference: atomic(object(corev1.ObjectReference{}.SwaggerDoc(), nil, map[string]spec.Schema{
			"kind": scalar("string"), "namespace": scalar("string"), "name": scalar("string"), "uid": scalar("string"),
			"apiVersion": scalar("string"), "resourceVersion": scalar("string"), "fieldPath": scalar("string"),
		})),
		source: object(corev1.EventSource{}.SwaggerDoc(), nil, map[string]spec.Schema{
			"component": scalar("string"), "host": scalar("string"),
		}),
		series: object(corev1.EventSeries{}.SwaggerDoc(), nil, map[string]spec.Schema{
			"count": scalar("integer"), "lastObservedTime": refTo(ref, micro),
		}, micro),
	}
}

// object is the definition of a struct whose field descriptions are in docs (its
// SwaggerDoc, the type's own under "").
func object(docs map[string]string, required []string, properties map[string]spec.Schema, dependencies ...string) common.OpenAPIDefinition {
	for name, p := range properties {
		p.Description = docs[name]
		properties[name] = p
	}
	return common.OpenAPIDefinition{
		Schema: spec.Schema{SchemaProps: spec.SchemaProps{
			Description: docs[""], Type: []string{"object"}, Required: required, Properties: properties,
		}},
		Dependencies: dependencies,
	}
}

// withTypeMeta adds to the field descriptions of a top-level type those of the kind and
// apiVersion it inlines from metav1.TypeMeta, which its own SwaggerDoc leaves out. It
// returns a copy: SwaggerDoc returns k8s.io/api's own map.
func withTypeMeta(docs map[string]string) map[string]string {
	docs = maps.Clone(docs)
	for name, doc := range (metav1.TypeMeta{}).SwaggerDoc() {
		if _, own := docs[name]; !own && name != "" {
			docs[name] = doc
		}
	}
	return docs
}

// atomic marks a struct as replaced whole by server-side apply, as +structType=atomic does.
func atomic(def common.OpenAPIDefinition) common.OpenAPIDefinition {
	def.Schema.VendorExtensible = spec.VendorExtensible{Extensions: spec.Extensions{"x-kubernetes-map-type": "atomic"}}
	return def
}

// scalar is a property of a JSON type: string, or integer (an int32).
func scalar(typ string) spec.Schema {
	s := spec.Schema{SchemaProps: spec.SchemaProps{Type: []string{typ}}}
	if typ == "integer" {
		s.Format = "int32"
	}
	return s
}

// alwaysWrittenString is a string property that JSON carries even when empty (no
// omitempty): openapi-gen gives it "" as default.
func alwaysWrittenString() spec.Schema {
	s := scalar("string")
	s.Default = ""
	return s
}

// byValue is a property holding the named struct by value, so never null: openapi-gen
// gives it {} as default.
func byValue(ref common.ReferenceCallback, name string) spec.Schema {
	s := refTo(ref, name)
	s.Default = map[string]any{}
	return s
}

// refTo is a property holding the named definition.
func refTo(ref common.ReferenceCallback, name string) spec.Schema {
	return spec.Schema{SchemaProps: spec.SchemaProps{Ref: ref(name)}}
}

func ptrTo(s spec.Schema) *spec.Schema { return &s }
