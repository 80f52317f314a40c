package controller

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/events"
	"k8s.io/component-base/metrics/legacyregistry"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/fake"
	typedv1beta1 "github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned/typed/etcdaas/v1beta1"
)

func members(n, ready int) []v1beta1.MemberStatus {
	var out []v1beta1.MemberStatus
	for i := range n {
		out = append(out, v1beta1.MemberStatus{Name: "m-" + string(rune('0'+i)), Ready: i < ready})
	}
	return out
}

func cond(t *testing.T, st v1beta1.ETCDInstanceStatus, typ string) metav1.Condition {
	t.Helper()
	c := meta.FindStatusCondition(st.Conditions, typ)
	if c == nil {
		t.Fatalf("no %s condition in %+v", typ, st.Conditions)
	}
	return *c
}

func TestComputeStatus(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	t2 := metav1.NewTime(t1.Add(time.Minute))
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 4},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}
	st := statusWhileDeploying(t, inst, t0, t1)
	st = statusWhileScaling(t, inst, st, t1, t2)
	st = statusWithUnhealthyMembers(t, inst, st, t1, t2)
	checkStatusOfARunningCluster(t, inst, t2)
	checkStatusAfterFailedSteps(t, inst, t2)
	checkStatusOnErrors(t, inst, st, t2)
}

// statusWhileDeploying checks the status of the first step of a deployment, then once converged;
// it returns the converged status.
func statusWhileDeploying(t *testing.T, inst *v1beta1.ETCDInstance, t0, t1 metav1.Time) v1beta1.ETCDInstanceStatus {
	// First step of a deployment.
	st := computeStatus(inst, &backend.Result{Members: members(1, 0), Step: "starting the first member db-0", StepReason: "Deploying"}, nil, t0)
	if st.Phase != v1beta1.PhaseDeploying || st.ObservedGeneration != 4 || st.Replicas != 1 || st.ReadyReplicas != 0 {
		t.Fatalf("deploying: %+v", st)
	}
	if st.Selector != etcdaas.MemberSelector("db") {
		t.Fatalf("selector %q", st.Selector)
	}
	if c := cond(t, st, etcdaas.ConditionAvailable); c.Status != metav1.ConditionFalse || c.Reason != ReasonDeploying ||
		c.Message != "0/1 members ready, 3 requested; the new cluster is still being deployed" {
		t.Fatalf("available while deploying: %+v", c)
	}
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Status != metav1.ConditionTrue || c.Reason != "Deploying" || c.Message != "starting the first member db-0" {
		t.Fatalf("progressing while deploying: %+v", c)
	}

	// Converged.
	inst.Status = st
	st = computeStatus(inst, &backend.Result{Members: members(3, 3), Converged: true}, nil, t1)
	if st.Phase != v1beta1.PhaseRunning || st.ReadyReplicas != 3 {
		t.Fatalf("running: %+v", st)
	}
	avail := cond(t, st, etcdaas.ConditionAvailable)
	if avail.Status != metav1.ConditionTrue || avail.Message != "3/3 members ready" || !avail.LastTransitionTime.Equal(&t1) {
		t.Fatalf("available when running: %+v", avail)
	}
	if c := cond(t, st, etcdaas.ConditionDegraded); c.Status != metav1.ConditionFalse {
		t.Fatalf("degraded when running: %+v", c)
	}
	return st
}

// statusWhileScaling checks the status of a running cluster (st) scaled to 5 at generation 5;
// it returns that status.
func statusWhileScaling(t *testing.T, inst *v1beta1.ETCDInstance, st v1beta1.ETCDInstanceStatus, t1, t2 metav1.Time) v1beta1.ETCDInstanceStatus {
	// Scaling to 5 from a running cluster: still available, progressing, phase Scaling; the
	// Available condition keeps its transition time.
	inst.Status = st
	inst.Spec.Replicas = ptr.To[int32](5)
	inst.Generation = 5
	st = computeStatus(inst, &backend.Result{Members: members(4, 4), Step: "added member db-3", StepReason: "AddingMember"}, nil, t2)
	if st.Phase != v1beta1.PhaseScaling || st.ObservedGeneration != 5 {
		t.Fatalf("scaling: %+v", st)
	}
	// Available: every member that exists is ready; the message says so, and what the spec
	// asks for.
	avail := cond(t, st, etcdaas.ConditionAvailable)
	if avail.Status != metav1.ConditionTrue || avail.Message != "4/4 members ready, 5 requested" || !avail.LastTransitionTime.Equal(&t1) || avail.ObservedGeneration != 5 {
		t.Fatalf("available while scaling: %+v", avail)
	}
	// The first status at the new generation does not claim convergence: kubectl wait
	// --for=condition=Progressing=False waits on.
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Status != metav1.ConditionTrue || c.Reason != "AddingMember" || c.ObservedGeneration != 5 {
		t.Fatalf("progressing at the new generation: %+v", c)
	}
	return st
}

// statusWithUnhealthyMembers checks the status of a cluster (st) with members down, a quorum
// of them or not, and with a learner that does not serve yet; it returns the status with one
// member down.
func statusWithUnhealthyMembers(t *testing.T, inst *v1beta1.ETCDInstance, st v1beta1.ETCDInstanceStatus, t1, t2 metav1.Time) v1beta1.ETCDInstanceStatus {
	// A member fails: degraded, still available while a quorum of the voting members serves.
	inst.Status = st
	st = computeStatus(inst, &backend.Result{Members: members(4, 3), Unhealthy: "unhealthy members: db-2: connection refused"}, nil, t2)
	if c := cond(t, st, etcdaas.ConditionDegraded); c.Status != metav1.ConditionTrue || c.Reason != ReasonMemberUnhealthy {
		t.Fatalf("degraded with an unhealthy member: %+v", c)
	}
	if c := cond(t, st, etcdaas.ConditionAvailable); c.Status != metav1.ConditionTrue || c.Reason != ReasonQuorumReady ||
		c.Message != "3/4 members ready, 5 requested; a quorum of the voting members (3 of 4) ready" || !c.LastTransitionTime.Equal(&t1) {
		t.Fatalf("available with an unhealthy member: %+v", c)
	}
	// Half of the voting members down: no quorum to answer clients, not available.
	if c := cond(t, computeStatus(inst, &backend.Result{Members: members(4, 2), Unhealthy: "unhealthy members: db-2, db-3"}, nil, t2),
		etcdaas.ConditionAvailable); c.Status != metav1.ConditionFalse || c.Reason != ReasonMembersNotReady ||
		c.Message != "2/4 members ready, 5 requested; fewer than a quorum of the voting members (2 of 4) ready" {
		t.Fatalf("available with half the voting members down: %+v", c)
	}
	// A learner being added that does not serve yet: every voting member serves.
	learning := append(members(3, 3), v1beta1.MemberStatus{Name: "m-3", Learner: true})
	if c := cond(t, computeStatus(inst, &backend.Result{Members: learning, Step: "promoting member m-3", StepReason: backend.StepAddingMember}, nil, t2),
		etcdaas.ConditionAvailable); c.Status != metav1.ConditionTrue || c.Reason != ReasonMembersReady || c.Message != "3/4 members ready, 5 requested" {
		t.Fatalf("available while a learner starts: %+v", c)
	}
	return st
}

