package etcdinstance

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apiserver/pkg/admission"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestAMutatingWebhookKeepsAnUnreadPreservedFieldsAnnotation: a mutating admission webhook (or
// policy) on etcdinstances gets a v1alpha1 create in the version it registered for, and a
// patch it answers with is converted back into the internal object before the strategy
// validates it (k8s.io/apiserver's mutating dispatcher: NewVersionedAttributes, then Convert
// into the request's object). A preserved-fields annotation the v1alpha1 conversion could not
// read must survive that round trip in either version, so that the create is still refused
// with a 422 naming it, rather than stored without the backup schedule it stood for.
func TestAMutatingWebhookKeepsAnUnreadPreservedFieldsAnnotation(t *testing.T) {
	scheme := testScheme()
	decoder := serializer.NewCodecFactory(scheme).UniversalDecoder()
	body := `{"apiVersion":"etcdaas.dev/v1alpha1","kind":"ETCDInstance","metadata":{"name":"db","namespace":"ns",` +
		`"annotations":{"etcdaas.dev/v1beta1-fields":"{\"spec\":{\"bakup\":{\"schedule\":\"@daily\"}}}"}},"spec":{"replicas":3}}`
	objects := admission.NewObjectInterfacesFromScheme(scheme)
	for _, webhook := range []schema.GroupVersion{v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion} {
		obj, _, err := decoder.Decode([]byte(body), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		attrs := admission.NewAttributesRecord(obj, nil, v1alpha1.SchemeGroupVersion.WithKind("ETCDInstance"), "ns", "db",
			v1alpha1.SchemeGroupVersion.WithResource("etcdinstances"), "", admission.Create, &metav1.CreateOptions{}, false, nil)
		versioned, err := admission.NewVersionedAttributes(attrs, webhook.WithKind("ETCDInstance"), objects)
		if err != nil {
			t.Fatal(err)
		}
		// The webhook labels the instance.
		patched := versioned.VersionedObject.Object().DeepCopyObject()
		accessor, err := meta.Accessor(patched)
		if err != nil {
			t.Fatal(err)
		}
		accessor.SetLabels(map[string]string{"team": "a"})
		versioned.UpdateObject(patched)
		if err := objects.GetObjectConvertor().Convert(versioned.VersionedObject.Object(), attrs.GetObject(), nil); err != nil {
			t.Fatalf("webhook in %s: converting its patch back: %v", webhook.Version, err)
		}
		instance := attrs.GetObject().(*etcdaas.ETCDInstance)
		if instance.Labels["team"] != "a" {
			t.Fatalf("webhook in %s: its patch did not land: %v", webhook.Version, instance.Labels)
		}
		ctx := ctxFor(v1alpha1.SchemeGroupVersion.Version)
		s := NewStrategy(scheme)
		s.PrepareForCreate(ctx, instance)
		errs := s.Validate(ctx, instance)
		if len(errs) != 1 || errs[0].Field != "metadata.annotations[etcdaas.dev/v1beta1-fields]" {
			t.Errorf("webhook in %s: validation found %v, want the annotation refused (else the instance is stored without spec.backup: %+v)",
				webhook.Version, errs, instance.Spec.Backup)
		}
	}
}
