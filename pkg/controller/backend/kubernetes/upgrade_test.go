package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

const (
	oldImage = "gcr.io/etcd-development/etcd:v3.7.2"
	newImage = "gcr.io/etcd-development/etcd:v3.7.3"
)

// rollFixture is a healthy 3-member cluster whose pods run etcd 3.7.2, db-1 leading, and an
// instance asking for 3.7.3; a fake kubelet recreates deleted pods from the StatefulSet's
// template, and the test decides how the restarted member then answers.
type rollFixture struct {
	*stepsFixture
	cluster  *fakeMembership
	clock    time.Time
	deleted  []string
	recreate bool
	created  int
}

func newRollFixture(t *testing.T) *rollFixture {
	t.Helper()
	cluster := healthyCluster(3)
	for i := range cluster.statuses {
		cluster.statuses[i].Leader, cluster.statuses[i].Version = 101, "3.7.2"
	}
	f := &rollFixture{stepsFixture: newStepsFixture(t, 3, 3, 3, cluster), cluster: cluster, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), recreate: true}
	f.b.now = func() time.Time { return f.clock }
	for i := range 3 {
		f.createPod(t, i, oldImage, true)
	}
	f.inst.Spec.Version = "3.7.3"
	return f
}

// createPod creates the pod of member ordinal on image, Ready (the kubelet's readiness probe
// passed) as told, as a controller made it before it recorded resources: with the default
// resources and no record of them.
func (f *rollFixture) createPod(t *testing.T, ordinal int, image string, ready bool) {
	t.Helper()
	template := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "etcd", Image: image,
		Resources: memberResources(testInstance())}}}}
	f.createPodFrom(t, ordinal, template, ready)
}

// createPodFrom creates the pod of member ordinal from template, as the StatefulSet
// controller does, Ready as told.
func (f *rollFixture) createPodFrom(t *testing.T, ordinal int, template corev1.PodTemplateSpec, ready bool) {
	t.Helper()
	f.created++
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("db-%d", ordinal), Labels: etcdaas.MemberLabels("db"),
			Annotations: template.Annotations, UID: types.UID(fmt.Sprintf("uid-%d-%d", ordinal, f.created)), CreationTimestamp: metav1.NewTime(f.clock)},
		Spec: *template.Spec.DeepCopy(),
	}
	if ready {
		pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	if _, err := f.client.CoreV1().Pods("ns").Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// sync runs one Sync, then plays the kubelet: a deleted pod is recorded and, with recreate,
// comes back from the template, its member not answering until the test says.
func (f *rollFixture) sync(t *testing.T) *backend.Result {
	t.Helper()
	ctx := context.Background()
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil {
		t.Fatalf("sync: %v (%+v)", err, res)
	}
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range f.cluster.statuses {
		name := fmt.Sprintf("db-%d", i)
		if _, err := f.client.CoreV1().Pods("ns").Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			continue
		}
		f.deleted = append(f.deleted, name)
		f.cluster.statuses[i] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
		if f.recreate {
			f.createPodFrom(t, i, sts.Spec.Template, false)
		}
	}
	return res
}

// answer makes member ordinal healthy, reporting version, following the current leader; its
// pod passes the readiness probe.
func (f *rollFixture) answer(ordinal int, version string) {
	f.answerUnready(ordinal, version)
	pods := f.client.CoreV1().Pods("ns")
	pod, err := pods.Get(context.Background(), fmt.Sprintf("db-%d", ordinal), metav1.GetOptions{})
	if err != nil {
		return // no pod: only the member's answer changes
	}
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := pods.UpdateStatus(context.Background(), pod, metav1.UpdateOptions{}); err != nil {
		panic(err)
	}
}

// answerUnready makes member ordinal healthy, reporting version, following the current
// leader, before the kubelet's readiness probe passes.
func (f *rollFixture) answerUnready(ordinal int, version string) {
	leader := uint64(101)
	for _, st := range f.cluster.statuses {
		if st.Healthy {
			leader = st.Leader
		}
	}
	f.cluster.statuses[ordinal] = etcdcluster.EndpointStatus{Healthy: true, MemberID: uint64(100 + ordinal), Leader: leader, Version: version}
}

func (f *rollFixture) moveLeader(to int) {
	for i := range f.cluster.statuses {
		f.cluster.statuses[i].Leader = uint64(100 + to)
	}
}

func (f *rollFixture) rollRecord(t *testing.T) string {
	t.Helper()
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return sts.Annotations[annotationRollStep]
}

