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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// notAnswering is the status of a member whose pod does not serve.
var notAnswering = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}

// servingSuccessor is the status of db-1's successor (ID 201) serving as a learner, at
// revision 1.
var servingSuccessor = etcdcluster.EndpointStatus{Healthy: true, MemberID: 201, Leader: 100, IsLearner: true, Revision: 1}

// replacingFixture is a converged instance of three members on a health clock reading the
// returned time (the test moves it) whose db-1 lost its volume: the first Sync replaced it
// by a learner db-1 (ID 201, c9) that does not serve yet, whose promotions etcd refuses as
// behind its leader while the returned behindLearner says so (never, at first).
func replacingFixture(t *testing.T) (*stepsFixture, *behindLearner, *time.Time) {
	t.Helper()
	return replacingFixtureOf(t, 3)
}

// replacingFixtureOf is replacingFixture with an instance of n members.
func replacingFixtureOf(t *testing.T, n int32) (*stepsFixture, *behindLearner, *time.Time) {
	t.Helper()
	ctx := context.Background()
	f, fake := convergedWithVolumesOf(t, n)
	cluster := &behindLearner{fakeMembership: fake}
	f.b.connect = func(*etcdcluster.Access) (membership, error) { return cluster, nil }
	now := time.Unix(1000, 0)
	f.b.health.Now = func() time.Time { return now }
	if err := f.client.CoreV1().PersistentVolumeClaims("ns").Delete(ctx, "data-db-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	empty := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "data-db-1", UID: "claim-1-new"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
	if _, err := f.client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, empty, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fake.statuses[1] = notAnswering
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || reasons(res) != "MemberUnhealthy,MemberRemoved,MemberAdded" || !slices.Equal(fake.added, []string{fmt.Sprintf(peerURLFormat, 1)}) {
		t.Fatalf("replacing db-1: %+v, %v, added %v", res, err, fake.added)
	}
	return f, cluster, &now
}

// checkReplacementFinishes checks that the Sync promotes db-1's successor, which serves and
// has caught up, ends the replacement without a block, forgets the successor's records on
// the health clock (its wait as a learner does not count against the voting member it now
// is), and that the instance then converges.
func checkReplacementFinishes(t *testing.T, f *stepsFixture, cluster *behindLearner) {
	t.Helper()
	ctx := context.Background()
	cluster.behind = 0
	cluster.statuses[1] = servingSuccessor
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || res.Blocked != "" || res.Unhealthy != "" || !slices.Equal(cluster.promoted, []uint64{201}) || reasons(res) != "MemberPromoted,MemberReplaced" {
		t.Fatalf("successor serving and caught up: %+v, %v, promoted %v", res, err, cluster.promoted)
	}
	for _, key := range []string{"", "/behind"} {
		if got := f.b.health.Unhealthy(healthKeyPrefix("ns", "db") + "c9" + key); got != 0 {
			t.Fatalf("the promoted successor is still remembered (%q) for %s", key, got)
		}
	}
	cluster.members[2].IsLearner = false
	cluster.statuses[1].IsLearner = false
	if res, err := f.b.Sync(ctx, f.inst); err != nil || !res.Converged || res.Blocked != "" {
		t.Fatalf("after the replacement: %+v, %v", res, err)
	}
}

// TestASuccessorThatNeverServesIsReportedBlocked: db-1 lost its volume and was replaced by a
// new member db-1 (ID c9), added as a learner, whose pod does not serve (a node that cannot
// take it, an image that does not pull, a volume that does not bind). It is waited for during
// JoinDeadline; past it the instance is reported blocked on it (MemberNotJoining), naming it,
// the member it replaces and what a person can do, with the same message from look to look,
// instead of "waiting for its new pod" for ever; spec.replicas has nothing to do with it.
// Every look still waits for it, and once it serves it is promoted and the instance converges.
func TestASuccessorThatNeverServesIsReportedBlocked(t *testing.T) {
	ctx := context.Background()
	f, cluster, now := replacingFixture(t)
	for _, wait := range []time.Duration{0, backend.JoinDeadline} {
		*now = now.Add(wait)
		if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || res.Step != "replacing member db-1: waiting for its new pod" {
			t.Fatalf("successor not serving for %s: %+v, %v", wait, res, err)
		}
	}
	const want = "member db-1 (ID c9), added as a learner to replace member db-1 (ID 65), has not served for longer than 10m0s (Degraded says why), " +
		"and the replacement goes no further until a person acts: fix what keeps its pod from serving (its node, its image, its volume)"
	for _, wait := range []time.Duration{time.Second, time.Minute} {
		*now = now.Add(wait)
		res, err := f.b.Sync(ctx, f.inst)
		if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || res.Blocked != want ||
			res.Unhealthy != "unhealthy members: db-1: not answering: connection refused" || len(cluster.promoted) != 0 || len(res.Events) != 0 {
			t.Fatalf("successor not serving past the deadline: %+v, %v", res, err)
		}
	}
	checkReplacementFinishes(t, f, cluster)
}

// TestASuccessorThatNeverCatchesUpIsReportedBlocked: db-1's successor, a new member db-1 (ID
// c9), serves, but etcd refuses every promotion as it stays behind its leader. Each refusal
// is a step under way looked at again after CatchUpInterval; past JoinDeadline the instance
// is reported blocked on it (MemberNotJoining), saying that it serves, which member it
// replaces, how far behind it is (Degraded) and what a person can do, the Progressing message
// the same from look to look. Every look still tries the promotion; once the successor
// catches up it is promoted and the instance converges.
func TestASuccessorThatNeverCatchesUpIsReportedBlocked(t *testing.T) {
	ctx := context.Background()
	f, cluster, now := replacingFixture(t)
	cluster.behind = 1 << 30
	cluster.statuses[0].Revision = 5000
	cluster.statuses[1] = servingSuccessor
	tries := func() int { return 1<<30 - cluster.behind }
	for i, wait := range []time.Duration{0, backend.JoinDeadline} {
		*now = now.Add(wait)
		res, err := f.b.Sync(ctx, f.inst)
		if err != nil || res.Blocked != "" || res.Step != "replacing member db-1: waiting for its new member to catch up with the leader" ||
			res.StepWait != backend.CatchUpInterval || tries() != i+1 {
			t.Fatalf("successor behind for %s: %+v, %v, %d promotions tried", wait, res, err, tries())
		}
	}
	const want = "member db-1 (ID c9), added as a learner to replace member db-1 (ID 65), serves but has been behind the leader for longer than 10m0s " +
		"(Degraded says how far), so etcd does not promote it; it is promoted once it catches up, which it may never do by itself: " +
		"fix what keeps it behind (its disk, its network to the leader)"
	for i, wait := range []time.Duration{time.Second, time.Minute} {
		*now = now.Add(wait)
		cluster.statuses[0].Revision += 100
		res, err := f.b.Sync(ctx, f.inst)
		lag := fmt.Sprintf("member db-1 (ID c9), a learner, serves but is behind the leader db-0 (its revision 1 against the leader's %d)", cluster.statuses[0].Revision)
		if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || res.Blocked != want || res.Unhealthy != lag ||
			len(cluster.promoted) != 0 || tries() != 3+i {
			t.Fatalf("successor behind past the deadline, look %d: %+v, %v, %d promotions tried", i, res, err, tries())
		}
	}
	checkReplacementFinishes(t, f, cluster)
}

// TestABlockedSuccessorDoesNotHideAnotherUnhealthyMember: in an instance of five members,
// db-1 lost its volume and was replaced by a new member db-1 (ID c9) whose pod never serves,
// while db-3, a voting member, does not answer either (a quorum does). Past JoinDeadline the
// instance is blocked on the successor, and Degraded still names both db-1 and db-3 with
// why, the same from one look to the next, so that a person learns that db-3 is down too.
func TestABlockedSuccessorDoesNotHideAnotherUnhealthyMember(t *testing.T) {
	ctx := context.Background()
	f, cluster, now := replacingFixtureOf(t, 5)
	cluster.statuses[3] = notAnswering
	const unhealthy = "unhealthy members: db-1: not answering: connection refused; db-3: not answering: connection refused"
	look := func(wait time.Duration, blocked bool) {
		t.Helper()
		*now = now.Add(wait)
		res, err := f.b.Sync(ctx, f.inst)
		if err != nil || (res.BlockedReason == backend.ReasonMemberNotJoining) != blocked || res.Unhealthy != unhealthy || len(cluster.promoted) != 0 {
			t.Fatalf("successor not serving beside db-3 down, %s more: %+v, %v; want blocked %v", wait, res, err, blocked)
		}
	}
	look(0, false)
	look(backend.JoinDeadline, false)
	look(time.Second, true)
	look(time.Minute, true)
}

// learnerCases are the two kinds of learner the tests below follow: a scale-up's (db-3) and
// the successor of a replaced member (db-1). learner sets up the fixture with the learner not
// answering and etcd refusing its first behind promotions as behind its leader; it returns
// the learner's ordinal and its status once it serves.
var learnerCases = []struct {
	name    string
	learner func(t *testing.T, behind int) (*stepsFixture, *behindLearner, *time.Time, int, etcdcluster.EndpointStatus)
}{
	{"scale-up", func(t *testing.T, behind int) (*stepsFixture, *behindLearner, *time.Time, int, etcdcluster.EndpointStatus) {
		fake := healthyCluster(4)
		fake.members[3].IsLearner = true
		fake.statuses[3] = notAnswering
		f, cluster, now := behindLearnerFixture(t, fake)
		cluster.behind = behind
		return f, cluster, now, 3, etcdcluster.EndpointStatus{Healthy: true, MemberID: 103, Leader: 100, IsLearner: true}
	}},
	{"successor", func(t *testing.T, behind int) (*stepsFixture, *behindLearner, *time.Time, int, etcdcluster.EndpointStatus) {
		f, cluster, now := replacingFixture(t)
		cluster.behind = behind
		return f, cluster, now, 1, servingSuccessor
	}},
}

// TestALearnerThatServedThenStoppedGetsTheDeadlineAgain: a learner whose pod took 9 minutes
// to serve, then served (behind its leader) for a minute, then stopped serving: it has not
// served for a moment, not for 11 minutes, so it is not reported at once; its not-serving
// clock starts when it stopped, and it is reported once it has not served for JoinDeadline
// since. So for a scale-up's learner (db-3) and for the successor of a replaced member (db-1).
func TestALearnerThatServedThenStoppedGetsTheDeadlineAgain(t *testing.T) {
	ctx := context.Background()
	for _, tc := range learnerCases {
		t.Run(tc.name, func(t *testing.T) {
			f, cluster, now, o, serving := tc.learner(t, 1<<30)
			look := func(wait time.Duration, status etcdcluster.EndpointStatus) *backend.Result {
				t.Helper()
				*now = now.Add(wait)
				cluster.statuses[o] = status
				res, err := f.b.Sync(ctx, f.inst)
				if err != nil {
					t.Fatalf("sync: %+v, %v", res, err)
				}
				return res
			}
			for _, step := range []struct {
				wait    time.Duration
				status  etcdcluster.EndpointStatus
				blocked bool
			}{
				{0, notAnswering, false},
				{9 * time.Minute, notAnswering, false},
				{0, serving, false},
				{time.Minute, serving, false},
				{time.Minute, notAnswering, false}, // 11 minutes after it was first seen not serving
				{backend.JoinDeadline, notAnswering, false},
				{time.Second, notAnswering, true},
			} {
				if res := look(step.wait, step.status); (res.Blocked != "") != step.blocked ||
					(step.blocked && !strings.Contains(res.Blocked, "has not served for longer than 10m0s")) {
					t.Fatalf("learner %s after %s more: blocked %q, want blocked %v (%+v)", step.status.Err, step.wait, res.Blocked, step.blocked, res)
				}
			}
		})
	}
}

// lostPromotion is a membership whose promotions succeed but whose answer is lost (a timeout
// after etcd committed the change).
type lostPromotion struct{ *behindLearner }

func (l lostPromotion) Promote(ctx context.Context, id uint64) error {
	if err := l.behindLearner.Promote(ctx, id); err != nil {
		return err
	}
	return errors.New("etcdserver: request timed out")
}

// TestALearnerPromotedWithoutAnAnswerIsNotReplacedAtOnce: a learner did not serve for over
// 10 minutes (a slow pod), then served and was promoted, but the answer was lost, so that
// the next look finds it voting. Its wait as a learner does not count against the voting
// member it now is: stopped a moment later, it is waited for the grace period like any
// member, not replaced at once (its volume deleted) as unhealthy for over 10 minutes. So for
// a scale-up's learner (db-3) and for the successor of a replaced member (db-1, ID c9).
func TestALearnerPromotedWithoutAnAnswerIsNotReplacedAtOnce(t *testing.T) {
	ctx := context.Background()
	for _, tc := range learnerCases {
		t.Run(tc.name, func(t *testing.T) {
			f, cluster, now, o, serving := tc.learner(t, 0)
			f.b.connect = func(*etcdcluster.Access) (membership, error) { return lostPromotion{cluster}, nil }
			removed := len(cluster.removed)
			for _, wait := range []time.Duration{0, backend.JoinDeadline + time.Second} {
				*now = now.Add(wait)
				if _, err := f.b.Sync(ctx, f.inst); err != nil {
					t.Fatalf("learner not serving for %s: %v", wait, err)
				}
			}
			*now = now.Add(5 * time.Second)
			cluster.statuses[o] = serving
			if _, err := f.b.Sync(ctx, f.inst); err == nil || len(cluster.promoted) != 1 {
				t.Fatalf("promotion whose answer is lost: %v, promoted %v", err, cluster.promoted)
			}
			*now = now.Add(5 * time.Second)
			i := slices.IndexFunc(cluster.members, func(m etcdcluster.Member) bool { return m.ID == serving.MemberID })
			cluster.members[i].IsLearner = false
			cluster.statuses[o].IsLearner = false
			if _, err := f.b.Sync(ctx, f.inst); err != nil {
				t.Fatalf("learner found voting: %v", err)
			}
			*now = now.Add(5 * time.Second)
			cluster.statuses[o] = notAnswering
			res, err := f.b.Sync(ctx, f.inst)
			if err != nil || len(cluster.removed) != removed || strings.Contains(reasons(res), "MemberUnhealthy") {
				t.Fatalf("the new voting member, down for a moment, is replaced: %v, %v, removed %v", reasons(res), err, cluster.removed)
			}
		})
	}
}
