package controller

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// A condition message longer than the API allows is cut so that the server accepts it: at a
// character, never inside one. Bytes cut out of a character (or invalid in the error text)
// travel in JSON as U+FFFD, three bytes each, and would take the message past the limit, so
// that every status write of the instance were refused.
func TestLongConditionMessagesStayValid(t *testing.T) {
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)},
	}
	now := metav1.NewTime(time.Date(2026, 11, 29, 3, 0, 0, 0, time.UTC))
	for name, msg := range map[string]string{
		"multi-byte characters": strings.Repeat("€", 12000),
		"invalid bytes":         strings.Repeat("\xff", 20000),
	} {
		t.Run(name, func(t *testing.T) {
			status := computeStatus(inst, nil, errors.New(msg), now)
			// What the server decodes from the status the controller sends.
			data, err := json.Marshal(status)
			if err != nil {
				t.Fatal(err)
			}
			var received v1beta1.ETCDInstanceStatus
			if err := json.Unmarshal(data, &received); err != nil {
				t.Fatal(err)
			}
			if errs := metav1validation.ValidateConditions(received.Conditions, field.NewPath("status", "conditions")); len(errs) > 0 {
				t.Fatalf("the server refuses the status: %v", errs.ToAggregate())
			}
		})
	}
}

// Removing spec.backup turns scheduled backups off: the BackupSucceeded condition, which
// would go on saying how the last scheduled backup went, is removed, while status.backup
// keeps the record of the last backup (still in its destination). With spec.backup the
// condition stays as it is.
func TestBackupConditionGoesWithTheSchedule(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC))
	last := &v1beta1.BackupStatus{LastSuccessfulTime: &now, LastBackup: &v1beta1.BackupInfo{Key: "k", Revision: 7}}
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 5},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
		Status: v1beta1.ETCDInstanceStatus{Backup: last, Conditions: []metav1.Condition{
			{Type: etcdaas.ConditionBackupSucceeded, Status: metav1.ConditionTrue, Reason: ReasonBackupCompleted, ObservedGeneration: 4, LastTransitionTime: now},
		}},
	}
	res := &backend.Result{Members: members(1, 1), Converged: true}
	st := computeStatus(inst, res, nil, now)
	if c := meta.FindStatusCondition(st.Conditions, etcdaas.ConditionBackupSucceeded); c != nil {
		t.Fatalf("spec.backup removed: BackupSucceeded still reported: %+v", c)
	}
	if st.Backup == nil || st.Backup.LastBackup == nil || st.Backup.LastBackup.Key != "k" {
		t.Fatalf("spec.backup removed: the last backup's record was dropped: %+v", st.Backup)
	}

	inst.Spec.Backup = &v1beta1.BackupSpec{Schedule: "@daily", Destination: v1beta1.BackupDestination{Local: &v1beta1.LocalDestination{}}}
	st = computeStatus(inst, res, nil, now)
	if c := meta.FindStatusCondition(st.Conditions, etcdaas.ConditionBackupSucceeded); c == nil || c.Reason != ReasonBackupCompleted {
		t.Fatalf("with spec.backup: BackupSucceeded = %+v, want it kept", c)
	}
}

// TestConvergedMessageOfOneMember: a one-member instance said "1 members as requested" in
// its Progressing condition, which kubectl describe and kubectl get -o yaml show.
func TestConvergedMessageOfOneMember(t *testing.T) {
	inst := &v1beta1.ETCDInstance{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 1},
		Spec:       v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)},
	}
	now := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	moving := computeStatus(inst, &backend.Result{Members: members(3, 2), Unhealthy: "unhealthy members: m-2: not answering"}, nil, now)
	if c := meta.FindStatusCondition(moving.Conditions, etcdaas.ConditionProgressing); c == nil || c.Message != "moving to 1 member" {
		t.Fatalf("progressing: %+v", c)
	}
	st := computeStatus(inst, &backend.Result{Members: members(1, 1), Converged: true}, nil, now)
	if c := meta.FindStatusCondition(st.Conditions, etcdaas.ConditionProgressing); c == nil || c.Message != "1 member as requested" {
		t.Fatalf("progressing: %+v", c)
	}
}

// blockedResult is what a Sync reports of a 3-member instance whose member db-2 lost its data
// while member repair is off.
func blockedResult() *backend.Result {
	return &backend.Result{
		Members: members(3, 2), Unhealthy: "unhealthy members: db-2: cannot start: its data directory is lost",
		Blocked:       "member repair is off (--member-repair-grace-period=0), so nothing replaces member db-2 (cannot start: its data directory is lost) and nothing changes until a person acts: ...",
		BlockedReason: backend.ReasonMemberRepairDisabled,
	}
}

