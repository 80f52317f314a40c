package server

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/admission"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizerfactory"
	"k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/informers"
	kubefake "k8s.io/client-go/kubernetes/fake"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apiserver"
)

// instanceCount is the quota resource that counts ETCDInstances.
const instanceCount corev1.ResourceName = "count/etcdinstances.etcdaas.dev"

// TestResourceQuotaAdmission: the aggregated server enforces a namespace's ResourceQuota on
// ETCDInstance creations as kube-apiserver does for a CRD (403 "exceeded quota: …" once
// status.used reaches the limit, status.used raised by an accepted creation, a dry run
// admitted without consuming it), unless --disable-admission-plugins=ResourceQuota. Without
// the plugin every creation was admitted whatever the quota.
func TestResourceQuotaAdmission(t *testing.T) {
	t.Run("full", func(t *testing.T) {
		chain, _ := admissionChain(t, []string{"--etcd-servers=https://127.0.0.1:2379"}, 1)
		err := chain.Validate(t.Context(), createInstance("second", false), admission.NewObjectInterfacesFromScheme(apiserver.Scheme))
		want := "exceeded quota: q, requested: count/etcdinstances.etcdaas.dev=1, used: count/etcdinstances.etcdaas.dev=1, limited: count/etcdinstances.etcdaas.dev=1"
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), want) {
			t.Fatalf("creation beyond the quota: err = %v, want 403 Forbidden with %q", err, want)
		}
	})
	t.Run("room left", func(t *testing.T) {
		chain, kube := admissionChain(t, []string{"--etcd-servers=https://127.0.0.1:2379"}, 0)
		objects := admission.NewObjectInterfacesFromScheme(apiserver.Scheme)
		if err := chain.Validate(t.Context(), createInstance("dry", true), objects); err != nil {
			t.Fatalf("dry-run creation within the quota: %v", err)
		}
		if used := quotaUsed(t, kube); used != 0 {
			t.Fatalf("a dry run consumed the quota: status.used %d, want 0", used)
		}
		if err := chain.Validate(t.Context(), createInstance("first", false), objects); err != nil {
			t.Fatalf("creation within the quota: %v", err)
		}
		if used := quotaUsed(t, kube); used != 1 {
			t.Fatalf("after an accepted creation status.used is %d, want 1", used)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		chain, _ := admissionChain(t, []string{"--etcd-servers=https://127.0.0.1:2379", "--disable-admission-plugins=MutatingAdmissionPolicy,ResourceQuota"}, 1)
		if err := chain.Validate(t.Context(), createInstance("second", false), admission.NewObjectInterfacesFromScheme(apiserver.Scheme)); err != nil {
			t.Fatalf("with --disable-admission-plugins=ResourceQuota a creation beyond the quota must be admitted: %v", err)
		}
	})
}

// admissionChain builds the aggregated server's admission chain from args, over a fake
// kube-apiserver holding the namespace ns and its ResourceQuota q of one ETCDInstance with
// used of them already counted, and returns it with that fake.
func admissionChain(t *testing.T, args []string, used int64) (admission.ValidationInterface, *kubefake.Clientset) {
	t.Helper()
	o := NewOptions()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	o.AddFlags(fs)
	// MutatingAdmissionPolicy reads kube-apiserver's OpenAPI, which the fake lacks.
	o.RecommendedOptions.Admission.DisablePlugins = []string{"MutatingAdmissionPolicy"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	if err := o.Complete(fs); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	c, err := o.genericConfig()
	if err != nil {
		t.Fatal(err)
	}
	// The admission policies check their bindings' authorization; the test allows everything.
	c.Authorization.Authorizer = authorizerfactory.NewAlwaysAllowAuthorizer()
	kube := kubefake.NewClientset(
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "ns"}},
		&corev1.ResourceQuota{
			ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: "ns"},
			Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{instanceCount: resource.MustParse("1")}},
			Status: corev1.ResourceQuotaStatus{
				Hard: corev1.ResourceList{instanceCount: resource.MustParse("1")},
				Used: corev1.ResourceList{instanceCount: *resource.NewQuantity(used, resource.DecimalSI)},
			},
		})
	factory := informers.NewSharedInformerFactory(kube, 0)
	initializers, err := o.RecommendedOptions.ExtraAdmissionInitializers(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := o.RecommendedOptions.Admission.ApplyTo(&c.Config, factory, kube, fake.NewSimpleDynamicClient(runtime.NewScheme()),
		o.RecommendedOptions.FeatureGate, c.EffectiveVersion, initializers...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return c.AdmissionControl.(admission.ValidationInterface), kube
}

// createInstance is the admission request of user alice creating the ETCDInstance name in ns.
func createInstance(name string, dryRun bool) admission.Attributes {
	obj := &etcdaas.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"}}
	return admission.NewAttributesRecord(obj, nil, etcdaas.Kind("ETCDInstance").WithVersion("v1beta1"), "ns", name,
		etcdaas.Resource("etcdinstances").WithVersion("v1beta1"), "", admission.Create, &metav1.CreateOptions{}, dryRun,
		&user.DefaultInfo{Name: "alice"})
}

// quotaUsed is the status.used count of ETCDInstances of the quota q, as last written.
func quotaUsed(t *testing.T, kube *kubefake.Clientset) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	q, err := kube.CoreV1().ResourceQuotas("ns").Get(ctx, "q", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	used := q.Status.Used[instanceCount]
	return used.Value()
}
