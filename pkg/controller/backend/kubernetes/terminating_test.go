package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// terminate marks the pod of member ordinal as being deleted (a node drain evicted it, a
// person deleted it): its etcd still answers during the pod's termination grace period, but
// it is about to stop.
func (f *stepsFixture) terminate(t *testing.T, ordinal int) {
	t.Helper()
	ctx := context.Background()
	pods := f.client.CoreV1().Pods("ns")
	name := fmt.Sprintf("db-%d", ordinal)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		pod = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, Labels: etcdaas.MemberLabels("db")}}
		if pod, err = pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod.DeletionTimestamp = &metav1.Time{Time: pod.CreationTimestamp.Add(1)}
	pod.Finalizers = []string{"example.com/graceful"}
	if _, err := pods.Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRollWaitsForAMemberWhosePodIsBeingDeleted: db-0's pod is being deleted (a node drain
// evicted it: the PodDisruptionBudget allowed it, every pod being Ready), and its member still
// answers while it shuts down. Restarting db-2 for the roll now would stop two of three
// members at once: quorum lost until one is back. The roll waits for db-0's pod to come back,
// then goes on.
func TestRollWaitsForAMemberWhosePodIsBeingDeleted(t *testing.T) {
	f := newRollFixture(t)
	f.stepsFixture.terminate(t, 0)
	res := f.sync(t)
	if len(f.deleted) != 0 || res.Converged || !strings.Contains(res.Step, "db-0") {
		t.Fatalf("restarted %v while db-0's pod is being deleted: %+v", f.deleted, res)
	}

	// db-0's pod is gone (its member with it) and comes back from the new template, its
	// member serving again.
	if err := f.client.CoreV1().Pods("ns").Delete(context.Background(), "db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	f.cluster.statuses[0] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
	f.sync(t)
	f.answer(0, "3.7.3")
	res = f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-0", "db-2"}) || !strings.Contains(res.Step, "restarting member db-2") {
		t.Fatalf("after db-0 came back: restarted %v, %+v", f.deleted, res)
	}
}

// TestScaleDownWaitsForAMemberWhosePodIsBeingDeleted: spec.replicas goes from 3 to 2 while
// db-0's pod is being deleted (evicted by a drain) and its member still answers. Removing
// db-2 now would leave a cluster of two whose db-0 is about to stop: quorum lost until it is
// back. The removal waits for db-0's pod to come back.
func TestScaleDownWaitsForAMemberWhosePodIsBeingDeleted(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(3)
	f := newStepsFixture(t, 2, 3, 3, cluster)
	f.terminate(t, 0)
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || len(cluster.removed) != 0 || len(cluster.movedOff) != 0 || res.Converged || !strings.Contains(res.Step, "db-0") {
		t.Fatalf("sync while db-0's pod is being deleted: removed %v, moved leadership off %v: %+v, %v", cluster.removed, cluster.movedOff, res, err)
	}

	if err := f.client.CoreV1().Pods("ns").Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err = f.b.Sync(ctx, f.inst)
	if err != nil || !slices.Equal(cluster.removed, []uint64{102}) {
		t.Fatalf("sync once db-0's pod is back: removed %v: %+v, %v", cluster.removed, res, err)
	}
}

