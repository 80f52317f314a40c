package kubernetes

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// TestUnsupportedVersionKeepsTheMembers changes spec.version of a healthy 3-member cluster to
// one the backend has no image for (3.8, which validation allows as the next minor from 3.7):
// the change is refused, naming the versions the backend runs, and the members keep running
// the StatefulSet template's image while the backend goes on managing them (a scale-up here).
// A new instance asking for that version cannot start.
func TestUnsupportedVersionKeepsTheMembers(t *testing.T) {
	f := newRollFixture(t)
	ctx := context.Background()
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	image := etcdImage(&sts.Spec.Template.Spec)
	for i := range 3 {
		if err := f.client.CoreV1().Pods("ns").Delete(ctx, "db-"+string(rune('0'+i)), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		f.createPodFrom(t, i, sts.Spec.Template, true)
		f.cluster.statuses[i].Version = "3.7.3"
	}
	f.inst.Spec.Version = "3.8"

	res := f.sync(t)
	if res.RefusedReason != "UnsupportedVersion" || !strings.Contains(res.Refused, `etcd version "3.8" is not available: the kubernetes backend runs 3.5, 3.6, 3.7`) ||
		!strings.HasSuffix(res.Refused, "; the members keep running image "+image) {
		t.Fatalf("refusal of 3.8: %q %q", res.RefusedReason, res.Refused)
	}
	if !res.Converged || len(res.Members) != 3 || res.Ready() != 3 || res.Members[0].Version != "3.7.3" {
		t.Fatalf("the members of a cluster asking for 3.8: %+v", res)
	}
	if len(f.deleted) != 0 {
		t.Fatalf("pods restarted for a version without an image: %v", f.deleted)
	}

	// A scale goes on, on the image the members run.
	f.inst.Spec.Replicas = ptr.To[int32](4)
	res = f.sync(t)
	if res.StepReason != backend.StepAddingMember || res.Refused == "" {
		t.Fatalf("scale-up of a cluster asking for 3.8: %+v", res)
	}
	sts, err = f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := etcdImage(&sts.Spec.Template.Spec); got != image || *sts.Spec.Replicas != 4 {
		t.Fatalf("StatefulSet after the scale-up: image %s, %d replicas; want %s, 4", got, *sts.Spec.Replicas, image)
	}

	fresh := testInstance()
	fresh.Name, fresh.UID, fresh.Spec.Version = "fresh", "uid-fresh", "3.8"
	if res, err := f.b.Sync(ctx, fresh); err == nil {
		t.Fatalf("a new instance started on 3.8: %+v", res)
	} else if pe, ok := backend.IsPermanent(err); !ok || pe.Reason != "UnsupportedVersion" {
		t.Fatalf("a new instance on 3.8: %v", err)
	}
	if _, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "fresh", metav1.GetOptions{}); err == nil {
		t.Fatal("a StatefulSet for a new instance on 3.8")
	}
}
