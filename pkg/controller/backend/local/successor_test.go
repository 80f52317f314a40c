package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// replacingOnAClock starts a backend in dir, closed when the test ends, with a repair grace
// period of a minute and a health clock reading the returned time (the test moves it),
// converges an instance name of replicas members on it, and loses name-2 (its data directory
// gone), which is replaced: once the Sync that removed it returns, the next Sync adds its
// successor name-<replicas>. It returns the backend, the clock, the instance and its directory.
func replacingOnAClock(t *testing.T, dir, name string, replicas int32) (*Backend, *time.Time, *v1beta1.ETCDInstance, string) {
	t.Helper()
	ctx := context.Background()
	b := newBackend(t, dir)
	t.Cleanup(func() { _ = b.Close() })
	setRepairGrace(b, time.Minute)
	now := time.Unix(1000, 0)
	b.health.Now = func() time.Time { return now }
	inst := instance(name, replicas, false)
	converge(t, b, inst)
	idir := filepath.Join(dir, "instances", "ns", name)
	loseMember(t, b, idir, name+"-2")
	for _, wait := range []time.Duration{0, 2 * time.Minute} {
		now = now.Add(wait)
		if _, err := b.Sync(ctx, inst); err != nil {
			t.Fatalf("sync with %s-2 lost for %s: %v", name, wait, err)
		}
	}
	st, err := loadState(idir)
	if err != nil || st.Replacement == nil || st.Replacement.New != fmt.Sprintf("%s-%d", name, replicas) || len(st.Members) != int(replicas)-1 {
		t.Fatalf("%s-2 is not being replaced: %+v, %v", name, st, err)
	}
	return b, &now, inst, idir
}

// checkReplaced converges inst and checks that the successor s-3 of s-2 now votes, that the
// replacement is over, and that the clock forgot the successor's records.
func checkReplaced(t *testing.T, b *Backend, inst *v1beta1.ETCDInstance, idir string) {
	t.Helper()
	res := converge(t, b, inst)
	var names []string
	for _, m := range res.Members {
		if m.Learner || !m.Ready {
			t.Fatalf("member %+v after the replacement", m)
		}
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"s-0", "s-1", "s-3"}) || res.Blocked != "" {
		t.Fatalf("members %v after the replacement (%+v)", names, res)
	}
	if st, err := loadState(idir); err != nil || st.Replacement != nil {
		t.Fatalf("the replacement is still recorded: %+v, %v", st, err)
	}
	m := &memberState{Name: "s-3"}
	for _, key := range []string{filepath.Join(idir, m.Name), behindKey(idir, m)} {
		if got := b.health.Unhealthy(key); got != 0 {
			t.Fatalf("the promoted successor is still remembered (%s) for %s", key, got)
		}
	}
}

