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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// failingAdd is a cluster whose next AddLearner fails, as when the controller dies between
// removing a member and adding its successor.
type failingAdd struct {
	*fakeMembership
	fail bool
}

func (f *failingAdd) AddLearner(ctx context.Context, peerURL string) (uint64, []etcdcluster.Member, error) {
	if f.fail {
		f.fail = false
		return 0, nil, errors.New("controller stopped")
	}
	return f.fakeMembership.AddLearner(ctx, peerURL)
}

// withVolumes gives the fixture's claims a UID and binds them, and creates a pod per member.
// Deletes of pods and claims honour UID preconditions, as the API server does.
func (f *stepsFixture) withVolumes(t *testing.T, n int) {
	t.Helper()
	ctx := context.Background()
	f.honourUIDPreconditions()
	for i := range n {
		pvc, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, fmt.Sprintf("data-db-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc.UID, pvc.Status.Phase = types.UID(fmt.Sprintf("claim-%d", i)), corev1.ClaimBound
		if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("db-%d", i), UID: types.UID(fmt.Sprintf("pod-%d", i))}}
		if _, err := f.client.CoreV1().Pods("ns").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// honourUIDPreconditions makes deletes of pods and claims honour UID preconditions, as the
// API server does (the fake clientset ignores them).
func (f *stepsFixture) honourUIDPreconditions() {
	for _, resource := range []string{"pods", "persistentvolumeclaims"} {
		f.client.PrependReactor("delete", resource, func(action k8stesting.Action) (bool, runtime.Object, error) {
			del := action.(k8stesting.DeleteAction)
			pre := del.GetDeleteOptions().Preconditions
			if pre == nil || pre.UID == nil {
				return false, nil, nil
			}
			obj, err := f.client.Tracker().Get(action.GetResource(), del.GetNamespace(), del.GetName())
			if err != nil {
				return false, nil, nil
			}
			if m, err := meta.Accessor(obj); err == nil && m.GetUID() != *pre.UID {
				return true, nil, apierrors.NewConflict(action.GetResource().GroupResource(), del.GetName(), errors.New("the UID precondition failed"))
			}
			return false, nil, nil
		})
	}
}

func (f *stepsFixture) exists(t *testing.T, get func() error) bool {
	t.Helper()
	err := get()
	if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

func (f *stepsFixture) annotation(t *testing.T, key string) string {
	t.Helper()
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sts.Annotations[key]
}

// reasons are the reasons of the events res reports, in order.
func reasons(res *backend.Result) string {
	var out []string
	for _, e := range res.Events {
		out = append(out, string(e.Reason))
	}
	return strings.Join(out, ",")
}

// convergedWithVolumes is a healthy 3-member instance whose claims have UIDs (withVolumes),
// synced once to Converged so that its volumes are recorded.
func convergedWithVolumes(t *testing.T) (*stepsFixture, *fakeMembership) {
	t.Helper()
	return convergedWithVolumesOf(t, 3)
}

// convergedWithVolumesOf is convergedWithVolumes with n members.
func convergedWithVolumesOf(t *testing.T, n int32) (*stepsFixture, *fakeMembership) {
	t.Helper()
	cluster := healthyCluster(int(n))
	f := newStepsFixture(t, n, n, n, cluster)
	f.withVolumes(t, int(n))
	if res, err := f.b.Sync(context.Background(), f.inst); err != nil || !res.Converged {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	return f, cluster
}

// TestRepairReplacesAMemberWhoseVolumeWasReplaced: db-1's claim is deleted and the
// StatefulSet made an empty one (its member rejoined under the old ID, with nothing): the
// member is removed, its claim and pod deleted, a learner with a new ID added at the same
// peer URL and promoted once its new pod serves; then the volume record starts anew.
func TestRepairReplacesAMemberWhoseVolumeWasReplaced(t *testing.T) {
	ctx := context.Background()
	f, cluster := convergedWithVolumes(t)
	if got := f.annotation(t, annotationMemberVolumes); got != `{"db-0":{"member":"64","claim":"claim-0"},"db-1":{"member":"65","claim":"claim-1"},"db-2":{"member":"66","claim":"claim-2"}}` {
		t.Fatalf("volumes recorded: %s", got)
	}

	// The claim of db-1 is deleted with its pod; the StatefulSet creates both anew.
	if err := f.client.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, "data-db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	empty := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-1", UID: "claim-1-new"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, empty, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil {
		t.Fatal(err)
	}
	if reasons(res) != "MemberUnhealthy,MemberRemoved,MemberAdded" || !strings.Contains(res.Events[0].Note, "its data is lost: its volume claim data-db-1 was replaced by an empty one") {
		t.Fatalf("events %+v", res.Events)
	}
	if !slices.Equal(cluster.removed, []uint64{101}) || !slices.Equal(cluster.added, []string{fmt.Sprintf(peerURLFormat, 1)}) {
		t.Fatalf("removed %v, added %v", cluster.removed, cluster.added)
	}
	if f.exists(t, func() error {
		_, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "data-db-1", metav1.GetOptions{})
		return err
	}) || f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-1", metav1.GetOptions{}); return err }) {
		t.Fatal("the old member's claim or pod is still there")
	}
	if replicas, initial := f.statefulSet(t); replicas != 3 || !strings.Contains(initial, "db-1="+fmt.Sprintf(peerURLFormat, 1)) {
		t.Fatalf("StatefulSet %d, initial cluster %q", replicas, initial)
	}

	checkReplacementWaitsForItsPod(t, ctx, f, cluster)

	// It serves: promoted, and the replacement is done.
	cluster.statuses[1] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 201, Leader: 100, IsLearner: true}
	res, err = f.b.Sync(ctx, f.inst)
	if err != nil || !slices.Equal(cluster.promoted, []uint64{201}) || reasons(res) != "MemberPromoted,MemberReplaced" {
		t.Fatalf("promotion: %+v, %v, promoted %v", res, err, cluster.promoted)
	}
	if m := res.Members[1]; m.Name != "db-1" || m.ID != "c9" || m.Learner {
		t.Fatalf("the promoted member reports %+v, want db-1 (ID c9) voting", m)
	}
	if note := res.Events[1].Note; !strings.Contains(note, "Replaced member db-1 (ID 65) with a new member db-1 (ID c9)") {
		t.Fatalf("MemberReplaced %q", note)
	}
	if f.annotation(t, annotationReplacement) != "" {
		t.Fatal("the replacement is still recorded")
	}
	// The StatefulSet made db-1 a new claim: recorded as the new member's.
	cluster.members[2].IsLearner = false
	newer := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-1", UID: "claim-1-newer"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, newer, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err := f.b.Sync(ctx, f.inst); err != nil || !res.Converged || len(res.Events) != 0 {
		t.Fatalf("after the replacement: %+v, %v", res, err)
	}
	if got := f.annotation(t, annotationMemberVolumes); got != `{"db-0":{"member":"64","claim":"claim-0"},"db-1":{"member":"c9","claim":"claim-1-newer"},"db-2":{"member":"66","claim":"claim-2"}}` {
		t.Fatalf("volumes recorded after the replacement: %s", got)
	}
}

