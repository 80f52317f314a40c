package kubernetes

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

func list(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func specList(kv ...string) map[string]resource.Quantity {
	out := map[string]resource.Quantity{}
	for name, q := range list(kv...) {
		out[string(name)] = q
	}
	return out
}

// TestMemberPodTemplateResources: the member container gets spec.resources; a resource it
// names in neither requests nor limits keeps the default request, one with a limit only gets
// a request equal to it (as the API server would give the pod), and the template records
// what it asks for.
func TestMemberPodTemplateResources(t *testing.T) {
	b, err := New(Options{Client: newStepsFixture(t, 1, 1, 1, healthyCluster(1)).client})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		spec *v1beta1.MemberResources
		want corev1.ResourceRequirements
	}{
		"absent: today's requests, no limits": {nil, corev1.ResourceRequirements{Requests: list("cpu", "100m", "memory", "128Mi")}},
		"empty":                               {&v1beta1.MemberResources{}, corev1.ResourceRequirements{Requests: list("cpu", "100m", "memory", "128Mi")}},
		"cpu request only": {&v1beta1.MemberResources{Requests: specList("cpu", "2")},
			corev1.ResourceRequirements{Requests: list("cpu", "2", "memory", "128Mi")}},
		"memory limit only": {&v1beta1.MemberResources{Limits: specList("memory", "1Gi")},
			corev1.ResourceRequirements{Requests: list("cpu", "100m", "memory", "1Gi"), Limits: list("memory", "1Gi")}},
		"requests and limits": {&v1beta1.MemberResources{Requests: specList("cpu", "500m", "memory", "512Mi", "ephemeral-storage", "1Gi"), Limits: specList("cpu", "1", "memory", "1Gi")},
			corev1.ResourceRequirements{Requests: list("cpu", "500m", "memory", "512Mi", "ephemeral-storage", "1Gi"), Limits: list("cpu", "1", "memory", "1Gi")}},
		"a request of zero stays": {&v1beta1.MemberResources{Requests: specList("cpu", "0")},
			corev1.ResourceRequirements{Requests: list("cpu", "0", "memory", "128Mi")}},
	} {
		t.Run(name, func(t *testing.T) {
			inst := testInstance()
			inst.Spec.Resources = tc.spec
			sts := b.statefulSet(inst, newImage, memberConfig{replicas: 1})
			got := sts.Spec.Template.Spec.Containers[0].Resources
			if !apiequality.Semantic.DeepEqual(got, tc.want) {
				t.Fatalf("resources %+v, want %+v", got, tc.want)
			}
			if record := sts.Spec.Template.Annotations[annotationPodResources]; record != resourcesRecord(tc.want) {
				t.Fatalf("template records %q, want %q", record, resourcesRecord(tc.want))
			}
		})
	}
}

