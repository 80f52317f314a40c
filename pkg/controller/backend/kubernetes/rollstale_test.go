package kubernetes

import (
	"context"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRollWaitsForTheStatefulSetControllerToTakeTheNewTemplate: a pod deleted before the
// StatefulSet controller has seen the new template comes back on the old image, and the
// member would then wait for its upgrade forever (the step timeout stalls the roll for good:
// nothing deletes that pod again). The roll restarts a member only once the StatefulSet's
// status observed its generation, and deletes again a pod of the member under way that came
// back on another image.
func TestRollWaitsForTheStatefulSetControllerToTakeTheNewTemplate(t *testing.T) {
	ctx := context.Background()
	f := newRollFixture(t)
	sts := f.sts(t)
	sts.Generation, sts.Status.ObservedGeneration = 7, 6
	if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res := f.sync(t)
	if len(f.deleted) != 0 || !strings.Contains(res.Step, "waiting for the StatefulSet controller") {
		t.Fatalf("a pod was deleted before the StatefulSet controller saw the new template: deleted %v, %+v", f.deleted, res)
	}

	// It has now, but (as before this fix) it recreates db-2 from the old template anyway.
	sts = f.sts(t)
	sts.Status.ObservedGeneration = 7
	if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.recreate = false
	f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v, want db-2", f.deleted)
	}
	f.clock = f.clock.Add(30e9)
	f.createPod(t, 2, oldImage, false)
	f.deleted = nil
	res = f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2"}) || !strings.Contains(res.Step, "restarting member db-2") {
		t.Fatalf("db-2, back on the old image, was not restarted again: deleted %v, %+v", f.deleted, res)
	}
}
