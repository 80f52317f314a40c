package controller

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// Condition reasons the controller sets.
const (
	ReasonMembersReady = "MembersReady"
	// ReasonQuorumReady means a majority of the voting members is ready, not every member:
	// the cluster answers its clients, and Degraded says what is wrong with the others.
	ReasonQuorumReady = "QuorumReady"
	// ReasonMembersNotReady means fewer than a majority of the voting members is ready.
	ReasonMembersNotReady = "MembersNotReady"
	// ReasonDeploying means a new cluster is being deployed: it is not available until every
	// member it was created with is ready.
	ReasonDeploying       = "Deploying"
	ReasonConverged       = "Converged"
	ReasonReconciling     = "Reconciling"
	ReasonAsExpected      = "AsExpected"
	ReasonMemberUnhealthy = "MemberUnhealthy"
	// ReasonQuorumLost means fewer than a majority of the voting members answer.
	ReasonQuorumLost     = "QuorumLost"
	ReasonReconcileError = "ReconcileError"
	ReasonDeleting       = "Deleting"
	// ReasonMembersDeleted means the members are gone and other finalizers keep the instance.
	ReasonMembersDeleted    = "MembersDeleted"
	reasonDefaultPermanent  = "CannotReconcile"
	maxConditionMessageSize = 32 * 1024
)

// computeStatus returns the status to write for inst after a Sync that returned res and
// syncErr. It starts from inst's current status so that unchanged conditions keep their
// lastTransitionTime; inst is not modified.
func computeStatus(inst *v1beta1.ETCDInstance, res *backend.Result, syncErr error, now metav1.Time) v1beta1.ETCDInstanceStatus {
	status := observedStatus(inst, res)
	conds := conditionSetter{conditions: &status.Conditions, generation: inst.Generation, now: now}
	desired := backend.DesiredReplicas(inst)
	if pe, ok := backend.IsPermanent(syncErr); ok {
		status.Phase = v1beta1.PhaseFailed
		setPermanentFailure(conds, inst, pe)
		return status
	}
	if res != nil && res.QuorumLost != "" {
		status.Phase = v1beta1.PhaseFailed
		setQuorumLost(conds, inst, res)
		return status
	}
	if res != nil && res.Converged && syncErr == nil {
		status.Phase = v1beta1.PhaseRunning
		setConverged(conds, &status, desired, res)
		return status
	}
	status.Phase = progressPhase(&status, desired, res, syncErr)
	setInProgress(conds, &status, desired, res, syncErr)
	return status
}

// observedStatus is inst's current status with the generation, the selector and the members
// that res (nil when Sync did not get as far) observed. Without spec.backup the
// BackupSucceeded condition no longer says anything and is removed; status.backup stays, as
// the record of the last backup taken (it is still in its destination).
func observedStatus(inst *v1beta1.ETCDInstance, res *backend.Result) v1beta1.ETCDInstanceStatus {
	status := *inst.Status.DeepCopy()
	status.ObservedGeneration = inst.Generation
	if inst.Spec.Backup == nil {
		meta.RemoveStatusCondition(&status.Conditions, etcdaas.ConditionBackupSucceeded)
	}
	status.Selector = etcdaas.MemberSelector(inst.Name)
	if res != nil {
		status.Members = withLastVersions(res.Members, inst.Status.Members)
		status.Replicas = int32(len(res.Members))
		status.ReadyReplicas = res.Ready()
	}
	return status
}

// conditionSetter sets the conditions of one status, observed at one generation at one time.
type conditionSetter struct {
	conditions *[]metav1.Condition
	generation int64
	now        metav1.Time
}

// set sets the condition condType, its message cut to maxConditionMessageSize.
func (c conditionSetter) set(condType string, st metav1.ConditionStatus, reason, msg string) {
	msg = conditionMessage(msg)
	meta.SetStatusCondition(c.conditions, metav1.Condition{
		Type: condType, Status: st, Reason: reason, Message: msg, ObservedGeneration: c.generation, LastTransitionTime: c.now,
	})
}

