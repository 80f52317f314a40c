package apiserver

import (
	"bytes"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/runtime/serializer/cbor"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// BenchmarkEncodeForGET encodes one stored ETCDInstance (internal, as the watch cache holds
// it) to JSON in each served version, as a GET answers: v1beta1 is a generated conversion,
// v1alpha1 also writes the fields it has no place for into the preserved-fields annotation.
func BenchmarkEncodeForGET(b *testing.B) {
	obj := benchObject("instance-00000")
	info, ok := runtime.SerializerInfoForMediaType(Codecs.SupportedMediaTypes(), runtime.ContentTypeJSON)
	if !ok {
		b.Fatal("no JSON serializer")
	}
	for _, gv := range []schema.GroupVersion{v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion} {
		encoder := Codecs.EncoderForVersion(info.Serializer, gv)
		b.Run(gv.Version, func(b *testing.B) {
			b.ReportAllocs()
			var buf bytes.Buffer
			for b.Loop() {
				buf.Reset()
				if err := encoder.Encode(obj, &buf); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(buf.Len()), "bytes/object")
		})
	}
}

// benchObject is a stored ETCDInstance as the API benchmarks create them: a three-member
// instance with TLS, with the managed fields of its create.
func benchObject(name string) *etcdaas.ETCDInstance {
	created := metav1.Now()
	return &etcdaas.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: "bench", UID: "0d8b7b44-6c0e-4f44-a7b5-4e0b1f0f5a7e",
			ResourceVersion: "12345", Generation: 1, CreationTimestamp: created,
			Labels: map[string]string{"team": "shop", "tier": "backend"},
			ManagedFields: []metav1.ManagedFieldsEntry{{
				Manager: "bench.test", Operation: metav1.ManagedFieldsOperationUpdate, APIVersion: "etcdaas.dev/v1beta1",
				Time: &created, FieldsType: "FieldsV1",
				FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:labels":{".":{},"f:team":{},"f:tier":{}}},"f:spec":{".":{},"f:replicas":{},"f:tls":{".":{},"f:enabled":{}},"f:version":{}}}`)},
			}},
		},
		Spec: etcdaas.ETCDInstanceSpec{Replicas: 3, Version: "3.7", TLS: &etcdaas.TLSSpec{Enabled: true}},
	}
}

// BenchmarkEncodeList encodes a LIST answer of 1000 stored ETCDInstances (internal, as the
// watch cache holds them) in v1beta1 with each media type the server can speak, and decodes it
// as a client does: the encoding lever of a LIST, without the network. CBOR is served only
// with the CBORServingAndStorage feature gate; it is measured here to compare, not served.
func BenchmarkEncodeList(b *testing.B) {
	list := &etcdaas.ETCDInstanceList{ListMeta: metav1.ListMeta{ResourceVersion: "99999"}}
	for i := range 1000 {
		list.Items = append(list.Items, *benchObject(fmt.Sprintf("instance-%05d", i)))
	}
	codecs := serializer.NewCodecFactory(Scheme, serializer.WithStreamingCollectionEncodingToJSON(),
		serializer.WithStreamingCollectionEncodingToProtobuf(), serializer.WithSerializer(cbor.NewSerializerInfo))
	for _, mediaType := range []string{runtime.ContentTypeJSON, runtime.ContentTypeProtobuf, runtime.ContentTypeCBOR} {
		info, ok := runtime.SerializerInfoForMediaType(codecs.SupportedMediaTypes(), mediaType)
		if !ok {
			b.Fatalf("no serializer for %s", mediaType)
		}
		var encoded bytes.Buffer
		encoder := codecs.EncoderForVersion(info.Serializer, v1beta1.SchemeGroupVersion)
		b.Run(info.MediaTypeSubType+"/encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				encoded.Reset()
				if err := encoder.Encode(list, &encoded); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(encoded.Len()), "bytes/list")
		})
		decoder := codecs.DecoderToVersion(info.Serializer, v1beta1.SchemeGroupVersion)
		b.Run(info.MediaTypeSubType+"/decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				into := &v1beta1.ETCDInstanceList{}
				if _, _, err := decoder.Decode(encoded.Bytes(), nil, into); err != nil {
					b.Fatal(err)
				}
				if len(into.Items) != len(list.Items) {
					b.Fatalf("decoded %d objects of %d", len(into.Items), len(list.Items))
				}
			}
		})
	}
}
