package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	applyv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/applyconfiguration/etcdaas/v1beta1"
	typedv1alpha1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1alpha1"
	typedv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1beta1"
)

func TestScale(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	beta := cs.EtcdaasV1beta1().ETCDInstances(ns)
	alpha := cs.EtcdaasV1alpha1().ETCDInstances(ns)

	if _, err := beta.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "scaled"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	checkScaleInBothVersions(t, ctx, beta, alpha, ns)

	scale, err := alpha.GetScale(ctx, "scaled", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale := scale.DeepCopy()

	scale.Spec.Replicas = 5
	updated, err := alpha.UpdateScale(ctx, "scaled", scale, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if updated.Spec.Replicas != 5 {
		t.Errorf("UpdateScale returned replicas %d", updated.Spec.Replicas)
	}
	instance, err := beta.Get(ctx, "scaled", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *instance.Spec.Replicas != 5 || instance.Generation != 2 {
		t.Errorf("after scale: replicas %d generation %d, want 5, 2", *instance.Spec.Replicas, instance.Generation)
	}

	stale.Spec.Replicas = 7
	if _, err := beta.UpdateScale(ctx, "scaled", stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("UpdateScale with stale resourceVersion: err = %v, want 409", err)
	}

	checkScalePatchedInBothVersions(t, ns)

	checkBadScalesRefused(t, ctx, beta, ns)
	instance, err = beta.Get(ctx, "scaled", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *instance.Spec.Replicas != 7 {
		t.Errorf("replicas after refused scales = %d, want 7", *instance.Spec.Replicas)
	}
}

// checkScaleInBothVersions checks the scale of the instance "scaled" (3 replicas) as each
// version's client and raw GET give it: an autoscaling/v1 Scale with the member selector.
func checkScaleInBothVersions(t *testing.T, ctx context.Context, beta typedv1beta1.ETCDInstanceInterface, alpha typedv1alpha1.ETCDInstanceInterface, ns string) {
	t.Helper()
	for version, get := range map[string]func() (*autoscalingv1.Scale, error){
		"v1beta1":  func() (*autoscalingv1.Scale, error) { return beta.GetScale(ctx, "scaled", metav1.GetOptions{}) },
		"v1alpha1": func() (*autoscalingv1.Scale, error) { return alpha.GetScale(ctx, "scaled", metav1.GetOptions{}) },
	} {
		scale, err := get()
		if err != nil {
			t.Fatalf("%s GetScale: %v", version, err)
		}
		if scale.Spec.Replicas != 3 || scale.Status.Selector != etcdaas.MemberSelector("scaled") || scale.Name != "scaled" {
			t.Errorf("%s scale = %+v, want replicas 3 and selector %q", version, scale, etcdaas.MemberSelector("scaled"))
		}
		res := do(t, http.MethodGet, fmt.Sprintf("/apis/etcdaas.dev/%s/namespaces/%s/etcdinstances/scaled/scale", version, ns), nil)
		var raw metav1.TypeMeta
		if err := json.Unmarshal(res.body, &raw); err != nil || raw.APIVersion != "autoscaling/v1" || raw.Kind != "Scale" {
			t.Errorf("%s GET scale: %d %s", version, res.code, res.body)
		}
	}
}

// checkScalePatchedInBothVersions merge-patches the scale of "scaled" to 7 replicas through
// each version and checks the Scale answered.
func checkScalePatchedInBothVersions(t *testing.T, ns string) {
	t.Helper()
	patch := []byte(`{"spec":{"replicas":7}}`)
	for _, version := range []string{"v1beta1", "v1alpha1"} {
		res := do(t, http.MethodPatch, fmt.Sprintf("/apis/etcdaas.dev/%s/namespaces/%s/etcdinstances/scaled/scale", version, ns), patch,
			"Content-Type", string(types.MergePatchType))
		if res.code != http.StatusOK {
			t.Fatalf("%s PATCH scale: %d %s", version, res.code, res.body)
		}
		var patched autoscalingv1.Scale
		if err := json.Unmarshal(res.body, &patched); err != nil {
			t.Fatal(err)
		}
		if patched.Spec.Replicas != 7 || patched.Status.Selector == "" {
			t.Errorf("%s patched scale %+v", version, patched)
		}
	}
}

// checkBadScalesRefused checks that a scale to 10 replicas, by update or patch, gets 422, and
// the scale of a missing instance 404.
func checkBadScalesRefused(t *testing.T, ctx context.Context, beta typedv1beta1.ETCDInstanceInterface, ns string) {
	t.Helper()
	big := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "scaled", Namespace: ns}, Spec: autoscalingv1.ScaleSpec{Replicas: 10}}
	_, err := beta.UpdateScale(ctx, "scaled", big, metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.replicas") {
		t.Errorf("scale to 10: err = %v, want 422 on spec.replicas", err)
	}
	res := do(t, http.MethodPatch, fmt.Sprintf("/apis/etcdaas.dev/v1alpha1/namespaces/%s/etcdinstances/scaled/scale", ns), []byte(`{"spec":{"replicas":10}}`),
		"Content-Type", string(types.MergePatchType))
	if res.code != http.StatusUnprocessableEntity {
		t.Errorf("PATCH scale to 10: %d %s, want 422", res.code, res.body)
	}
	if _, err := beta.GetScale(ctx, "missing", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("scale of a missing instance: err = %v, want 404", err)
	}
}

// TestScaleManagedFields checks that a write through /scale takes ownership of spec.replicas
// from an applier in either version, so the applier's next apply conflicts.
func TestScaleManagedFields(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	beta := cs.EtcdaasV1beta1().ETCDInstances(ns)
	alpha := cs.EtcdaasV1alpha1().ETCDInstances(ns)

	apply := applyv1beta1.ETCDInstance("managed", ns).WithSpec(applyv1beta1.ETCDInstanceSpec().WithReplicas(3))
	if _, err := beta.Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "applier"}); err != nil {
		t.Fatal(err)
	}
	scale, err := alpha.GetScale(ctx, "managed", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 5
	if _, err := alpha.UpdateScale(ctx, "managed", scale, metav1.UpdateOptions{FieldManager: "autoscaler"}); err != nil {
		t.Fatal(err)
	}
	instance, err := beta.Get(ctx, "managed", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var scalerOwnsReplicas, applierOwnsReplicas bool
	for _, entry := range instance.ManagedFields {
		owns := entry.FieldsV1 != nil && strings.Contains(string(entry.FieldsV1.Raw), `"f:replicas"`)
		switch entry.Manager {
		case "autoscaler":
			scalerOwnsReplicas = owns
			if entry.Subresource != "scale" {
				t.Errorf("autoscaler entry subresource = %q, want scale", entry.Subresource)
			}
			if entry.APIVersion != "etcdaas.dev/v1alpha1" {
				t.Errorf("autoscaler entry apiVersion = %q, want the version scaled through, etcdaas.dev/v1alpha1", entry.APIVersion)
			}
		case "applier":
			applierOwnsReplicas = owns
		}
	}
	if !scalerOwnsReplicas || applierOwnsReplicas {
		t.Errorf("managedFields after scale: autoscaler owns replicas %v, applier owns replicas %v; want true, false\n%+v",
			scalerOwnsReplicas, applierOwnsReplicas, instance.ManagedFields)
	}

	apply = applyv1beta1.ETCDInstance("managed", ns).WithSpec(applyv1beta1.ETCDInstanceSpec().WithReplicas(3))
	_, err = beta.Apply(ctx, apply, metav1.ApplyOptions{FieldManager: "other-applier"})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "autoscaler") {
		t.Errorf("apply of replicas owned through /scale: err = %v, want a conflict with autoscaler", err)
	}
}