// TestRollRestartsOneMemberAtATimeLeaderLast follows a roll from 3.7.2 to 3.7.3: followers
// first (highest ordinal first), the leader last after leadership moved away, each restart
// only once the member restarted before is healthy on the new image and reports 3.7.3.
func TestRollRestartsOneMemberAtATimeLeaderLast(t *testing.T) {
	f := newRollFixture(t)

	res := f.sync(t)
	if res.StepReason != backend.StepUpgrading || !strings.Contains(res.Step, "0 of 3 members rolled; restarting member db-2") {
		t.Fatalf("first roll step: %+v", res)
	}
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v, want db-2 (a follower, highest ordinal) first", f.deleted)
	}
	if !strings.Contains(f.rollRecord(t), `"member":"db-2","from":"3.7.2"`) {
		t.Fatalf("roll step record %q", f.rollRecord(t))
	}

	// Gate: db-2 does not answer yet, then answers with the old version: nothing else restarts.
	for _, answer := range []string{"", "3.7.2"} {
		if answer != "" {
			f.answer(2, answer)
		}
		res = f.sync(t)
		if len(f.deleted) != 1 || !strings.Contains(res.Step, "waiting for member db-2") || res.Converged || len(res.Events) != 0 {
			t.Fatalf("db-2 answering %q: restarted %v, %+v", answer, f.deleted, res)
		}
	}

	// db-2 is up to date: recorded, and the next follower restarts on a later sync.
	f.answer(2, "3.7.3")
	res = f.sync(t)
	wantEvents(t, res, backend.Event{Reason: backend.ReasonMemberUpgraded, Note: "Member db-2 runs etcd 3.7.3 (was 3.7.2) on image " + newImage + " with requests cpu=100m memory=128Mi"})
	if !slices.Equal(f.deleted, []string{"db-2", "db-0"}) || !strings.Contains(res.Step, "1 of 3 members rolled; restarting member db-0") {
		t.Fatalf("second roll step: restarted %v, %+v", f.deleted, res)
	}
	if len(f.cluster.movedOff) != 0 {
		t.Fatalf("leadership moved while restarting followers: %v", f.cluster.movedOff)
	}

	// The leader last, after moving leadership away.
	f.answer(0, "3.7.3")
	res = f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2", "db-0", "db-1"}) || !slices.Equal(f.cluster.movedOff, []uint64{101}) {
		t.Fatalf("third roll step: restarted %v, leadership moved off %v", f.deleted, f.cluster.movedOff)
	}
	f.moveLeader(0)
	f.answer(1, "3.7.3")
	res = f.sync(t)
	wantEvents(t, res, backend.Event{Reason: backend.ReasonMemberUpgraded, Note: "Member db-1 (the leader; leadership moved away first) runs etcd 3.7.3 (was 3.7.2) on image " + newImage + " with requests cpu=100m memory=128Mi"})
	if !res.Converged || res.Unhealthy != "" || f.rollRecord(t) != "" {
		t.Fatalf("after the roll: %+v, record %q", res, f.rollRecord(t))
	}
	for _, m := range res.Members {
		if m.Version != "3.7.3" {
			t.Fatalf("member %s reports %q after the roll", m.Name, m.Version)
		}
	}
	res = f.sync(t)
	if !res.Converged || len(f.deleted) != 3 || len(res.Events) != 0 {
		t.Fatalf("a converged instance restarted %v: %+v", f.deleted, res)
	}
}

