package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// crashingPod is a member pod whose etcd container crash-loops with message as its last words.
func crashingPod(name, message string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name},
		Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
			Name:                 "etcd",
			State:                corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s restarting failed container"}},
			LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 2, Message: message}},
		}}},
	}
}

// With no pod ready (the StatefulSet waits for each pod in order), a cluster of three whose
// members 1 and 2 crash (volumes lost) is a quorum loss naming them and why, not "waiting for
// member 0"; members that answer without a leader still count, and a one-member instance
// whose pod starts is not a loss.
func TestQuorumLossWithoutAReadyPod(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(3)
	cluster.listErr = errors.New("context deadline exceeded")
	cluster.statuses[0] = etcdcluster.EndpointStatus{MemberID: 100, Revision: 77, Err: errors.New("member has no leader")}
	cluster.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	cluster.statuses[2] = etcdcluster.EndpointStatus{Err: errors.New("not answering: no such host")}
	f := newStepsFixture(t, 3, 3, 0, cluster)
	if _, err := f.client.CoreV1().Pods("ns").Create(ctx, crashingPod("db-1", "panic: tocommit(41) is out of range [lastIndex(0)]"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || res.QuorumLost != "quorum lost: 2 of 3 voting members do not answer (db-1, db-2); 2 are needed" {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	if res.Step != "" || len(cluster.added)+len(cluster.removed)+len(cluster.promoted) != 0 {
		t.Fatalf("nothing is done after a quorum loss: step %q, added %v, removed %v", res.Step, cluster.added, cluster.removed)
	}
	for _, want := range []string{"db-0: member has no leader", "db-2: not answering: no such host",
		"member db-1: container etcd CrashLoopBackOff", "tocommit(41) is out of range"} {
		if !strings.Contains(res.Unhealthy, want) {
			t.Errorf("unhealthy %q does not say %q", res.Unhealthy, want)
		}
	}
	if len(res.Members) != 3 || res.Members[0].ID != "64" || res.Members[0].Revision != 77 || res.Members[1].ID != "" {
		t.Errorf("members %+v: want the three pods, db-0 with what it reported", res.Members)
	}

	cluster.statuses[1] = etcdcluster.EndpointStatus{MemberID: 101, Err: errors.New("member has no leader")}
	if res, err := f.b.Sync(ctx, f.inst); err != nil || res.QuorumLost != "" {
		t.Fatalf("two of three answer, electing a leader: %+v, %v", res, err)
	}

	one := healthyCluster(1)
	one.statuses[0] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	g := newStepsFixture(t, 1, 1, 0, one)
	res, err = g.b.Sync(ctx, g.inst)
	if err != nil || res.QuorumLost != "" || res.StepReason != backend.StepDeploying {
		t.Fatalf("a first member starting: %+v, %v", res, err)
	}
}

// A look whose member list fails (a linearizable request, which can time out while the
// leader changes) reports the members as they answered their status: two of three serving
// during a member's restart are ready, not three members down (READY 0/3 for a moment of a
// healthy roll), and the list's error says what is wrong.
func TestFailedMemberListReportsTheMembersThatAnswer(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(3)
	cluster.listErr = errors.New("listing members: context deadline exceeded")
	cluster.statuses[2] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	f := newStepsFixture(t, 3, 3, 2, cluster)
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || res.QuorumLost != "" || res.Unhealthy != cluster.listErr.Error() || res.Step != "" {
		t.Fatalf("sync: %+v, %v", res, err)
	}
	if len(res.Members) != 3 || res.Ready() != 2 || res.Members[2].Ready || res.Members[0].ID != "64" || !res.Members[0].Leader {
		t.Errorf("members %+v: want db-0 (the leader) and db-1 ready, db-2 not", res.Members)
	}
}

// A look whose member list fails while a learner's pod starts (a scale-up) does not count the
// learner as a voting member that is down: one voting member serving with a learner starting
// is not a quorum loss (it was: phase Failed and a QuorumLost Warning Event for a look), nor
// are two of three voting members serving while a fourth member's learner starts. The
// learner is the one the last status recorded as such, or did not record at all (added
// since, the newest of them). Two of three voting members down is still a loss, the learner
// aside.
func TestFailedMemberListDoesNotCountAStartingLearnerAsVoting(t *testing.T) {
	ctx := context.Background()
	down := etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	voter := func(name string) v1beta1.MemberStatus { return v1beta1.MemberStatus{Name: name, Ready: true} }
	for _, tc := range []struct {
		name     string
		voters   int
		last     []v1beta1.MemberStatus
		down     []int
		lost     string
		learners []int
	}{
		{name: "a scale-up's learner, recorded", voters: 1, last: []v1beta1.MemberStatus{voter("db-0"), {Name: "db-1", Learner: true}}, learners: []int{1}},
		{name: "a scale-up's learner, added since the last status", voters: 1, last: []v1beta1.MemberStatus{voter("db-0")}, learners: []int{1}},
		{name: "a voting member down and a learner starting", voters: 3, last: []v1beta1.MemberStatus{voter("db-0"), voter("db-1"), voter("db-2")}, down: []int{2}, learners: []int{3}},
		// etcd has one learner at a time: the member added since the status the look works
		// from, not db-3, which that status, older than the look that promoted db-3, has as one.
		{name: "a learner added since a status older than a promotion", voters: 4,
			last: []v1beta1.MemberStatus{voter("db-0"), voter("db-1"), voter("db-2"), {Name: "db-3", Learner: true}}, down: []int{3}, learners: []int{4}},
		{name: "two of three voting members down", voters: 3, last: []v1beta1.MemberStatus{voter("db-0"), voter("db-1"), voter("db-2")}, down: []int{1, 2}, learners: []int{3},
			lost: "quorum lost: 2 of 3 voting members do not answer (db-1, db-2); 2 are needed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cluster := healthyCluster(tc.voters)
			cluster.members = append(cluster.members, etcdcluster.Member{ID: 201, PeerURLs: []string{fmt.Sprintf(peerURLFormat, tc.voters)}, IsLearner: true})
			cluster.statuses = append(cluster.statuses, down) // the learner's pod starts
			for _, o := range tc.down {
				cluster.statuses[o] = down
			}
			cluster.listErr = errors.New("listing members: context deadline exceeded")
			pods := int32(tc.voters + 1)
			f := newStepsFixture(t, pods, pods, pods-1-int32(len(tc.down)), cluster)
			f.inst.Status.Members = tc.last
			res, err := f.b.Sync(ctx, f.inst)
			if err != nil || res.QuorumLost != tc.lost {
				t.Fatalf("sync: quorum lost %q (want %q), %v", res.QuorumLost, tc.lost, err)
			}
			var learners []int
			for i, m := range res.Members {
				if m.Learner {
					learners = append(learners, i)
				}
			}
			if !slices.Equal(learners, tc.learners) {
				t.Errorf("members %+v: learners %v, want %v", res.Members, learners, tc.learners)
			}
		})
	}
}
