package install

import (
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/dump"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/validation"
)

// The fuzz targets below take arbitrary bytes where the server takes a request body. Their
// seeds live in testdata/fuzz/<target> and run in every plain `go test`; `make fuzz` runs
// each target for longer. The rules they check:
//   - decoding never panics; bytes either decode or fail with an error (a 400 in the server);
//   - a decoded object goes through validation (create, update, status update) without
//     panicking;
//   - a decoded object survives internal -> each version -> internal unchanged, and encoding
//     it again in the version it came in and decoding that gives it back unchanged;
//   - no conversion modifies its input.

// fuzzScheme is shared by the targets: a scheme is read-only once built.
var fuzzScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	Install(s)
	return s
}()

var fuzzCodecs = serializer.NewCodecFactory(fuzzScheme)

func FuzzDecodeV1alpha1JSON(f *testing.F) {
	fuzzDecode(f, v1alpha1.SchemeGroupVersion, runtime.ContentTypeJSON)
}

func FuzzDecodeV1alpha1YAML(f *testing.F) {
	fuzzDecode(f, v1alpha1.SchemeGroupVersion, runtime.ContentTypeYAML)
}

func FuzzDecodeV1beta1JSON(f *testing.F) {
	fuzzDecode(f, v1beta1.SchemeGroupVersion, runtime.ContentTypeJSON)
}

func FuzzDecodeV1beta1YAML(f *testing.F) {
	fuzzDecode(f, v1beta1.SchemeGroupVersion, runtime.ContentTypeYAML)
}

// fuzzDecode decodes the input as a request body in gv and mediaType, the way the server
// decodes a create or update, and checks what decodes.
func fuzzDecode(f *testing.F, gv schema.GroupVersion, mediaType string) {
	info, ok := runtime.SerializerInfoForMediaType(fuzzCodecs.SupportedMediaTypes(), mediaType)
	if !ok {
		f.Fatalf("no serializer for %s", mediaType)
	}
	decoder := fuzzCodecs.DecoderToVersion(info.Serializer, etcdaas.SchemeGroupVersion)
	encoder := fuzzCodecs.EncoderForVersion(info.Serializer, gv)
	defaultGVK := gv.WithKind("ETCDInstance")
	f.Fuzz(func(t *testing.T, data []byte) {
		obj, _, err := decoder.Decode(data, &defaultGVK, nil)
		if err != nil {
			return // the server answers 400
		}
		var instances []etcdaas.ETCDInstance
		switch o := obj.(type) {
		case *etcdaas.ETCDInstance:
			instances = []etcdaas.ETCDInstance{*o}
		case *etcdaas.ETCDInstanceList:
			instances = o.Items
		default:
			return // another kind of the group (the server refuses a body of the wrong kind)
		}
		for i := range instances {
			hub := &instances[i]
			if v1alpha1.PreservedFieldsError(hub.Annotations) != nil {
				continue // left by the conversion for validation: the server answers 422
			}
			checkValidation(hub)
			checkHubRoundTrips(t, hub)
			checkReencode(t, hub, encoder, decoder, &defaultGVK)
		}
	})
}

