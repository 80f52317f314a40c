package integration

import (
	"context"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
)

// TestFinalizerNameWarnings: a client that puts a finalizer without a domain or without a
// path on an instance is warned as kube-apiserver warns for a custom resource (kubectl prints
// "Warning: metadata.finalizers: ..."), in both versions, for the finalizers a request adds
// only; the object is stored with them all the same.
func TestFinalizerNameWarnings(t *testing.T) {
	ctx := testContext(t)
	cs, warnings := clientsWithWarnings(t)
	ns := namespace(t)
	const noDomain = `metadata.finalizers: "hold": prefer a domain-qualified finalizer name to avoid accidental conflicts with other finalizer writers`
	const noPath = `metadata.finalizers: "hold.example.com": prefer a domain-qualified finalizer name including a path (/) to avoid accidental conflicts with other finalizer writers`

	created, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "finalizers", Finalizers: []string{"hold", "example.com/hold"}},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	}, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if got := warnings.take(); !slices.Equal(got, []string{noDomain}) {
		t.Errorf("warnings on creating with finalizer \"hold\" = %q, want %q", got, noDomain)
	}
	if !slices.Contains(created.Finalizers, "hold") {
		t.Errorf("created with finalizers %q, want \"hold\" kept", created.Finalizers)
	}

	alpha := cs.EtcdaasV1alpha1().ETCDInstances(ns)
	if _, err := alpha.Create(ctx, &v1alpha1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "finalizers", Finalizers: []string{"hold"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { releaseFinalizers(t, cs, ns, "finalizers") })
	if got := warnings.take(); !slices.Equal(got, []string{noDomain}) {
		t.Errorf("v1alpha1: warnings on creating with finalizer \"hold\" = %q, want %q", got, noDomain)
	}
	patch := []byte(`[{"op":"add","path":"/metadata/finalizers/-","value":"hold.example.com"}]`)
	if _, err := alpha.Patch(ctx, "finalizers", types.JSONPatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := warnings.take(); !slices.Equal(got, []string{noPath}) {
		t.Errorf("v1alpha1: warnings on adding finalizer \"hold.example.com\" = %q, want only %q", got, noPath)
	}
	label := []byte(`{"metadata":{"labels":{"touched":"yes"}}}`)
	if _, err := cs.EtcdaasV1beta1().ETCDInstances(ns).Patch(ctx, "finalizers", types.MergePatchType, label, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if got := warnings.take(); len(got) != 0 {
		t.Errorf("warnings on an update keeping the finalizers = %q, want none", got)
	}
}

// releaseFinalizers deletes the instance and removes the finalizers without a path the test
// gave it, keeping the controller's, so that the deletion completes.
func releaseFinalizers(t *testing.T, cs *versioned.Clientset, ns, name string) {
	ctx := context.Background()
	client := cs.EtcdaasV1beta1().ETCDInstances(ns)
	if err := client.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Errorf("deleting %s/%s: %v", ns, name, err)
		return
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		got, err := client.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		got.Finalizers = slices.DeleteFunc(got.Finalizers, func(f string) bool { return !strings.Contains(f, "/") })
		_, err = client.Update(ctx, got, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Errorf("releasing %s/%s: %v", ns, name, err)
	}
}
