package backend

import (
	"fmt"
	"time"
)

// JoinDeadline is how long a member added by a scale-up may go without serving before the
// instance is reported blocked on it (NoteNotJoining): its pod may be pulling an image or
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
	if waited <= deadline {
		return false
	}
	res.BlockedReason = ReasonMemberNotJoining
	res.Blocked = fmt.Sprintf("member %s, added as a learner for spec.replicas %d, has not served for longer than %s (Degraded says why), "+
		"and nothing changes until a person acts: fix what keeps %s from serving, or set spec.replicas back to %d, which removes it",
		member, desired, deadline, what, back)
	return true
}
