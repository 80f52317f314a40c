package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	k8stesting "k8s.io/client-go/testing"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// conflictOnce makes the next update of a StatefulSet fail with a conflict, as when the
// StatefulSet controller wrote its status since the Sync read it (pods come and go all
// through a restore).
func conflictOnce(f *stepsFixture) {
	armed := true
	f.client.PrependReactor("update", "statefulsets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if !armed {
			return false, nil, nil
		}
		armed = false
		return true, nil, apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "statefulsets"}, "db", errors.New("the object has been modified"))
	})
}

// TestRestoreStepsRetryAStatefulSetConflict: the step that records a restore and the one
// that ends it lose a race with the StatefulSet controller; they apply their change again
// to the StatefulSet read anew, rather than failing the Sync (the instance Degraded with a
// conflict message).
func TestRestoreStepsRetryAStatefulSetConflict(t *testing.T) {
	ctx := context.Background()
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	f.b.opts.ToolsImage = toolsImage
	for i := range 3 {
		if _, err := f.client.CoreV1().Pods("ns").Create(ctx, readyPod(fmt.Sprintf("db-%d", i), ""), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	requestRestore(t, f.client, "r1")
	conflictOnce(f)
	if res, err := f.b.Sync(ctx, f.inst); err != nil || res.StepReason != backend.StepRestoring {
		t.Fatalf("recording the restore: %+v, %v", res, err)
	}
	if s, err := seedOf(f.sts(t).Annotations); err != nil || s == nil || s.Restore != "r1" {
		t.Fatalf("seed %+v, %v", s, err)
	}
	for i := range 3 {
		if err := f.client.CoreV1().Pods("ns").Delete(ctx, fmt.Sprintf("db-%d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.client.CoreV1().Pods("ns").Create(ctx, readyPod("db-0", "r1"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	conflictOnce(f)
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || reasons(res) != string(backend.ReasonRestored) {
		t.Fatalf("ending the restore: %+v, %v", res, err)
	}
	if sts := f.sts(t); sts.Annotations[annotationSeed] != "" || sts.Annotations[annotationRestoreRequest] != "" {
		t.Fatalf("the restore did not end: %v", sts.Annotations)
	}
}
