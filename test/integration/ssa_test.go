package integration

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	applyv1alpha1 "github.com/etcdaas/etcdaas/pkg/generated/applyconfiguration/etcdaas/v1alpha1"
	applyv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/applyconfiguration/etcdaas/v1beta1"
	typedv1alpha1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1alpha1"
	typedv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1beta1"
)

func TestServerSideApply(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	beta := cs.EtcdaasV1beta1().ETCDInstances(ns)
	alpha := cs.EtcdaasV1alpha1().ETCDInstances(ns)

	// v1beta1 applier creates with fields v1alpha1 cannot express.
	applied, err := beta.Apply(ctx, applyv1beta1.ETCDInstance("ssa", ns).
		WithLabels(map[string]string{"owner": "beta"}).
		WithSpec(applyv1beta1.ETCDInstanceSpec().WithReplicas(3).WithVersion("3.6")),
		metav1.ApplyOptions{FieldManager: "beta-applier"})
	if err != nil {
		t.Fatal(err)
	}
	if *applied.Spec.Replicas != 3 || applied.Spec.Version != "3.6" || applied.Generation != 1 {
		t.Errorf("applied %+v generation %d", applied.Spec, applied.Generation)
	}

	// A v1alpha1 applier adds a label and TLS without touching replicas.
	alphaApplied, err := alpha.Apply(ctx, applyv1alpha1.ETCDInstance("ssa", ns).
		WithLabels(map[string]string{"legacy": "yes"}),
		metav1.ApplyOptions{FieldManager: "alpha-applier"})
	if err != nil {
		t.Fatal(err)
	}
	if alphaApplied.Labels["owner"] != "beta" || alphaApplied.Labels["legacy"] != "yes" || *alphaApplied.Spec.Replicas != 3 {
		t.Errorf("after v1alpha1 apply: labels %v replicas %d", alphaApplied.Labels, *alphaApplied.Spec.Replicas)
	}

	checkApplyConflicts(t, ctx, alpha, beta, ns)
	checkStatusApply(t, ctx, beta, ns)
}