// checkReplacementWaitsForItsPod checks the replacement of db-1 while its new pod does not
// serve: nothing promoted, the replacement recorded; and a pod holding the old claim being
// deleted is deleted again.
func checkReplacementWaitsForItsPod(t *testing.T, ctx context.Context, f *stepsFixture, cluster *fakeMembership) {
	// The new pod is not serving yet: nothing is promoted, the replacement stays recorded.
	cluster.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || len(cluster.promoted) != 0 || !strings.Contains(res.Step, "waiting for its new pod") || f.annotation(t, annotationReplacement) == "" {
		t.Fatalf("waiting: %+v, %v, promoted %v", res, err, cluster.promoted)
	}
	// The StatefulSet recreated the pod before the old claim was gone: the pod holds the claim
	// being deleted, so it is deleted again for the claim to go.
	gone := metav1.Now()
	stuck := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-1", UID: "claim-1-early", DeletionTimestamp: &gone, Finalizers: []string{"kubernetes.io/pvc-protection"}}}
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, stuck, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	early := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-1", UID: "pod-1-early"}}
	if _, err := f.client.CoreV1().Pods("ns").Create(ctx, early, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.Sync(ctx, f.inst); err != nil {
		t.Fatal(err)
	}
	if f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-1", metav1.GetOptions{}); return err }) {
		t.Fatal("the pod holding the claim being deleted is still there")
	}
	if err := f.client.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, "data-db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestRepairReplacesAMemberUnhealthyPastTheGracePeriod: a member whose pod keeps failing is
// replaced only after the grace period, only while the others keep quorum, and a replacement
// interrupted between removing the member and adding its successor is finished, never taken
// for a scale-down.
func TestRepairReplacesAMemberUnhealthyPastTheGracePeriod(t *testing.T) {
	ctx := context.Background()
	inner := healthyCluster(3)
	cluster := &failingAdd{fakeMembership: inner}
	f := newStepsFixture(t, 3, 3, 3, inner)
	f.b.connect = func(*etcdcluster.Access) (membership, error) { return cluster, nil }
	f.withVolumes(t, 3)
	now := time.Unix(1000, 0)
	f.b.health.Now = func() time.Time { return now }

	// Two of three unhealthy for long: removing one would lose quorum.
	inner.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	inner.statuses[2] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	f.b.Sync(ctx, f.inst)
	now = now.Add(10 * time.Minute)
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || len(inner.removed) != 0 || !strings.Contains(res.Unhealthy, "not replaced: member db-1 has been unhealthy for 10m0s, but removing it would leave 1 healthy of 2 voting members, fewer than a quorum") {
		t.Fatalf("two unhealthy of three: %+v, %v, removed %v", res, err, inner.removed)
	}
	// Both come back and stay healthy for a minute: forgiven.
	inner.statuses[1] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 101, Leader: 100}
	inner.statuses[2] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 102, Leader: 100}
	f.b.Sync(ctx, f.inst)
	now = now.Add(time.Minute)
	f.b.Sync(ctx, f.inst)

	inner.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	if res, err := f.b.Sync(ctx, f.inst); err != nil || len(inner.removed) != 0 {
		t.Fatalf("just unhealthy: %+v, %v", res, err)
	}
	now = now.Add(4 * time.Minute)
	if res, err := f.b.Sync(ctx, f.inst); err != nil || len(inner.removed) != 0 {
		t.Fatalf("within the grace period: %+v, %v", res, err)
	}
	now = now.Add(2 * time.Minute)
	cluster.fail = true
	res, err = f.b.Sync(ctx, f.inst)
	if err == nil || !slices.Equal(inner.removed, []uint64{101}) || len(inner.added) != 0 {
		t.Fatalf("interrupted replacement: %+v, %v, removed %v, added %v", res, err, inner.removed, inner.added)
	}
	if !strings.Contains(res.Events[0].Note, "unhealthy for 6m0s, longer than the grace period of 5m0s: not answering: connection refused") {
		t.Fatalf("events %+v", res.Events)
	}
	// The next Sync finishes the replacement: same StatefulSet size, a learner for db-1.
	res, err = f.b.Sync(ctx, f.inst)
	if err != nil || !slices.Equal(inner.added, []string{fmt.Sprintf(peerURLFormat, 1)}) || reasons(res) != "MemberAdded" {
		t.Fatalf("resumed replacement: %+v, %v, added %v", res, err, inner.added)
	}
	if replicas, _ := f.statefulSet(t); replicas != 3 || len(f.volumes(t)) != 2 {
		t.Fatalf("StatefulSet %d, volumes %v", replicas, f.volumes(t))
	}
}

