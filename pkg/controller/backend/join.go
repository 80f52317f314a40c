package backend

import (
	"fmt"
	"time"

	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// CatchUpInterval is how long a look that found a learner behind its leader (its promotion
// refused) waits before the next look tries again (Result.StepWait). A learner receiving a
// large database stays behind for minutes; each look spends up to etcdcluster.PromoteWait
// on the promotion, so the controller's few workers stay free most of the time.
const CatchUpInterval = 5 * time.Second

// JoinDeadline is how long a member added by a scale-up, or as the successor of a replaced
// member, may go without serving before the instance is reported blocked on it
// (NoteNotJoining, NoteSuccessorNotJoining): its pod may be pulling an image or
// waiting for a node, its server retried after a failed start. Deployment's progress
// deadline judges a rollout the same way.
const JoinDeadline = 10 * time.Minute

// NoteNotJoining records in res, once waited is longer than deadline (JoinDeadline unless a
// backend is told otherwise), that the instance is blocked (Blocked, with reason
// ReasonMemberNotJoining) on member, a learner added by a scale-up to desired members, which
// has not served for that long: nothing changes until a person fixes what keeps what ("its
// pod", "it") from serving, or sets spec.replicas back to back, which removes it. Degraded
// says why it does not serve. The message does not change from one look to the next, so that
// neither does the status. It reports whether the instance is blocked.
func NoteNotJoining(res *Result, member string, desired, back int, what string, waited, deadline time.Duration) bool {
	return blockOnLearner(res, waited, deadline, "member %s, added as a learner for spec.replicas %d, has not served for longer than %s (Degraded says why), "+
		"and nothing changes until a person acts: fix what keeps %s from serving, or set spec.replicas back to %d, which removes it",
		member, desired, deadline, what, back)
}

// NoteNotCatchingUp records in res, once behind is longer than deadline (as for
// NoteNotJoining), that the instance is blocked (Blocked, reason ReasonMemberNotJoining) on
// member, a learner added by a scale-up to desired members which serves but which etcd has
// refused to promote for that long because it is behind its leader: its disk may be too slow
// for the writes, or its network may keep dropping the snapshot the leader sends. Each later
// look still tries to promote it, and it is promoted once it catches up; a person can fix
// what keeps it behind, or set spec.replicas back to back, which removes it. lag (LearnerLag)
// names the leader and says how far behind the learner is; it goes to Degraded (res.Unhealthy,
// after what that says of other members), where it changes as the revisions of the members'
// status do, while the Blocked message does not change from one look to the next. It reports
// whether the instance is blocked.
func NoteNotCatchingUp(res *Result, member string, desired, back int, lag string, behind, deadline time.Duration) bool {
	if !blockOnLearner(res, behind, deadline, "member %s, added as a learner for spec.replicas %d, serves but has been behind the leader for longer than %s "+
		"(Degraded says how far), so etcd does not promote it; it is promoted once it catches up, which it may never do by itself: "+
		"fix what keeps it behind (its disk, its network to the leader), or set spec.replicas back to %d, which removes it",
		member, desired, deadline, back) {
		return false
	}
	noteBehind(res, member, lag)
	return true
}

// NoteSuccessorNotJoining records in res, once waited is longer than deadline (as for
// NoteNotJoining), that the instance is blocked (Blocked, reason ReasonMemberNotJoining) on
// member, a learner added to replace replaced (a voting member removed as unhealthy: "member
// db-1 (ID 65)"), which has not served for that long: the replacement goes no further until a
// person fixes what keeps what ("its pod") from serving, such as causes ("its node, its image,
// its volume").
// spec.replicas has nothing to do with it, so the message does not suggest setting it back.
// Degraded says why it does not serve; the message does not change from one look to the next.
// It reports whether the instance is blocked.
func NoteSuccessorNotJoining(res *Result, member, replaced, what, causes string, waited, deadline time.Duration) bool {
	return blockOnLearner(res, waited, deadline, "member %s, added as a learner to replace %s, has not served for longer than %s (Degraded says why), "+
		"and the replacement goes no further until a person acts: fix what keeps %s from serving (%s)",
		member, replaced, deadline, what, causes)
}

// NoteSuccessorNotCatchingUp records in res, once behind is longer than deadline, that the
// instance is blocked (Blocked, reason ReasonMemberNotJoining) on member, a learner added to
// replace replaced (as for NoteSuccessorNotJoining), which serves but which etcd has refused to
// promote for that long because it is behind its leader. Each later look still tries to
// promote it; a person can fix what keeps it behind. lag goes to Degraded as for
// NoteNotCatchingUp, and the Blocked message does not change from one look to the next. It
// reports whether the instance is blocked.
func NoteSuccessorNotCatchingUp(res *Result, member, replaced, lag string, behind, deadline time.Duration) bool {
	if !blockOnLearner(res, behind, deadline, "member %s, added as a learner to replace %s, serves but has been behind the leader for longer than %s "+
		"(Degraded says how far), so etcd does not promote it; it is promoted once it catches up, which it may never do by itself: "+
		"fix what keeps it behind (its disk, its network to the leader)",
		member, replaced, deadline) {
		return false
	}
	noteBehind(res, member, lag)
	return true
}

// blockOnLearner records in res, once waited is longer than deadline, that the instance is
// blocked (reason ReasonMemberNotJoining) on a learner, with the message format and args
// give; it reports whether it is. The Note functions above word the message.
func blockOnLearner(res *Result, waited, deadline time.Duration, format string, args ...any) bool {
	if waited <= deadline {
		return false
	}
	res.BlockedReason = ReasonMemberNotJoining
	res.Blocked = fmt.Sprintf(format, args...)
	return true
}

// noteBehind adds to Degraded (res.Unhealthy, after what that says of other members) that
// member, a learner, serves but is behind lag (LearnerLag; "the leader" when empty).
func noteBehind(res *Result, member, lag string) {
	if lag == "" {
		lag = "the leader"
	}
	behindMsg := fmt.Sprintf("member %s, a learner, serves but is behind %s", member, lag)
	if res.Unhealthy != "" {
		behindMsg = res.Unhealthy + "; " + behindMsg
	}
	res.Unhealthy = behindMsg
}

// LearnerLag names the leader a learner is behind and by how much, from learner, the
// learner's status, and leader, its leader's (named leaderName): "the leader db-0 (its
// revision 7 against the leader's 5000)", the revisions the members' status shows. It is
// empty when the leader's status is unknown (its MemberID is not the learner's leader).
func LearnerLag(learner etcdcluster.EndpointStatus, leaderName string, leader etcdcluster.EndpointStatus) string {
	if leader.MemberID == 0 || leader.MemberID != learner.Leader {
		return ""
	}
	return fmt.Sprintf("the leader %s (its revision %d against the leader's %d)", leaderName, learner.Revision, leader.Revision)
}
