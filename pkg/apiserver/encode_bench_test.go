package apiserver

import (
	"bytes"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// BenchmarkEncodeForGET encodes one stored ETCDInstance (internal, as the watch cache holds
// it) to JSON in each served version, as a GET answers: v1beta1 is a generated conversion,
// v1alpha1 also writes the fields it has no place for into the preserved-fields annotation.
func BenchmarkEncodeForGET(b *testing.B) {
	created := metav1.Now()
	obj := &etcdaas.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{
			Name: "instance-00000", Namespace: "bench", UID: "0d8b7b44-6c0e-4f44-a7b5-4e0b1f0f5a7e",
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
