package main

import (
	"context"
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/api/apitesting/fuzzer"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metafuzzer "k8s.io/apimachinery/pkg/apis/meta/fuzzer"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	metaapply "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	etcdaasfuzzer "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/fuzzer"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/install"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/applyconfiguration"
	applyv1alpha1 "github.com/etcdaas/etcdaas/pkg/generated/applyconfiguration/etcdaas/v1alpha1"
	applyv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/applyconfiguration/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/fake"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/scheme"
)

// TestTypeConverterKnowsEveryField converts fuzzed objects of both versions, every field set,
// with the apply configurations' type converter, as the fake clientset's Apply does: a type or
// field missing from the compiled schema is an error.
func TestTypeConverterKnowsEveryField(t *testing.T) {
	converter := applyconfiguration.NewTypeConverter(scheme.Scheme)
	hub := runtime.NewScheme()
	install.Install(hub)
	codecs := serializer.NewCodecFactory(hub)
	filler := fuzzer.FuzzerFor(fuzzer.MergeFuzzerFuncs(metafuzzer.Funcs, etcdaasfuzzer.Funcs), nil, codecs)
	for i := 0; i < 50; i++ {
		internal := &etcdaas.ETCDInstance{}
		filler.Fill(internal)
		internal.ManagedFields = nil // the fuzzer's fieldsV1 are not JSON
		for _, version := range []runtime.GroupVersioner{v1beta1.SchemeGroupVersion, v1alpha1.SchemeGroupVersion} {
			versioned, err := hub.ConvertToVersion(internal, version)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := converter.ObjectToTyped(versioned); err != nil {
				t.Fatalf("%T: %v", versioned, err)
			}
		}
	}
}

// TestFakeClientsetApplies applies with two field managers through the fake clientset, in both
// versions: the second manager's change of a field the first owns is a conflict, as from the
// server.
func TestFakeClientsetApplies(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	instances := client.EtcdaasV1beta1().ETCDInstances("ns")
	applied, err := instances.Apply(ctx, applyv1beta1.ETCDInstance("db", "ns").
		WithSpec(applyv1beta1.ETCDInstanceSpec().WithReplicas(3).WithVersion("3.7")),
		metav1.ApplyOptions{FieldManager: "operator"})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if *applied.Spec.Replicas != 3 || applied.Spec.Version != "3.7" {
		t.Fatalf("applied spec %+v, want 3 replicas of 3.7", applied.Spec)
	}
	_, err = instances.Apply(ctx, applyv1beta1.ETCDInstance("db", "ns").
		WithSpec(applyv1beta1.ETCDInstanceSpec().WithReplicas(5)), metav1.ApplyOptions{FieldManager: "autoscaler"})
	if !apierrors.IsConflict(err) {
		t.Fatalf("another manager's apply of spec.replicas: %v, want a conflict", err)
	}
	status, err := instances.ApplyStatus(ctx, applyv1beta1.ETCDInstance("db", "ns").
		WithStatus(applyv1beta1.ETCDInstanceStatus().WithPhase(v1beta1.PhaseRunning)),
		metav1.ApplyOptions{FieldManager: "controller"})
	if err != nil {
		t.Fatalf("apply status: %v", err)
	}
	if status.Status.Phase != v1beta1.PhaseRunning || *status.Spec.Replicas != 3 {
		t.Fatalf("after apply status: phase %q, %d replicas; want Running, 3", status.Status.Phase, *status.Spec.Replicas)
	}
	old, err := client.EtcdaasV1alpha1().ETCDInstances("ns").Apply(ctx, applyv1alpha1.ETCDInstance("old", "ns").
		WithSpec(applyv1alpha1.ETCDInstanceSpec().WithReplicas(1).WithWithTLSBundle(true)),
		metav1.ApplyOptions{FieldManager: "operator"})
	if err != nil {
		t.Fatalf("v1alpha1 apply: %v", err)
	}
	if !old.Spec.WithTLSBundle {
		t.Fatalf("v1alpha1 applied spec %+v, want with_tls_bundle", old.Spec)
	}
}

// TestExtractReturnsOnlyTheManagersFields extracts each manager's apply configuration from an
// instance as the server writes it: an operator owns the spec, and two managers own a
// condition each through the status subresource. Each gets only its own fields (an untyped
// schema takes the conditions list as one value and gives a manager every condition, which
// applied back would take the others').
func TestExtractReturnsOnlyTheManagersFields(t *testing.T) {
	owns := func(manager, subresource, fields string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationApply,
			APIVersion: "etcdaas.dev/v1beta1", Subresource: subresource, FieldsType: "FieldsV1",
			FieldsV1: &metav1.FieldsV1{Raw: []byte(fields)}}
	}
	condition := func(kind string) metav1.Condition {
		return metav1.Condition{Type: kind, Status: metav1.ConditionTrue, Reason: "Test", LastTransitionTime: metav1.Unix(1, 0)}
	}
	instance := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", ManagedFields: []metav1.ManagedFieldsEntry{
			owns("operator", "", `{"f:spec":{"f:replicas":{},"f:resources":{"f:requests":{"f:cpu":{}}}}}`),
			owns("etcdaas", "status", `{"f:status":{"f:conditions":{"k:{\"type\":\"Available\"}":{".":{},"f:type":{},"f:status":{},"f:reason":{},"f:lastTransitionTime":{}}}}}`),
			owns("watcher", "status", `{"f:status":{"f:conditions":{"k:{\"type\":\"Watched\"}":{".":{},"f:type":{},"f:status":{},"f:reason":{},"f:lastTransitionTime":{}}}}}`),
		}},
		Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Version: "3.7",
			Resources: &v1beta1.MemberResources{Requests: map[string]resource.Quantity{"cpu": resource.MustParse("500m")}}},
		Status: v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseRunning,
			Conditions: []metav1.Condition{condition("Available"), condition("Watched")}},
	}

	status, err := applyv1beta1.ExtractETCDInstanceStatus(instance, "watcher")
	if err != nil {
		t.Fatal(err)
	}
	want := applyv1beta1.ETCDInstanceStatus().WithConditions(metaapply.Condition().WithType("Watched").
		WithStatus(metav1.ConditionTrue).WithReason("Test").WithLastTransitionTime(metav1.Unix(1, 0)))
	if !apiequality.Semantic.DeepEqual(status.Status, want) {
		t.Errorf("watcher's status %s, want only its own condition %s", jsonOf(status.Status), jsonOf(want))
	}
	spec, err := applyv1beta1.ExtractETCDInstance(instance, "operator")
	if err != nil {
		t.Fatal(err)
	}
	wantSpec := applyv1beta1.ETCDInstanceSpec().WithReplicas(3).WithResources(applyv1beta1.MemberResources().
		WithRequests(map[string]resource.Quantity{"cpu": resource.MustParse("500m")}))
	if !apiequality.Semantic.DeepEqual(spec.Spec, wantSpec) || spec.Status != nil {
		t.Errorf("operator's configuration %s, want its spec %s", jsonOf(spec), jsonOf(wantSpec))
	}
}

func jsonOf(v any) string {
	out, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(out)
}