func TestQuorumLossWithoutAMemberList(t *testing.T) {
	cluster := healthyCluster(3)
	cluster.listErr = errors.New("context deadline exceeded")
	cluster.statuses[1], cluster.statuses[2] = etcdcluster.EndpointStatus{Err: errors.New("refused")}, etcdcluster.EndpointStatus{Err: errors.New("refused")}
	f := newStepsFixture(t, 3, 3, 1, cluster)
	res, err := f.b.Sync(context.Background(), f.inst)
	if err != nil || res.QuorumLost != "quorum lost: 2 of 3 voting members do not answer (db-1, db-2); 2 are needed" {
		t.Fatalf("%+v, %v", res, err)
	}
	cluster.statuses[2] = etcdcluster.EndpointStatus{MemberID: 102, Err: errors.New("member has no leader")}
	if res, err := f.b.Sync(context.Background(), f.inst); err != nil || res.QuorumLost != "" {
		t.Fatalf("electing a leader is not quorum loss: %+v, %v", res, err)
	}
}

// TestRepairRecordsANewMemberOfTheSameNameAnew: a member with a recorded name but another ID
// (removed and added again by a scale-down and up, or a restore) is on a new claim by design:
// it is recorded, not replaced.
func TestRepairRecordsANewMemberOfTheSameNameAnew(t *testing.T) {
	ctx := context.Background()
	f, cluster := convergedWithVolumes(t)
	cluster.members[2].ID, cluster.statuses[2].MemberID = 300, 300
	pvc, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "data-db-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.UID = "claim-2-again"
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err := f.b.Sync(ctx, f.inst); err != nil || !res.Converged || len(cluster.removed) != 0 || len(res.Events) != 0 {
		t.Fatalf("a new member of the same name: %+v, %v, removed %v", res, err, cluster.removed)
	}
	if got := f.annotation(t, annotationMemberVolumes); !strings.Contains(got, `"db-2":{"member":"12c","claim":"claim-2-again"}`) {
		t.Fatalf("volumes recorded: %s", got)
	}
}

