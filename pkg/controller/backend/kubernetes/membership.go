package kubernetes

import (
	"context"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// membership is the etcd cluster of one instance as a Sync sees it: its members, their health
// and the membership changes it makes. The real one talks to the members through the etcd
// API; the tests drive the Sync steps with a fake.
type membership interface {
	// MemberList lists the members (linearizable).
	MemberList(ctx context.Context) ([]etcdcluster.Member, error)
	// Statuses asks the member of every pod for its status, in ordinal order.
	Statuses(ctx context.Context) []etcdcluster.EndpointStatus
	// AddLearner adds a learner with the peer URL; it returns its ID and the membership after.
	AddLearner(ctx context.Context, peerURL string) (uint64, []etcdcluster.Member, error)
	// Promote makes a learner a voting member. It fails with an error wrapping
	// etcdcluster.ErrLearnerNotInSync, in bounded time, while the learner is behind the leader.
	Promote(ctx context.Context, id uint64) error
	// MoveLeaderAway hands leadership to another voting member when id leads.
	MoveLeaderAway(ctx context.Context, id uint64, members []etcdcluster.Member, statuses []etcdcluster.EndpointStatus) error
	// Remove removes a member.
	Remove(ctx context.Context, id uint64) error
	// Close closes the connection.
	Close() error
}

// etcdMembership is the membership of a running cluster, through the etcd API.
type etcdMembership struct {
	access *etcdcluster.Access
	cli    *clientv3.Client
}

func connectMembership(access *etcdcluster.Access) (membership, error) {
	cli, err := access.New()
	if err != nil {
		return nil, err
	}
	return &etcdMembership{access: access, cli: cli}, nil
}

func (e *etcdMembership) MemberList(ctx context.Context) ([]etcdcluster.Member, error) {
	return etcdcluster.MemberList(ctx, e.cli)
}

func (e *etcdMembership) Statuses(ctx context.Context) []etcdcluster.EndpointStatus {
	return etcdcluster.StatusAll(ctx, e.access, e.access.Endpoints)
}

func (e *etcdMembership) AddLearner(ctx context.Context, peerURL string) (uint64, []etcdcluster.Member, error) {
	return etcdcluster.AddLearner(ctx, e.cli, peerURL)
}

// Promote makes a learner a voting member, retrying for at most etcdcluster.PromoteWait while
// etcd finds it behind the leader; the error then wraps etcdcluster.ErrLearnerNotInSync.
func (e *etcdMembership) Promote(ctx context.Context, id uint64) error {
	return etcdcluster.PromoteWithin(ctx, e.cli, id, etcdcluster.PromoteWait)
}

func (e *etcdMembership) MoveLeaderAway(ctx context.Context, id uint64, members []etcdcluster.Member, statuses []etcdcluster.EndpointStatus) error {
	return etcdcluster.MoveLeaderAway(ctx, e.access, id, members, statuses)
}

func (e *etcdMembership) Remove(ctx context.Context, id uint64) error {
	return etcdcluster.Remove(ctx, e.cli, id)
}

func (e *etcdMembership) Close() error { return e.cli.Close() }