// TestRollStopsWhenARestartedMemberFails: a member that is not healthy on the new image
// within the step timeout stops the roll with UpgradeFailed (recorded once), naming the
// member and what its pod reports; nothing else restarts; once it recovers the roll goes on.
func TestRollStopsWhenARestartedMemberFails(t *testing.T) {
	f := newRollFixture(t)
	f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v", f.deleted)
	}
	ctx := context.Background()
	pod, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "etcd", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "not found"}}}}
	if _, err := f.client.CoreV1().Pods("ns").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	f.clock = f.clock.Add(DefaultUpgradeStepTimeout - time.Second)
	if res := f.sync(t); res.Stalled != "" || len(res.Events) != 0 {
		t.Fatalf("stalled before the timeout: %+v", res)
	}
	f.clock = f.clock.Add(2 * time.Second)
	res := f.sync(t)
	if res.StalledReason != "UpgradeFailed" || !strings.Contains(res.Stalled, "member db-2 is not up to date 5m1s after its restart") ||
		!strings.Contains(res.Stalled, "ImagePullBackOff") {
		t.Fatalf("failed step: %+v", res)
	}
	if len(res.Events) != 1 || res.Events[0].Reason != backend.ReasonUpgradeFailed || res.Events[0].Type() != backend.EventTypeWarning {
		t.Fatalf("events of the failed step: %+v", res.Events)
	}
	res = f.sync(t)
	if res.Stalled == "" || len(res.Events) != 0 || len(f.deleted) != 1 {
		t.Fatalf("later sync of the failed step: restarted %v, %+v", f.deleted, res)
	}

	// The member comes up after all: the roll goes on.
	f.answer(2, "3.7.3")
	res = f.sync(t)
	if res.Stalled != "" || len(res.Events) != 1 || res.Events[0].Reason != backend.ReasonMemberUpgraded || !slices.Equal(f.deleted, []string{"db-2", "db-0"}) {
		t.Fatalf("after recovering: restarted %v, %+v", f.deleted, res)
	}
}

// TestRollWaitsForEveryMember: no member restarts while another member is unhealthy, except
// an outdated member that is itself the unhealthy one, which goes first.
func TestRollWaitsForEveryMember(t *testing.T) {
	t.Run("another member unhealthy", func(t *testing.T) {
		f := newRollFixture(t)
		ctx := context.Background()
		// db-0 already runs the new image but does not answer.
		if err := f.client.CoreV1().Pods("ns").Delete(ctx, "db-0", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		f.createPod(t, 0, newImage, false)
		f.cluster.statuses[0] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
		res := f.sync(t)
		if len(f.deleted) != 0 || res.StepReason == backend.StepUpgrading || res.Unhealthy == "" {
			t.Fatalf("restarted %v with db-0 unhealthy: %+v", f.deleted, res)
		}
	})
	t.Run("the unhealthy member is outdated", func(t *testing.T) {
		f := newRollFixture(t)
		f.cluster.statuses[0] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
		f.sync(t)
		if !slices.Equal(f.deleted, []string{"db-0"}) {
			t.Fatalf("restarted %v, want the unhealthy outdated db-0 first", f.deleted)
		}
	})
}

// TestRollResumesAndFollowsSpecChanges: a step recorded by a controller that stopped before
// deleting the pod is finished; a spec.version change in the middle starts over toward the
// new image.
func TestRollResumesAndFollowsSpecChanges(t *testing.T) {
	f := newRollFixture(t)
	ctx := context.Background()
	v := f.view(t)
	if err := f.b.setTemplate(ctx, v); err != nil {
		t.Fatal(err)
	}
	step := &rollStep{Member: "db-2", From: "3.7.2", Image: newImage, Started: metav1.NewTime(f.clock.Add(time.Second))}
	if err := f.b.writeRollStep(ctx, v, step); err != nil {
		t.Fatal(err)
	}
	f.clock = f.clock.Add(2 * time.Second)
	res := f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2"}) || !strings.Contains(res.Step, "restarting member db-2") {
		t.Fatalf("resumed step: restarted %v, %+v", f.deleted, res)
	}

	// Back to 3.7.2 while db-2 restarts on 3.7.3: the superseded record is dropped and
	// db-2, now the only outdated member (and not answering), is restarted on 3.7.2.
	f.inst.Spec.Version = "3.7.2"
	res = f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2", "db-2"}) || !strings.Contains(f.rollRecord(t), oldImage) {
		t.Fatalf("after going back: restarted %v, record %q, %+v", f.deleted, f.rollRecord(t), res)
	}
}

func TestReleaseOfSpecVersion(t *testing.T) {
	b, err := New(Options{Client: newStepsFixture(t, 1, 1, 1, healthyCluster(1)).client, Image: "registry.local/etcd:{tag}-x"})
	if err != nil {
		t.Fatal(err)
	}
	for version, want := range map[string][2]string{
		"":      {"registry.local/etcd:v3.7.3-x", "3.7.3"},
		"3.7":   {"registry.local/etcd:v3.7.3-x", "3.7.3"},
		"3.7.2": {"registry.local/etcd:v3.7.2-x", "3.7.2"},
		"3.6":   {"registry.local/etcd:v3.6.5-x", "3.6.5"},
	} {
		inst := testInstance()
		inst.Spec.Version = version
		image, err1 := b.Image(inst)
		release, err2 := b.Release(inst)
		if err1 != nil || err2 != nil || image != want[0] || release != want[1] {
			t.Errorf("%q: image %q (%v), release %q (%v); want %v", version, image, err1, release, err2, want)
		}
	}
	inst := testInstance()
	inst.Spec.Version = "3.4"
	if _, err := b.Image(inst); err == nil {
		t.Error("3.4 has an image")
	}
}