// checkApplyConflicts checks, on instance ssa that beta-applier (v1beta1) created with 3
// replicas and version 3.6 and alpha-applier (v1alpha1) labelled: alpha-applier changing
// replicas conflicts with beta-applier, naming it and the field; forced, it takes the
// replicas, the version kept, and beta-applier conflicts in turn.
func checkApplyConflicts(t *testing.T, ctx context.Context, alpha typedv1alpha1.ETCDInstanceInterface, beta typedv1beta1.ETCDInstanceInterface, ns string) {
	t.Helper()
	// Two managers disagreeing on replicas: a conflict naming the owner and the field.
	_, err := alpha.Apply(ctx, applyv1alpha1.ETCDInstance("ssa", ns).
		WithSpec(applyv1alpha1.ETCDInstanceSpec().WithReplicas(5)),
		metav1.ApplyOptions{FieldManager: "alpha-applier"})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "beta-applier") || !strings.Contains(err.Error(), ".spec.replicas") {
		t.Fatalf("conflicting apply: err = %v, want a conflict with beta-applier on .spec.replicas", err)
	}
	forced, err := alpha.Apply(ctx, applyv1alpha1.ETCDInstance("ssa", ns).
		WithSpec(applyv1alpha1.ETCDInstanceSpec().WithReplicas(5)),
		metav1.ApplyOptions{FieldManager: "alpha-applier", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if *forced.Spec.Replicas != 5 {
		t.Errorf("forced replicas = %d", *forced.Spec.Replicas)
	}
	final, err := beta.Get(ctx, "ssa", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if final.Spec.Version != "3.6" || *final.Spec.Replicas != 5 || final.Generation != 2 {
		t.Errorf("final %+v generation %d; want version 3.6 kept, replicas 5, generation 2", final.Spec, final.Generation)
	}
	if _, ok := final.Annotations[etcdaas.PreservedFieldsAnnotation]; ok {
		t.Errorf("preserved-fields annotation stored: %v", final.Annotations)
	}
	// The beta applier now conflicts in turn.
	_, err = beta.Apply(ctx, applyv1beta1.ETCDInstance("ssa", ns).
		WithSpec(applyv1beta1.ETCDInstanceSpec().WithReplicas(3).WithVersion("3.6")),
		metav1.ApplyOptions{FieldManager: "beta-applier"})
	if !apierrors.IsConflict(err) || !strings.Contains(err.Error(), "alpha-applier") {
		t.Errorf("beta re-apply: err = %v, want a conflict with alpha-applier", err)
	}

}

// checkStatusApply checks that a status applied (by a new manager, forced) to instance ssa
// through the main resource is reset (status is not the main resource's), and one applied
// through the status subresource is kept, with the spec.
func checkStatusApply(t *testing.T, ctx context.Context, beta typedv1beta1.ETCDInstanceInterface, ns string) {
	t.Helper()
	// Status applied through the main resource is reset (status is not the main resource's).
	withStatus, err := beta.Apply(ctx, applyv1beta1.ETCDInstance("ssa", ns).
		WithStatus(applyv1beta1.ETCDInstanceStatus().WithPhase("Running")),
		metav1.ApplyOptions{FieldManager: "status-via-main", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if withStatus.Status.Phase != "" {
		t.Errorf("status applied through the main resource: phase %q", withStatus.Status.Phase)
	}
	status, err := beta.ApplyStatus(ctx, applyv1beta1.ETCDInstance("ssa", ns).
		WithStatus(applyv1beta1.ETCDInstanceStatus().WithPhase("Running").WithObservedGeneration(2)),
		metav1.ApplyOptions{FieldManager: "controller", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if status.Status.Phase != "Running" || *status.Spec.Replicas != 5 {
		t.Errorf("status apply: phase %q replicas %d", status.Status.Phase, *status.Spec.Replicas)
	}
}

// TestServerSideApplyOfRequestAnnotations applies, through the main resource, the annotations
// only the recover and defrag subresources may set. The server drops them, and nobody is
// recorded as owning them: otherwise managedFields name an owner of a field the object does
// not have, and a second applier of the same annotation gets a conflict about it.
func TestServerSideApplyOfRequestAnnotations(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	for _, version := range []string{"v1beta1", "v1alpha1"} {
		t.Run(version, func(t *testing.T) {
			name := "requests-" + version
			requests := map[string]string{etcdaas.DefragRequestedAnnotation: "2026-01-01T00:00:00Z", etcdaas.RecoverRequestedAnnotation: ""}
			apply := func(manager string) (metav1.Object, error) {
				opts := metav1.ApplyOptions{FieldManager: manager}
				if version == "v1alpha1" {
					return cs.EtcdaasV1alpha1().ETCDInstances(ns).Apply(ctx, applyv1alpha1.ETCDInstance(name, ns).WithAnnotations(requests), opts)
				}
				return cs.EtcdaasV1beta1().ETCDInstances(ns).Apply(ctx, applyv1beta1.ETCDInstance(name, ns).WithAnnotations(requests), opts)
			}
			applied, err := apply("first")
			if err != nil {
				t.Fatal(err)
			}
			for key := range requests {
				if _, ok := applied.GetAnnotations()[key]; ok {
					t.Errorf("annotation %s stored through the main resource", key)
				}
				for _, entry := range applied.GetManagedFields() {
					if entry.FieldsV1 != nil && strings.Contains(string(entry.FieldsV1.Raw), key) {
						t.Errorf("%s (%s) owns %s, which was not stored: %s", entry.Manager, entry.Operation, key, entry.FieldsV1.Raw)
					}
				}
			}
			if _, err := apply("second"); err != nil {
				t.Errorf("a second applier of the same ignored annotations: %v", err)
			}
		})
	}
}
