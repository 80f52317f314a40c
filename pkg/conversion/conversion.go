// Package conversion converts etcdaas.dev objects between any two served versions through
// the internal hub, with the same scheme, defaulting and conversion functions the API server
// uses. The CLI's offline convert and the benchmarks use it.
package conversion

import (
	"bytes"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/install"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// ServedVersions are the versions a Converter converts between, preferred first.
var ServedVersions = []schema.GroupVersion{v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion}

// Converter converts objects between served versions.
type Converter struct {
	scheme       *runtime.Scheme
	deserializer runtime.Decoder
	json         *json.Serializer
	yaml         *json.Serializer
}

// New returns a Converter over a scheme holding the etcdaas.dev group.
func New() *Converter {
	scheme := runtime.NewScheme()
	install.Install(scheme)
	return &Converter{
		scheme:       scheme,
		deserializer: json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true}),
		json:         json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Pretty: true}),
		yaml:         json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme, json.SerializerOptions{Yaml: true}),
	}
}

// ParseVersion accepts "v1alpha1", "etcdaas.dev/v1alpha1" and the like, and returns the
// served group version it names.
func ParseVersion(version string) (schema.GroupVersion, error) {
	for _, gv := range ServedVersions {
		if version == gv.Version || version == gv.String() {
			return gv, nil
		}
	}
	return schema.GroupVersion{}, fmt.Errorf("unknown version %q: served versions are %s and %s", version, ServedVersions[0], ServedVersions[1])
}

// Convert converts a versioned object (ETCDInstance or ETCDInstanceList of any served
// version) into the target version through the hub. The input is defaulted first, as the
// server would on decoding it, and is not modified.
func (c *Converter) Convert(in runtime.Object, to schema.GroupVersion) (runtime.Object, error) {
	gvks, _, err := c.scheme.ObjectKinds(in)
	if err != nil {
		return nil, err
	}
	from := gvks[0]
	if from.Group != etcdaas.GroupName || from.Version == runtime.APIVersionInternal {
		return nil, fmt.Errorf("%s is not a served %s kind", from, etcdaas.GroupName)
	}
	versioned := in.DeepCopyObject()
	c.scheme.Default(versioned)
	hub, err := c.scheme.New(from.GroupKind().WithVersion(runtime.APIVersionInternal))
	if err != nil {
		return nil, err
	}
	if err := c.scheme.Convert(versioned, hub, nil); err != nil {
		return nil, err
	}
	if err := unreadPreservedFields(hub); err != nil {
		return nil, err
	}
	out, err := c.scheme.New(to.WithKind(from.Kind))
	if err != nil {
		return nil, err
	}
	if err := c.scheme.Convert(hub, out, nil); err != nil {
		return nil, err
	}
	out.GetObjectKind().SetGroupVersionKind(to.WithKind(from.Kind))
	return out, nil
}

// Decode reads one served object from JSON or YAML. Unknown fields are an error, as with
// fieldValidation=Strict on the server.
func (c *Converter) Decode(data []byte) (runtime.Object, error) {
	obj, gvk, err := c.deserializer.Decode(data, nil, nil)
	if err != nil {
		return nil, err
	}
	if gvk.Group != etcdaas.GroupName {
		return nil, fmt.Errorf("%s is not a kind of %s", gvk, etcdaas.GroupName)
	}
	return obj, nil
}

// Encode writes obj as YAML, or as indented JSON when asJSON is set.
func (c *Converter) Encode(obj runtime.Object, asJSON bool) ([]byte, error) {
	var buf bytes.Buffer
	encoder := c.yaml
	if asJSON {
		encoder = c.json
	}
	if err := encoder.Encode(obj, &buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ConvertDocument decodes one JSON or YAML document, converts it to the target version and
// encodes the result.
func (c *Converter) ConvertDocument(data []byte, to schema.GroupVersion, asJSON bool) ([]byte, error) {
	obj, err := c.Decode(data)
	if err != nil {
		return nil, err
	}
	out, err := c.Convert(obj, to)
	if err != nil {
		return nil, err
	}
	return c.Encode(out, asJSON)
}

// unreadPreservedFields refuses a hub object (or a list of them) that still carries the
// preserved-fields annotation a conversion could not read: the fields it stands for were not
// taken, and the converted object would carry it, still unread, without them. The server's
// validation refuses the same object.
func unreadPreservedFields(hub runtime.Object) error {
	var items []etcdaas.ETCDInstance
	switch h := hub.(type) {
	case *etcdaas.ETCDInstance:
		items = []etcdaas.ETCDInstance{*h}
	case *etcdaas.ETCDInstanceList:
		items = h.Items
	}
	for i := range items {
		if err := v1alpha1.PreservedFieldsError(items[i].Annotations); err != nil {
			return fmt.Errorf("%s: metadata.annotations[%s]: %w", items[i].Name, etcdaas.PreservedFieldsAnnotation, err)
		}
	}
	return nil
}
