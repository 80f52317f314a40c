package e2e

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// holdFinalizer keeps a ConfigMap, and so its namespace, from going away while a test looks
// at the namespace in Terminating.
const holdFinalizer = "e2e.etcdaas.dev/hold"

// testNamespaceLifecycle checks that etcdaas-apiserver's admission refuses what kube-apiserver's
// NamespaceLifecycle refuses for a built-in type, with the same code and message: a creation in
// a namespace that does not exist (404) and in one being deleted (403), nothing stored either way.
func testNamespaceLifecycle(t *testing.T, c *framework.Cluster) {
	cs := etcdaasClient(t, c)
	create := func(ctx context.Context, ns string) (error, error) {
		inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "lifecycle"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To(int32(1))}}
		_, ours := cs.EtcdaasV1beta1().ETCDInstances(ns).Create(ctx, inst, metav1.CreateOptions{})
		_, theirs := c.Kube.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "lifecycle"}}, metav1.CreateOptions{})
		return ours, theirs
	}

	ours, theirs := create(t.Context(), "e2e-no-such-namespace")
	checkSameRefusal(t, "a namespace that does not exist", ours, theirs, http.StatusNotFound, `namespaces "e2e-no-such-namespace" not found`)

	const ns = "e2e-terminating"
	createNamespace(t, c, ns)
	_, err := c.Kube.CoreV1().ConfigMaps(ns).Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hold", Finalizers: []string{holdFinalizer}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_, err := c.Kube.CoreV1().ConfigMaps(ns).Patch(context.Background(), "hold", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("releasing namespace %s: %v", ns, err)
		}
	})
	if err := c.Kube.CoreV1().Namespaces().Delete(t.Context(), ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = framework.Poll(t.Context(), 200*time.Millisecond, 30*time.Second, ns+" Terminating", func(ctx context.Context) (bool, error) {
		got, err := c.Kube.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return err == nil && got.Status.Phase == corev1.NamespaceTerminating, err
	})
	if err != nil {
		t.Fatal(err)
	}
	ours, theirs = create(t.Context(), ns)
	checkSameRefusal(t, "a namespace being deleted", ours, theirs, http.StatusForbidden, "unable to create new content in namespace "+ns+" because it is being terminated")
	list, err := cs.EtcdaasV1beta1().ETCDInstances(ns).List(t.Context(), metav1.ListOptions{})
	if err != nil || len(list.Items) != 0 {
		t.Errorf("instances stored in the terminating namespace: %v %v", list, err)
	}
}

// checkSameRefusal fails unless ours (etcdaas-apiserver's answer) and theirs (kube-apiserver's
// for a ConfigMap) are both refusals with code and a message containing want.
func checkSameRefusal(t *testing.T, what string, ours, theirs error, code int32, want string) {
	t.Helper()
	for _, a := range []struct {
		who string
		err error
	}{{"etcdaas-apiserver", ours}, {"kube-apiserver (ConfigMap)", theirs}} {
		var status apierrors.APIStatus
		if !errors.As(a.err, &status) {
			t.Errorf("creating in %s, %s answered %v, want a Status %d", what, a.who, a.err, code)
			continue
		}
		if s := status.Status(); s.Code != code || !strings.Contains(s.Message, want) {
			t.Errorf("creating in %s, %s answered %d %q, want %d with %q", what, a.who, s.Code, s.Message, code, want)
		}
	}
}