// failingRemove is a cluster whose next Remove fails, as when the controller dies right
// after recording a replacement.
type failingRemove struct {
	*fakeMembership
	fail bool
}

func (f *failingRemove) Remove(ctx context.Context, id uint64) error {
	if f.fail {
		f.fail = false
		return errors.New("controller stopped")
	}
	return f.fakeMembership.Remove(ctx, id)
}

// TestRepairKeepsAMemberHealthyAgainBeforeItsReplacement: a replacement recorded for a member
// unhealthy past the grace period, whose removal did not happen (the controller stopped), is
// dropped when the member answers again by the next Sync: nothing is removed or deleted, and
// an Event says the member is kept. A member that lost its volume is replaced even though it
// answers again (with nothing).
func TestRepairKeepsAMemberHealthyAgainBeforeItsReplacement(t *testing.T) {
	ctx := context.Background()
	inner := healthyCluster(3)
	cluster := &failingRemove{fakeMembership: inner}
	f := newStepsFixture(t, 3, 3, 3, inner)
	f.b.connect = func(*etcdcluster.Access) (membership, error) { return cluster, nil }
	f.withVolumes(t, 3)
	now := time.Unix(1000, 0)
	f.b.health.Now = func() time.Time { return now }
	if res, err := f.b.Sync(ctx, f.inst); err != nil || !res.Converged {
		t.Fatalf("sync: %+v, %v", res, err)
	}

	inner.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
	f.b.Sync(ctx, f.inst)
	now = now.Add(6 * time.Minute)
	cluster.fail = true
	if _, err := f.b.Sync(ctx, f.inst); err == nil || f.annotation(t, annotationReplacement) == "" || len(inner.removed) != 0 {
		t.Fatalf("the replacement should be recorded and its removal failed: %v, removed %v", err, inner.removed)
	}
	inner.statuses[1] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 101, Leader: 100}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || len(inner.removed) != 0 || len(inner.added) != 0 || reasons(res) != "ReplacementCancelled" {
		t.Fatalf("healthy again: %+v, %v, removed %v, added %v", res, err, inner.removed, inner.added)
	}
	if note := res.Events[0].Note; !strings.Contains(note, "Kept member db-1 (ID 65): it is healthy again") {
		t.Fatalf("ReplacementCancelled %q", note)
	}
	if f.annotation(t, annotationReplacement) != "" {
		t.Fatal("the cancelled replacement is still recorded")
	}
	if !f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-1", metav1.GetOptions{}); return err }) ||
		!f.exists(t, func() error {
			_, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, "data-db-1", metav1.GetOptions{})
			return err
		}) {
		t.Fatal("the pod or claim of the member kept was deleted")
	}
	if res, err := f.b.Sync(ctx, f.inst); err != nil || !res.Converged || len(res.Events) != 0 {
		t.Fatalf("after the cancelled replacement: %+v, %v", res, err)
	}

	// db-2 loses its volume, the removal fails, and db-2 answers: replaced all the same.
	if err := f.client.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, "data-db-2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.fail = true
	if _, err := f.b.Sync(ctx, f.inst); err == nil || !strings.Contains(f.annotation(t, annotationReplacement), `"dataLost":true`) {
		t.Fatalf("the lost volume's replacement should be recorded and its removal failed: %v, %s", err, f.annotation(t, annotationReplacement))
	}
	res, err = f.b.Sync(ctx, f.inst)
	if err != nil || !slices.Equal(inner.removed, []uint64{102}) || reasons(res) != "MemberRemoved,MemberAdded" {
		t.Fatalf("lost volume, answering: %+v, %v, removed %v", res, err, inner.removed)
	}
}