// checkStatusOfARunningCluster checks the phase and conditions of a scale settling, a member
// down, a version roll, a roll that stopped, and a quorum lost.
func checkStatusOfARunningCluster(t *testing.T, inst *v1beta1.ETCDInstance, t2 metav1.Time) {
	// Every member of the scale exists, the last one added does not serve yet: still Scaling,
	// not Deploying, until the members converge.
	inst.Status = computeStatus(inst, &backend.Result{Members: members(5, 4), Step: "added member db-4", StepReason: backend.StepAddingMember}, nil, t2)
	settling := computeStatus(inst, &backend.Result{Members: members(5, 4), Unhealthy: "unhealthy members: m-4: not answering"}, nil, t2)
	if settling.Phase != v1beta1.PhaseScaling {
		t.Fatalf("phase while the last member added settles: %+v", settling)
	}
	// A member of a running cluster stops answering: still Running (the cluster serves), not
	// Deploying; Degraded and Available say what is wrong.
	running := inst.DeepCopy()
	running.Status = computeStatus(inst, &backend.Result{Members: members(5, 5), Converged: true}, nil, t2)
	down := computeStatus(running, &backend.Result{Members: members(5, 4), Unhealthy: "unhealthy members: m-2: connection refused"}, nil, t2)
	if down.Phase != v1beta1.PhaseRunning {
		t.Fatalf("phase of a running cluster with a member down: %+v", down)
	}
	if c := cond(t, down, etcdaas.ConditionDegraded); c.Status != metav1.ConditionTrue || c.Reason != ReasonMemberUnhealthy {
		t.Fatalf("degraded with a member down: %+v", c)
	}
	if c := cond(t, down, etcdaas.ConditionAvailable); c.Status != metav1.ConditionTrue || c.Reason != ReasonQuorumReady {
		t.Fatalf("available with a member down, quorum kept: %+v", c)
	}

	// A version roll: Running (members restart one at a time, the cluster serves),
	// progressing with the roll's progress.
	rolling := computeStatus(inst, &backend.Result{Members: members(5, 4), Step: "upgrading to etcd 3.7.3: 1 of 5 members upgraded; restarting member db-3",
		StepReason: backend.StepUpgrading}, nil, t2)
	if rolling.Phase != v1beta1.PhaseRunning {
		t.Fatalf("phase while upgrading: %+v", rolling)
	}
	if c := cond(t, rolling, etcdaas.ConditionProgressing); c.Status != metav1.ConditionTrue || c.Reason != "Upgrading" || !strings.Contains(c.Message, "1 of 5 members upgraded") {
		t.Fatalf("progressing while upgrading: %+v", c)
	}
	// A roll that stopped: degraded with the reason and the member, no longer progressing.
	stopped := computeStatus(inst, &backend.Result{Members: members(5, 4), Step: "upgrading to etcd 3.7.3; waiting for member db-3", StepReason: backend.StepUpgrading,
		Unhealthy: "unhealthy members: db-3: connection refused", Stalled: "the upgrade stopped: member db-3 is not up to date 5m0s after its restart", StalledReason: "UpgradeFailed"}, nil, t2)
	if c := cond(t, stopped, etcdaas.ConditionDegraded); c.Status != metav1.ConditionTrue || c.Reason != "UpgradeFailed" || !strings.Contains(c.Message, "member db-3") {
		t.Fatalf("degraded after a failed upgrade step: %+v", c)
	}
	if c := cond(t, stopped, etcdaas.ConditionProgressing); c.Status != metav1.ConditionFalse || c.Reason != "UpgradeFailed" {
		t.Fatalf("progressing after a failed upgrade step: %+v", c)
	}

	// Quorum lost: Failed, and the conditions say so and what a person can do.
	lost := computeStatus(inst, &backend.Result{Members: members(3, 0), Unhealthy: "unhealthy members: m-1: not answering",
		QuorumLost: "quorum lost: 2 of 3 voting members do not answer (m-1, m-2); 2 are needed"}, nil, t2)
	if lost.Phase != v1beta1.PhaseFailed {
		t.Fatalf("phase after quorum loss: %+v", lost)
	}
	if c := cond(t, lost, etcdaas.ConditionDegraded); c.Status != metav1.ConditionTrue || c.Reason != ReasonQuorumLost || !strings.Contains(c.Message, "(m-1, m-2)") || !strings.Contains(c.Message, "m-1: not answering") {
		t.Fatalf("degraded after quorum loss: %+v", c)
	}
	if c := cond(t, lost, etcdaas.ConditionProgressing); c.Status != metav1.ConditionFalse || !strings.Contains(c.Message, "etcdinstances/db/recover") {
		t.Fatalf("progressing after quorum loss: %+v", c)
	}
}

// checkStatusAfterFailedSteps checks the status of a running instance whose step failed.
func checkStatusAfterFailedSteps(t *testing.T, inst *v1beta1.ETCDInstance, t2 metav1.Time) {
	// A step of a running instance fails (an update conflict, retried): still Running,
	// Degraded says why.
	inst.Status = computeStatus(inst, &backend.Result{Members: members(5, 5), Converged: true}, nil, t2)
	failed := computeStatus(inst, &backend.Result{Members: members(5, 4)}, errors.New(`Operation cannot be fulfilled on statefulsets.apps "db": the object has been modified`), t2)
	if failed.Phase != v1beta1.PhaseRunning {
		t.Fatalf("phase of a running instance after a failed step: %+v", failed)
	}
	if c := cond(t, failed, etcdaas.ConditionDegraded); c.Status != metav1.ConditionTrue || c.Reason != ReasonReconcileError {
		t.Fatalf("degraded after a failed step: %+v", c)
	}
	// A failed step that found a member down still names it after the error.
	failed = computeStatus(inst, &backend.Result{Members: members(5, 4), Unhealthy: "unhealthy members: m-1: not answering"}, errors.New("starting member m-5: address in use"), t2)
	if c := cond(t, failed, etcdaas.ConditionDegraded); c.Reason != ReasonReconcileError || c.Message != "starting member m-5: address in use; unhealthy members: m-1: not answering" {
		t.Fatalf("degraded after a failed step with a member down: %+v", c)
	}
	// The cluster still serves: a failed step does not make it unavailable.
	if c := cond(t, computeStatus(inst, nil, errors.New("reading the StatefulSet: timeout"), t2), etcdaas.ConditionAvailable); c.Status != metav1.ConditionTrue || c.Message != "5/5 members ready" {
		t.Fatalf("available after a step that failed before observing the members: %+v", c)
	}
	// A step that adds or removes a member and fails is a scale still under way.
	failed = computeStatus(inst, &backend.Result{Members: members(5, 5), StepReason: backend.StepAddingMember}, errors.New("adding a learner: etcdserver: too many learner members in cluster"), t2)
	if failed.Phase != v1beta1.PhaseScaling {
		t.Fatalf("phase of a running instance after a failed member addition: %+v", failed)
	}
}

// checkStatusOnErrors checks the status after a transient error (of an instance at st), a
// permanent one, a name taken and a spec.restoreFrom that cannot start the cluster.
func checkStatusOnErrors(t *testing.T, inst *v1beta1.ETCDInstance, st v1beta1.ETCDInstanceStatus, t2 metav1.Time) {
	// A transient error keeps the last observed members.
	inst.Status = st
	st = computeStatus(inst, nil, errors.New("boom"), t2)
	if st.Replicas != 4 || len(st.Members) != 4 {
		t.Fatalf("members lost on a transient error: %+v", st)
	}
	if c := cond(t, st, etcdaas.ConditionDegraded); c.Status != metav1.ConditionTrue || c.Reason != ReasonReconcileError || c.Message != "boom" {
		t.Fatalf("degraded on error: %+v", c)
	}

	checkStatusOfARefusedVersion(t, inst, t2)

	// A permanent error fails the instance with the reason as the Available message: a new
	// instance whose version has no etcd to run cannot start.
	inst.Status = v1beta1.ETCDInstanceStatus{}
	st = computeStatus(inst, nil, backend.Permanent("UnsupportedVersion", "etcd version %q is not available", "3.4"), t2)
	if st.Phase != v1beta1.PhaseFailed {
		t.Fatalf("failed: %+v", st)
	}
	for _, typ := range []string{etcdaas.ConditionAvailable, etcdaas.ConditionDegraded} {
		if c := cond(t, st, typ); c.Reason != "UnsupportedVersion" || c.Message != `etcd version "3.4" is not available` {
			t.Fatalf("%s when failed: %+v", typ, c)
		}
	}
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Message != "the controller cannot make progress until the spec changes" {
		t.Fatalf("progressing when failed: %+v", c)
	}
	if inst.Status.Phase == v1beta1.PhaseFailed {
		t.Fatal("computeStatus modified its input")
	}

	// A name another object holds: the controller looks again by itself.
	st = computeStatus(inst, nil, &backend.PermanentError{Reason: "NameConflict", Message: "taken", RetryAfter: 30 * time.Second}, t2)
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Reason != "NameConflict" || !strings.HasPrefix(c.Message, "the controller looks again every 30s") {
		t.Fatalf("progressing when a name is taken: %+v", c)
	}

	// A new cluster that spec.restoreFrom cannot start waits for its source, not for a spec
	// change: spec.restoreFrom is immutable.
	restoring := inst.DeepCopy()
	restoring.Spec.RestoreFrom = &v1beta1.RestoreSource{Instance: "old"}
	st = computeStatus(restoring, nil, backend.Permanent(ReasonNoBackups, "no backup yet"), t2)
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Reason != ReasonNoBackups || !strings.HasPrefix(c.Message, "spec.restoreFrom is immutable: the controller looks at the source again") {
		t.Fatalf("progressing when spec.restoreFrom cannot start the cluster: %+v", c)
	}
}

