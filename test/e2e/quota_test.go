package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

const (
	// quotaCRDGroup is the group of the CRD the quota test compares etcdinstances with.
	quotaCRDGroup = "quota.e2e.etcdaas.dev"
	// instanceCount and fooCount are the quota's object counts of both resources.
	instanceCount = "count/etcdinstances.etcdaas.dev"
	fooCount      = "count/foos." + quotaCRDGroup
)

// fooGVR is the resource of the CRD the quota test compares etcdinstances with.
var fooGVR = schema.GroupVersionResource{Group: quotaCRDGroup, Version: "v1", Resource: "foos"}

// testQuota checks that a namespace's ResourceQuota caps its ETCDInstances as kube-apiserver
// caps a CRD's objects: `kubectl create quota --hard=count/etcdinstances.etcdaas.dev=1`, then
// a second creation (either version, dry run or not) is refused 403 with the message the CRD
// gets, a dry run within the quota does not consume it, updates and scale are not counted,
// and a deletion frees the room once kube-controller-manager recounts. Before etcdaas-apiserver
// ran the ResourceQuota admission plugin, every creation was accepted whatever the quota.
func testQuota(t *testing.T, c *framework.Cluster) {
	const ns = "e2e-quota"
	createAdmissionNamespace(t, c, ns)
	createFooCRD(t, c)
	mustRun(t, c.AdminKubectl(), "", "create", "quota", "q", "-n", ns, "--hard="+instanceCount+"=1,"+fooCount+"=1")
	waitQuotaCounted(t, c, ns, map[string]int64{instanceCount: 0, fooCount: 0})
	instances := func(version string) dynamic.ResourceInterface {
		return c.Dynamic.Resource(instanceGVR(version)).Namespace(ns)
	}
	t.Cleanup(func() {
		for _, name := range []string{"first", "second"} {
			_ = instances("v1beta1").Delete(context.Background(), name, metav1.DeleteOptions{})
		}
	})

	// A dry run within the quota is admitted and does not consume it.
	if _, err := instances("v1beta1").Create(t.Context(), newInstance("v1beta1", "first", 1, nil), metav1.CreateOptions{DryRun: dryRun}); err != nil {
		t.Fatalf("dry-run creation within the quota: %v", err)
	}
	checkQuotaUsed(t, c, ns, "after a dry run", 0)
	create(t, instances("v1beta1"), newInstance("v1beta1", "first", 1, nil))
	create(t, c.Dynamic.Resource(fooGVR).Namespace(ns), newFoo("first"))
	checkQuotaUsed(t, c, ns, "after the first creation", 1)

	checkQuotaRefusals(t, c, ns)
	checkQuotaIgnoresUpdates(t, c, ns)
	checkQuotaFreed(t, c, ns)
}

// checkQuotaRefusals checks that, the quota used up, creations are refused in both versions,
// dry runs too, with kube-apiserver's code and message for the CRD, and kubectl shows it.
func checkQuotaRefusals(t *testing.T, c *framework.Cluster, ns string) {
	_, theirs := c.Dynamic.Resource(fooGVR).Namespace(ns).Create(t.Context(), newFoo("second"), metav1.CreateOptions{})
	for _, version := range admissionVersions {
		for _, opts := range []metav1.CreateOptions{{}, {DryRun: dryRun}} {
			what := fmt.Sprintf("%s creation beyond the quota (dryRun=%v)", version, opts.DryRun)
			_, ours := c.Dynamic.Resource(instanceGVR(version)).Namespace(ns).Create(t.Context(), newInstance(version, "second", 1, nil), opts)
			sameQuotaRefusal(t, what, ours, theirs)
		}
	}
	out := mustFail(t, c.AdminKubectl(), "apiVersion: etcdaas.dev/v1alpha1\nkind: ETCDInstance\nmetadata: {name: second}\nspec: {replicas: 1}\n",
		"create", "-n", ns, "-f", "-")
	if want := "exceeded quota: q, requested: " + instanceCount + "=1"; !strings.Contains(out, want) {
		t.Errorf("kubectl create beyond the quota says %q, want %q", out, want)
	}
	checkQuotaUsed(t, c, ns, "after the refusals", 1)
	if _, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Get(t.Context(), "second", metav1.GetOptions{}); err == nil {
		t.Error("a refused instance was stored")
	}
}