// TestLostVolumeIsReplacedBeforeTheRollGoesOn: during a version roll, a member whose volume
// was replaced by an empty one (it answers, with nothing) is replaced before the roll
// restarts another member.
func TestLostVolumeIsReplacedBeforeTheRollGoesOn(t *testing.T) {
	ctx := context.Background()
	f := newRollFixture(t)
	for i := range 3 {
		pvc, err := f.client.CoreV1().PersistentVolumeClaims("ns").Get(ctx, fmt.Sprintf("data-db-%d", i), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pvc.UID, pvc.Status.Phase = types.UID(fmt.Sprintf("claim-%d", i)), corev1.ClaimBound
		if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.inst.Spec.Version = "3.7.2"
	if res := f.sync(t); !res.Converged || f.annotation(t, annotationMemberVolumes) == "" {
		t.Fatalf("before the roll: %+v, volumes %q", res, f.annotation(t, annotationMemberVolumes))
	}
	f.inst.Spec.Version = "3.7.3"
	f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v, want db-2 first", f.deleted)
	}
	f.answer(2, "3.7.3")

	// db-0's claim is replaced by an empty one; its member answers from nothing.
	if err := f.client.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, "data-db-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	empty := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-0", UID: "claim-0-new"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, empty, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res := f.sync(t)
	if !slices.Equal(f.cluster.removed, []uint64{100}) || reasons(res) != "MemberUnhealthy,MemberRemoved,MemberAdded" {
		t.Fatalf("lost volume during the roll: %+v, removed %v", res, f.cluster.removed)
	}
	if !slices.Equal(f.deleted, []string{"db-2", "db-0"}) {
		t.Fatalf("pods deleted %v: the roll restarted a member while db-0 had lost its data", f.deleted)
	}
}

// TestForgetDropsTheInstancesHealthRecords: Forget drops the health clock of the instance's
// members only.
func TestForgetDropsTheInstancesHealthRecords(t *testing.T) {
	f := newStepsFixture(t, 3, 3, 3, healthyCluster(3))
	now := time.Unix(1000, 0)
	f.b.health.Now = func() time.Time { return now }
	// The keys the repair step uses, so that Forget and healthKey cannot drift apart.
	member := f.view(t).healthKey(0x65)
	other := healthKeyPrefix("ns", "db2") + etcdcluster.FormatID(0x65)
	f.b.health.Unhealthy(member)
	f.b.health.Unhealthy(other)
	now = now.Add(time.Hour)
	f.b.Forget("ns", "db")
	if got := f.b.health.Unhealthy(member); got != 0 {
		t.Errorf("ns/db's member unhealthy for %s after Forget", got)
	}
	if got := f.b.health.Unhealthy(other); got != time.Hour {
		t.Errorf("ns/db2's member unhealthy for %s, want 1h: forgotten with ns/db", got)
	}
}

// TestReplacementAddsTheNewMemberOnceTheOldClaimIsGone: a pod started on the old member's
// claim while it is being deleted must not find the new member to join as (it would write the
// new member's log on a volume that goes away, and the pod on the new claim could then never
// start it), so the learner is added only once the old claim and pod are gone.
func TestReplacementAddsTheNewMemberOnceTheOldClaimIsGone(t *testing.T) {
	ctx := context.Background()
	f, cluster := convergedWithVolumes(t)
	// Deleting db-1's claim leaves it being deleted, as the pvc-protection finalizer does
	// while a pod uses it.
	protected := true
	f.client.PrependReactor("delete", "persistentvolumeclaims", func(action k8stesting.Action) (bool, runtime.Object, error) {
		del := action.(k8stesting.DeleteAction)
		if !protected || del.GetName() != "data-db-1" {
			return false, nil, nil
		}
		obj, err := f.client.Tracker().Get(action.GetResource(), del.GetNamespace(), del.GetName())
		if err != nil {
			return false, nil, nil
		}
		pvc := obj.(*corev1.PersistentVolumeClaim).DeepCopy()
		now := metav1.Now()
		pvc.DeletionTimestamp, pvc.Finalizers = &now, []string{"kubernetes.io/pvc-protection"}
		return true, nil, f.client.Tracker().Update(action.GetResource(), pvc, del.GetNamespace())
	})
	// db-1 keeps failing past the grace period: it is replaced.
	cluster.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
	f.b.opts.MemberRepairGracePeriod = time.Nanosecond
	for range 2 {
		if _, err := f.b.Sync(ctx, f.inst); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(cluster.removed, []uint64{101}) || len(cluster.added) != 0 {
		t.Fatalf("while the old claim is being deleted: removed %v, added %v", cluster.removed, cluster.added)
	}
	// A pod the StatefulSet created on it meanwhile is deleted, so that the claim can go.
	early := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "db-1", UID: "pod-1-early"}}
	if _, err := f.client.CoreV1().Pods("ns").Create(ctx, early, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || !strings.Contains(res.Step, "waiting for its old pod and volume claim to go") || len(cluster.added) != 0 {
		t.Fatalf("waiting: %+v, %v, added %v", res, err, cluster.added)
	}
	if f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-1", metav1.GetOptions{}); return err }) {
		t.Fatal("the pod holding the claim being deleted is still there")
	}
	// The claim is gone: the new member is added.
	protected = false
	if err := f.client.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, "data-db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if res, err := f.b.Sync(ctx, f.inst); err != nil || !slices.Equal(cluster.added, []string{fmt.Sprintf(peerURLFormat, 1)}) {
		t.Fatalf("after the old claim went: %+v, %v, added %v", res, err, cluster.added)
	}
}

