package install

import (
	"math/rand"
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/roundtrip"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/dump"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/fuzzer"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestRoundTripTypes fuzzes internal objects and checks internal -> each version -> JSON/YAML
// -> version -> internal gives the object back.
func TestRoundTripTypes(t *testing.T) {
	defer func(iters int) { *roundtrip.FuzzIters = iters }(*roundtrip.FuzzIters)
	*roundtrip.FuzzIters = 500
	roundtrip.RoundTripTestForAPIGroup(t, Install, fuzzer.Funcs)
}

// TestRoundTripProtobuf does the same through protobuf, the encoding the server stores and
// the generated clients use: internal -> each version -> protobuf -> version -> internal.
func TestRoundTripProtobuf(t *testing.T) {
	defer func(iters int) { *roundtrip.FuzzIters = iters }(*roundtrip.FuzzIters)
	*roundtrip.FuzzIters = 500
	roundtrip.RoundTripProtobufTestForAPIGroup(t, Install, fuzzer.Funcs)
}

// TestRoundTripYAML does the same through YAML, the form manifests are written in: internal
// -> each version -> YAML -> version -> internal.
func TestRoundTripYAML(t *testing.T) {
	scheme := newScheme(t)
	codecs := serializer.NewCodecFactory(scheme)
	info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), runtime.ContentTypeYAML)
	if !ok {
		t.Fatal("no YAML serializer")
	}
	filler := newFiller(scheme, rand.Int63())
	for _, gv := range []schema.GroupVersion{v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion} {
		codec := codecs.CodecForVersions(info.Serializer, codecs.UniversalDecoder(etcdaas.SchemeGroupVersion), gv, etcdaas.SchemeGroupVersion)
		for i := 0; i < 500; i++ {
			var hub etcdaas.ETCDInstance
			filler.Fill(&hub)
			data, err := runtime.Encode(codec, &hub)
			if err != nil {
				t.Fatalf("encoding to %s YAML: %v", gv, err)
			}
			var back etcdaas.ETCDInstance
			if err := runtime.DecodeInto(codec, data, &back); err != nil {
				t.Fatalf("decoding %s YAML: %v\n%s", gv, err, data)
			}
			if !apiequality.Semantic.DeepEqual(&hub, &back) {
				t.Fatalf("%s YAML round trip lost data:\n%s\nin:  %s\nout: %s", gv, data, dump.Pretty(&hub), dump.Pretty(&back))
			}
		}
	}
}