// newResourcesRollFixture is a healthy 3-member cluster on etcd 3.7.3 (db-1 leading) whose
// pods were made before resources were recorded (defaults, no record), and an instance
// asking for 3.7.3 with resources.
func newResourcesRollFixture(t *testing.T, resources *v1beta1.MemberResources) *rollFixture {
	t.Helper()
	f := newRollFixture(t)
	ctx := context.Background()
	for i := range 3 {
		if err := f.client.CoreV1().Pods("ns").Delete(ctx, podName(i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		f.createPod(t, i, newImage, true)
		f.cluster.statuses[i].Version = "3.7.3"
	}
	f.inst.Spec.Resources = resources
	return f
}

func podName(ordinal int) string { return backend.MemberName("db", ordinal) }

// pod returns the pod of member ordinal.
func (f *rollFixture) pod(t *testing.T, ordinal int) *corev1.Pod {
	t.Helper()
	pod, err := f.client.CoreV1().Pods("ns").Get(context.Background(), podName(ordinal), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pod
}

var bigger = &v1beta1.MemberResources{Requests: specList("cpu", "500m"), Limits: specList("memory", "1Gi")}

const biggerText = "requests cpu=500m memory=1Gi, limits memory=1Gi"

// TestRollOnAResourcesChange: a change of spec.resources alone rolls the members as a
// version change does: one at a time, followers first and the leader last after moving
// leadership away, each once the member before is healthy again in a pod with the new
// resources; then nothing restarts any more.
func TestRollOnAResourcesChange(t *testing.T) {
	f := newResourcesRollFixture(t, bigger)
	res := f.sync(t)
	if res.StepReason != backend.StepUpgrading || !strings.Contains(res.Step, "rolling the members to etcd 3.7.3 (image "+newImage+") with "+biggerText+": 0 of 3 members rolled; restarting member db-2") {
		t.Fatalf("first step: %+v", res)
	}
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v, want db-2 first", f.deleted)
	}
	if got := f.pod(t, 2).Spec.Containers[0].Resources; !apiequality.Semantic.DeepEqual(got.Limits, list("memory", "1Gi")) ||
		!apiequality.Semantic.DeepEqual(got.Requests, list("cpu", "500m", "memory", "1Gi")) {
		t.Fatalf("db-2's new pod has %+v", got)
	}
	res = f.sync(t)
	if len(f.deleted) != 1 || !strings.Contains(res.Step, "waiting for member db-2") {
		t.Fatalf("db-2 not back: restarted %v, %+v", f.deleted, res)
	}
	f.answer(2, "3.7.3")
	res = f.sync(t)
	wantEvents(t, res, backend.Event{Reason: backend.ReasonMemberUpgraded, Note: "Member db-2 runs etcd 3.7.3 (was 3.7.3) on image " + newImage + " with " + biggerText})
	f.answer(0, "3.7.3")
	f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2", "db-0", "db-1"}) || !slices.Equal(f.cluster.movedOff, []uint64{101}) {
		t.Fatalf("restarted %v, leadership moved off %v", f.deleted, f.cluster.movedOff)
	}
	f.moveLeader(0)
	f.answer(1, "3.7.3")
	res = f.sync(t)
	if !res.Converged || reasons(res) != "MemberUpgraded" || f.rollRecord(t) != "" {
		t.Fatalf("after the roll: %+v", res)
	}
	for i := range 3 {
		if got := f.pod(t, i).Spec.Containers[0].Resources.Limits; !apiequality.Semantic.DeepEqual(got, list("memory", "1Gi")) {
			t.Fatalf("db-%d limits %v after the roll", i, got)
		}
	}
	if res = f.sync(t); !res.Converged || len(f.deleted) != 3 {
		t.Fatalf("a rolled instance restarted %v: %+v", f.deleted, res)
	}
}

// TestOneRollForVersionAndResources: spec.version and spec.resources changed together
// restart each member once, onto both.
func TestOneRollForVersionAndResources(t *testing.T) {
	f := newRollFixture(t) // pods on 3.7.2, spec 3.7.3
	f.inst.Spec.Resources = bigger
	f.sync(t)
	for _, next := range []int{2, 0} {
		f.answer(next, "3.7.3")
		f.sync(t)
	}
	f.moveLeader(0)
	f.answer(1, "3.7.3")
	res := f.sync(t)
	if !res.Converged || !slices.Equal(f.deleted, []string{"db-2", "db-0", "db-1"}) {
		t.Fatalf("restarted %v: %+v", f.deleted, res)
	}
	for i := range 3 {
		pod := f.pod(t, i)
		if pod.Spec.Containers[0].Image != newImage || !apiequality.Semantic.DeepEqual(pod.Spec.Containers[0].Resources.Limits, list("memory", "1Gi")) {
			t.Fatalf("db-%d after the roll: %s %+v", i, pod.Spec.Containers[0].Image, pod.Spec.Containers[0].Resources)
		}
	}
}

// TestNoRollForPodsOfTheSameResources: pods made before resources were recorded, for an
// instance without spec.resources, are not restarted (a controller upgrade rolls nothing);
// nor are pods whose containers a LimitRange gave more than the template has, since what
// counts is the template's record they were made with.
func TestNoRollForPodsOfTheSameResources(t *testing.T) {
	t.Run("made before the record", func(t *testing.T) {
		f := newResourcesRollFixture(t, nil)
		if res := f.sync(t); len(f.deleted) != 0 || !res.Converged || res.StepReason == backend.StepUpgrading {
			t.Fatalf("restarted %v: %+v", f.deleted, res)
		}
	})
	t.Run("limits added by a LimitRange", func(t *testing.T) {
		f := newResourcesRollFixture(t, bigger)
		f.sync(t)
		f.answer(2, "3.7.3")
		ctx := context.Background()
		pod := f.pod(t, 2)
		pod.Spec.Containers[0].Resources.Limits["cpu"] = resource.MustParse("2")
		if _, err := f.client.CoreV1().Pods("ns").Update(ctx, pod, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		f.sync(t)
		if !slices.Equal(f.deleted, []string{"db-2", "db-0"}) {
			t.Fatalf("restarted %v, want db-2 done and db-0 next", f.deleted)
		}
	})
}

// TestRollFollowsAResourcesChangeMidStep: spec.resources changed while a member restarts
// drops the superseded step and restarts that member again toward the new resources; the
// timeout then counts from that restart.
func TestRollFollowsAResourcesChangeMidStep(t *testing.T) {
	f := newResourcesRollFixture(t, bigger)
	f.sync(t)
	if !strings.Contains(f.rollRecord(t), `"member":"db-2"`) {
		t.Fatalf("record %q", f.rollRecord(t))
	}
	f.inst.Spec.Resources = &v1beta1.MemberResources{Requests: specList("memory", "2Gi")}
	res := f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2", "db-2"}) || !strings.Contains(res.Step, "requests cpu=100m memory=2Gi") {
		t.Fatalf("after the change: restarted %v, %+v", f.deleted, res)
	}
	if got := f.pod(t, 2).Spec.Containers[0].Resources.Requests; !apiequality.Semantic.DeepEqual(got, list("cpu", "100m", "memory", "2Gi")) {
		t.Fatalf("db-2 requests %v", got)
	}
}

// TestResourcesRecordIsCanonical: one set of resources written two ways records alike.
func TestResourcesRecordIsCanonical(t *testing.T) {
	a := corev1.ResourceRequirements{Requests: list("cpu", "1000m", "memory", "1024Mi")}
	b := corev1.ResourceRequirements{Requests: list("memory", "1Gi", "cpu", "1"), Limits: corev1.ResourceList{}}
	if resourcesRecord(a) != resourcesRecord(b) {
		t.Fatalf("%s != %s", resourcesRecord(a), resourcesRecord(b))
	}
	if describeRecord(resourcesRecord(a)) != "requests cpu=1 memory=1Gi" {
		t.Fatalf("described as %q", describeRecord(resourcesRecord(a)))
	}
}

// TestRollStopsWithWhyThePodIsRefused: a LimitRange (or a ResourceQuota) that refuses the
// new resources leaves the restarted member without a pod, the StatefulSet controller
// saying why in a FailedCreate Event; UpgradeFailed quotes that refusal instead of only
// "its pod is being recreated".
func TestRollStopsWithWhyThePodIsRefused(t *testing.T) {
	f := newResourcesRollFixture(t, bigger)
	f.recreate = false
	f.sync(t)
	if !slices.Equal(f.deleted, []string{"db-2"}) {
		t.Fatalf("restarted %v", f.deleted)
	}
	refusal := `pods "db-2" is forbidden: maximum memory usage per Container is 512Mi, but limit is 1Gi`
	event := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: "ns", Name: "db.1"},
		InvolvedObject: corev1.ObjectReference{Kind: "StatefulSet", Namespace: "ns", Name: "db", APIVersion: "apps/v1"},
		Reason:         "FailedCreate", Type: corev1.EventTypeWarning,
		Message:       "create Pod db-2 in StatefulSet db failed error: " + refusal,
		LastTimestamp: metav1.NewTime(f.clock.Add(DefaultUpgradeStepTimeout)),
	}
	if _, err := f.client.CoreV1().Events("ns").Create(context.Background(), event, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.clock = f.clock.Add(DefaultUpgradeStepTimeout + time.Second)
	res := f.sync(t)
	if res.StalledReason != "UpgradeFailed" || !strings.Contains(res.Stalled, "member db-2: its pod cannot be created: "+refusal) {
		t.Fatalf("failed step: %+v", res)
	}
}