// repairOff turns member repair off on the fixture's backend (--member-repair-grace-period=0).
func (f *stepsFixture) repairOff() {
	f.b.opts.MemberRepairGracePeriod = -1
	f.b.health.Grace = -1
}

// TestRepairOffReportsAMemberWithoutItsVolumeAsBlocking: with repair off, a member whose
// claim was replaced by an empty one is not replaced: the instance is blocked on it (named,
// with what a person can do), not converged, and no step is taken past it, even though its
// empty pod answers. Once repair is on, it is replaced.
func TestRepairOffReportsAMemberWithoutItsVolumeAsBlocking(t *testing.T) {
	ctx := context.Background()
	f, cluster := convergedWithVolumes(t)
	f.repairOff()
	if err := f.client.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, "data-db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	empty := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-1", UID: "claim-1-new"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, empty, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		res, err := f.b.Sync(ctx, f.inst)
		if err != nil || res.Converged || len(cluster.removed) != 0 || len(res.Events) != 0 {
			t.Fatalf("repair off, db-1 without its volume: %+v, %v, removed %v", res, err, cluster.removed)
		}
		if res.BlockedReason != backend.ReasonMemberRepairDisabled ||
			!strings.Contains(res.Blocked, "nothing replaces member db-1 (its volume claim data-db-1 was replaced by an empty one (UID claim-1-new, was claim-1))") ||
			!strings.Contains(res.Blocked, "kubectl etcdaas recover db") {
			t.Fatalf("blocked: %q (%s)", res.Blocked, res.BlockedReason)
		}
		if !strings.Contains(res.Unhealthy, "db-1: its data is lost: its volume claim data-db-1 was replaced") {
			t.Fatalf("unhealthy: %q", res.Unhealthy)
		}
	}

	// Repair on: the member is replaced at once, as a lost volume is.
	f.b.opts.MemberRepairGracePeriod = backend.DefaultMemberRepairGracePeriod
	f.b.health.Grace = backend.DefaultMemberRepairGracePeriod
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || res.Blocked != "" || !slices.Equal(cluster.removed, []uint64{101}) || !strings.HasPrefix(reasons(res), "MemberUnhealthy,MemberRemoved") {
		t.Fatalf("repair on: %+v, %v, removed %v", res, err, cluster.removed)
	}
}