// checkStatusOfARefusedVersion checks the status of a running instance whose spec.version
// the backend cannot run: the members keep serving on theirs and the backend keeps managing
// them, so the phase stays Running, Available says what the members say, and Progressing
// (once no step is under way) and Degraded say the version is refused.
func checkStatusOfARefusedVersion(t *testing.T, inst *v1beta1.ETCDInstance, t2 metav1.Time) {
	t.Helper()
	const refusal = `etcd version "3.8" is not available: the kubernetes backend runs 3.6, 3.7; the members keep running image etcd:v3.7.3`
	running := inst.DeepCopy()
	running.Status = computeStatus(running, &backend.Result{Members: members(5, 5), Converged: true}, nil, t2)
	res := &backend.Result{Members: members(5, 5), Converged: true}
	res.Refuse(&backend.PermanentError{Reason: "UnsupportedVersion", Message: `etcd version "3.8" is not available: the kubernetes backend runs 3.6, 3.7`}, "the members keep running image etcd:v3.7.3")
	check := func(what string, st v1beta1.ETCDInstanceStatus, available, progressing, degraded string) {
		t.Helper()
		got := string(st.Phase)
		for _, typ := range []string{etcdaas.ConditionAvailable, etcdaas.ConditionProgressing, etcdaas.ConditionDegraded} {
			c := cond(t, st, typ)
			got += fmt.Sprintf(" | %s %s: %s", c.Status, c.Reason, c.Message)
		}
		if want := fmt.Sprintf("Running | %s | %s | %s", available, progressing, degraded); got != want {
			t.Fatalf("%s:\n got %s\nwant %s", what, got, want)
		}
	}
	check("a refused version", computeStatus(running, res, nil, t2), "True MembersReady: 5/5 members ready",
		"False UnsupportedVersion: "+refusal, "True UnsupportedVersion: "+refusal)
	// A member down: Degraded names it after the refusal; Available counts the members.
	res.Members, res.Converged, res.Unhealthy = members(5, 4), false, "unhealthy members: m-4: connection refused"
	check("a refused version with a member down", computeStatus(running, res, nil, t2), "True QuorumReady: 4/5 members ready; a quorum of the voting members (4 of 5) ready",
		"False UnsupportedVersion: "+refusal, "True UnsupportedVersion: "+refusal+"; unhealthy members: m-4: connection refused")
	// A step under way (a resources change rolled) is what Progressing says.
	res.Step, res.StepReason = "rolling the members to image etcd:v3.7.3 with requests cpu=1: 4 of 5 members rolled; waiting for member m-4", backend.StepUpgrading
	check("a refused version during a roll", computeStatus(running, res, nil, t2), "True QuorumReady: 4/5 members ready; a quorum of the voting members (4 of 5) ready",
		"True Upgrading: "+res.Step, "True UnsupportedVersion: "+refusal+"; unhealthy members: m-4: connection refused")
	// An instance an earlier controller failed for the version, its members serving: Running.
	running.Status = computeStatus(running, nil, backend.Permanent("UnsupportedVersion", `etcd version "3.8" is not available`), t2)
	res.Members, res.Converged, res.Unhealthy, res.Step, res.StepReason = members(5, 5), true, "", "", ""
	check("a refused version of an instance failed for it", computeStatus(running, res, nil, t2), "True MembersReady: 5/5 members ready",
		"False UnsupportedVersion: "+refusal, "True UnsupportedVersion: "+refusal)
	res.Converged = false
	check("a refused version of an instance failed for it, not converged", computeStatus(running, res, nil, t2), "True MembersReady: 5/5 members ready",
		"False UnsupportedVersion: "+refusal, "True UnsupportedVersion: "+refusal)
}

// TestComputeStatusNewCluster follows the deployment of a new cluster of 3: its first members
// serve, not all of those it was created with, so it is not available until it converges
// (kubectl wait --for=condition=Available after a create waits for all of them).
func TestComputeStatusNewCluster(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}
	for _, res := range []*backend.Result{
		{Members: members(1, 1), Step: "starting the first member db-0", StepReason: backend.StepDeploying},
		{Members: members(2, 2), Step: "added member db-1", StepReason: backend.StepAddingMember},
		{Members: members(3, 3), Step: "added member db-2", StepReason: backend.StepAddingMember},
	} {
		deploying := computeStatus(inst, res, nil, t0)
		if c := cond(t, deploying, etcdaas.ConditionAvailable); deploying.Phase != v1beta1.PhaseDeploying || c.Status != metav1.ConditionFalse || c.Reason != ReasonDeploying {
			t.Fatalf("available while deploying with %d/%d members ready: phase %s, %+v", deploying.ReadyReplicas, deploying.Replicas, deploying.Phase, c)
		}
		inst.Status = deploying
	}
	if c := cond(t, inst.Status, etcdaas.ConditionAvailable); c.Message != "3/3 members ready; the new cluster is still being deployed" {
		t.Fatalf("available with every member started, before convergence: %+v", c)
	}
	running := computeStatus(inst, &backend.Result{Members: members(3, 3), Converged: true}, nil, t0)
	if c := cond(t, running, etcdaas.ConditionAvailable); running.Phase != v1beta1.PhaseRunning || c.Status != metav1.ConditionTrue || c.Reason != ReasonMembersReady || c.Message != "3/3 members ready" {
		t.Fatalf("available once converged: phase %s, %+v", running.Phase, c)
	}
}

