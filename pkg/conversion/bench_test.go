package conversion

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// benchObject is a realistic running three-member instance.
func benchObject() *v1beta1.ETCDInstance {
	obj := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "orders", Namespace: "shop", Generation: 4,
			Labels: map[string]string{"team": "shop"}, CreationTimestamp: metav1.Unix(1700000000, 0)},
		Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3), Version: "3.7", TLS: &v1beta1.TLSSpec{Enabled: true}},
		Status: v1beta1.ETCDInstanceStatus{ObservedGeneration: 4, Phase: v1beta1.PhaseRunning, Replicas: 3, ReadyReplicas: 3,
			Selector: etcdaas.MemberSelector("orders")},
	}
	for i, name := range []string{"orders-0", "orders-1", "orders-2"} {
		obj.Status.Members = append(obj.Status.Members, v1beta1.MemberStatus{Name: name, ID: "8e9e05c52164694d",
			PeerURL: "https://127.0.0.1:2380", ClientURL: "https://127.0.0.1:2379", Ready: true, Leader: i == 0})
	}
	for _, t := range []string{etcdaas.ConditionAvailable, etcdaas.ConditionProgressing, etcdaas.ConditionDegraded} {
		obj.Status.Conditions = append(obj.Status.Conditions, metav1.Condition{Type: t, Status: metav1.ConditionTrue,
			Reason: "Reconciled", Message: "3/3 members ready", LastTransitionTime: metav1.Unix(1700000100, 0)})
	}
	return obj
}

func benchmarkConvert(b *testing.B, in runtime.Object, to *runtime.Object, c *Converter, target func() runtime.Object) {
	b.Helper()
	hub := &etcdaas.ETCDInstance{}
	b.ReportAllocs()
	for b.Loop() {
		out := target()
		if err := c.scheme.Convert(in, hub, nil); err != nil {
			b.Fatal(err)
		}
		if err := c.scheme.Convert(hub, out, nil); err != nil {
			b.Fatal(err)
		}
		*to = out
	}
}

// BenchmarkConvert measures one object through the hub in each direction, and the
// same-version path through the hub as the peer the cross-version figures compare to.
func BenchmarkConvert(b *testing.B) {
	c := New()
	beta := benchObject()
	alphaObj, err := c.Convert(beta, v1alpha1.SchemeGroupVersion)
	if err != nil {
		b.Fatal(err)
	}
	var sink runtime.Object
	b.Run("v1beta1-to-v1beta1", func(b *testing.B) {
		benchmarkConvert(b, beta, &sink, c, func() runtime.Object { return &v1beta1.ETCDInstance{} })
	})
	b.Run("v1beta1-to-v1alpha1", func(b *testing.B) {
		benchmarkConvert(b, beta, &sink, c, func() runtime.Object { return &v1alpha1.ETCDInstance{} })
	})
	b.Run("v1alpha1-to-v1beta1", func(b *testing.B) {
		benchmarkConvert(b, alphaObj, &sink, c, func() runtime.Object { return &v1beta1.ETCDInstance{} })
	})
	_ = sink
}
