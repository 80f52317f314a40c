package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/etcdtest"
	"github.com/etcdaas/etcdaas/pkg/loopback"
)

// TestPromotingALearnerBehindItsLeaderIsBounded: etcd promotes a learner only once it has
// caught up with its leader, which for a learner receiving a large database takes minutes.
// The reconcile's context has no deadline, so a promotion retried until the learner catches
// up held one of the controller's two workers that long, and with them every other
// instance's steps. A learner that never catches up (here: one whose member never starts)
// held it for good. The promotion gives up after etcdcluster.PromoteWait, saying the learner is behind.
func TestPromotingALearnerBehindItsLeaderIsBounded(t *testing.T) {
	endpoint := etcdtest.Start(t, nil)
	cluster, err := connectMembership(&etcdcluster.Access{Endpoints: []string{endpoint}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cluster.Close() }()
	port, err := loopback.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	id, _, err := cluster.AddLearner(context.Background(), fmt.Sprintf("http://%s", loopback.HostPort(port)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	started := time.Now()
	go func() { done <- cluster.Promote(context.Background(), id) }()
	select {
	case err := <-done:
		if !errors.Is(err, etcdcluster.ErrLearnerNotInSync) {
			t.Fatalf("promoting a learner that is behind: %v, want it reported not in sync", err)
		}
		if took := time.Since(started); took > etcdcluster.PromoteWait+5*time.Second {
			t.Fatalf("the promotion took %s, more than %s", took, etcdcluster.PromoteWait)
		}
	case <-time.After(3 * etcdcluster.PromoteWait):
		t.Fatalf("the promotion of a learner that never catches up was still waiting after %s", 3*etcdcluster.PromoteWait)
	}
}

// behindLearner is a cluster whose learner etcd finds behind its leader for the first
// promotions.
type behindLearner struct {
	*fakeMembership
	behind int
}

func (f *behindLearner) Promote(ctx context.Context, id uint64) error {
	if f.behind > 0 {
		f.behind--
		return fmt.Errorf("promoting member %s: %w: %w", etcdcluster.FormatID(id), etcdcluster.ErrLearnerNotInSync, context.DeadlineExceeded)
	}
	return f.fakeMembership.Promote(ctx, id)
}

// TestALearnerBehindItsLeaderIsWaitedFor: db-3, a scale-up's learner, serves but is still
// catching up when the Sync tries to promote it. That is the step under way, not a failure of
// the Sync (whose error the instance would report, with backoff); the next Sync promotes it.
func TestALearnerBehindItsLeaderIsWaitedFor(t *testing.T) {
	ctx := context.Background()
	fake := healthyCluster(4)
	fake.members[3].IsLearner = true
	fake.statuses[3].IsLearner = true
	cluster := &behindLearner{fakeMembership: fake, behind: 1}
	f := newStepsFixture(t, 4, 4, 3, fake)
	f.withVolumes(t, 4)
	f.b.connect = func(*etcdcluster.Access) (membership, error) { return cluster, nil }
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || len(fake.promoted) != 0 || !strings.Contains(res.Step, "waiting for it to catch up") || res.Converged {
		t.Fatalf("sync while the learner is behind: %+v, %v, promoted %v", res, err, fake.promoted)
	}
	res, err = f.b.Sync(ctx, f.inst)
	if err != nil || !slices.Equal(fake.promoted, []uint64{103}) || reasons(res) != "MemberPromoted" {
		t.Fatalf("sync once the learner caught up: %+v, %v, promoted %v", res, err, fake.promoted)
	}
}
