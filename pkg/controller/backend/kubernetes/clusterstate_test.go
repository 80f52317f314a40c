package kubernetes

import (
	"context"
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestAServingMemberNeverStartsANewClusterAgain: the first member of an instance starts a new
// cluster (ETCD_INITIAL_CLUSTER_STATE=new). An instance of one member kept that template for
// good, so when its volume was lost or replaced (a node gone with its local volume, a claim
// deleted) the pod bootstrapped an empty cluster under the same name and URL: the instance
// served clients again, healthy, its keys gone and its revisions starting over at 1, and the
// controller recorded the new member as the instance's. Once the cluster serves, its pods
// start as members of an existing cluster: with an empty data directory etcd then refuses to
// start, and the member is reported unhealthy until a person restores it.
func TestAServingMemberNeverStartsANewClusterAgain(t *testing.T) {
	ctx := context.Background()
	f := newStepsFixture(t, 1, 1, 1, healthyCluster(1))
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if state := env(t, sts.Spec.Template.Spec.Containers[0], "ETCD_INITIAL_CLUSTER_STATE"); state != "new" {
		t.Fatalf("the first member starts with cluster state %q, want new", state)
	}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || !res.Converged {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	sts, err = f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	if state := env(t, c, "ETCD_INITIAL_CLUSTER_STATE"); state != "existing" {
		t.Fatalf("once the cluster serves, its pods start with cluster state %q, want existing", state)
	}
	if initial, want := env(t, c, "ETCD_INITIAL_CLUSTER"), "db-0="+fmt.Sprintf(peerURLFormat, 0); initial != want {
		t.Fatalf("initial cluster %q, want %q", initial, want)
	}
	if *sts.Spec.Replicas != 1 {
		t.Fatalf("replicas %d, want 1", *sts.Spec.Replicas)
	}
	// Nothing changes at the next look.
	f.client.ClearActions()
	if res, err := f.b.Sync(ctx, f.inst); err != nil || !res.Converged {
		t.Fatalf("next sync: %+v, %v", res, err)
	}
	for _, a := range f.client.Actions() {
		if a.GetVerb() == "update" && a.GetResource().Resource == "statefulsets" {
			t.Fatalf("the next sync updated the StatefulSet again: %+v", a)
		}
	}
}