// conditionMessage returns msg as valid UTF-8 of at most maxConditionMessageSize bytes, cut
// at a character: invalid bytes, or a character cut in two, would reach the server as U+FFFD
// (three bytes each) and could take the message past the limit it enforces.
func conditionMessage(msg string) string {
	msg = strings.ToValidUTF8(msg, "\uFFFD")
	if len(msg) <= maxConditionMessageSize {
		return msg
	}
	cut := maxConditionMessageSize
	for cut > 0 && !utf8.RuneStart(msg[cut]) {
		cut--
	}
	return msg[:cut]
}

// countMembers is "1 member" or "N members".
func countMembers(n int) string {
	if n == 1 {
		return "1 member"
	}
	return fmt.Sprintf("%d members", n)
}

// readyMessage is the Available message: how many of the members that exist are ready and,
// while there are not as many members as the spec asks for, how many it asks for.
func readyMessage(status *v1beta1.ETCDInstanceStatus, desired int) string {
	msg := fmt.Sprintf("%d/%d members ready", status.ReadyReplicas, status.Replicas)
	if int(status.Replicas) != desired {
		msg += fmt.Sprintf(", %d requested", desired)
	}
	return msg
}

// permanentReason is the reason the conditions and the Event of pe give.
func permanentReason(pe *backend.PermanentError) string {
	if pe.Reason == "" {
		return reasonDefaultPermanent
	}
	return pe.Reason
}

// setPermanentFailure sets the conditions of an instance whose Sync failed with pe, an error
// that retrying cannot fix.
func setPermanentFailure(conds conditionSetter, inst *v1beta1.ETCDInstance, pe *backend.PermanentError) {
	reason := permanentReason(pe)
	conds.set(etcdaas.ConditionAvailable, metav1.ConditionFalse, reason, pe.Message)
	conds.set(etcdaas.ConditionProgressing, metav1.ConditionFalse, reason, permanentProgress(inst, pe))
	conds.set(etcdaas.ConditionDegraded, metav1.ConditionTrue, reason, pe.Message)
}

// setQuorumLost sets the conditions of an instance whose voting members lost their quorum.
func setQuorumLost(conds conditionSetter, inst *v1beta1.ETCDInstance, res *backend.Result) {
	// Nothing is automatic after a quorum loss: a person decides to recover.
	conds.set(etcdaas.ConditionAvailable, metav1.ConditionFalse, ReasonQuorumLost, res.QuorumLost)
	conds.set(etcdaas.ConditionProgressing, metav1.ConditionFalse, ReasonQuorumLost,
		fmt.Sprintf("nothing is done automatically: POST etcdinstances/%s/recover rebuilds the cluster from the most advanced surviving member", inst.Name))
	conds.set(etcdaas.ConditionDegraded, metav1.ConditionTrue, ReasonQuorumLost, res.QuorumLost+"; "+res.Unhealthy)
}

// setConverged sets the conditions of an instance whose members are as its spec asks, but
// for a change the backend refused (res.Refused), which Progressing and Degraded then say.
func setConverged(conds conditionSetter, status *v1beta1.ETCDInstanceStatus, desired int, res *backend.Result) {
	conds.set(etcdaas.ConditionAvailable, metav1.ConditionTrue, ReasonMembersReady, readyMessage(status, desired))
	if res.Refused != "" {
		conds.set(etcdaas.ConditionProgressing, metav1.ConditionFalse, res.RefusedReason, res.Refused)
		conds.set(etcdaas.ConditionDegraded, metav1.ConditionTrue, res.RefusedReason, res.Refused)
		return
	}
	conds.set(etcdaas.ConditionProgressing, metav1.ConditionFalse, ReasonConverged, countMembers(desired)+" as requested")
	conds.set(etcdaas.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "every member is healthy")
}

