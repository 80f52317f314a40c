package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// TestAJoinThatNeverStartsIsReportedBlocked: nj-1, added as a learner by a scale-up to 2,
// cannot start (a file stands where its data directory goes). Its start is retried during
// JoinDeadline, each failure an error; past it the instance is reported blocked on it
// (MemberNotJoining), naming it and what a person can do, with Degraded's Unhealthy saying
// why it does not start, instead of "adding member nj-1" with an error for ever. Once it can
// start it is promoted; a scale back removes it instead. Either way the clock forgets it.
func TestAJoinThatNeverStartsIsReportedBlocked(t *testing.T) {
	for _, fix := range []string{"starts", "scale back"} {
		t.Run(fix, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			b, now, inst := convergedOnAClock(t, dir, "nj")
			idir := filepath.Join(dir, "instances", "ns", "nj")
			inTheWay := filepath.Join(idir, "nj-1")
			if err := os.WriteFile(inTheWay, []byte("not a directory"), 0o600); err != nil {
				t.Fatal(err)
			}
			inst.Spec.Replicas = ptr.To[int32](2)

			for _, wait := range []time.Duration{0, backend.JoinDeadline} {
				*now = now.Add(wait)
				res, err := b.Sync(ctx, inst)
				if err == nil || res == nil || res.Blocked != "" || res.Step != "adding member nj-1" {
					t.Fatalf("nj-1 not starting for %s: %+v, %v", wait, res, err)
				}
			}
			*now = now.Add(time.Second)
			want := "member nj-1, added as a learner for spec.replicas 2, has not served for longer than 10m0s (Degraded says why), " +
				"and nothing changes until a person acts: fix what keeps it from serving, or set spec.replicas back to 1, which removes it"
			// Looked at again past the repair grace period: only nj-1 is unhealthy, and the
			// voting member nj-0 is not taken for unhealthy (nor due for replacement).
			for _, wait := range []time.Duration{0, backend.DefaultMemberRepairGracePeriod + time.Minute} {
				*now = now.Add(wait)
				res, err := b.Sync(ctx, inst)
				if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || res.Blocked != want ||
					!strings.HasPrefix(res.Unhealthy, "unhealthy members: nj-1: cannot start: starting member nj-1: ") || strings.Contains(res.Unhealthy, "nj-0") ||
					len(res.MemberProblems) != 1 || !strings.Contains(res.MemberProblems["nj-1"], "not a directory") ||
					len(res.Members) != 2 || res.Members[1].Ready || !res.Members[1].Learner || len(res.Events) != 0 {
					t.Fatalf("nj-1 not starting past the deadline: %+v, %v", res, err)
				}
			}

			if fix == "starts" {
				if err := os.Remove(inTheWay); err != nil {
					t.Fatal(err)
				}
				res := converge(t, b, inst)
				if len(res.Members) != 2 || !res.Members[1].Ready || res.Members[1].Learner {
					t.Fatalf("members once nj-1 can start: %+v", res.Members)
				}
			} else {
				inst.Spec.Replicas = ptr.To[int32](1)
				res, err := b.Sync(ctx, inst)
				if err != nil || res.Blocked != "" || res.Step != "removed member nj-1" ||
					!slices.ContainsFunc(res.Events, func(e backend.Event) bool { return e.Reason == backend.ReasonMemberRemoved }) {
					t.Fatalf("scaled back: %+v, %v", res, err)
				}
				if res := converge(t, b, inst); len(res.Members) != 1 {
					t.Fatalf("members after the scale back: %+v", res.Members)
				}
				if _, err := os.Stat(inTheWay); !os.IsNotExist(err) {
					t.Fatalf("what stood in nj-1's way is still there: %v", err)
				}
			}
			// Its wait does not count toward replacing the member it may become.
			if got := b.health.Unhealthy(inTheWay); got != 0 {
				t.Fatalf("nj-1 is still remembered, unhealthy for %s", got)
			}
		})
	}
}

