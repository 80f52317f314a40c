package kubernetes

import (
	"context"
	"errors"
	"slices"
	"testing"

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
