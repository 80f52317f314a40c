package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// gcTimeout bounds each wait of the garbage-collection test: the garbage collector acts
// within a second or two, the controller's finalizer within a few.
const gcTimeout = 60 * time.Second

// controllerFinalizer is etcdaas-controller's finalizer (pkg/controller.Finalizer, whose
// package the e2e tests do not link): it stops and removes an instance's members.
const controllerFinalizer = "etcdaas.dev/members"

// testGarbageCollection checks that kube-controller-manager's garbage collector and the
// DeleteOptions' propagationPolicy treat ETCDInstances as they treat a CRD's objects, both as
// owners and as dependents, in both versions: a dependent of a deleted instance is collected
// (the default policy is background, not orphan), an instance owned by a deleted ConfigMap is
// collected (its ownerReferences survive v1alpha1), a foreground deletion waits for a blocking
// dependent, and an orphaning deletion leaves the dependent without its ownerReference.
func testGarbageCollection(t *testing.T, c *framework.Cluster) {
	const ns = "e2e-gc"
	createAdmissionNamespace(t, c, ns)
	for _, step := range []struct {
		what  string
		check func(*testing.T, *framework.Cluster, string)
	}{
		{"dependent of a deleted instance collected", checkGCDependentOfInstance},
		{"instance owned by a deleted ConfigMap collected", checkGCInstanceOwnedByConfigMap},
		{"foreground deletion held by a blocking dependent", checkGCForeground},
		{"orphaning deletion", checkGCOrphan},
	} {
		start := time.Now()
		step.check(t, c, ns)
		t.Logf("%s: %s", step.what, time.Since(start).Round(100*time.Millisecond))
	}
}

// checkGCDependentOfInstance deletes an instance with the API's default DeleteOptions and
// checks that its dependent ConfigMap is garbage-collected.
func checkGCDependentOfInstance(t *testing.T, c *framework.Cluster, ns string) {
	owner := createGCInstance(t, c, ns, "v1beta1", "owner", nil)
	createGCConfigMap(t, c, ns, "dependent", ownerRefTo(owner, false), nil)
	if err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Delete(t.Context(), "owner", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, ns, "owner", gcTimeout)
	waitConfigMapGone(t, c, ns, "dependent", "the dependent of a deleted ETCDInstance garbage-collected")
}

// checkGCInstanceOwnedByConfigMap creates, in v1alpha1, an instance owned by a ConfigMap,
// deletes the ConfigMap, and checks the garbage collector deletes the instance, through the
// controller's finalizer.
func checkGCInstanceOwnedByConfigMap(t *testing.T, c *framework.Cluster, ns string) {
	owner := createGCConfigMap(t, c, ns, "owner", nil, nil)
	ref := metav1.OwnerReference{APIVersion: "v1", Kind: "ConfigMap", Name: owner.Name, UID: owner.UID}
	created := createGCInstance(t, c, ns, "v1alpha1", "owned", []metav1.OwnerReference{ref})
	if got := created.GetOwnerReferences(); !slices.Equal(got, []metav1.OwnerReference{ref}) {
		t.Errorf("v1alpha1 creation answered ownerReferences %+v, want %+v", got, ref)
	}
	stored := waitInstanceFinalizers(t, c, ns, "owned", "the controller's finalizer", func(u *unstructured.Unstructured) bool {
		return slices.Contains(u.GetFinalizers(), controllerFinalizer)
	})
	if got := stored.GetOwnerReferences(); !slices.Equal(got, []metav1.OwnerReference{ref}) {
		t.Fatalf("instance created in v1alpha1, read in v1beta1: ownerReferences %+v, want %+v", got, ref)
	}
	if err := c.Kube.CoreV1().ConfigMaps(ns).Delete(t.Context(), owner.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, ns, "owned", gcTimeout)
}

// checkGCForeground deletes an instance with kubectl --cascade=foreground while a dependent
// with blockOwnerDeletion is held by its own finalizer: the instance stays, deleted and with
// only the foregroundDeletion finalizer once its controller has cleaned up, until the
// dependent's finalizer is released; then both go.
func checkGCForeground(t *testing.T, c *framework.Cluster, ns string) {
	owner := createGCInstance(t, c, ns, "v1beta1", "foreground", nil)
	createGCConfigMap(t, c, ns, "blocking", ownerRefTo(owner, true), []string{holdFinalizer})
	t.Cleanup(func() { releaseHold(t, c, ns, "blocking") })
	waitInstanceFinalizers(t, c, ns, "foreground", "the controller's finalizer", func(u *unstructured.Unstructured) bool {
		return slices.Contains(u.GetFinalizers(), controllerFinalizer)
	})
	mustRun(t, c.AdminKubectl(), "", "delete", "etcdinstance", "foreground", "-n", ns, "--cascade=foreground", "--wait=false")

	waitConfigMapDeleting(t, c, ns, "blocking")
	// Held by its dependent only: deleted, the controller done, foregroundDeletion left.
	waitInstanceFinalizers(t, c, ns, "foreground", "deletion held by foregroundDeletion only", func(u *unstructured.Unstructured) bool {
		return u.GetDeletionTimestamp() != nil && slices.Equal(u.GetFinalizers(), []string{metav1.FinalizerDeleteDependents})
	})
	// And still held a moment later: the garbage collector waits for the dependent.
	time.Sleep(2 * time.Second)
	if _, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Get(t.Context(), "foreground", metav1.GetOptions{}); err != nil {
		t.Fatalf("the instance went while its blocking dependent is still there: %v", err)
	}

	releaseHold(t, c, ns, "blocking")
	waitConfigMapGone(t, c, ns, "blocking", "the released dependent gone")
	waitGone(t, c, ns, "foreground", gcTimeout)
}