// An upgrade step record that cannot be read is dropped; the roll goes on from what the
// members and pods show.
func TestRollDropsAnUnreadableRecord(t *testing.T) {
	f := newRollFixture(t)
	ctx := context.Background()
	v := f.view(t)
	sts := v.sts.DeepCopy()
	sts.Annotations[annotationRollStep] = "{not json"
	if _, err := f.client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res := f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2"}) || !strings.Contains(f.rollRecord(t), `"member":"db-2"`) {
		t.Fatalf("after an unreadable record: restarted %v, record %q, %+v", f.deleted, f.rollRecord(t), res)
	}
}

// A single-member instance has no member ready while its only member restarts: the step is
// still the upgrade (phase Running), and it fails after the step timeout like any other.
func TestRollOfASingleMember(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(1)
	cluster.statuses[0].Version = "3.7.2"
	f := &rollFixture{stepsFixture: newStepsFixture(t, 1, 1, 1, cluster), cluster: cluster, clock: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), recreate: true}
	f.b.now = func() time.Time { return f.clock }
	f.createPod(t, 0, oldImage, true)
	f.inst.Spec.Version = "3.7.3"
	f.inst.Spec.Replicas = ptr.To[int32](1)

	res := f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-0"}) || len(cluster.movedOff) != 0 {
		t.Fatalf("restarted %v, moved leadership off %v: %+v", f.deleted, cluster.movedOff, res)
	}
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts.Status.ReadyReplicas = 0
	if _, err := f.client.AppsV1().StatefulSets("ns").UpdateStatus(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	res = f.sync(t)
	if res.StepReason != backend.StepUpgrading || !strings.Contains(res.Step, "waiting for member db-0 to start") || res.Stalled != "" {
		t.Fatalf("single member restarting: %+v", res)
	}
	f.clock = f.clock.Add(DefaultUpgradeStepTimeout + time.Second)
	res = f.sync(t)
	if res.StalledReason != "UpgradeFailed" || !strings.Contains(res.Stalled, "member db-0 is not up to date") || len(res.Events) != 1 {
		t.Fatalf("single member not back in time: %+v", res)
	}

	// Back and up to date: MemberUpgraded, converged.
	sts, err = f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts.Status.ReadyReplicas = 1
	if _, err := f.client.AppsV1().StatefulSets("ns").UpdateStatus(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.answer(0, "3.7.3")
	f.cluster.statuses[0].Leader = 100
	res = f.sync(t)
	if len(res.Events) != 1 || res.Events[0].Reason != backend.ReasonMemberUpgraded || !res.Converged {
		t.Fatalf("single member back: %+v", res)
	}
}

// TestRollWaitsForTheRestartedPodToBeReady: a restarted member that serves on the new release
// before its pod passes the readiness probe is not upgraded yet: the roll's step stays under
// way (phase Running) instead of the instance looking unconverged with nothing to do. Once
// the pod is Ready the roll is done and the instance converged, even while the StatefulSet's
// status still counts the pod unready.
func TestRollWaitsForTheRestartedPodToBeReady(t *testing.T) {
	ctx := context.Background()
	f := newRollFixture(t)
	f.sync(t)
	f.answer(2, "3.7.3")
	f.sync(t)
	f.answer(0, "3.7.3")
	f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2", "db-0", "db-1"}) {
		t.Fatalf("restarted %v, want db-2, db-0, then the leader db-1", f.deleted)
	}
	f.moveLeader(0)
	f.answerUnready(1, "3.7.3")
	res := f.sync(t)
	if res.StepReason != backend.StepUpgrading || !strings.Contains(res.Step, "waiting for member db-1: its pod is not Ready yet") || res.Converged || reasons(res) != "" {
		t.Fatalf("db-1 serves, its pod not Ready: %+v", res)
	}
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts.Status.ReadyReplicas = 2 // the StatefulSet controller has not counted db-1 yet
	if _, err := f.client.AppsV1().StatefulSets("ns").UpdateStatus(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.answer(1, "3.7.3")
	res = f.sync(t)
	if reasons(res) != "MemberUpgraded" || !res.Converged || res.Step != "" {
		t.Fatalf("db-1's pod Ready: %+v", res)
	}
}

// TestRollStepSurvivesAConflictingStatefulSetUpdate: the StatefulSet controller writes the
// StatefulSet's status as a restarted pod turns Ready, so the update that ends a roll step can
// lose that race: it is applied again to the StatefulSet read anew, the step ends once (one
// MemberUpgraded) and the roll goes on, the status written meanwhile kept.
func TestRollStepSurvivesAConflictingStatefulSetUpdate(t *testing.T) {
	ctx := context.Background()
	f := newRollFixture(t)
	f.sync(t)
	f.answer(2, "3.7.3")
	conflicts := 0
	f.client.PrependReactor("update", "statefulsets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "" || conflicts > 0 {
			return false, nil, nil
		}
		conflicts++
		// The StatefulSet controller counted the pod meanwhile.
		sts, err := f.client.Tracker().Get(action.GetResource(), "ns", "db")
		if err != nil {
			return true, nil, err
		}
		counted := sts.(*appsv1.StatefulSet).DeepCopy()
		counted.Status.ObservedGeneration = 42
		if err := f.client.Tracker().Update(action.GetResource(), counted, "ns"); err != nil {
			return true, nil, err
		}
		return true, nil, apierrors.NewConflict(action.GetResource().GroupResource(), "db", errors.New("the object has been modified"))
	})
	res := f.sync(t)
	if conflicts != 1 || reasons(res) != "MemberUpgraded" || !slices.Equal(f.deleted, []string{"db-2", "db-0"}) {
		t.Fatalf("conflicts %d, restarted %v: %+v", conflicts, f.deleted, res)
	}
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sts.Status.ObservedGeneration != 42 || !strings.Contains(sts.Annotations[annotationRollStep], `"member":"db-0"`) {
		t.Fatalf("after the conflict: status %+v, roll step %q", sts.Status, sts.Annotations[annotationRollStep])
	}
}