// TestComputeStatusScaleDown follows a scale from 5 to 3 members: the conditions at the new
// generation say what is under way until the last member is removed, and Available's message
// counts the members that exist.
func TestComputeStatusScaleDown(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 6},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](5)},
	}
	inst.Status = computeStatus(inst, &backend.Result{Members: members(5, 5), Converged: true}, nil, t0)
	inst.Generation, inst.Spec.Replicas = 7, ptr.To[int32](3)

	// A member that does not answer stops the scale before its first step: not converged.
	waiting := computeStatus(inst, &backend.Result{Members: members(5, 4), Unhealthy: "unhealthy members: m-4: not answering"}, nil, t1)
	if c := cond(t, waiting, etcdaas.ConditionProgressing); c.Status != metav1.ConditionTrue || c.ObservedGeneration != 7 || c.Message != "moving to 3 members" {
		t.Fatalf("progressing before the first step: %+v", c)
	}
	if c := cond(t, waiting, etcdaas.ConditionAvailable); c.Status != metav1.ConditionTrue || c.Reason != ReasonQuorumReady ||
		c.Message != "4/5 members ready, 3 requested; a quorum of the voting members (4 of 5) ready" {
		t.Fatalf("available with a member down before the first step: %+v", c)
	}

	st := computeStatus(inst, &backend.Result{Members: members(4, 4), Step: "removed member db-4", StepReason: backend.StepRemovingMember}, nil, t1)
	if st.Phase != v1beta1.PhaseScaling || st.ObservedGeneration != 7 {
		t.Fatalf("scaling down: %+v", st)
	}
	if c := cond(t, st, etcdaas.ConditionAvailable); c.Status != metav1.ConditionTrue || c.Message != "4/4 members ready, 3 requested" || !c.LastTransitionTime.Equal(&t0) {
		t.Fatalf("available while scaling down: %+v", c)
	}
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Status != metav1.ConditionTrue || c.Reason != "RemovingMember" || c.ObservedGeneration != 7 {
		t.Fatalf("progressing while scaling down: %+v", c)
	}

	inst.Status = st
	st = computeStatus(inst, &backend.Result{Members: members(3, 3), Converged: true}, nil, t1)
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Status != metav1.ConditionFalse || c.Reason != ReasonConverged || c.ObservedGeneration != 7 || c.Message != "3 members as requested" {
		t.Fatalf("progressing once scaled down: %+v", c)
	}
	if c := cond(t, st, etcdaas.ConditionAvailable); c.Status != metav1.ConditionTrue || c.Message != "3/3 members ready" {
		t.Fatalf("available once scaled down: %+v", c)
	}
}

// fakeBackend converges after a number of steps and records deletions.
type fakeBackend struct {
	mu    sync.Mutex
	steps int
	// conflicts names the instances whose Syncs answer a NameConflict that the controller may
	// retry (RetryAfter 20ms): an object of someone else's holds a name they need.
	conflicts map[string]bool
	// quorumLost names the instances whose Syncs answer that their cluster lost quorum.
	quorumLost map[string]bool
	// refused names the instances whose Syncs refuse their spec.version while their members,
	// which run another, converge.
	refused   map[string]bool
	deleted   []string
	recovered []string
	forgotten []string
}

// Forget records which instance was forgotten.
func (f *fakeBackend) Forget(namespace, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgotten = append(f.forgotten, namespace+"/"+name)
}

// Recover records the request; it refuses the member "lost".
func (f *fakeBackend) Recover(_ context.Context, inst *v1beta1.ETCDInstance, req backend.RecoverRequest) (*backend.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	member := req.Member
	f.recovered = append(f.recovered, inst.Name+"/"+member)
	if member == "lost" {
		return nil, fmt.Errorf("%w: member lost does not answer", backend.ErrCannotRecover)
	}
	res := &backend.Result{Members: members(1, 1), Step: "recovered from member " + member, StepReason: backend.StepRecovering}
	res.Record(backend.ReasonRecovered, "Rebuilt the cluster from member %s", member)
	return res, nil
}

func (f *fakeBackend) Sync(_ context.Context, inst *v1beta1.ETCDInstance) (*backend.Result, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if inst.Spec.Version == "3.4" {
		return nil, backend.Permanent("UnsupportedVersion", "etcd 3.4 is not available")
	}
	if f.conflicts[inst.Name] {
		return nil, &backend.PermanentError{Reason: "NameConflict", Message: "Service ns/" + inst.Name + " is someone else's", RetryAfter: 20 * time.Millisecond}
	}
	if f.quorumLost[inst.Name] {
		return &backend.Result{Members: members(3, 1), Unhealthy: "unhealthy members: m-1, m-2: not answering",
			QuorumLost: "quorum lost: 2 of 3 voting members do not answer (m-1, m-2); 2 are needed"}, nil
	}
	f.steps++
	n := min(f.steps, backend.DesiredReplicas(inst))
	res := &backend.Result{Members: members(n, n)}
	if f.refused[inst.Name] {
		res.Refuse(&backend.PermanentError{Reason: "UnsupportedVersion", Message: `etcd version "3.8" is not available`}, "the members keep theirs")
	}
	if n == backend.DesiredReplicas(inst) {
		res.Converged = true
	} else {
		res.Step, res.StepReason = "adding a member", "AddingMember"
		res.Record(backend.ReasonMemberAdded, "Added member %s-%d", inst.Name, n)
	}
	return res, nil
}

func (f *fakeBackend) Delete(_ context.Context, inst *v1beta1.ETCDInstance) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deleted = append(f.deleted, inst.Name)
	return nil
}

func (f *fakeBackend) Close() error { return nil }

func (f *fakeBackend) Access(context.Context, string, string) (*etcdcluster.Access, error) {
	return nil, etcdcluster.ErrNoMembers
}

// TestNameConflictIsRetriedWithoutASpecChange: an instance refused because an object of
// someone else's holds a name it needs fails, with a Warning Event, and goes on by itself once
// the object is gone: nobody has to touch the instance.
func TestNameConflictIsRetriedWithoutASpecChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(&v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1, UID: "uid-1"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	})
	be := &fakeBackend{conflicts: map[string]bool{"db": true}}
	recorder := events.NewFakeRecorder(100)
	runController(t, Options{Client: client, Backend: be, Events: recorder})
	instances := client.EtcdaasV1beta1().ETCDInstances("ns")
	waitPhase(t, ctx, instances, "db", v1beta1.PhaseFailed)
	// The syncs the controller's own writes bring about are over by now; only its own
	// looking again can notice that the object is gone.
	time.Sleep(300 * time.Millisecond)
	be.mu.Lock()
	be.conflicts["db"] = false
	be.mu.Unlock()
	if got := waitPhase(t, ctx, instances, "db", v1beta1.PhaseRunning); got.Generation != 1 {
		t.Fatalf("generation %d: the instance was changed", got.Generation)
	}
	if e := <-recorder.Events; !strings.HasPrefix(e, "Warning NameConflict Service ns/db is someone else's") {
		t.Fatalf("first Event: %q, want the NameConflict Warning", e)
	}
}

// TestAPermanentFailureIsReportedOnce: a failure that goes on is one Warning Event, however
// often the controller looks again, even when a Sync runs on a cached copy of the instance
// older than the status an earlier Sync wrote (its creation's own updates bring such Syncs).
func TestAPermanentFailureIsReportedOnce(t *testing.T) {
	for i := range 5 {
		warnings := warningsOfAFailureThatGoesOn(t, i, 1, &fakeBackend{conflicts: map[string]bool{"db": true}}, 200*time.Millisecond, // looked at again every 20ms
			func(ctx context.Context, instances typedv1beta1.ETCDInstanceInterface) {
				waitPhase(t, ctx, instances, "db", v1beta1.PhaseFailed)
			})
		if len(warnings) != 1 {
			t.Fatalf("run %d: Warning Events %q, want one", i, warnings)
		}
	}
}

// TestALossOfQuorumIsReportedOnce: a loss of quorum that goes on is one QuorumLost Warning
// Event, however often the controller looks again, even when a Sync runs on a cached copy of
// the instance older than the status an earlier Sync wrote (its creation's own updates, the
// finalizer and the first status, bring such Syncs).
func TestALossOfQuorumIsReportedOnce(t *testing.T) {
	for i := range 5 {
		warnings := warningsOfAFailureThatGoesOn(t, i, 3, &fakeBackend{quorumLost: map[string]bool{"db": true}}, 300*time.Millisecond, // looked at again with a backoff from 100ms
			func(ctx context.Context, instances typedv1beta1.ETCDInstanceInterface) {
				waitCondition(t, ctx, instances, "db", etcdaas.ConditionDegraded, ReasonQuorumLost)
			})
		if want := "Warning QuorumLost quorum lost: 2 of 3 voting members do not answer (m-1, m-2); 2 are needed"; len(warnings) != 1 || warnings[0] != want {
			t.Fatalf("run %d: Warning Events %q, want one %q", i, warnings, want)
		}
	}
}

