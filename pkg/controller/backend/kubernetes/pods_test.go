package kubernetes

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// The first sync after the StatefulSet exists says why member 0 does not start, from its
// claim and pod, instead of only "waiting" (what a real node showed: a claim without a
// volume, or a member crashing on its certificates, left the status saying nothing).
func TestSyncExplainsWhyTheFirstMemberDoesNotStart(t *testing.T) {
	inst := testInstance()
	pending := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-0"},
		Spec:       corev1.PersistentVolumeClaimSpec{StorageClassName: inst.Spec.Storage.StorageClassName},
		Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
	}
	bound := pending.DeepCopy()
	bound.Status.Phase = corev1.ClaimBound
	unschedulable := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0"},
		Status: corev1.PodStatus{Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable,
			Message: "0/3 nodes are available: 3 Insufficient memory.",
		}}},
	}
	crashing := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0"},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name:                 "etcd",
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "{...}\n{\"level\":\"fatal\",\"error\":\"open /etc/etcd/tls/peer.crt: permission denied\"}\n"}},
		}}},
	}
	starting := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-0"}, Status: corev1.PodStatus{Phase: corev1.PodPending}}
	// What the StatefulSet controller records when admission refuses its pod (a LimitRange
	// or a ResourceQuota against spec.resources): there is no pod to look at.
	failedCreate := func(name, message string, seen time.Time) *corev1.Event {
		return &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Namespace: "ns", Name: name},
			InvolvedObject: corev1.ObjectReference{Kind: "StatefulSet", Namespace: "ns", Name: "db", APIVersion: "apps/v1"},
			Reason:         "FailedCreate", Type: corev1.EventTypeWarning, Message: message,
			LastTimestamp: metav1.NewTime(seen),
		}
	}
	forbidden := failedCreate("db.1", `create Pod db-0 in StatefulSet db failed error: pods "db-0" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi`, time.Now())
	quota := failedCreate("db.2", `create Claim data-db-0 for Pod db-0 in StatefulSet db failed error: persistentvolumeclaims "data-db-0" is forbidden: exceeded quota: storage, requested: requests.storage=1Gi, used: requests.storage=0, limited: requests.storage=512Mi`, time.Now())
	stale := failedCreate("db.3", `create Pod db-0 in StatefulSet db failed error: pods "db-0" is forbidden: exceeded quota: q`, time.Now().Add(-time.Hour))
	otherPod := failedCreate("db.4", `create Pod db-1 in StatefulSet db failed error: pods "db-1" is forbidden: exceeded quota: q`, time.Now())
	for _, c := range []struct {
		name    string
		objects []any
		want    []string
	}{
		{"claim pending", []any{pending}, []string{"volume claim data-db-0 is Pending", "storage class fast"}},
		{"unschedulable", []any{bound, unschedulable}, []string{"member db-0 cannot be scheduled: 0/3 nodes are available: 3 Insufficient memory."}},
		{"crashing", []any{bound, crashing}, []string{"container etcd CrashLoopBackOff: back-off 40s", "last exit code 1", "peer.crt: permission denied"}},
		{"starting", []any{bound, starting}, nil},
		{"pod refused", []any{bound, forbidden}, []string{`member db-0: its pod cannot be created: pods "db-0" is forbidden: maximum memory usage per Container is 1Gi, but limit is 2Gi`}},
		{"claim refused", []any{quota}, []string{`member db-0: its pod cannot be created: persistentvolumeclaims "data-db-0" is forbidden: exceeded quota: storage`}},
		{"refused long ago or another pod", []any{bound, stale, otherPod}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkFirstMemberExplained(t, inst, c.objects, c.want)
		})
	}
}

// checkFirstMemberExplained syncs inst, creates objects (claims, pods, Events), syncs again,
// and checks that the step waits for db-0 and explains, in the step and as unhealthy, each of
// want (nothing when want is nil).
func checkFirstMemberExplained(t *testing.T, inst *v1beta1.ETCDInstance, objects []any, want []string) {
	client := fake.NewClientset()
	b, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The first sync creates the objects; the second finds no ready member.
	if _, err := b.Sync(ctx, inst); err != nil {
		t.Fatal(err)
	}
	for _, o := range objects {
		switch o := o.(type) {
		case *corev1.PersistentVolumeClaim:
			_, err = client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Pod:
			_, err = client.CoreV1().Pods("ns").Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Event:
			_, err = client.CoreV1().Events("ns").Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	res, err := b.Sync(ctx, inst)
	if err != nil {
		t.Fatal(err)
	}
	if res.StepReason != backend.StepDeploying || !strings.HasPrefix(res.Step, "waiting for member db-0 to start") {
		t.Fatalf("step %q (%s)", res.Step, res.StepReason)
	}
	if want == nil && (res.Unhealthy != "" || res.Step != "waiting for member db-0 to start") {
		t.Fatalf("a pod merely starting is explained: step %q, unhealthy %q", res.Step, res.Unhealthy)
	}
	for _, w := range want {
		if !strings.Contains(res.Unhealthy, w) || !strings.Contains(res.Step, w) {
			t.Errorf("step %q / unhealthy %q: want %q in both", res.Step, res.Unhealthy, w)
		}
	}
}
