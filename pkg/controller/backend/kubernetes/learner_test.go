package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// TestALearnerIsPromotedWhileAnotherMemberIsDown: db-3, added as a learner by a scale-up,
// serves; then db-1 goes down. The learner is promoted (etcd itself refuses a promotion that
// would cost quorum, or of a learner not caught up): waiting for every member to be healthy
// first would wait forever, since a down member is replaced only once no change is under way
// (and etcd takes one learner at a time, so its replacement could not even be added).
func TestALearnerIsPromotedWhileAnotherMemberIsDown(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(4)
	cluster.members[3].IsLearner = true
	cluster.statuses[3].IsLearner = true
	cluster.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	f := newStepsFixture(t, 4, 4, 3, cluster)
	f.withVolumes(t, 4)
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || !slices.Equal(cluster.promoted, []uint64{103}) {
		t.Fatalf("sync: %+v, %v, promoted %v", res, err, cluster.promoted)
	}
	// The status says what the step did: db-3 votes (a later look that cannot list the
	// members does not take it for a learner).
	if m := res.Members[3]; m.Name != "db-3" || m.Learner {
		t.Fatalf("the promoted member reports %+v, want db-3 voting", m)
	}

	// A learner that does not serve yet is not promoted.
	cluster = healthyCluster(4)
	cluster.members[3].IsLearner = true
	cluster.statuses[3] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	f = newStepsFixture(t, 4, 4, 3, cluster)
	f.withVolumes(t, 4)
	res, err = f.b.Sync(ctx, f.inst)
	if err != nil || len(cluster.promoted) != 0 || res.Step != "promoting member db-3" {
		t.Fatalf("sync with a learner not serving: %+v, %v, promoted %v", res, err, cluster.promoted)
	}
}

// TestAScaleUpIsUndoneWhileItsLearnerDoesNotStart: db-3 was added as a learner for a
// scale-up to 4, but its pod never starts (unschedulable, say); the user sets replicas back
// to 3. The learner is removed, with its pod and volume, rather than waited for forever.
func TestAScaleUpIsUndoneWhileItsLearnerDoesNotStart(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(4)
	cluster.members[3].IsLearner = true
	cluster.statuses[3] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	f := newStepsFixture(t, 3, 4, 3, cluster)
	f.withVolumes(t, 4)
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || !slices.Equal(cluster.removed, []uint64{103}) || len(cluster.promoted) != 0 || reasons(res) != "MemberRemoved" {
		t.Fatalf("sync: %+v, %v, removed %v, promoted %v", res, err, cluster.removed, cluster.promoted)
	}
	if replicas, _ := f.statefulSet(t); replicas != 3 {
		t.Fatalf("StatefulSet replicas %d, want 3", replicas)
	}
	if got := f.volumes(t); !slices.Equal(got, []string{"data-db-0", "data-db-1", "data-db-2"}) {
		t.Fatalf("volumes %v: the learner's must go", got)
	}
	cluster.statuses = cluster.statuses[:3]
	if res, err := f.b.Sync(ctx, f.inst); err != nil || !res.Converged {
		t.Fatalf("after the learner's removal: %+v, %v", res, err)
	}
}

// TestAMemberRemovedFromEtcdInTheMiddleIsReplaced: db-1 was removed from etcd behind the
// controller's back (etcdctl member remove). Its ordinal is replaced by a new member; the
// StatefulSet is not shrunk, which would stop db-2 and delete its volume while etcd still
// counts it, leaving one running member of two: quorum lost.
func TestAMemberRemovedFromEtcdInTheMiddleIsReplaced(t *testing.T) {
	ctx := context.Background()
	f, cluster := convergedWithVolumes(t)
	cluster.members = slices.Delete(cluster.members, 1, 2)
	cluster.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	if replicas, _ := f.statefulSet(t); replicas != 3 {
		t.Fatalf("StatefulSet replicas %d, want 3", replicas)
	}
	if got := f.volumes(t); !slices.Contains(got, "data-db-2") || slices.Contains(got, "data-db-0") == false {
		t.Fatalf("volumes %v: db-0's and db-2's must stay", got)
	}
	if !f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-2", metav1.GetOptions{}); return err }) {
		t.Fatal("db-2's pod was deleted")
	}
	if f.exists(t, func() error { _, err := f.client.CoreV1().Pods("ns").Get(ctx, "db-1", metav1.GetOptions{}); return err }) {
		t.Fatal("the pod of the removed member db-1 still runs on its old data")
	}
	if !slices.Equal(cluster.added, []string{fmt.Sprintf(peerURLFormat, 1)}) || len(cluster.removed) != 0 {
		t.Fatalf("added %v, removed %v: want a new db-1", cluster.added, cluster.removed)
	}
	if got := reasons(res); got != "MemberUnhealthy,MemberAdded" || !strings.Contains(res.Events[0].Note, "Replacing member db-1 (ID 65)") {
		t.Fatalf("events %+v", res.Events)
	}
}

