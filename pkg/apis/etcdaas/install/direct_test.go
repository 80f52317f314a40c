package install

import (
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestServedVersionsConvertDirectly: the scheme converts an object of one served version
// straight into the other, as through the hub. k8s.io/apiserver's MutatingAdmissionPolicy
// plugin does so: a policy registered for v1beta1 mutates a v1alpha1 request's object in
// v1beta1 and converts the result, unstructured, to the request's version
// (ConvertToVersion); without a direct conversion that answered "unknown conversion" and
// the request was refused.
func TestServedVersionsConvertDirectly(t *testing.T) {
	scheme := newScheme(t)
	beta := &v1beta1.ETCDInstance{
		TypeMeta:   metav1.TypeMeta{APIVersion: v1beta1.SchemeGroupVersion.String(), Kind: "ETCDInstance"},
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Labels: map[string]string{"policy": "v1beta1"}},
		Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Version: "3.7",
			Defragmentation: &v1beta1.DefragmentationSpec{FreePercent: ptr.To[int32](30)}},
	}
	scheme.Default(beta)

	// What the hub gives, the reference.
	var hub etcdaas.ETCDInstance
	want := &v1alpha1.ETCDInstance{}
	convert(t, scheme, beta.DeepCopy(), &hub)
	convert(t, scheme, &hub, want)

	got := &v1alpha1.ETCDInstance{}
	convert(t, scheme, beta.DeepCopy(), got)
	if !apiequality.Semantic.DeepEqual(got, want) {
		t.Errorf("v1beta1 to v1alpha1 directly:\n%#v\nthrough the hub:\n%#v", got, want)
	}

	// The admission plugin's call: an unstructured v1beta1 object to v1alpha1.
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(beta)
	if err != nil {
		t.Fatal(err)
	}
	out, err := scheme.ConvertToVersion(&unstructured.Unstructured{Object: content}, v1alpha1.SchemeGroupVersion)
	if err != nil {
		t.Fatalf("ConvertToVersion(unstructured v1beta1, v1alpha1): %v", err)
	}
	alpha, ok := out.(*v1alpha1.ETCDInstance)
	if !ok || alpha.Labels["policy"] != "v1beta1" || *alpha.Spec.Replicas != 3 {
		t.Fatalf("ConvertToVersion gave %T %#v", out, out)
	}

	// And back: nothing v1alpha1 cannot express is lost.
	back := &v1beta1.ETCDInstance{}
	convert(t, scheme, alpha, back)
	back.TypeMeta = beta.TypeMeta
	if !apiequality.Semantic.DeepEqual(back, beta) {
		t.Errorf("v1beta1 -> v1alpha1 -> v1beta1 directly:\n%#v\nwant\n%#v", back, beta)
	}

	lists := []struct{ in, out runtime.Object }{
		{&v1beta1.ETCDInstanceList{Items: []v1beta1.ETCDInstance{*beta}}, &v1alpha1.ETCDInstanceList{}},
		{&v1alpha1.ETCDInstanceList{Items: []v1alpha1.ETCDInstance{*alpha}}, &v1beta1.ETCDInstanceList{}},
	}
	for _, l := range lists {
		convert(t, scheme, l.in, l.out)
		if n := meta.LenList(l.out); n != 1 {
			t.Errorf("%T: %d items", l.out, n)
		}
	}
}