// TestARefusedVersionIsReportedOnce: a spec.version the backend refuses while the members go
// on is one Warning Event, however often the controller looks again; the instance runs.
func TestARefusedVersionIsReportedOnce(t *testing.T) {
	for i := range 5 {
		warnings := warningsOfAFailureThatGoesOn(t, i, 3, &fakeBackend{refused: map[string]bool{"db": true}}, 200*time.Millisecond,
			func(ctx context.Context, instances typedv1beta1.ETCDInstanceInterface) {
				waitCondition(t, ctx, instances, "db", etcdaas.ConditionProgressing, "UnsupportedVersion")
				if got := waitPhase(t, ctx, instances, "db", v1beta1.PhaseRunning); meta.IsStatusConditionFalse(got.Status.Conditions, etcdaas.ConditionAvailable) {
					t.Errorf("run %d: an instance whose members converged is not available: %+v", i, got.Status.Conditions)
				}
			})
		if want := `Warning UnsupportedVersion etcd version "3.8" is not available; the members keep theirs`; len(warnings) != 1 || warnings[0] != want {
			t.Fatalf("run %d: Warning Events %q, want one %q", i, warnings, want)
		}
	}
}

// warningsOfAFailureThatGoesOn runs the controller, with be as its backend, on a new instance
// ns/db of replicas members (run i of a test) whose client refuses stale updates as the API
// server does, waits for the failure (failed), lets the controller look again for settle, and
// returns the Warning Events it recorded.
func warningsOfAFailureThatGoesOn(t *testing.T, i int, replicas int32, be *fakeBackend, settle time.Duration,
	failed func(context.Context, typedv1beta1.ETCDInstanceInterface)) []string {
	t.Helper()
	client := fake.NewClientset(&v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1, UID: types.UID(fmt.Sprintf("uid-%d", i))},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To(replicas)},
	})
	enforceResourceVersions(client)
	recorder := events.NewFakeRecorder(100)
	stop := runController(t, Options{Client: client, Backend: be, Events: recorder})
	failed(context.Background(), client.EtcdaasV1beta1().ETCDInstances("ns"))
	time.Sleep(settle)
	stop()
	var warnings []string
	for len(recorder.Events) > 0 {
		if e := <-recorder.Events; strings.HasPrefix(e, "Warning") {
			warnings = append(warnings, e)
		}
	}
	return warnings
}

// waitCondition waits up to 10s until the instance name has the condition typ with reason.
func waitCondition(t *testing.T, ctx context.Context, instances typedv1beta1.ETCDInstanceInterface, name, typ, reason string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := instances.Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			if c := meta.FindStatusCondition(got.Status.Conditions, typ); c != nil && c.Reason == reason {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has no condition %s with reason %s: %+v, %v", name, typ, reason, got, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitPhase waits up to 10s until the instance name is in phase, and returns it.
func waitPhase(t *testing.T, ctx context.Context, instances typedv1beta1.ETCDInstanceInterface, name string, phase v1beta1.Phase) *v1beta1.ETCDInstance {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, err := instances.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Phase == phase {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not %s within 10s: %+v", name, phase, got.Status)
		}
	}
}

func TestReconcileAddsFinalizerReportsStatusAndCleansUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(&v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1, UID: "uid-1"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "old", Namespace: "ns", UID: "uid-2", Finalizers: []string{Finalizer}, DeletionTimestamp: ptr.To(metav1.Now())},
	}, &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "bad", Namespace: "ns", UID: "uid-3", Generation: 2},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), Version: "3.4"},
	})
	be := &fakeBackend{}
	recorder := events.NewFakeRecorder(100)
	recorder.Verbose = true
	runController(t, Options{Client: client, Backend: be, Events: recorder})

	instances := client.EtcdaasV1beta1().ETCDInstances("ns")
	deadline := time.Now().Add(30 * time.Second)
	waitRunningWithFinalizer(t, ctx, instances, deadline)
	checkDeletingInstanceReleased(t, ctx, instances, be, deadline)
	checkPermanentErrorFails(t, ctx, client, deadline)
	checkStepEvents(t, recorder)
}

// runController runs a controller with opts (steps every 10ms unless opts say otherwise) until
// stop is called or the test ends; stop checks that it stopped cleanly.
func runController(t *testing.T, opts Options) (stop func()) {
	t.Helper()
	if opts.StepInterval == 0 {
		opts.StepInterval = 10 * time.Millisecond
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the controller did not stop")
		}
	})
	t.Cleanup(stop)
	return stop
}

