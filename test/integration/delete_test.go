package integration

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestDeletePropagationPolicies checks that every propagation policy deletes an instance in
// the standalone mode, as kube-apiserver does with --enable-garbage-collector=false: with no
// garbage collector to remove the foregroundDeletion or orphan finalizer, a foreground or
// orphan delete (kubectl delete --cascade=foreground|orphan) would otherwise leave the
// instance terminating forever.
func TestDeletePropagationPolicies(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	beta := cs.EtcdaasV1beta1().ETCDInstances(ns)
	alpha := cs.EtcdaasV1alpha1().ETCDInstances(ns)

	for _, policy := range []metav1.DeletionPropagation{metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan, metav1.DeletePropagationBackground} {
		t.Run(string(policy), func(t *testing.T) {
			name := "delete-" + strings.ToLower(string(policy))
			if _, err := beta.Create(ctx, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := beta.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: ptr.To(policy)}); err != nil {
				t.Fatal(err)
			}
			if got, err := beta.Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("get after a delete with propagationPolicy=%s: finalizers %v, deletionTimestamp %v, err %v; want 404", policy, got.GetFinalizers(), got.GetDeletionTimestamp(), err)
			}
		})
	}

	t.Run("deletecollection orphan v1alpha1", func(t *testing.T) {
		labels := map[string]string{"delete": "collection"}
		for _, name := range []string{"collection-a", "collection-b"} {
			obj := &v1alpha1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
			if _, err := alpha.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		err := alpha.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}, metav1.ListOptions{LabelSelector: "delete=collection"})
		if err != nil {
			t.Fatal(err)
		}
		list, err := alpha.List(ctx, metav1.ListOptions{LabelSelector: "delete=collection"})
		if err != nil {
			t.Fatal(err)
		}
		for _, item := range list.Items {
			t.Errorf("%s left after an orphan deletecollection: finalizers %v, deletionTimestamp %v", item.Name, item.Finalizers, item.DeletionTimestamp)
		}
	})
}