// TestRepairOffReportsAMemberUnhealthyForLongAsBlocking: with repair off, a member whose pod
// does not serve is waited for during RepairOffDeadline (a restart, a reschedule), then the
// instance is blocked on it; once it serves again the instance converges.
func TestRepairOffReportsAMemberUnhealthyForLongAsBlocking(t *testing.T) {
	ctx := context.Background()
	f, cluster := convergedWithVolumes(t)
	f.repairOff()
	now := time.Unix(1000, 0)
	f.b.health.Now = func() time.Time { return now }

	cluster.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	for _, wait := range []time.Duration{0, backend.RepairOffDeadline} {
		now = now.Add(wait)
		if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || res.Unhealthy == "" {
			t.Fatalf("unhealthy for %s: %+v, %v", wait, res, err)
		}
	}
	now = now.Add(time.Second)
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || len(cluster.removed) != 0 || res.BlockedReason != backend.ReasonMemberRepairDisabled ||
		!strings.Contains(res.Blocked, "nothing replaces member db-1 (unhealthy for longer than 5m0s; Degraded says why)") {
		t.Fatalf("unhealthy past the deadline: %+v, %v, removed %v", res, err, cluster.removed)
	}

	cluster.statuses[1] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 101, Leader: 100}
	if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || !res.Converged {
		t.Fatalf("serving again: %+v, %v", res, err)
	}
}

// TestAMemberSeenHealthyDuringALongStepIsNotReplacedAtItsNextFailure: db-1 fails once, then
// serves all through a scale-up whose learner takes six minutes to serve (the looks of the
// scale-up stop before the repair step); once the scale is done, it fails once more. That is
// a new failure, not one that lasted six minutes: it was seen healthy in between, so it is not
// replaced (it was: a MemberUnhealthy Warning "unhealthy for 6m0s" and its data discarded).
func TestAMemberSeenHealthyDuringALongStepIsNotReplacedAtItsNextFailure(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(3)
	f := newStepsFixture(t, 3, 3, 3, cluster)
	now := time.Unix(1000, 0)
	f.b.health.Now = func() time.Time { return now }
	blip := etcdcluster.EndpointStatus{MemberID: 101, Err: errors.New("linearizable read failed: context deadline exceeded")}
	healthy := cluster.statuses[1]

	cluster.statuses[1] = blip
	if _, err := f.b.Sync(ctx, f.inst); err != nil {
		t.Fatal(err)
	}
	cluster.statuses[1] = healthy
	f.inst.Spec.Replicas = ptr.To[int32](4)
	if res, err := f.b.Sync(ctx, f.inst); err != nil || len(cluster.added) != 1 {
		t.Fatalf("scale-up: %+v, %v", res, err)
	}
	// The learner's pod takes its time; db-1 serves.
	cluster.statuses = append(cluster.statuses, etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")})
	for range 6 {
		now = now.Add(time.Minute)
		if res, err := f.b.Sync(ctx, f.inst); err != nil || res.StepReason != backend.StepAddingMember {
			t.Fatalf("waiting for the learner: %+v, %v", res, err)
		}
	}
	cluster.statuses[3] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 201, Leader: 100, IsLearner: true}
	if _, err := f.b.Sync(ctx, f.inst); err != nil || len(cluster.promoted) != 1 {
		t.Fatalf("promotion: %v, promoted %v", err, cluster.promoted)
	}
	cluster.members[3].IsLearner, cluster.statuses[3].IsLearner = false, false

	cluster.statuses[1] = blip
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || len(cluster.removed) != 0 || len(res.Events) != 0 {
		t.Fatalf("db-1 failing once more: removed %v, %+v, %v", cluster.removed, res, err)
	}
}