// TestALearnerThatNeverCatchesUpIsReportedBlocked: nb-1, added as a learner by a scale-up to
// 2, starts and serves, but etcd refuses every promotion as it is behind its leader (a disk
// too slow for the writes, say). During JoinDeadline each refusal is a step under way (no
// error: the controller looks again at its step interval, not with a growing backoff); past it the
// instance is reported blocked on it (MemberNotJoining), saying that it serves, how far
// behind it is (Degraded: its revision against the leader's) and what a person can do,
// instead of "has not served" with a fix for a member that does not start. Every look still
// tries the promotion, and the message stays as it is from look to look. Once it catches up
// it is promoted; a scale back removes it. Either way the clock forgets it.
func TestALearnerThatNeverCatchesUpIsReportedBlocked(t *testing.T) {
	for _, fix := range []string{"catches up", "scale back"} {
		t.Run(fix, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			b, now, inst := convergedOnAClock(t, dir, "nb")
			tries := 0
			b.promote = func(_ context.Context, _ *clientv3.Client, id uint64) error {
				tries++
				return fmt.Errorf("promoting member %s: %w: %w", etcdcluster.FormatID(id), etcdcluster.ErrLearnerNotInSync, context.DeadlineExceeded)
			}
			inst.Spec.Replicas = ptr.To[int32](2)

			for i, wait := range []time.Duration{0, backend.JoinDeadline} {
				*now = now.Add(wait)
				res, err := b.Sync(ctx, inst)
				if err != nil || res == nil || res.Blocked != "" || res.Step != "promoting member nb-1: waiting for it to catch up with the leader" ||
					res.StepWait != backend.CatchUpInterval || tries != i+1 {
					t.Fatalf("nb-1 behind for %s: %+v, %v, %d promotions tried", wait, res, err, tries)
				}
			}
			want := "member nb-1, added as a learner for spec.replicas 2, serves but has been behind the leader for longer than 10m0s " +
				"(Degraded says how far), so etcd does not promote it; it is promoted once it catches up, which it may never do by itself: " +
				"fix what keeps it behind (its disk, its network to the leader), or set spec.replicas back to 1, which removes it"
			for i, wait := range []time.Duration{time.Second, time.Minute} {
				*now = now.Add(wait)
				res, err := b.Sync(ctx, inst)
				if err != nil || res.BlockedReason != backend.ReasonMemberNotJoining || res.Blocked != want || tries != 3+i ||
					len(res.Members) != 2 || !res.Members[1].Ready || !res.Members[1].Learner || len(res.MemberProblems) != 0 || len(res.Events) != 0 {
					t.Fatalf("nb-1 behind past the deadline, look %d: %+v, %v, %d promotions tried", i, res, err, tries)
				}
				lag := fmt.Sprintf("member nb-1, a learner, serves but is behind the leader nb-0 (its revision %d against the leader's %d)",
					res.Members[1].Revision, res.Members[0].Revision)
				if res.Unhealthy != lag {
					t.Fatalf("Degraded says %q, want %q", res.Unhealthy, lag)
				}
			}

			if fix == "catches up" {
				b.promote = etcdcluster.Promote
				if res := converge(t, b, inst); len(res.Members) != 2 || res.Members[1].Learner || res.Blocked != "" {
					t.Fatalf("members once nb-1 caught up: %+v", res)
				}
			} else {
				inst.Spec.Replicas = ptr.To[int32](1)
				res, err := b.Sync(ctx, inst)
				if err != nil || res.Blocked != "" || res.Step != "removed member nb-1" {
					t.Fatalf("scaled back: %+v, %v", res, err)
				}
			}
			m := &memberState{Name: "nb-1"}
			if got := b.health.Unhealthy(behindKey(filepath.Join(dir, "instances", "ns", "nb"), m)); got != 0 {
				t.Fatalf("nb-1 is still remembered behind for %s", got)
			}
		})
	}
}

// convergedOnAClock starts a backend in dir, closed when the test ends, whose health clock
// reads the returned time (the test moves it), and converges a one-member instance name on it.
func convergedOnAClock(t *testing.T, dir, name string) (*Backend, *time.Time, *v1beta1.ETCDInstance) {
	t.Helper()
	b := newBackend(t, dir)
	t.Cleanup(func() { _ = b.Close() })
	now := time.Unix(1000, 0)
	b.health.Now = func() time.Time { return now }
	inst := instance(name, 1, false)
	converge(t, b, inst)
	return b, &now, inst
}

// TestALearnerThatNeverStartedJoinsAfterItsPortsMoved: nm-1, added to the cluster as a learner
// but never started (its data directory could not be made), has its recorded peer and client
// ports taken by something else while the controller is down. The next controller moves it to
// new ports and tells the cluster; the learner, joining with its initial cluster, must name
// the new peer URL there too, or etcd refuses to start it ("error validating peerURLs") for
// ever. Found as a flake of the end-to-end tier: a controller killed right after adding a
// learner, the learner's ports taken as ephemeral ports of other connections.
func TestALearnerThatNeverStartedJoinsAfterItsPortsMoved(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("nm", 1, false)
	converge(t, b, inst)
	idir := filepath.Join(dir, "instances", "ns", "nm")
	inTheWay := filepath.Join(idir, "nm-1")
	if err := os.WriteFile(inTheWay, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	inst.Spec.Replicas = ptr.To[int32](2)
	if _, err := b.Sync(ctx, inst); err == nil {
		t.Fatal("nm-1 started with a file where its data directory goes")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	learner := st.member("nm-1")
	if learner == nil || learner.Phase != phaseLearner || learner.ID == "" || learner.hasData() {
		t.Fatalf("nm-1 is not a learner that never started: %+v", learner)
	}
	for _, port := range []int{learner.PeerPort, learner.ClientPort} {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = l.Close() }()
	}
	if err := os.Remove(inTheWay); err != nil {
		t.Fatal(err)
	}

	next := newBackend(t, dir)
	defer func() { _ = next.Close() }()
	res := converge(t, next, inst)
	if len(res.Members) != 2 || !res.Members[1].Ready || res.Members[1].Learner {
		t.Fatalf("members after the restart: %+v", res.Members)
	}
	moved, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	m := moved.member("nm-1")
	if m.PeerPort == learner.PeerPort || m.ClientPort == learner.ClientPort {
		t.Fatalf("nm-1 kept its taken ports: %+v", m)
	}
	// Here its first start came before the cluster was told the new peer URL, and etcd took
	// the old one; once told (a first start that failed for another reason, such as a
	// restarted nm-0 that had not yet replayed nm-1's addition), only the new one matches.
	if want := "nm-1=" + m.peerURL(false); !slices.Contains(strings.Split(m.InitialCluster, ","), want) {
		t.Fatalf("nm-1 joins with initial cluster %q, without %q", m.InitialCluster, want)
	}
}
