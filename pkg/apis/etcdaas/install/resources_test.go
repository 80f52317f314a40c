package install

import (
	"strings"
	"testing"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestResourcesTravelThroughV1alpha1: spec.resources, which v1alpha1 has no field for, is in
// its etcdaas.dev/v1beta1-fields annotation in v1beta1's JSON shape, and comes back from it.
func TestResourcesTravelThroughV1alpha1(t *testing.T) {
	scheme := newScheme(t)
	input := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"},
		Spec: v1beta1.ETCDInstanceSpec{Resources: &v1beta1.MemberResources{
			Requests: map[string]resource.Quantity{"cpu": resource.MustParse("500m")},
			Limits:   map[string]resource.Quantity{"memory": resource.MustParse("1Gi")},
		}},
	}
	scheme.Default(input)
	var hub, back etcdaas.ETCDInstance
	var alpha v1alpha1.ETCDInstance
	var output v1beta1.ETCDInstance
	convert(t, scheme, input, &hub)
	convert(t, scheme, &hub, &alpha)
	want := `"resources":{"requests":{"cpu":"500m"},"limits":{"memory":"1Gi"}}`
	if got := alpha.Annotations[etcdaas.PreservedFieldsAnnotation]; !strings.Contains(got, want) {
		t.Fatalf("v1alpha1 annotation %s does not hold %s", got, want)
	}
	convert(t, scheme, &alpha, &back)
	convert(t, scheme, &back, &output)
	if !apiequality.Semantic.DeepEqual(input.Spec.Resources, output.Spec.Resources) {
		t.Fatalf("spec.resources after v1alpha1: %+v, want %+v", output.Spec.Resources, input.Spec.Resources)
	}
}

// TestResourcesAreNotDefaultedInTheAPI: an instance without spec.resources keeps none in
// v1beta1 (the backend applies its defaults), so v1alpha1 objects get no annotation for it
// and a change of the backend's defaults is not frozen into stored objects.
func TestResourcesAreNotDefaultedInTheAPI(t *testing.T) {
	scheme := newScheme(t)
	obj := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns"}}
	scheme.Default(obj)
	if obj.Spec.Resources != nil {
		t.Fatalf("spec.resources defaulted to %+v", obj.Spec.Resources)
	}
	var hub etcdaas.ETCDInstance
	var alpha v1alpha1.ETCDInstance
	convert(t, scheme, obj, &hub)
	convert(t, scheme, &hub, &alpha)
	if got := alpha.Annotations[etcdaas.PreservedFieldsAnnotation]; strings.Contains(got, "resources") {
		t.Fatalf("v1alpha1 annotation %s names resources", got)
	}
}
