package backend

import (
	"errors"
	"strings"
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

// TestSuccessorNotesWaitForTheDeadline: the successor of a replaced member is reported only
// past the deadline, with the member it replaces and without spec.replicas advice (a scale
// back does not remove a successor); Degraded says how far behind it is, after what it said
// of other members.
func TestSuccessorNotesWaitForTheDeadline(t *testing.T) {
	res := &Result{Unhealthy: "unhealthy members: db-2: connection refused"}
	if NoteSuccessorNotJoining(res, "db-1 (ID c9)", "member db-1 (ID 65)", "its pod", "its node", JoinDeadline, JoinDeadline) ||
		NoteSuccessorNotCatchingUp(res, "db-1 (ID c9)", "member db-1 (ID 65)", "", JoinDeadline, JoinDeadline) || res.Blocked != "" ||
		res.Unhealthy != "unhealthy members: db-2: connection refused" {
		t.Fatalf("for the deadline only: %+v", res)
	}
	if !NoteSuccessorNotJoining(res, "db-1 (ID c9)", "member db-1 (ID 65)", "its pod", "its node", JoinDeadline+time.Second, JoinDeadline) ||
		res.BlockedReason != ReasonMemberNotJoining || !strings.Contains(res.Blocked, "to replace member db-1 (ID 65)") ||
		!strings.Contains(res.Blocked, "fix what keeps its pod from serving (its node)") || strings.Contains(res.Blocked, "spec.replicas") {
		t.Fatalf("not serving past the deadline: %+v", res)
	}
	res = &Result{Unhealthy: "unhealthy members: db-2: connection refused"}
	if !NoteSuccessorNotCatchingUp(res, "db-1 (ID c9)", "member db-1 (ID 65)", "", JoinDeadline+time.Second, JoinDeadline) ||
		res.BlockedReason != ReasonMemberNotJoining || strings.Contains(res.Blocked, "spec.replicas") ||
		res.Unhealthy != "unhealthy members: db-2: connection refused; member db-1 (ID c9), a learner, serves but is behind the leader" {
		t.Fatalf("behind past the deadline: %+v", res)
	}
}