// waitRunningWithFinalizer waits until ns/db is Running, and checks it has the finalizer
// and a status of its three members for generation 1.
func waitRunningWithFinalizer(t *testing.T, ctx context.Context, instances typedv1beta1.ETCDInstanceInterface, deadline time.Time) {
	t.Helper()
	for {
		got, err := instances.Get(ctx, "db", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Status.Phase == v1beta1.PhaseRunning {
			if !slices.Contains(got.Finalizers, Finalizer) {
				t.Fatalf("running without the finalizer: %v", got.Finalizers)
			}
			if got.Status.ObservedGeneration != 1 || got.Status.ReadyReplicas != 3 || len(got.Status.Members) != 3 {
				t.Fatalf("status: %+v", got.Status)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never Running: %+v", got.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkDeletingInstanceReleased waits until the finalizer of the deleting ns/old is gone,
// and checks the backend deleted old and nothing else.
func checkDeletingInstanceReleased(t *testing.T, ctx context.Context, instances typedv1beta1.ETCDInstanceInterface, be *fakeBackend, deadline time.Time) {
	t.Helper()
	for {
		got, err := instances.Get(ctx, "old", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Finalizers) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("finalizer never removed: %v", got.Finalizers)
		}
		time.Sleep(20 * time.Millisecond)
	}
	be.mu.Lock()
	deleted := slices.Clone(be.deleted)
	be.mu.Unlock()
	// Delete is idempotent and may run again for events queued before the finalizer went.
	if len(deleted) == 0 || slices.ContainsFunc(deleted, func(n string) bool { return n != "old" }) {
		t.Fatalf("backend deletions %v, want only old", deleted)
	}
}

// checkPermanentErrorFails waits until ns/bad, whose version the backend refuses, is
// Failed for its generation, and checks status writes went through /status.
func checkPermanentErrorFails(t *testing.T, ctx context.Context, client *fake.Clientset, deadline time.Time) {
	t.Helper()
	instances := client.EtcdaasV1beta1().ETCDInstances("ns")
	// A permanent error fails the instance; status writes go through /status. The workers
	// take the instances in no set order: "bad" may come after the others.
	for {
		bad, err := instances.Get(ctx, "bad", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if bad.Status.Phase == v1beta1.PhaseFailed && bad.Status.ObservedGeneration == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bad instance status: %+v", bad.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
	statusWrites := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "update" && a.GetSubresource() == "status" {
			statusWrites++
		}
	}
	if statusWrites < 3 {
		t.Fatalf("%d status subresource writes, want at least 3", statusWrites)
	}
}

// checkStepEvents checks that every step's events are recorded on the instance, in order,
// once each.
func checkStepEvents(t *testing.T, recorder *events.FakeRecorder) {
	t.Helper()
	// Every step's events are recorded on the instance, in order, once each; the permanent
	// error is a Warning Event on "bad" (again only if a sync saw a status from before it).
	var recorded, failures []string
	for len(recorder.Events) > 0 {
		if ev := <-recorder.Events; strings.HasPrefix(ev, "Warning ") {
			failures = append(failures, ev)
		} else {
			recorded = append(recorded, ev)
		}
	}
	want := []string{
		"Normal MemberAdded AddMember Added member db-1",
		"Normal MemberAdded AddMember Added member db-2",
	}
	if !slices.Equal(recorded, want) {
		t.Fatalf("events %q, want %q", recorded, want)
	}
	if len(failures) == 0 || slices.ContainsFunc(failures, func(ev string) bool { return ev != "Warning UnsupportedVersion Reconcile etcd 3.4 is not available" }) {
		t.Fatalf("events of the failed instance %q, want its UnsupportedVersion Warning", failures)
	}
}

// TestDeleteWithOtherFinalizers checks that an instance another finalizer keeps after the
// controller removed its members says so, instead of listing the members it no longer has as
// ready (with client URLs that may serve another instance by then) and reports the generation
// the deletion gave it as observed, and that an instance
// without other finalizers gets no status write beyond the Deleting phase.
func TestDeleteWithOtherFinalizers(t *testing.T) {
	ctx := context.Background()
	running := v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseRunning, Replicas: 1, ReadyReplicas: 1,
		Members: []v1beta1.MemberStatus{{Name: "m-0", ClientURL: "http://127.0.0.1:2379", Ready: true, Leader: true}}}
	held := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "held", Namespace: "ns", UID: "uid-held", Generation: 2,
			Finalizers: []string{Finalizer, "example.com/hold"}, DeletionTimestamp: ptr.To(metav1.Now())},
		Status: running,
	}
	plain := held.DeepCopy()
	plain.Name, plain.UID, plain.Finalizers = "plain", "uid-plain", []string{Finalizer}
	client := fake.NewClientset(held, plain)
	be := &fakeBackend{}
	c, err := New(Options{Client: client, Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	for _, inst := range []*v1beta1.ETCDInstance{held, plain} {
		if err := c.reconcileDelete(ctx, inst); err != nil {
			t.Fatalf("deleting %s: %v", inst.Name, err)
		}
	}
	got, err := client.EtcdaasV1beta1().ETCDInstances("ns").Get(ctx, "held", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Finalizers, []string{"example.com/hold"}) {
		t.Errorf("finalizers %v, want only example.com/hold", got.Finalizers)
	}
	if got.Status.Phase != v1beta1.PhaseDeleting || len(got.Status.Members) != 0 || got.Status.Replicas != 0 || got.Status.ReadyReplicas != 0 {
		t.Errorf("status of an instance without members: %+v", got.Status)
	}
	if got.Status.ObservedGeneration != held.Generation {
		t.Errorf("observedGeneration %d of a deleting instance, want its generation %d", got.Status.ObservedGeneration, held.Generation)
	}
	if p := cond(t, got.Status, etcdaas.ConditionProgressing); p.Status != metav1.ConditionFalse || p.Reason != ReasonMembersDeleted ||
		!strings.Contains(p.Message, "example.com/hold") {
		t.Errorf("Progressing %+v, want False, %s, naming example.com/hold", p, ReasonMembersDeleted)
	}
	if a := cond(t, got.Status, etcdaas.ConditionAvailable); a.Status != metav1.ConditionFalse {
		t.Errorf("Available %+v", a)
	}
	plainWrites := 0
	for _, a := range client.Actions() {
		if u, ok := a.(clienttesting.UpdateAction); ok && a.GetSubresource() == "status" {
			if m, err := meta.Accessor(u.GetObject()); err == nil && m.GetName() == "plain" {
				plainWrites++
			}
		}
	}
	if plainWrites != 1 {
		t.Errorf("%d status writes for an instance without other finalizers, want 1 (the Deleting phase)", plainWrites)
	}
	if !slices.Equal(be.deleted, []string{"held", "plain"}) {
		t.Errorf("backend deletions %v", be.deleted)
	}
}

func (f *fakeBackend) syncs() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.steps
}

// startElected runs a controller over be under leader election as identity until the returned
// cancel; done receives what Run returned. The lease durations only bound how long a busy
// machine may delay a renewal: the leaders of these tests hand over by releasing the Lease.
func startElected(t *testing.T, client *fake.Clientset, kube *kubefake.Clientset, identity string, be backend.Backend) (cancel context.CancelFunc, done chan error) {
	t.Helper()
	c, err := New(Options{Client: client, Backend: be, StepInterval: 10 * time.Millisecond, HealthInterval: 50 * time.Millisecond,
		LeaderElection: &LeaderElection{Client: kube, Namespace: "etcdaas-system", Name: "etcdaas-controller", Identity: identity,
			LeaseDuration: 30 * time.Second, RenewDeadline: 20 * time.Second, RetryPeriod: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return cancel, done
}

func TestLeaderElectionHandsOver(t *testing.T) {
	kube := kubefake.NewClientset()
	client := fake.NewClientset(&v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1, UID: "uid-1"},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	})
	// The leader hands over by releasing the Lease when it stops, not by letting it expire, so
	// the lease durations only bound how long a busy machine may delay a renewal: with a
	// 1 s renew deadline, a leader starved that long would stop leading mid-test.
	start := func(identity string, be *fakeBackend) (context.CancelFunc, chan error) {
		return startElected(t, client, kube, identity, be)
	}
	waitSyncs := func(be *fakeBackend) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for be.syncs() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the leader never reconciled")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	first, second := &fakeBackend{}, &fakeBackend{}
	cancelFirst, firstDone := start("first", first)
	waitSyncs(first)
	cancelSecond, secondDone := start("second", second)
	defer cancelSecond()
	time.Sleep(time.Second)
	if n := second.syncs(); n != 0 {
		t.Fatalf("the standby reconciled %d times while the leader held the lease", n)
	}
	lease, err := kube.CoordinationV1().Leases("etcdaas-system").Get(context.Background(), "etcdaas-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ptr.Deref(lease.Spec.HolderIdentity, "") != "first" {
		t.Fatalf("lease holder %v", lease.Spec.HolderIdentity)
	}
	// The leader stops and releases the lease: the standby takes over.
	cancelFirst()
	if err := <-firstDone; err != nil {
		t.Fatalf("leader stopped with %v", err)
	}
	waitSyncs(second)
	cancelSecond()
	if err := <-secondDone; err != nil {
		t.Fatalf("second leader stopped with %v", err)
	}
}

func TestRequeueAfter(t *testing.T) {
	c := &Controller{opts: Options{StepInterval: time.Second, HealthInterval: time.Minute}}
	transient := errors.New("connection refused")
	for _, tc := range []struct {
		name    string
		res     *backend.Result
		syncErr error
		after   time.Duration
		err     error
	}{
		{"converged: health check later", &backend.Result{Converged: true}, nil, time.Minute, nil},
		{"step under way: next step soon", &backend.Result{Step: "adding member db-1", StepReason: backend.StepAddingMember}, nil, time.Second, nil},
		{"step under way with an unhealthy member", &backend.Result{Step: "promoting member db-1", Unhealthy: "db-1: starting"}, nil, time.Second, nil},
		{"unhealthy and no step: back off", &backend.Result{Unhealthy: "db-0: connection refused"}, nil, 0, errWaiting},
		{"out of space: look again at a steady pace", &backend.Result{Unhealthy: "db-0: alarm NOSPACE raised", Members: []v1beta1.MemberStatus{
			{Name: "db-0", ID: "a", Alarms: []string{"NOSPACE"}}, {Name: "db-1", ID: "b", Ready: true}}}, nil, NoSpaceInterval, nil},
		{"out of space and another member down: back off", &backend.Result{Unhealthy: "db-0: alarm NOSPACE raised; db-1: connection refused",
			Members: []v1beta1.MemberStatus{{Name: "db-0", ID: "a", Alarms: []string{"NOSPACE"}}, {Name: "db-1", ID: "b"}}}, nil, 0, errWaiting},
		{"out of space during a step: next step soon", &backend.Result{Step: "promoting member db-1", Members: []v1beta1.MemberStatus{
			{Name: "db-0", ID: "a", Alarms: []string{"NOSPACE"}}}}, nil, time.Second, nil},
		{"stalled roll: back off", &backend.Result{Step: "waiting for member db-2", StepReason: backend.StepUpgrading,
			Stalled: "member db-2 is not up to date", StalledReason: "UpgradeFailed"}, nil, 0, errWaiting},
		{"join blocked on a member nothing replaces: back off", &backend.Result{Step: "adding member db-3", StepReason: backend.StepAddingMember,
			Unhealthy: "db-2: cannot start", Blocked: "member repair is off", BlockedReason: backend.ReasonMemberRepairDisabled}, nil, 0, errWaiting},
		{"a learner catching up: look again after its wait, not at the step interval", &backend.Result{Step: "promoting member db-3: waiting for it to catch up with the leader",
			StepReason: backend.StepAddingMember, StepWait: backend.CatchUpInterval}, nil, backend.CatchUpInterval, nil},
		{"a step wait shorter than the step interval: the step interval", &backend.Result{Step: "adding member db-1", StepWait: time.Millisecond}, nil, time.Second, nil},
		{"a learner catching up past its deadline: back off", &backend.Result{Step: "promoting member db-3: waiting for it to catch up with the leader",
			StepWait: backend.CatchUpInterval, Unhealthy: "member db-3, a learner, serves but is behind", Blocked: "member db-3 ...", BlockedReason: backend.ReasonMemberNotJoining}, nil, 0, errWaiting},
		{"no result and no error: next step soon", nil, nil, time.Second, nil},
		{"transient error: back off", nil, transient, 0, transient},
		{"permanent error: wait for a spec change", nil, backend.Permanent("UnsupportedVersion", "no"), 0, nil},
		{"wrapped permanent error", nil, fmt.Errorf("sync: %w", backend.Permanent("UnsupportedVersion", "no")), 0, nil},
		{"permanent error something else may clear: look again after its interval", nil,
			fmt.Errorf("sync: %w", &backend.PermanentError{Reason: "NameConflict", Message: "taken", RetryAfter: time.Minute}), time.Minute, nil},
	} {
		after, err := c.requeueAfter(tc.res, tc.syncErr)
		if after != tc.after || !errors.Is(err, tc.err) || (tc.err == nil && err != nil) {
			t.Errorf("%s: requeueAfter = %v, %v; want %v, %v", tc.name, after, err, tc.after, tc.err)
		}
	}
}

func TestRecoverRequestsAreCarriedOutOnceAndConsumed(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	request := func(name, member string) *v1beta1.ETCDInstance {
		return &v1beta1.ETCDInstance{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns", Generation: 1, UID: types.UID(name), Finalizers: []string{Finalizer},
				Annotations: map[string]string{etcdaas.RecoverRequestedAnnotation: member}},
			Spec:   v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
			Status: v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseFailed},
		}
	}
	client := fake.NewClientset(request("db", "db-1"), request("other", "lost"))
	be := &fakeBackend{steps: -1000} // never converges: the phase after the recovery stays
	recorder := events.NewFakeRecorder(100)
	stop := runController(t, Options{Client: client, Backend: be, Events: recorder})
	instances := client.EtcdaasV1beta1().ETCDInstances("ns")
	deadline := time.Now().Add(30 * time.Second)
	for _, name := range []string{"db", "other"} {
		for {
			got, err := instances.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := got.Annotations[etcdaas.RecoverRequestedAnnotation]; !ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("recover request on %s never consumed", name)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if got, _ := instances.Get(ctx, "db", metav1.GetOptions{}); got.Status.Phase != v1beta1.PhaseRecovering {
		t.Fatalf("phase after recovery: %+v", got.Status)
	}
	stop()
	be.mu.Lock()
	recovered := slices.Clone(be.recovered)
	be.mu.Unlock()
	slices.Sort(recovered)
	if !slices.Equal(recovered, []string{"db/db-1", "other/lost"}) {
		t.Fatalf("recoveries %v, want each request once", recovered)
	}
	var recorded []string
	for len(recorder.Events) > 0 {
		if e := <-recorder.Events; strings.Contains(e, "Recover") {
			recorded = append(recorded, e)
		}
	}
	slices.Sort(recorded)
	want := []string{"Normal Recovered Rebuilt the cluster from member db-1", "Warning RecoveryFailed Recovery not carried out: cannot recover: member lost does not answer"}
	if !slices.Equal(recorded, want) {
		t.Fatalf("events %q, want %q", recorded, want)
	}
}

// onceRecoveringBackend recovers the instance once, as the real backends do: it records the
// request's ID with the recovery, then knows that request as carried out and refuses any
// other, quorum being back.
type onceRecoveringBackend struct {
	fakeBackend
	recovered bool
	last      string // the ID of the request carried out
}

func (o *onceRecoveringBackend) Recover(_ context.Context, inst *v1beta1.ETCDInstance, req backend.RecoverRequest) (*backend.Result, error) {
	switch {
	case o.recovered && req.ID != "" && req.ID == o.last:
		return nil, fmt.Errorf("%w: recover request %s", backend.ErrRecoveredAlready, req.ID)
	case o.recovered:
		return nil, fmt.Errorf("%w: quorum is not lost", backend.ErrCannotRecover)
	}
	o.recovered, o.last = true, req.ID
	res := &backend.Result{Members: members(1, 1), Step: "recovered from member db-0", StepReason: backend.StepRecovering}
	res.Record(backend.ReasonRecovered, "Rebuilt the cluster from member db-0")
	return res, nil
}

// TestARecoveryIsNotReportedRefusedWhenItsRequestOutlivesIt: the recovery is carried out,
// but the status write that consumes its request fails. The next attempt finds the request
// still recorded and quorum back: it consumes the request as carried out, and never tells
// the user that the recovery was not carried out.
func TestARecoveryIsNotReportedRefusedWhenItsRequestOutlivesIt(t *testing.T) {
	ctx := context.Background()
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1, UID: "uid-1", Finalizers: []string{Finalizer},
			Annotations: map[string]string{etcdaas.RecoverRequestedAnnotation: "", etcdaas.RecoverRequestIDAnnotation: "req-1"}},
		Spec:   v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
		Status: v1beta1.ETCDInstanceStatus{Phase: v1beta1.PhaseFailed},
	}
	client := fake.NewClientset(inst)
	failed := false
	client.PrependReactor("update", "etcdinstances", func(action clienttesting.Action) (bool, runtime.Object, error) {
		if action.GetSubresource() != "status" || failed {
			return false, nil, nil
		}
		failed = true
		return true, nil, errors.New("etcdserver: request timed out")
	})
	recorder := events.NewFakeRecorder(10)
	be := &onceRecoveringBackend{}
	c, err := New(Options{Client: client, Backend: be, Events: recorder})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.recoverAndReport(ctx, inst); err == nil || !be.recovered {
		t.Fatalf("recovered %v; the failed status write: %v", be.recovered, err)
	}
	if err := c.recoverAndReport(ctx, inst); err != nil {
		t.Fatalf("the request of a recovery carried out, again: %v", err)
	}
	got, err := client.EtcdaasV1beta1().ETCDInstances("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{etcdaas.RecoverRequestedAnnotation, etcdaas.RecoverRequestIDAnnotation} {
		if _, ok := got.Annotations[key]; ok {
			t.Errorf("%s left after the recovery: %v", key, got.Annotations)
		}
	}
	var recorded []string
	for len(recorder.Events) > 0 {
		recorded = append(recorded, <-recorder.Events)
	}
	if want := []string{"Normal Recovered Rebuilt the cluster from member db-0"}; !slices.Equal(recorded, want) {
		t.Fatalf("events %q, want %q", recorded, want)
	}
}

// TestStatusKeepsTheVersionsMembersReportedLast: a member that stops answering keeps the
// version it reported last (the spec.version rule reads it), a member that answers reports
// its own, and a member never seen before reports none.
func TestStatusKeepsTheVersionsMembersReportedLast(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
		Status: v1beta1.ETCDInstanceStatus{Members: []v1beta1.MemberStatus{
			{Name: "db-0", Version: "3.6.5"}, {Name: "db-1", Version: "3.6.5"},
		}},
	}
	down := []v1beta1.MemberStatus{{Name: "db-0"}, {Name: "db-1", Version: "3.7.3", Ready: true}, {Name: "db-2"}}
	st := computeStatus(inst, &backend.Result{Members: down}, nil, now)
	got := map[string]string{}
	for _, m := range st.Members {
		got[m.Name] = m.Version
	}
	if want := map[string]string{"db-0": "3.6.5", "db-1": "3.7.3", "db-2": ""}; !maps.Equal(got, want) {
		t.Errorf("member versions %v, want %v", got, want)
	}
	if down[0].Version != "" {
		t.Error("computeStatus modified the backend's result")
	}
}

// TestReconcileForgetsAnInstanceThatIsGone: an instance no longer in the cache leaves nothing
// in memory: its defragmentation round and the backend's records go; another instance's
// round stays.
func TestReconcileForgetsAnInstanceThatIsGone(t *testing.T) {
	be := &fakeBackend{}
	c, err := New(Options{Client: fake.NewClientset(), Backend: be})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"gone", "kept"} {
		inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, UID: types.UID("uid-" + name),
			Annotations: map[string]string{etcdaas.DefragRequestedAnnotation: "t1"}}}
		if _, _, ok := c.defrag.round(inst, members(3, 3), defragThresholds{freePercent: 50}, false); !ok {
			t.Fatalf("no round started for %s", name)
		}
	}
	if _, err := c.reconcile(context.Background(), "ns/gone"); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.defrag.rounds["uid-gone"]; ok {
		t.Error("the defragmentation round of the instance that is gone is still remembered")
	}
	if _, ok := c.defrag.rounds["uid-kept"]; !ok {
		t.Error("the round of another instance was forgotten")
	}
	if !slices.Equal(be.forgotten, []string{"ns/gone"}) {
		t.Errorf("backend told to forget %v, want [ns/gone]", be.forgotten)
	}
}