// FuzzPreservedFieldsAnnotation puts arbitrary text into the v1alpha1 preservation annotation
// of an otherwise valid object: either the conversion cannot read it and leaves it, alone of
// what it stands for, on the internal object (where validation refuses it: a 422 for the
// client that sent it), or it gives an object without it that converts back to v1alpha1 and
// in again unchanged.
func FuzzPreservedFieldsAnnotation(f *testing.F) {
	f.Fuzz(func(t *testing.T, annotation string, state string, message string, tls bool) {
		replicas := int32(3)
		in := &v1alpha1.ETCDInstance{
			ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Annotations: map[string]string{
				etcdaas.PreservedFieldsAnnotation: annotation, "keep": "me",
			}},
			Spec:   v1alpha1.ETCDInstanceSpec{Replicas: &replicas, WithTLSBundle: tls},
			Status: v1alpha1.ETCDInstanceStatus{State: v1alpha1.State(state), Message: message},
		}
		original := in.DeepCopy()
		var hub etcdaas.ETCDInstance
		err := fuzzScheme.Convert(in, &hub, nil)
		if !apiequality.Semantic.DeepEqual(original, in) {
			t.Fatalf("conversion modified its input:\n%s", dump.Pretty(original))
		}
		if err != nil {
			return
		}
		if hub.Annotations["keep"] != "me" {
			t.Fatalf("another annotation was lost: %v", hub.Annotations)
		}
		if left, ok := hub.Annotations[etcdaas.PreservedFieldsAnnotation]; ok {
			if left != annotation || v1alpha1.PreservedFieldsError(hub.Annotations) == nil {
				t.Fatalf("the annotation survived into the internal object, yet it reads: %v", hub.Annotations)
			}
			if hub.Spec.Storage != nil || hub.Spec.Backup != nil || len(hub.Status.Members) != 0 {
				t.Fatalf("fields were taken from an annotation that does not read: %s", dump.Pretty(hub))
			}
			return // refused by validation (the registry's unreadPreservedFields)
		}
		checkValidation(&hub)
		checkHubRoundTrips(t, &hub)
	})
}

// checkValidation runs every validation function on hub; all that is asked is that none
// panics, whatever the object.
func checkValidation(hub *etcdaas.ETCDInstance) {
	valid := &etcdaas.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", ResourceVersion: "1"},
		Spec:       etcdaas.ETCDInstanceSpec{Replicas: 3, Version: etcdaas.DefaultVersion},
	}
	_ = validation.ValidateETCDInstance(hub)
	_ = validation.ValidateETCDInstanceUpdate(hub, hub)
	_ = validation.ValidateETCDInstanceUpdate(hub, valid)
	_ = validation.ValidateETCDInstanceUpdate(valid, hub)
	_ = validation.ValidateETCDInstanceStatusUpdate(hub, valid)
	_ = validation.ValidateETCDInstanceStatusUpdate(valid, hub)
	_ = validation.ValidateName(hub.Name, false)
}

// checkHubRoundTrips converts hub into each version and back: nothing may change, in hub or
// in the result.
func checkHubRoundTrips(t *testing.T, hub *etcdaas.ETCDInstance) {
	t.Helper()
	original := hub.DeepCopy()
	for _, versioned := range []runtime.Object{&v1alpha1.ETCDInstance{}, &v1beta1.ETCDInstance{}} {
		if err := fuzzScheme.Convert(hub, versioned, nil); err != nil {
			t.Fatalf("internal -> %T: %v\n%s", versioned, err, dump.Pretty(hub))
		}
		var back etcdaas.ETCDInstance
		if err := fuzzScheme.Convert(versioned, &back, nil); err != nil {
			t.Fatalf("%T -> internal: %v\n%s", versioned, err, dump.Pretty(versioned))
		}
		if !apiequality.Semantic.DeepEqual(original, hub) {
			t.Fatalf("conversion to %T modified its input:\n%s", versioned, dump.Pretty(original))
		}
		if !apiequality.Semantic.DeepEqual(hub, &back) {
			t.Fatalf("internal -> %T -> internal lost data\nin:  %s\nvia: %s\nout: %s", versioned, dump.Pretty(hub), dump.Pretty(versioned), dump.Pretty(&back))
		}
	}
}

// checkReencode encodes hub in the version and format it was decoded from and decodes that:
// what a client reads back is what it wrote, after defaulting.
func checkReencode(t *testing.T, hub *etcdaas.ETCDInstance, encoder runtime.Encoder, decoder runtime.Decoder, gvk *schema.GroupVersionKind) {
	t.Helper()
	data, err := runtime.Encode(encoder, hub)
	if err != nil {
		t.Fatalf("encoding a decoded object: %v\n%s", err, dump.Pretty(hub))
	}
	obj, _, err := decoder.Decode(data, gvk, nil)
	if err != nil {
		t.Fatalf("decoding what was encoded: %v\n%s", err, data)
	}
	if !apiequality.Semantic.DeepEqual(hub, obj) {
		t.Fatalf("encode -> decode changed the object\nencoded: %s\nin:  %s\nout: %s", data, dump.Pretty(hub), dump.Pretty(obj))
	}
}