// TestALearnerThatNeverServesIsReportedBlocked: db-3, added as a learner by a scale-up to 4,
// does not serve (its pod cannot start). It is waited for during JoinDeadline (an image pull,
// a node coming up); past it the instance is reported blocked on it, naming it and what a
// person can do, instead of "promoting member db-3" for ever. Once it serves it is promoted;
// a scale back removes it and its record.
func TestALearnerThatNeverServesIsReportedBlocked(t *testing.T) {
	ctx := context.Background()
	for _, fix := range []string{"serves", "scale back"} {
		t.Run(fix, func(t *testing.T) {
			cluster := healthyCluster(4)
			cluster.members[3].IsLearner = true
			cluster.statuses[3] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
			f := newStepsFixture(t, 4, 4, 3, cluster)
			f.withVolumes(t, 4)
			now := time.Unix(1000, 0)
			f.b.health.Now = func() time.Time { return now }
			for _, wait := range []time.Duration{0, backend.JoinDeadline} {
				now = now.Add(wait)
				if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || res.Step != "promoting member db-3" {
					t.Fatalf("learner not serving for %s: %+v, %v", wait, res, err)
				}
			}
			now = now.Add(time.Second)
			res, err := f.b.Sync(ctx, f.inst)
			if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || len(cluster.promoted) != 0 ||
				res.Blocked != "member db-3, added as a learner for spec.replicas 4, has not served for longer than 10m0s (Degraded says why), "+
					"and nothing changes until a person acts: fix what keeps its pod from serving, or set spec.replicas back to 3, which removes it" ||
				!strings.Contains(res.Unhealthy, "db-3") {
				t.Fatalf("learner not serving past the deadline: %+v, %v", res, err)
			}

			if fix == "serves" {
				cluster.statuses[3] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 103, Leader: 100, IsLearner: true}
				if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || !slices.Equal(cluster.promoted, []uint64{103}) {
					t.Fatalf("learner serving: %+v, %v, promoted %v", res, err, cluster.promoted)
				}
				// Its wait as a learner does not count toward replacing the voting member.
				if got := f.b.health.Unhealthy(healthKeyPrefix("ns", "db") + etcdcluster.FormatID(103)); got != 0 {
					t.Fatalf("the promoted member is unhealthy for %s", got)
				}
				return
			}
			f.inst.Spec.Replicas = ptr.To[int32](3)
			if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || !slices.Equal(cluster.removed, []uint64{103}) {
				t.Fatalf("scaled back: %+v, %v, removed %v", res, err, cluster.removed)
			}
			if got := f.b.health.Unhealthy(healthKeyPrefix("ns", "db") + etcdcluster.FormatID(103)); got != 0 {
				t.Fatalf("the removed learner is still remembered, unhealthy for %s", got)
			}
		})
	}
}

