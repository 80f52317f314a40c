package backend

import (
	"errors"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// TestNoteNotCatchingUpKeepsWhatDegradedSaidOfOtherMembers: a learner behind its leader past
// the deadline while another member is down. Degraded names both, the down member first, and
// says how far the learner is behind when the leader's status is known, only that it is
// behind otherwise; before the deadline nothing is reported.
func TestNoteNotCatchingUpKeepsWhatDegradedSaidOfOtherMembers(t *testing.T) {
	learner := etcdcluster.EndpointStatus{MemberID: 3, Leader: 1, Revision: 7}
	for _, tc := range []struct {
		leader etcdcluster.EndpointStatus
		want   string
	}{
		{etcdcluster.EndpointStatus{MemberID: 1, Revision: 5000}, "unhealthy members: db-1: connection refused; member db-3, a learner, serves but is behind the leader db-0 (its revision 7 against the leader's 5000)"},
		{etcdcluster.EndpointStatus{Err: errors.New("connection refused")}, "unhealthy members: db-1: connection refused; member db-3, a learner, serves but is behind the leader"},
	} {
		lag := LearnerLag(learner, "db-0", tc.leader)
		res := &Result{Unhealthy: "unhealthy members: db-1: connection refused"}
		if NoteNotCatchingUp(res, "db-3", 4, 3, lag, JoinDeadline, JoinDeadline) || res.Blocked != "" || res.Unhealthy != "unhealthy members: db-1: connection refused" {
			t.Fatalf("behind for the deadline only: %+v", res)
		}
		if !NoteNotCatchingUp(res, "db-3", 4, 3, lag, JoinDeadline+time.Second, JoinDeadline) || res.BlockedReason != ReasonMemberNotJoining || res.Unhealthy != tc.want {
			t.Errorf("behind past the deadline: Degraded %q, want %q (%+v)", res.Unhealthy, tc.want, res)
		}
	}
}