// sameQuotaRefusal fails unless ours (etcdaas-apiserver's refusal of an ETCDInstance named
// second) is 403 Forbidden with the message kube-apiserver gave for the CRD's object second
// (theirs), the resource and its count renamed.
func sameQuotaRefusal(t *testing.T, what string, ours, theirs error) {
	t.Helper()
	o, th := statusOf(t, what+" (etcdaas-apiserver)", ours), statusOf(t, what+" (kube-apiserver, the CRD)", theirs)
	expected := strings.ReplaceAll(th.Message, fooGVR.GroupResource().String(), "etcdinstances.etcdaas.dev")
	if o.Code != th.Code || o.Reason != th.Reason || o.Message != expected {
		t.Errorf("%s: etcdaas-apiserver answered %d %s %q; kube-apiserver answers %d %s %q for the CRD", what, o.Code, o.Reason, o.Message, th.Code, th.Reason, th.Message)
	}
	if o.Code != 403 || !strings.Contains(o.Message, "exceeded quota: q, requested: "+instanceCount+"=1, used: "+instanceCount+"=1, limited: "+instanceCount+"=1") {
		t.Errorf("%s: got %d %q, want 403 exceeded quota", what, o.Code, o.Message)
	}
}

// checkQuotaIgnoresUpdates checks that, the quota used up, updates of the instance in both
// versions and its scale subresource are admitted: the quota counts objects, not changes.
func checkQuotaIgnoresUpdates(t *testing.T, c *framework.Cluster, ns string) {
	for _, version := range admissionVersions {
		if err := mergePatch(t.Context(), c, instanceGVR(version), ns, "first", `{"metadata":{"labels":{"patched-in":"`+version+`"}}}`); err != nil {
			t.Errorf("%s update with the quota used up: %v", version, err)
		}
	}
	scale := func(replicas int, opts metav1.PatchOptions) error {
		_, err := c.Dynamic.Resource(instanceGVR("v1beta1")).Namespace(ns).Patch(t.Context(), "first", types.MergePatchType,
			fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, replicas), opts, "scale")
		return err
	}
	// A real scale to 1 (what it has) and a dry-run scale to 3 (no members started).
	if err := scale(1, metav1.PatchOptions{}); err != nil {
		t.Errorf("scale with the quota used up: %v", err)
	}
	if err := scale(3, metav1.PatchOptions{DryRun: dryRun}); err != nil {
		t.Errorf("dry-run scale to 3 with the quota used up: %v", err)
	}
	checkQuotaUsed(t, c, ns, "after updates and scale", 1)
}

// checkQuotaFreed deletes the first instance and checks that the second is created once
// kube-controller-manager's resourcequota controller has recounted the namespace.
func checkQuotaFreed(t *testing.T, c *framework.Cluster, ns string) {
	instances := c.Dynamic.Resource(instanceGVR("v1alpha1")).Namespace(ns)
	if err := instances.Delete(t.Context(), "first", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, ns, "first", 2*time.Minute)
	err := framework.Poll(t.Context(), time.Second, 2*time.Minute, "a creation accepted once the deletion is counted", func(ctx context.Context) (bool, error) {
		_, err := instances.Create(ctx, newInstance("v1alpha1", "second", 1, nil), metav1.CreateOptions{})
		return err == nil, err
	})
	if err != nil {
		q, _ := c.Kube.CoreV1().ResourceQuotas(ns).Get(t.Context(), "q", metav1.GetOptions{})
		t.Fatalf("%v (quota status %+v)", err, q.Status)
	}
	if err := instances.Delete(t.Context(), "second", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, c, ns, "second", 2*time.Minute)
}