// slowStopBackend is a backend whose Sync, once its context ends, takes a while to finish
// the step it was taking (as a local member's data removal or restore does), and which
// records whether it was ever in a Sync at the same time as another backend.
type slowStopBackend struct {
	fakeBackend
	name    string
	inSync  chan struct{}
	running *sync.Map // backend name → struct{} while in Sync
	overlap chan string
	block   bool
}

func (s *slowStopBackend) Sync(ctx context.Context, inst *v1beta1.ETCDInstance) (*backend.Result, error) {
	s.running.Store(s.name, struct{}{})
	defer s.running.Delete(s.name)
	s.running.Range(func(other, _ any) bool {
		if other != s.name {
			select {
			case s.overlap <- fmt.Sprintf("%s synced while %s was still in a Sync", s.name, other):
			default:
			}
		}
		return true
	})
	if s.block {
		select {
		case s.inSync <- struct{}{}:
		default:
		}
		<-ctx.Done()
		time.Sleep(time.Second)
		return nil, ctx.Err()
	}
	return s.fakeBackend.Sync(ctx, inst)
}

// A leader that stops releases the Lease only once its workers stopped: a standby that took
// over as soon as the stop began would act on the instances while the old leader's steps were
// still under way. Run returns only after them too.
func TestAStoppingLeaderReleasesTheLeaseOnlyOnceItsWorkersStopped(t *testing.T) {
	kube := kubefake.NewClientset()
	client := fake.NewClientset(&v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1, UID: "uid-1", Finalizers: []string{Finalizer}},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	})
	running, overlap := &sync.Map{}, make(chan string, 1)
	start := func(be *slowStopBackend) (context.CancelFunc, chan error) {
		return startElected(t, client, kube, be.name, be)
	}
	first := &slowStopBackend{name: "first", inSync: make(chan struct{}, 1), running: running, overlap: overlap, block: true}
	second := &slowStopBackend{name: "second", running: running, overlap: overlap}
	cancelFirst, firstDone := start(first)
	select {
	case <-first.inSync:
	case <-time.After(20 * time.Second):
		t.Fatal("the leader never reconciled")
	}
	cancelSecond, secondDone := start(second)
	defer func() {
		cancelSecond()
		<-secondDone
	}()
	time.Sleep(300 * time.Millisecond) // the standby is trying to acquire the Lease
	cancelFirst()
	if err := <-firstDone; err != nil {
		t.Fatalf("leader stopped with %v", err)
	}
	if _, inSync := running.Load("first"); inSync {
		t.Error("Run returned while a worker was still in a Sync")
	}
	deadline := time.Now().Add(20 * time.Second)
	for second.syncs() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the standby never took over")
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case msg := <-overlap:
		t.Fatal(msg)
	default:
	}
}