// TestBlockedInstanceIsNotProgressing: an instance that nothing changes until a person acts
// is Progressing=False with the block's reason and message (what a person can do), at its
// generation, so that `kubectl wait --for=condition=Progressing=False` returns; Degraded still
// names the member, the cluster stays Running and Available. Once the block is gone,
// Progressing is back to its usual values: True while a repair goes on, Converged after.
func TestBlockedInstanceIsNotProgressing(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Generation: 2}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}}
	inst.Status = computeStatus(inst, &backend.Result{Members: members(3, 3), Converged: true}, nil, t0)

	res := blockedResult()
	st := computeStatus(inst, res, nil, t0)
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Status != metav1.ConditionFalse || c.Reason != "MemberRepairDisabled" || c.Message != res.Blocked || c.ObservedGeneration != 2 {
		t.Fatalf("progressing while blocked: %+v", c)
	}
	if c := cond(t, st, etcdaas.ConditionDegraded); c.Status != metav1.ConditionTrue || c.Reason != ReasonMemberUnhealthy || c.Message != res.Unhealthy {
		t.Fatalf("degraded while blocked: %+v", c)
	}
	if c := cond(t, st, etcdaas.ConditionAvailable); c.Status != metav1.ConditionTrue || c.Reason != ReasonQuorumReady || st.Phase != v1beta1.PhaseRunning {
		t.Fatalf("available while blocked: %+v, phase %s", c, st.Phase)
	}

	// Looked at again later, still blocked: the condition keeps its transition time (and the
	// status needs no write).
	inst.Status = st
	again := computeStatus(inst, blockedResult(), nil, metav1.NewTime(t0.Add(time.Minute)))
	if c := cond(t, again, etcdaas.ConditionProgressing); !c.LastTransitionTime.Equal(&t0) {
		t.Fatalf("progressing still blocked a minute later: %+v", c)
	}
	if !statusEqual(st, again) {
		t.Fatalf("status changed while still blocked:\n%+v\n%+v", st.Conditions, again.Conditions)
	}
	// A join that waits, blocked on the member: the same.
	joining := blockedResult()
	joining.Step, joining.StepReason = "adding member db-3", backend.StepAddingMember
	if c := cond(t, computeStatus(inst, joining, nil, metav1.NewTime(t0.Add(time.Minute))), etcdaas.ConditionProgressing); c.Status != metav1.ConditionFalse ||
		c.Reason != "MemberRepairDisabled" || c.Message != joining.Blocked || !c.LastTransitionTime.Equal(&t0) {
		t.Fatalf("progressing while a join is blocked: %+v", c)
	}

	// Repair turned on: the member is waited for, then replaced.
	st = computeStatus(inst, &backend.Result{Members: members(3, 2), Unhealthy: res.Unhealthy}, nil, t0)
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Status != metav1.ConditionTrue || c.Reason != ReasonReconciling {
		t.Fatalf("progressing once repair is on: %+v", c)
	}
	inst.Status = st
	st = computeStatus(inst, &backend.Result{Members: members(3, 3), Converged: true}, nil, t0)
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Status != metav1.ConditionFalse || c.Reason != ReasonConverged {
		t.Fatalf("progressing once healthy: %+v", c)
	}
}

// TestStalledRollKeepsItsTransitionTime: a version roll that stopped (UpgradeFailed) is looked
// at again with backoff; Progressing stays False with the time it turned so, and the status
// needs no write. Progressing used to be set True and then False on every look, which moved
// its lastTransitionTime each time.
func TestStalledRollKeepsItsTransitionTime(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Generation: 3}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}}
	inst.Status = computeStatus(inst, &backend.Result{Members: members(3, 2), Step: "upgrading: 1 of 3 members done; restarting member db-2", StepReason: backend.StepUpgrading}, nil, t0)
	stalled := func() *backend.Result {
		return &backend.Result{Members: members(3, 2), Step: "upgrading: 1 of 3 members done; waiting for member db-2: not ready", StepReason: backend.StepUpgrading,
			Stalled: "the upgrade stopped: member db-2 is not up to date", StalledReason: string(backend.ReasonUpgradeFailed)}
	}
	t1 := metav1.NewTime(t0.Add(time.Minute))
	st := computeStatus(inst, stalled(), nil, t1)
	if c := cond(t, st, etcdaas.ConditionProgressing); c.Status != metav1.ConditionFalse || c.Reason != "UpgradeFailed" || !c.LastTransitionTime.Equal(&t1) {
		t.Fatalf("progressing once stalled: %+v", c)
	}
	inst.Status = st
	again := computeStatus(inst, stalled(), nil, metav1.NewTime(t1.Add(time.Minute)))
	if c := cond(t, again, etcdaas.ConditionProgressing); !c.LastTransitionTime.Equal(&t1) || !statusEqual(st, again) {
		t.Fatalf("progressing still stalled a minute later: %+v", c)
	}
}