// TestASuccessorThatNeverStartsIsReportedBlocked: s-2 lost its data and is replaced by s-3,
// which cannot start (a file stands where its data directory goes). Its start is retried
// during JoinDeadline, each failure an error; past it the instance is reported blocked on it
// (MemberNotJoining), naming it, the member it replaces and what a person can do, with
// Degraded saying why it does not start, the message the same from look to look, instead of
// an error for ever; spec.replicas has nothing to do with it. Once it can start it is
// promoted and the instance converges.
func TestASuccessorThatNeverStartsIsReportedBlocked(t *testing.T) {
	ctx := context.Background()
	b, now, inst, idir := replacingOnAClock(t, t.TempDir(), "s", 3)
	inTheWay := filepath.Join(idir, "s-3")
	if err := os.WriteFile(inTheWay, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, wait := range []time.Duration{0, backend.JoinDeadline} {
		*now = now.Add(wait)
		if res, err := b.Sync(ctx, inst); err == nil || res == nil || res.Blocked != "" || res.Step != "adding member s-3" {
			t.Fatalf("s-3 not starting for %s: %+v, %v", wait, res, err)
		}
	}
	const want = "member s-3, added as a learner to replace member s-2, has not served for longer than 10m0s (Degraded says why), " +
		"and the replacement goes no further until a person acts: fix what keeps it from serving (its data directory, its disk, its ports)"
	for _, wait := range []time.Duration{time.Second, time.Minute} {
		*now = now.Add(wait)
		res, err := b.Sync(ctx, inst)
		if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || res.Blocked != want ||
			!strings.HasPrefix(res.Unhealthy, "unhealthy members: s-3: cannot start: starting member s-3: ") ||
			!strings.Contains(res.MemberProblems["s-3"], "not a directory") || len(res.Events) != 0 {
			t.Fatalf("s-3 not starting past the deadline: %+v, %v", res, err)
		}
	}
	if err := os.Remove(inTheWay); err != nil {
		t.Fatal(err)
	}
	checkReplaced(t, b, inst, idir)
}

// TestASuccessorThatNeverCatchesUpIsReportedBlocked: s-2 is replaced by s-3, which starts and
// serves, but etcd refuses every promotion as it is behind its leader. During JoinDeadline
// each refusal is a step under way; past it the instance is reported blocked on it
// (MemberNotJoining), saying that it serves, which member it replaces, how far behind it is
// (Degraded) and what a person can do. Every look still tries the promotion; once it catches
// up it is promoted and the instance converges.
func TestASuccessorThatNeverCatchesUpIsReportedBlocked(t *testing.T) {
	ctx := context.Background()
	b, now, inst, idir := replacingOnAClock(t, t.TempDir(), "s", 3)
	tries := 0
	b.promote = func(_ context.Context, _ *clientv3.Client, id uint64) error {
		tries++
		return fmt.Errorf("promoting member %s: %w: %w", etcdcluster.FormatID(id), etcdcluster.ErrLearnerNotInSync, context.DeadlineExceeded)
	}
	for i, wait := range []time.Duration{0, backend.JoinDeadline} {
		*now = now.Add(wait)
		res, err := b.Sync(ctx, inst)
		if err != nil || res == nil || res.Blocked != "" || res.Step != "promoting member s-3: waiting for it to catch up with the leader" ||
			res.StepWait != backend.CatchUpInterval || tries != i+1 {
			t.Fatalf("s-3 behind for %s: %+v, %v, %d promotions tried", wait, res, err, tries)
		}
	}
	const want = "member s-3, added as a learner to replace member s-2, serves but has been behind the leader for longer than 10m0s " +
		"(Degraded says how far), so etcd does not promote it; it is promoted once it catches up, which it may never do by itself: " +
		"fix what keeps it behind (its disk, its network to the leader)"
	for i, wait := range []time.Duration{time.Second, time.Minute} {
		*now = now.Add(wait)
		res, err := b.Sync(ctx, inst)
		if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || res.Blocked != want || tries != 3+i ||
			!strings.HasPrefix(res.Unhealthy, "member s-3, a learner, serves but is behind the leader s-") || !strings.Contains(res.Unhealthy, "(its revision ") ||
			len(res.MemberProblems) != 0 || len(res.Events) != 0 {
			t.Fatalf("s-3 behind past the deadline, look %d: %+v, %v, %d promotions tried", i, res, err, tries)
		}
	}
	b.promote = etcdcluster.Promote
	checkReplaced(t, b, inst, idir)
}

// TestALearnerThatServedThenStoppedGetsTheDeadlineAgain: a learner that could not start for 9
// minutes, then started and served (behind its leader) for a minute, then lost its data
// directory so that it cannot start again: it has not served for a moment, not for 11
// minutes, so it is not reported at once; its not-serving clock starts when it stopped, and
// it is reported once it has not served for JoinDeadline since. So for a scale-up's learner
// (j-1) and for the successor of a replaced member (s-3).
func TestALearnerThatServedThenStoppedGetsTheDeadlineAgain(t *testing.T) {
	for _, tc := range []struct{ name, learner string }{{"scale-up", "j-1"}, {"successor", "s-3"}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			var b *Backend
			var now *time.Time
			var inst *v1beta1.ETCDInstance
			idir := filepath.Join(dir, "instances", "ns", tc.learner[:1])
			if tc.name == "scale-up" {
				b, now, inst = convergedOnAClock(t, dir, "j")
				inst.Spec.Replicas = ptr.To[int32](2)
			} else {
				b, now, inst, _ = replacingOnAClock(t, dir, "s", 3)
			}
			inTheWay := filepath.Join(idir, tc.learner)
			if err := os.WriteFile(inTheWay, []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
			b.promote = func(_ context.Context, _ *clientv3.Client, id uint64) error {
				return fmt.Errorf("promoting member %s: %w", etcdcluster.FormatID(id), etcdcluster.ErrLearnerNotInSync)
			}
			look := func(wait time.Duration, serves, blocked bool) {
				t.Helper()
				*now = now.Add(wait)
				res, err := b.Sync(ctx, inst)
				if res == nil || (err == nil) != (serves || blocked) || (res.Blocked != "") != blocked ||
					(blocked && !strings.Contains(res.Blocked, "has not served for longer than 10m0s")) {
					t.Fatalf("%s %s more: %+v, %v; want serving %v, blocked %v", tc.learner, wait, res, err, serves, blocked)
				}
			}
			look(0, false, false)
			look(9*time.Minute, false, false)
			if err := os.Remove(inTheWay); err != nil {
				t.Fatal(err)
			}
			// Served for a minute: seen serving for 30 seconds at least, even should the
			// first look come before the learner answers.
			look(0, true, false)
			look(30*time.Second, true, false)
			look(30*time.Second, true, false)
			loseMember(t, b, idir, tc.learner)
			look(time.Minute, false, false) // 11 minutes after it was first seen not serving
			look(backend.JoinDeadline, false, false)
			look(time.Second, false, true)
		})
	}
}

