package cli

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clienttesting "k8s.io/client-go/testing"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/fake"
)

// pollInstance retries a read the server failed, keeps waiting while the instance is not
// done, and ends with an error naming the wait when the instance is deleted meanwhile.
func TestPollInstanceEndsWhenTheInstanceIsDeleted(t *testing.T) {
	client := fake.NewClientset(&v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db"}})
	gets := 0
	client.PrependReactor("get", "etcdinstances", func(clienttesting.Action) (bool, runtime.Object, error) {
		gets++
		if gets == 1 {
			return true, nil, apierrors.NewServiceUnavailable("busy")
		}
		return false, nil, nil
	})
	checked := 0
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	last, err := pollInstance(ctx, client, "ns", "db", "recovery", time.Millisecond, func(inst *v1beta1.ETCDInstance) (bool, error) {
		checked++
		if checked == 2 {
			if err := client.Tracker().Delete(v1beta1.SchemeGroupVersion.WithResource("etcdinstances"), "ns", "db"); err != nil {
				t.Fatal(err)
			}
		}
		return false, nil
	})
	if err == nil || !strings.Contains(err.Error(), "ns/db was deleted during the recovery") || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want the deletion named", err)
	}
	if gets < 4 || checked != 2 || last == nil || last.Name != "db" {
		t.Fatalf("%d reads, %d checks, last %v: want the failed read retried, two checks, the last instance read", gets, checked, last)
	}
}