// failStatefulSetUpdateOnce makes the next update of the StatefulSet fail with a server
// timeout, an error the update is not retried on.
func failStatefulSetUpdateOnce(f *stepsFixture) {
	armed := true
	f.client.PrependReactor("update", "statefulsets", func(action k8stesting.Action) (bool, runtime.Object, error) {
		if !armed || action.GetSubresource() != "" {
			return false, nil, nil
		}
		armed = false
		return true, nil, apierrors.NewServerTimeout(action.GetResource().GroupResource(), "update", 1)
	})
}

// TestRollStepEventsAreRecordedOnceTheStepIsWritten: a roll step that ends (MemberUpgraded)
// or fails (UpgradeFailed) is recorded on the StatefulSet; a look whose write of that record
// fails once records no Event, and the next look, which finds the step as it was, records it
// once. Before, the first look's Event was recorded anyway and the second recorded it again:
// two MemberUpgraded Events for one member (two UpgradeFailed Warnings for one failure).
func TestRollStepEventsAreRecordedOnceTheStepIsWritten(t *testing.T) {
	ctx := context.Background()
	f := newRollFixture(t)
	f.sync(t)
	f.answer(2, "3.7.3")
	failStatefulSetUpdateOnce(f.stepsFixture)
	res, err := f.b.Sync(ctx, f.inst)
	if err == nil || len(res.Events) != 0 {
		t.Fatalf("a look whose write of the step's end fails: %v, events %+v", err, res.Events)
	}
	if res := f.sync(t); reasons(res) != "MemberUpgraded" || !slices.Equal(f.deleted, []string{"db-2", "db-0"}) {
		t.Fatalf("the next look: restarted %v, %+v", f.deleted, res)
	}

	// db-0 does not come back: the step fails once its timeout is past.
	f.clock = f.clock.Add(DefaultUpgradeStepTimeout + time.Second)
	failStatefulSetUpdateOnce(f.stepsFixture)
	res, err = f.b.Sync(ctx, f.inst)
	if err == nil || len(res.Events) != 0 {
		t.Fatalf("a look whose write of the failed step fails: %v, events %+v", err, res.Events)
	}
	if res := f.sync(t); reasons(res) != "UpgradeFailed" || res.Stalled == "" {
		t.Fatalf("the next look: %+v", res)
	}
	if res := f.sync(t); len(res.Events) != 0 || res.Stalled == "" {
		t.Fatalf("a later look: %+v", res)
	}
}