// waitQuotaCounted waits until kube-controller-manager has filled in the quota q's
// status.hard and status.used for the resources of want with those values: before, a creation
// is admitted uncounted (no status.hard yet) or refused ("status unknown for quota": a limit
// in status.hard not counted in status.used), by kube-apiserver and etcdaas-apiserver alike.
func waitQuotaCounted(t *testing.T, c *framework.Cluster, ns string, want map[string]int64) {
	t.Helper()
	err := framework.Poll(t.Context(), 500*time.Millisecond, 2*time.Minute, "the quota counted by kube-controller-manager", func(ctx context.Context) (bool, error) {
		q, err := c.Kube.CoreV1().ResourceQuotas(ns).Get(ctx, "q", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for name, n := range want {
			hard, hasHard := q.Status.Hard[corev1.ResourceName(name)]
			used, hasUsed := q.Status.Used[corev1.ResourceName(name)]
			if !hasHard || !hasUsed || used.Value() != n || hard.IsZero() {
				return false, fmt.Errorf("status %+v, want %s used %d", q.Status, name, n)
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// checkQuotaUsed checks the quota q counts want ETCDInstances (what the admission plugin
// wrote: the controller recounts only later).
func checkQuotaUsed(t *testing.T, c *framework.Cluster, ns, when string, want int64) {
	t.Helper()
	q, err := c.Kube.CoreV1().ResourceQuotas(ns).Get(t.Context(), "q", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if used := q.Status.Used[instanceCount]; used.Value() != want {
		t.Errorf("%s: status.used %s = %s, want %d", when, instanceCount, used.String(), want)
	}
}

// create creates obj, failing the test when it is refused.
func create(t *testing.T, r dynamic.ResourceInterface, obj *unstructured.Unstructured) {
	t.Helper()
	if _, err := r.Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating %s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
}

// newFoo is an object of the comparison CRD.
func newFoo(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": fooGVR.GroupVersion().String(),
		"kind":       "Foo",
		"metadata":   map[string]any{"name": name},
		"spec":       map[string]any{"replicas": int64(1)},
	}}
}

// createFooCRD creates the comparison CRD (namespaced foos, any spec), waits until it is
// served, and deletes it when the test ends.
func createFooCRD(t *testing.T, c *framework.Cluster) {
	t.Helper()
	crdGVR := apiextensionsv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
	crd := &apiextensionsv1.CustomResourceDefinition{
		TypeMeta:   metav1.TypeMeta{APIVersion: apiextensionsv1.SchemeGroupVersion.String(), Kind: "CustomResourceDefinition"},
		ObjectMeta: metav1.ObjectMeta{Name: fooGVR.GroupResource().String()},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: quotaCRDGroup,
			Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "foos", Singular: "foo", Kind: "Foo", ListKind: "FooList"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
					Type:       "object",
					Properties: map[string]apiextensionsv1.JSONSchemaProps{"spec": {Type: "object", XPreserveUnknownFields: ptr.To(true)}},
				}}}},
		},
	}
	obj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Dynamic.Resource(crdGVR).Create(t.Context(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating CRD %s: %v", crd.Name, err)
	}
	t.Cleanup(func() {
		if err := c.Dynamic.Resource(crdGVR).Delete(context.Background(), crd.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("deleting CRD %s: %v", crd.Name, err)
		}
	})
	err = framework.Poll(t.Context(), 200*time.Millisecond, time.Minute, "CRD "+crd.Name+" served", func(ctx context.Context) (bool, error) {
		_, err := c.Dynamic.Resource(fooGVR).List(ctx, metav1.ListOptions{Limit: 1})
		return err == nil, err
	})
	if err != nil {
		t.Fatal(err)
	}
}
