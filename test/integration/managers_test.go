package integration

import (
	"context"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller"
	versioned "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

// TestStandaloneControllerWritesAsItself: the standalone server's in-process controller adds
// its finalizer and writes status as etcdaas-controller, the name its Events and the
// aggregated mode's controller carry, so `kubectl get -o yaml --show-managed-fields` names
// the controller for what it owns, not the server.
func TestStandaloneControllerWritesAsItself(t *testing.T) {
	ctx := testContext(t)
	srv := framework.StartT(t, framework.Options{Controller: true})
	cs, err := versioned.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	instances := cs.EtcdaasV1beta1().ETCDInstances("default")
	if _, err := instances.Create(ctx, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "managed"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	}, metav1.CreateOptions{FieldManager: "creator"}); err != nil {
		t.Fatal(err)
	}
	var last *v1beta1.ETCDInstance
	err = wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		last, err = instances.Get(ctx, "managed", metav1.GetOptions{})
		return err == nil && last.Status.Phase == v1beta1.PhaseRunning, err
	})
	if err != nil {
		t.Fatalf("not Running: %v; last %+v", err, last)
	}
	owners := map[string]string{}
	for _, entry := range last.ManagedFields {
		owners[entry.Subresource] += entry.Manager + " "
	}
	want := map[string]string{"": "creator " + controller.Component + " ", "status": controller.Component + " "}
	for subresource, managers := range want {
		if owners[subresource] != managers {
			t.Errorf("managers of %q: %q, want %q (all: %v)", subresource, owners[subresource], managers, owners)
		}
	}
}