// TestARollStalledOnAMemberDownBeforeItDoesNotKeepItFromRepair: db-2 is down (its node is
// gone: its pod stays Pending) when spec.version changes, before repair replaced it (a
// controller restart starts the repair clock anew). The roll restarts it first, since a new
// pod may bring it back; it does not come back, and the roll stops with UpgradeFailed. Repair
// then replaces it as it would have without the roll, rather than never: the roll's failed
// step held every later step, a change of spec.version back restarted it again, and the
// instance stayed with two members of three for as long as the node was gone.
func TestARollStalledOnAMemberDownBeforeItDoesNotKeepItFromRepair(t *testing.T) {
	f := newRollFixture(t)
	f.honourUIDPreconditions()
	f.b.health.Now = func() time.Time { return f.clock }
	f.cluster.statuses[2] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v, want db-2, down, first", f.deleted)
	}
	f.clock = f.clock.Add(DefaultUpgradeStepTimeout + time.Second)
	if res := f.sync(t); res.StalledReason != "UpgradeFailed" || len(f.cluster.removed) != 0 {
		t.Fatalf("past the step timeout: %+v, removed %v", res, f.cluster.removed)
	}
	for range 2 {
		f.clock = f.clock.Add(DefaultUpgradeStepTimeout)
		f.sync(t)
	}
	if !slices.Equal(f.cluster.removed, []uint64{102}) {
		t.Fatalf("db-2, down for %s and not up after its restart, is not replaced: removed %v", 3*DefaultUpgradeStepTimeout, f.cluster.removed)
	}

	// Its successor joins on the new image, and the roll goes on with the next member.
	res := f.sync(t)
	if len(f.cluster.added) != 1 {
		t.Fatalf("no successor added: %+v", res)
	}
	f.answer(2, "3.7.3")
	f.cluster.statuses[2].MemberID, f.cluster.statuses[2].IsLearner = f.cluster.nextID, true
	res = f.sync(t)
	if reasons(res) != "MemberPromoted,MemberReplaced" {
		t.Fatalf("successor not promoted: %+v", res)
	}
	f.cluster.statuses[2].IsLearner, f.cluster.members[2].IsLearner = false, false
	res = f.sync(t)
	if reasons(res) != "MemberUpgraded" || !strings.Contains(res.Step, "restarting member db-0") || res.Stalled != "" {
		t.Fatalf("the roll does not go on after the replacement: restarted %v, %+v", f.deleted, res)
	}
}

// TestALearnerPodOfAnOlderTemplateIsMadeAnew: a learner (db-1's successor, or db-3 of a
// scale-up) got its pod while spec.version named a release whose image cannot be pulled; the
// person set spec.version back. The learner serves nothing, so nothing waits for it: its pod
// is made anew from the template of what the spec asks for now. Before, the StatefulSet kept
// the template of the release that cannot be pulled and, its strategy being OnDelete, the pod
// for ever: the replacement waited on it for ever (spec.replicas cannot remove a successor),
// the scale-up until the person scaled back.
func TestALearnerPodOfAnOlderTemplateIsMadeAnew(t *testing.T) {
	t.Run("successor", func(t *testing.T) {
		f, _, _ := replacingFixture(t)
		checkLearnerPodMadeAnew(t, f, 1)
	})
	t.Run("scale-up", func(t *testing.T) {
		cluster := healthyCluster(4)
		cluster.members[3].IsLearner = true
		cluster.statuses[3] = notAnswering
		f := newStepsFixture(t, 4, 4, 3, cluster)
		f.honourUIDPreconditions()
		checkLearnerPodMadeAnew(t, f, 3)
	})
}

// checkLearnerPodMadeAnew gives the StatefulSet a template of an image that cannot be pulled
// and the learner with ordinal o a pod of it, then checks that a Sync puts the template back
// to the spec's and deletes the pod.
func checkLearnerPodMadeAnew(t *testing.T, f *stepsFixture, o int) {
	t.Helper()
	ctx := context.Background()
	const unpullable = "gcr.io/etcd-development/etcd:v3.7.99"
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := sts.Spec.Template.Spec.Containers[0].Image
	sts.Spec.Template.Spec.Containers[0].Image = unpullable
	if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("db-%d", o)
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: "learner-pod", Labels: etcdaas.MemberLabels("db"), Annotations: sts.Spec.Template.Annotations},
		Spec: *sts.Spec.Template.Spec.DeepCopy()}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "etcd", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff"}}}}
	_ = f.client.CoreV1().Pods("ns").Delete(ctx, name, metav1.DeleteOptions{})
	if _, err := f.client.CoreV1().Pods("ns").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	res, err := f.b.Sync(ctx, f.inst)
	if err != nil {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	sts, err = f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := sts.Spec.Template.Spec.Containers[0].Image; got != want {
		t.Fatalf("template image %s, want %s", got, want)
	}
	if f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{}); return err }) {
		t.Fatalf("the learner's pod of image %s is kept: %+v", unpullable, res)
	}
}
