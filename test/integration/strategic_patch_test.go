package integration

import (
	"net/http"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
)

// TestStrategicMergePatchOfStatusLists checks that a strategic merge patch (kubectl patch's
// default) of status.conditions or status.members merges by type or name, as it does for the
// conditions of kube-apiserver's own types, instead of replacing the whole list.
func TestStrategicMergePatchOfStatusLists(t *testing.T) {
	ctx := testContext(t)
	cs, _ := clients(t)
	ns := namespace(t)
	client := cs.EtcdaasV1beta1().ETCDInstances(ns)

	created, err := client.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "smp"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	since := metav1.Now()
	created.Status = v1beta1.ETCDInstanceStatus{
		Replicas: 2, ReadyReplicas: 2,
		Members: []v1beta1.MemberStatus{{Name: "smp-0", Ready: true}, {Name: "smp-1", Ready: true}},
		Conditions: []metav1.Condition{
			{Type: "Available", Status: metav1.ConditionTrue, Reason: "QuorumReady", LastTransitionTime: since},
			{Type: "Degraded", Status: metav1.ConditionTrue, Reason: "MemberUnhealthy", LastTransitionTime: since},
		},
	}
	if _, err := client.UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	patch := `{"status":{"readyReplicas":1,` +
		`"members":[{"name":"smp-1","ready":false}],` +
		`"conditions":[{"type":"Degraded","status":"False","reason":"Healthy","message":"","lastTransitionTime":"2030-01-01T00:00:00Z"}]}}`
	res := do(t, http.MethodPatch, "/apis/etcdaas.dev/v1beta1/namespaces/"+ns+"/etcdinstances/smp/status", []byte(patch),
		"Content-Type", "application/strategic-merge-patch+json")
	if res.code != http.StatusOK {
		t.Fatalf("strategic merge patch of status: %d %s", res.code, res.body)
	}
	after, err := client.Get(ctx, "smp", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conditions := map[string]string{}
	for _, c := range after.Status.Conditions {
		conditions[c.Type] = c.Reason
	}
	if len(conditions) != 2 || conditions["Available"] != "QuorumReady" || conditions["Degraded"] != "Healthy" {
		t.Errorf("conditions after patching Degraded = %v, want Available QuorumReady kept and Degraded Healthy", conditions)
	}
	members := map[string]bool{}
	for _, m := range after.Status.Members {
		members[m.Name] = m.Ready
	}
	if len(members) != 2 || !members["smp-0"] || members["smp-1"] {
		t.Errorf("members after patching smp-1 = %v, want smp-0 ready kept and smp-1 not ready", members)
	}
}