// TestALearnerThatNeverCatchesUpIsReportedBlocked: db-3, added as a learner by a scale-up to
// 4, serves, but etcd refuses every promotion as it stays behind its leader (a disk too slow
// for the writes, a network that drops the snapshot). It is waited for during JoinDeadline;
// past it the instance is reported blocked on it (MemberNotJoining), saying that it serves,
// how far behind it is (Degraded: its revision against the leader's) and what a person can
// do, instead of "waiting for it to catch up" for ever. Every look still tries the promotion,
// and the message stays as it is from look to look. Once it catches up it is promoted; a
// scale back removes it. Either way the clock forgets it.
func TestALearnerThatNeverCatchesUpIsReportedBlocked(t *testing.T) {
	ctx := context.Background()
	const wantBlocked = "member db-3, added as a learner for spec.replicas 4, serves but has been behind the leader for longer than 10m0s " +
		"(Degraded says how far), so etcd does not promote it; it is promoted once it catches up, which it may never do by itself: " +
		"fix what keeps it behind (its disk, its network to the leader), or set spec.replicas back to 3, which removes it"
	for _, fix := range []string{"catches up", "scale back"} {
		t.Run(fix, func(t *testing.T) {
			fake := healthyCluster(4)
			fake.members[3].IsLearner = true
			fake.statuses[3].IsLearner = true
			fake.statuses[0].Revision, fake.statuses[3].Revision = 5000, 1
			f, cluster, now := behindLearnerFixture(t, fake)
			tries := func() int { return 1<<30 - cluster.behind }

			for i, wait := range []time.Duration{0, backend.JoinDeadline} {
				*now = now.Add(wait)
				res, err := f.b.Sync(ctx, f.inst)
				if err != nil || res.Blocked != "" || res.Step != "promoting member db-3: waiting for it to catch up with the leader" ||
					res.StepWait != backend.CatchUpInterval || tries() != i+1 {
					t.Fatalf("learner behind for %s: %+v, %v, %d promotions tried", wait, res, err, tries())
				}
			}
			wantUnhealthy := "member db-3, a learner, serves but is behind the leader db-0 (its revision 1 against the leader's 5000)"
			for i, wait := range []time.Duration{time.Second, time.Minute} {
				*now = now.Add(wait)
				res, err := f.b.Sync(ctx, f.inst)
				if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || res.Blocked != wantBlocked ||
					res.Unhealthy != wantUnhealthy || len(fake.promoted) != 0 || tries() != 3+i {
					t.Fatalf("learner behind past the deadline, look %d: %+v, %v, %d promotions tried", i, res, err, tries())
				}
			}
			// The leader goes on (so do the revisions in the status): only Degraded says so.
			fake.statuses[0].Revision, fake.statuses[3].Revision = 5100, 40
			if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != wantBlocked ||
				res.Unhealthy != "member db-3, a learner, serves but is behind the leader db-0 (its revision 40 against the leader's 5100)" {
				t.Fatalf("learner still behind: %+v, %v", res, err)
			}

			if fix == "catches up" {
				cluster.behind = 0
				if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || res.Unhealthy != "" || !slices.Equal(fake.promoted, []uint64{103}) {
					t.Fatalf("learner caught up: %+v, %v, promoted %v", res, err, fake.promoted)
				}
			} else {
				f.inst.Spec.Replicas = ptr.To[int32](3)
				if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || !slices.Equal(fake.removed, []uint64{103}) {
					t.Fatalf("scaled back: %+v, %v, removed %v", res, err, fake.removed)
				}
			}
			if got := f.b.health.Unhealthy(healthKeyPrefix("ns", "db") + etcdcluster.FormatID(103) + "/behind"); got != 0 {
				t.Fatalf("the learner is still remembered behind for %s", got)
			}
		})
	}
}

// TestALearnerSlowToStartThenCatchingUpIsNotReportedAtOnce: db-3's pod took 9 minutes to
// serve (an image pull); then it is behind its leader, as any learner receiving the database
// is at first. Its catching up gets JoinDeadline of its own: a learner that has just started
// to serve is not reported as never catching up.
func TestALearnerSlowToStartThenCatchingUpIsNotReportedAtOnce(t *testing.T) {
	ctx := context.Background()
	fake := healthyCluster(4)
	fake.members[3].IsLearner = true
	fake.statuses[3] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	f, _, now := behindLearnerFixture(t, fake)
	if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" {
		t.Fatalf("learner not serving yet: %+v, %v", res, err)
	}
	*now = now.Add(9 * time.Minute)
	fake.statuses[3] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 103, Leader: 100, IsLearner: true}
	for _, wait := range []time.Duration{0, 2 * time.Minute} {
		*now = now.Add(wait)
		if res, err := f.b.Sync(ctx, f.inst); err != nil || res.Blocked != "" || !strings.Contains(res.Step, "waiting for it to catch up") {
			t.Fatalf("learner behind for %s after a slow start: %+v, %v", wait, res, err)
		}
	}
}

// behindLearnerFixture is the steps fixture of fake, four members of which db-3 is a learner
// etcd refuses to promote as behind its leader (the returned behindLearner counts the
// tries), with a health clock reading the returned time, which the test moves.
func behindLearnerFixture(t *testing.T, fake *fakeMembership) (*stepsFixture, *behindLearner, *time.Time) {
	t.Helper()
	cluster := &behindLearner{fakeMembership: fake, behind: 1 << 30}
	f := newStepsFixture(t, 4, 4, 3, fake)
	f.withVolumes(t, 4)
	f.b.connect = func(*etcdcluster.Access) (membership, error) { return cluster, nil }
	now := time.Unix(1000, 0)
	f.b.health.Now = func() time.Time { return now }
	return f, cluster, &now
}