// progressPhase is the phase of an instance that has not converged, from its current status,
// the step res is in (res is nil when Sync did not get as far) and syncErr.
func progressPhase(status *v1beta1.ETCDInstanceStatus, desired int, res *backend.Result, syncErr error) v1beta1.Phase {
	switch {
	case res != nil && res.StepReason == backend.StepRestoring:
		return v1beta1.PhaseRestoring
	case res != nil && res.StepReason == backend.StepRecovering, status.Phase == v1beta1.PhaseRecovering:
		// Rebuilt from a survivor: recovering until the members are back.
		return v1beta1.PhaseRecovering
	case res != nil && res.StepReason == backend.StepUpgrading:
		// A version roll restarts one member at a time: the cluster keeps serving.
		return v1beta1.PhaseRunning
	case syncErr != nil && status.Phase == v1beta1.PhaseRunning && int(status.Replicas) == desired &&
		(res == nil || !res.StepReason.ChangesMembership()):
		// A step that failed without changing the membership (such as an update that lost a
		// race with the StatefulSet controller, retried at once): Degraded says what failed. A
		// failed scale or replacement shows Scaling below.
		return v1beta1.PhaseRunning
	case res != nil && res.Refused != "" && status.Phase == v1beta1.PhaseFailed && quorumReady(status.Members):
		// Failed by a controller that stopped at a version it could not run, though the
		// members kept serving: they still do, and the refusal no longer stops the controller.
		return v1beta1.PhaseRunning
	case newCluster(status):
		return v1beta1.PhaseDeploying
	case status.Phase == v1beta1.PhaseFailed && !quorumReady(status.Members):
		// It lost quorum and nothing seen since says it is back.
		return v1beta1.PhaseFailed
	case int(status.Replicas) != desired || (res != nil && res.StepReason.ChangesMembership()):
		return v1beta1.PhaseScaling
	case status.Phase == v1beta1.PhaseRunning || status.Phase == v1beta1.PhaseScaling:
		// Every member exists but one is not healthy (a member just added that does not serve
		// yet, or one that stopped answering): a scale goes on until the members converge, a
		// running cluster keeps running; Available and Degraded say what is wrong. Deploying
		// is only the start of a new cluster.
		return status.Phase
	case status.Phase == v1beta1.PhaseFailed:
		// A cluster in service that lost quorum and got it back by itself (its lost members
		// restarted): it serves again, Degraded says what is still wrong.
		return v1beta1.PhaseRunning
	default:
		return v1beta1.PhaseDeploying
	}
}

// newCluster reports whether status is that of a cluster being deployed: no phase, Pending or
// Deploying, or Failed by a permanent error (such as spec.restoreFrom's backup missing, before
// the cluster ran). A Failed cluster whose Available condition says why quorum is missing
// (QuorumLost, or MembersNotReady after a look that did not see it back) was in service: it
// is not deployed anew when its members come back.
func newCluster(status *v1beta1.ETCDInstanceStatus) bool {
	switch status.Phase {
	case "", v1beta1.PhasePending, v1beta1.PhaseDeploying:
		return true
	case v1beta1.PhaseFailed:
		c := meta.FindStatusCondition(status.Conditions, etcdaas.ConditionAvailable)
		return c == nil || (c.Reason != ReasonQuorumLost && c.Reason != ReasonMembersNotReady)
	}
	return false
}

// quorumReady reports whether a majority of the voting members is ready.
func quorumReady(members []v1beta1.MemberStatus) bool {
	ready, voters := readyVoters(members)
	return voters > 0 && ready >= backend.Quorum(voters)
}