// checkGCOrphan deletes an instance created in v1alpha1 with kubectl --cascade=orphan and
// checks its dependent ConfigMap stays, without its ownerReference.
func checkGCOrphan(t *testing.T, c *framework.Cluster, ns string) {
	owner := createGCInstance(t, c, ns, "v1alpha1", "orphaning", nil)
	createGCConfigMap(t, c, ns, "orphan", ownerRefTo(owner, false), nil)
	out := mustRun(t, c.AdminKubectl(), "", "delete", "etcdinstances.v1alpha1.etcdaas.dev", "orphaning", "-n", ns,
		"--cascade=orphan", fmt.Sprintf("--timeout=%s", gcTimeout))
	if !strings.Contains(out, "deleted") {
		t.Errorf("kubectl delete --cascade=orphan: %q", out)
	}
	waitGone(t, c, ns, "orphaning", gcTimeout)
	// The orphan finalizer goes only once the dependents are released: no wait needed.
	cm, err := c.Kube.CoreV1().ConfigMaps(ns).Get(t.Context(), "orphan", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the dependent of an instance deleted with --cascade=orphan: %v", err)
	}
	if cm.DeletionTimestamp != nil || len(cm.OwnerReferences) != 0 {
		t.Errorf("orphaned dependent: deletionTimestamp=%v ownerReferences=%+v, want neither", cm.DeletionTimestamp, cm.OwnerReferences)
	}
}

// createGCInstance creates a one-member instance in version with owners.
func createGCInstance(t *testing.T, c *framework.Cluster, ns, version, name string, owners []metav1.OwnerReference) *unstructured.Unstructured {
	t.Helper()
	u := newInstance(version, name, 1, nil)
	u.SetOwnerReferences(owners)
	got, err := c.Dynamic.Resource(instanceGVR(version)).Namespace(ns).Create(t.Context(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating %s ETCDInstance %s: %v", version, name, err)
	}
	return got
}

// createGCConfigMap creates a ConfigMap with owners and finalizers.
func createGCConfigMap(t *testing.T, c *framework.Cluster, ns, name string, owners []metav1.OwnerReference, finalizers []string) *corev1.ConfigMap {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, OwnerReferences: owners, Finalizers: finalizers}}
	got, err := c.Kube.CoreV1().ConfigMaps(ns).Create(t.Context(), cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating ConfigMap %s: %v", name, err)
	}
	return got
}

// ownerRefTo is an ownerReference to the instance u, in the version it was read in.
func ownerRefTo(u *unstructured.Unstructured, blockOwnerDeletion bool) []metav1.OwnerReference {
	return []metav1.OwnerReference{{
		APIVersion:         u.GetAPIVersion(),
		Kind:               u.GetKind(),
		Name:               u.GetName(),
		UID:                u.GetUID(),
		BlockOwnerDeletion: ptr.To(blockOwnerDeletion),
	}}
}

// releaseHold removes the finalizers of the ConfigMap name, if it is still there.
func releaseHold(t *testing.T, c *framework.Cluster, ns, name string) {
	_, err := c.Kube.CoreV1().ConfigMaps(ns).Patch(context.Background(), name, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("releasing ConfigMap %s: %v", name, err)
	}
}

// waitInstanceFinalizers waits until the v1beta1 instance satisfies ok, and returns it.
func waitInstanceFinalizers(t *testing.T, c *framework.Cluster, ns, name, what string, ok func(*unstructured.Unstructured) bool) *unstructured.Unstructured {
	t.Helper()
	var got *unstructured.Unstructured
	err := framework.Poll(t.Context(), 200*time.Millisecond, gcTimeout, ns+"/"+name+": "+what, func(ctx context.Context) (bool, error) {
		u, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			t.Fatalf("ETCDInstance %s/%s is gone, want it there until %s", ns, name, what)
		}
		if err != nil {
			return false, err
		}
		got = u
		if !ok(u) {
			return false, fmt.Errorf("deletionTimestamp=%v finalizers=%v", u.GetDeletionTimestamp(), u.GetFinalizers())
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitConfigMapDeleting waits until the garbage collector has deleted the ConfigMap name,
// which its hold finalizer keeps.
func waitConfigMapDeleting(t *testing.T, c *framework.Cluster, ns, name string) {
	t.Helper()
	err := framework.Poll(t.Context(), 200*time.Millisecond, gcTimeout, "ConfigMap "+name+" deleted by the garbage collector", func(ctx context.Context) (bool, error) {
		cm, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if cm.DeletionTimestamp == nil {
			return false, fmt.Errorf("no deletionTimestamp; finalizers=%v", cm.Finalizers)
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// waitConfigMapGone waits until the ConfigMap name no longer exists.
func waitConfigMapGone(t *testing.T, c *framework.Cluster, ns, name, what string) {
	t.Helper()
	err := framework.Poll(t.Context(), 200*time.Millisecond, gcTimeout, what, func(ctx context.Context) (bool, error) {
		cm, err := c.Kube.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
		if cm.DeletionTimestamp == nil && len(cm.OwnerReferences) == 0 {
			t.Fatalf("ConfigMap %s was orphaned (no ownerReferences left), want it deleted: %s", name, what)
		}
		return false, fmt.Errorf("ConfigMap %s still there: deletionTimestamp=%v finalizers=%v ownerReferences=%+v", name, cm.DeletionTimestamp, cm.Finalizers, cm.OwnerReferences)
	})
	if err != nil {
		t.Fatal(err)
	}
}