// replacingBesideALostMember is replacingOfOnAClock with five members d-0 to d-4, d-2
// replaced by d-5, and then d-1 lost as well (its data directory gone): three of the four
// voting members are healthy, a quorum, so the successor joins while d-1 stays unhealthy.
func replacingBesideALostMember(t *testing.T) (*Backend, *time.Time, *v1beta1.ETCDInstance, string) {
	t.Helper()
	b, now, inst, idir := replacingOnAClock(t, t.TempDir(), "d", 5)
	loseMember(t, b, idir, "d-1")
	return b, now, inst, idir
}

// checkNamesBoth fails unless res, a look at d (look says which), reports in Degraded
// (res.Unhealthy, which the controller writes as the condition's message) and
// MemberProblems both the lost voting member d-1 and the successor d-5 (problem says how
// d-5's entry starts), and shows d-1 not ready in the members.
func checkNamesBoth(t *testing.T, look string, res *backend.Result, problem string) {
	t.Helper()
	d1 := "d-1: cannot start: "
	if !strings.HasPrefix(res.Unhealthy, "unhealthy members: "+d1) || !strings.Contains(res.Unhealthy, problem) ||
		!strings.HasPrefix(res.MemberProblems["d-1"], "cannot start: ") {
		t.Fatalf("%s: Degraded does not name d-1 and d-5: %q, problems %q", look, res.Unhealthy, res.MemberProblems)
	}
	i := slices.IndexFunc(res.Members, func(m v1beta1.MemberStatus) bool { return m.Name == "d-1" })
	if i < 0 || res.Members[i].Ready {
		t.Fatalf("%s: members %+v do not show d-1 unhealthy", look, res.Members)
	}
}

// TestABlockedSuccessorDoesNotHideAnotherUnhealthyMember: d-2 is replaced by d-5 while d-1,
// another voting member, is lost too (quorum holds). d-5 cannot start (a file stands where
// its data directory goes); past JoinDeadline the instance is blocked on it, and Degraded
// names both d-1 and d-5 with their problems, the same from one look to the next, instead of
// d-5 alone (the person reading it must learn that d-1 is down too).
func TestABlockedSuccessorDoesNotHideAnotherUnhealthyMember(t *testing.T) {
	ctx := context.Background()
	b, now, inst, idir := replacingBesideALostMember(t)
	if err := os.WriteFile(filepath.Join(idir, "d-5"), []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, wait := range []time.Duration{0, backend.JoinDeadline} {
		*now = now.Add(wait)
		if res, err := b.Sync(ctx, inst); err == nil || res == nil || res.Blocked != "" || res.Step != "adding member d-5" {
			t.Fatalf("d-5 not starting for %s: %+v, %v", wait, res, err)
		}
	}
	var previous string
	for _, wait := range []time.Duration{time.Second, time.Minute} {
		*now = now.Add(wait)
		res, err := b.Sync(ctx, inst)
		look := fmt.Sprintf("d-5 not starting past the deadline, %s more", wait)
		if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || !strings.HasPrefix(res.Blocked, "member d-5, added as a learner to replace member d-2,") {
			t.Fatalf("%s: %+v, %v", look, res, err)
		}
		checkNamesBoth(t, look, res, "; d-5: cannot start: starting member d-5: ")
		if !strings.Contains(res.MemberProblems["d-5"], "not a directory") || len(res.MemberProblems) != 2 {
			t.Fatalf("%s: member problems %q", look, res.MemberProblems)
		}
		if previous != "" && res.Unhealthy != previous {
			t.Fatalf("%s: Degraded changed from %q to %q", look, previous, res.Unhealthy)
		}
		previous = res.Unhealthy
	}
}

// TestASuccessorCatchingUpDoesNotHideAnotherUnhealthyMember: d-2 is replaced by d-5 while
// d-1, another voting member, is lost too (quorum holds); d-5 serves but etcd refuses its
// promotion as it is behind. While it catches up Degraded names d-1 (not "every member is
// healthy"), and past JoinDeadline it names d-1 and then how far behind d-5 is.
func TestASuccessorCatchingUpDoesNotHideAnotherUnhealthyMember(t *testing.T) {
	ctx := context.Background()
	b, now, inst, _ := replacingBesideALostMember(t)
	b.promote = func(_ context.Context, _ *clientv3.Client, id uint64) error {
		return fmt.Errorf("promoting member %s: %w", etcdcluster.FormatID(id), etcdcluster.ErrLearnerNotInSync)
	}
	for _, wait := range []time.Duration{0, backend.JoinDeadline} {
		*now = now.Add(wait)
		res, err := b.Sync(ctx, inst)
		look := fmt.Sprintf("d-5 behind for %s", wait)
		if err != nil || res.Blocked != "" || res.Step != "promoting member d-5: waiting for it to catch up with the leader" {
			t.Fatalf("%s: %+v, %v", look, res, err)
		}
		checkNamesBoth(t, look, res, "")
	}
	*now = now.Add(time.Second)
	res, err := b.Sync(ctx, inst)
	if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining {
		t.Fatalf("d-5 behind past the deadline: %+v, %v", res, err)
	}
	checkNamesBoth(t, "d-5 behind past the deadline", res, "; member d-5, a learner, serves but is behind the leader")
}
