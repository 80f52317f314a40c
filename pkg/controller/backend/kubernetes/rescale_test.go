package kubernetes

import (
	"context"
	"errors"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// TestAScaleUpRightAfterAScaleDownDoesNotWaitForTheRemovedMembersPod: a scale-down from 3
// removes db-2 from etcd, shrinks the StatefulSet and deletes db-2's claim, which the
// pvc-protection finalizer keeps while db-2's pod uses it. Scaled back to 3 before the
// StatefulSet controller deleted that pod, the StatefulSet keeps it: it runs the removed
// member's data (etcd refuses it, so it crash loops) and holds the claim for good, and the new
// learner db-2 never gets a pod of its own. The learner's step deletes that pod, so that the
// StatefulSet creates db-2 again on a new claim once the old one is gone.
func TestAScaleUpRightAfterAScaleDownDoesNotWaitForTheRemovedMembersPod(t *testing.T) {
	ctx := context.Background()
	f, cluster := convergedWithVolumes(t)
	f.client.PrependReactor("delete", "persistentvolumeclaims", func(action k8stesting.Action) (bool, runtime.Object, error) {
		del := action.(k8stesting.DeleteAction)
		obj, err := f.client.Tracker().Get(action.GetResource(), del.GetNamespace(), del.GetName())
		if err != nil || del.GetName() != "data-db-2" {
			return false, nil, nil
		}
		pvc := obj.(*corev1.PersistentVolumeClaim).DeepCopy()
		now := metav1.Now()
		pvc.DeletionTimestamp, pvc.Finalizers = &now, []string{"kubernetes.io/pvc-protection"}
		return true, nil, f.client.Tracker().Update(action.GetResource(), pvc, del.GetNamespace())
	})

	f.inst.Spec.Replicas = ptr.To[int32](2)
	if _, err := f.b.Sync(ctx, f.inst); err != nil || !slices.Equal(cluster.removed, []uint64{102}) {
		t.Fatalf("scale-down: %v, removed %v", err, cluster.removed)
	}
	f.inst.Spec.Replicas = ptr.To[int32](3)
	if _, err := f.b.Sync(ctx, f.inst); err != nil || len(cluster.added) != 1 {
		t.Fatalf("scale-up: %v, added %v", err, cluster.added)
	}
	// The pod db-2 is the removed member's, on the claim being deleted: it does not serve.
	cluster.statuses[2] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || res.Step != "promoting member db-2" || len(cluster.promoted) != 0 {
		t.Fatalf("sync with the learner's pod not serving: %+v, %v, promoted %v", res, err, cluster.promoted)
	}
	if f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-2", metav1.GetOptions{}); return err }) {
		t.Fatal("the removed member's pod, holding the claim being deleted, is still there")
	}
	// The pods of the members that serve stay.
	for _, name := range []string{"db-0", "db-1"} {
		if !f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{}); return err }) {
			t.Fatalf("pod %s was deleted", name)
		}
	}
}