// TestCheckSyncedIsTheReadinessOfAnActingController: etcdaas-controller's /readyz fails
// while a controller that acts on instances has not synced its cache, and passes once it
// has; a standby replica under leader election is ready while it waits for the Lease.
func TestCheckSyncedIsTheReadinessOfAnActingController(t *testing.T) {
	c, err := New(Options{Client: fake.NewClientset(), Backend: &fakeBackend{}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CheckSynced(nil); err == nil {
		t.Fatal("ready before its cache synced")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for c.CheckSynced(nil) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("not ready once running: %v", c.CheckSynced(nil))
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done

	standby, err := New(Options{Client: fake.NewClientset(), Backend: &fakeBackend{},
		LeaderElection: &LeaderElection{Client: kubefake.NewClientset(), Namespace: "ns", Name: "lease", Identity: "standby"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := standby.CheckSynced(nil); err != nil {
		t.Fatalf("a standby is not ready: %v", err)
	}
}

// TestLeaderElectionIsExposedAsAMetric: with two replicas, an SRE tells which one leads by
// leader_election_master_status{name="etcdaas-controller"}, as for kube-controller-manager;
// etcdaas-controller exposed no leader election metric.
func TestLeaderElectionIsExposedAsAMetric(t *testing.T) {
	kube := kubefake.NewClientset()
	be := &fakeBackend{}
	cancel, done := startElected(t, fake.NewClientset(), kube, "only", be)
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		families, err := legacyregistry.DefaultGatherer.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() != "leader_election_master_status" {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, l := range m.GetLabel() {
					if l.GetName() == "name" && l.GetValue() == "etcdaas-controller" && m.GetGauge().GetValue() == 1 {
						return
					}
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no leader_election_master_status{name=\"etcdaas-controller\"} 1 once leading")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// enforceResourceVersions makes client refuse, as the API server does, an update of an
// ETCDInstance (or of its status) computed from an older copy than the one stored: the fake
// clientset takes every update whatever its resourceVersion, which would let a Sync that ran
// on a stale cached copy write over a newer status.
func enforceResourceVersions(client *fake.Clientset) {
	var mu sync.Mutex
	next := 0
	client.PrependReactor("update", "etcdinstances", func(action clienttesting.Action) (bool, runtime.Object, error) {
		mu.Lock()
		defer mu.Unlock()
		update := action.(clienttesting.UpdateAction)
		obj := update.GetObject().(*v1beta1.ETCDInstance)
		stored, err := client.Tracker().Get(update.GetResource(), update.GetNamespace(), obj.Name)
		if err != nil {
			return true, nil, err
		}
		if rv := stored.(*v1beta1.ETCDInstance).ResourceVersion; obj.ResourceVersion != rv {
			return true, nil, apierrors.NewConflict(v1beta1.Resource("etcdinstances"), obj.Name,
				fmt.Errorf("the object has been modified: resourceVersion %q, stored %q", obj.ResourceVersion, rv))
		}
		next++
		obj.ResourceVersion = strconv.Itoa(next)
		return false, nil, nil // the tracker stores it
	})
}