// setInProgress sets the conditions of an instance that has not converged: Available from
// its ready members, Progressing from the step res is in (False when it stopped or is blocked,
// or with no step under way when a change was refused: nothing changes by itself), Degraded
// from what stops it. Each condition is set once, so that
// one that stays as it was keeps its lastTransitionTime.
func setInProgress(conds conditionSetter, status *v1beta1.ETCDInstanceStatus, desired int, res *backend.Result, syncErr error) {
	setAvailableInProgress(conds, status, desired)
	progress, progressReason, progressMsg := metav1.ConditionTrue, ReasonReconciling, "moving to "+countMembers(desired)
	if res != nil && res.Step != "" {
		progressMsg = res.Step
		if res.StepReason != "" {
			progressReason = string(res.StepReason)
		}
	}
	if res != nil && res.Refused != "" && res.Step == "" && res.Stalled == "" {
		// Nothing under way (a scale, a repair, a roll would say what it does): the refusal.
		progress, progressReason, progressMsg = metav1.ConditionFalse, res.RefusedReason, res.Refused
	}
	switch {
	case res != nil && res.Stalled != "":
		progress, progressReason = metav1.ConditionFalse, res.StalledReason
		conds.set(etcdaas.ConditionDegraded, metav1.ConditionTrue, res.StalledReason, res.Stalled)
	case syncErr != nil:
		conds.set(etcdaas.ConditionDegraded, metav1.ConditionTrue, ReasonReconcileError, errorAndUnhealthy(syncErr, res))
	case res != nil && res.Refused != "":
		// The members go on as they are: a block says what a person can do for them.
		if res.Blocked != "" {
			progress, progressReason, progressMsg = metav1.ConditionFalse, string(res.BlockedReason), res.Blocked
		}
		conds.set(etcdaas.ConditionDegraded, metav1.ConditionTrue, res.RefusedReason, refusedAndUnhealthy(res))
	case res != nil && res.Blocked != "":
		// Nothing will change by itself: Progressing says what a person can do, Degraded
		// still says which members are unhealthy and why.
		progress, progressReason, progressMsg = metav1.ConditionFalse, string(res.BlockedReason), res.Blocked
		conds.set(etcdaas.ConditionDegraded, metav1.ConditionTrue, ReasonMemberUnhealthy, res.Unhealthy)
	case res != nil && res.Unhealthy != "":
		conds.set(etcdaas.ConditionDegraded, metav1.ConditionTrue, ReasonMemberUnhealthy, res.Unhealthy)
	default:
		conds.set(etcdaas.ConditionDegraded, metav1.ConditionFalse, ReasonAsExpected, "every member is healthy")
	}
	conds.set(etcdaas.ConditionProgressing, progress, progressReason, progressMsg)
}

// refusedAndUnhealthy is Degraded's message for a change the backend refused: the refusal,
// then which members are unhealthy and why, if any.
func refusedAndUnhealthy(res *backend.Result) string {
	if res.Unhealthy == "" {
		return res.Refused
	}
	return res.Refused + "; " + res.Unhealthy
}

// errorAndUnhealthy is Degraded's message for a step that failed with syncErr: the error,
// then which members the step found unhealthy, if any (res.Unhealthy), so that a failing step
// does not hide a member that is down.
func errorAndUnhealthy(syncErr error, res *backend.Result) string {
	if res == nil || res.Unhealthy == "" {
		return syncErr.Error()
	}
	return syncErr.Error() + "; " + res.Unhealthy
}

// setAvailableInProgress sets the Available condition of an instance that has not converged,
// whose phase is set. A cluster in service is available while a majority of its voting
// members is ready: it answers its clients then, whatever else is under way (a scale, a
// learner catching up, a member down), and Degraded says what is wrong. A new cluster
// (Deploying) is not available until it first converges, with every member it was created
// with ready, so that waiting for Available after creating an instance waits for all of them.
func setAvailableInProgress(conds conditionSetter, status *v1beta1.ETCDInstanceStatus, desired int) {
	msg := readyMessage(status, desired)
	ready, voters := readyVoters(status.Members)
	switch {
	case status.Phase == v1beta1.PhaseDeploying:
		conds.set(etcdaas.ConditionAvailable, metav1.ConditionFalse, ReasonDeploying, msg+"; the new cluster is still being deployed")
	case voters == 0 || ready < backend.Quorum(voters):
		conds.set(etcdaas.ConditionAvailable, metav1.ConditionFalse, ReasonMembersNotReady,
			fmt.Sprintf("%s; fewer than a quorum of the voting members (%d of %d) ready", msg, ready, voters))
	case ready == voters:
		// Every voting member serves; a learner being added does not serve clients yet.
		conds.set(etcdaas.ConditionAvailable, metav1.ConditionTrue, ReasonMembersReady, msg)
	default:
		conds.set(etcdaas.ConditionAvailable, metav1.ConditionTrue, ReasonQuorumReady,
			fmt.Sprintf("%s; a quorum of the voting members (%d of %d) ready", msg, ready, voters))
	}
}

// readyVoters counts the voting members (learners aside) and those of them that are ready.
func readyVoters(members []v1beta1.MemberStatus) (ready, voters int) {
	for _, m := range members {
		if m.Learner {
			continue
		}
		voters++
		if m.Ready {
			ready++
		}
	}
	return ready, voters
}