// TestQuorumRegainedIsNotANewCluster: a cluster that lost quorum (phase Failed, Degraded
// QuorumLost) and got it back by itself, its lost members restarting, is a cluster in service
// again as soon as a majority of its voting members is ready: Running and Available (reason
// QuorumReady), with Degraded naming the member still down. It was reported as a new cluster
// being deployed (phase Deploying, Available False "the new cluster is still being
// deployed") until every member was back, though it served its clients.
func TestQuorumRegainedIsNotANewCluster(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2026, 12, 1, 6, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Minute))
	inst := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Generation: 1}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}}
	inst.Status = computeStatus(inst, &backend.Result{Members: members(3, 3), Converged: true}, nil, t0)
	inst.Status = computeStatus(inst, &backend.Result{Members: members(3, 0), Unhealthy: "unhealthy members: m-1: not answering; m-2: not answering",
		QuorumLost: "quorum lost: 2 of 3 voting members do not answer (m-1, m-2); 2 are needed"}, nil, t0)

	back := computeStatus(inst, &backend.Result{Members: members(3, 2), Unhealthy: "unhealthy members: m-2: not answering"}, nil, t1)
	if back.Phase != v1beta1.PhaseRunning {
		t.Errorf("phase once quorum is back = %s, want Running", back.Phase)
	}
	if c := meta.FindStatusCondition(back.Conditions, etcdaas.ConditionAvailable); c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonQuorumReady {
		t.Errorf("available once quorum is back: %+v, want True (%s)", c, ReasonQuorumReady)
	}
	if c := meta.FindStatusCondition(back.Conditions, etcdaas.ConditionDegraded); c == nil || c.Reason != ReasonMemberUnhealthy || !strings.Contains(c.Message, "m-2") {
		t.Errorf("degraded once quorum is back: %+v, want it to name m-2", c)
	}
	// Members to add still make it a scale, not a deployment.
	short := computeStatus(inst, &backend.Result{Members: members(2, 2), Unhealthy: "unhealthy members: m-2: removed"}, nil, t1)
	if short.Phase != v1beta1.PhaseScaling {
		t.Errorf("phase once quorum is back with a member to add = %s, want Scaling", short.Phase)
	}

	// A look that fails before it sees quorum back, then one that sees it: Failed until then,
	// neither a new cluster nor in service.
	failed := *inst
	failed.Status = computeStatus(inst, nil, errors.New("listing the members: context deadline exceeded"), t1)
	if failed.Status.Phase != v1beta1.PhaseFailed {
		t.Errorf("phase after a failed look at a cluster without quorum = %s, want Failed", failed.Status.Phase)
	}
	if c := meta.FindStatusCondition(failed.Status.Conditions, etcdaas.ConditionAvailable); c == nil || c.Status != metav1.ConditionFalse || c.Reason == ReasonDeploying {
		t.Errorf("available after a failed look at a cluster without quorum: %+v", c)
	}
	if st := computeStatus(&failed, &backend.Result{Members: members(3, 2), Unhealthy: "unhealthy members: m-2: not answering"}, nil, t1); st.Phase != v1beta1.PhaseRunning {
		t.Errorf("phase once quorum is back after a failed look = %s, want Running", st.Phase)
	}

	// A new cluster that failed before it ever ran still deploys when it goes on.
	fresh := &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "db", Generation: 1}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}}
	fresh.Status = computeStatus(fresh, nil, backend.Permanent("NoBackups", "no backup yet"), t0)
	if st := computeStatus(fresh, &backend.Result{Members: members(1, 0), Step: "starting member db-0"}, nil, t1); st.Phase != v1beta1.PhaseDeploying {
		t.Errorf("phase of a new cluster going on after a failure = %s, want Deploying", st.Phase)
	}
}