// deletingStatus is the status written while the members of inst are being removed. The
// deletion is what the controller acts on, so observedGeneration follows the generation the
// deletion gave the object, as kube-controller-manager's workload controllers report it.
func deletingStatus(inst *v1beta1.ETCDInstance, now metav1.Time) v1beta1.ETCDInstanceStatus {
	status := *inst.Status.DeepCopy()
	status.Phase = v1beta1.PhaseDeleting
	status.ObservedGeneration = inst.Generation
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: etcdaas.ConditionProgressing, Status: metav1.ConditionTrue, Reason: ReasonDeleting,
		Message: "stopping the members and removing their data", ObservedGeneration: inst.Generation, LastTransitionTime: now,
	})
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: etcdaas.ConditionAvailable, Status: metav1.ConditionFalse, Reason: ReasonDeleting,
		Message: "the instance is being deleted", ObservedGeneration: inst.Generation, LastTransitionTime: now,
	})
	return status
}

// membersDeletedStatus is the status of inst once its members and their data are gone, for an
// instance that other finalizers keep after the controller's own is removed: no members, and
// Progressing says what the instance waits for. Without other finalizers the object goes
// with the controller's finalizer, and the status is left as it is (nothing is written).
func membersDeletedStatus(inst *v1beta1.ETCDInstance, now metav1.Time) v1beta1.ETCDInstanceStatus {
	others := slices.DeleteFunc(slices.Clone(inst.Finalizers), func(f string) bool { return f == Finalizer })
	if len(others) == 0 {
		return inst.Status
	}
	status := deletingStatus(inst, now)
	status.Members = nil
	status.Replicas, status.ReadyReplicas = 0, 0
	msg := "every member was stopped and its data removed; the instance waits for its other finalizers: " + strings.Join(others, ", ")
	meta.SetStatusCondition(&status.Conditions, metav1.Condition{
		Type: etcdaas.ConditionProgressing, Status: metav1.ConditionFalse, Reason: ReasonMembersDeleted, Message: msg,
		ObservedGeneration: inst.Generation, LastTransitionTime: now,
	})
	return status
}

// withLastVersions returns members with, for each member that does not answer (no version),
// the version it reported last: the rule on changes of spec.version reads what the members
// run, and a member that is down still has the data of that version.
func withLastVersions(members, previous []v1beta1.MemberStatus) []v1beta1.MemberStatus {
	last := make(map[string]string, len(previous))
	for _, m := range previous {
		if m.Version != "" {
			last[m.Name] = m.Version
		}
	}
	out := make([]v1beta1.MemberStatus, len(members))
	for i, m := range members {
		if m.Version == "" {
			m.Version = last[m.Name]
		}
		out[i] = m
	}
	return out
}

// restoreSourceReasons are the permanent errors of a new cluster that spec.restoreFrom cannot
// start: a spec change cannot help, since spec.restoreFrom is immutable.
var restoreSourceReasons = map[string]bool{
	ReasonRestoreSourceNotFound: true, ReasonRestoreSourceNoDestination: true, ReasonRestoreSourceMisconfigured: true,
	ReasonNoBackups: true, ReasonBackupNotFound: true, ReasonRestoreSourceUnreachable: true, backend.ReasonInvalidBackup: true,
}

// permanentProgress is the Progressing message of an instance that failed with pe, a
// permanent error: what would let the controller go on.
func permanentProgress(inst *v1beta1.ETCDInstance, pe *backend.PermanentError) string {
	restoring := inst.Spec.RestoreFrom != nil && restoreSourceReasons[permanentReason(pe)]
	if restoring && pe.RetryAfter > 0 {
		return fmt.Sprintf("the controller reads the source's backup destination again every %s, when the source changes "+
			"and when this instance changes: it goes on by itself once the configuration the Degraded message names is fixed", pe.RetryAfter)
	}
	if pe.RetryAfter > 0 {
		return fmt.Sprintf("the controller looks again every %s and whenever the instance changes: "+
			"it goes on once what the message names is gone", pe.RetryAfter)
	}
	if restoring {
		return "spec.restoreFrom is immutable: the controller looks at the source again when the source is created, " +
			"changes its spec.backup or records a new backup, at every resync (10 minutes by default) and when this instance changes; " +
			"to start from another source, delete this instance and create it again"
	}
	return "the controller cannot make progress until the spec changes"
}
