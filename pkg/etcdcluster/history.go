package etcdcluster

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// historyProbeKey is the key read at past revisions to find how far the history was
// compacted; whether it exists does not matter, since etcd refuses a read at a compacted
// revision whatever the key.
const historyProbeKey = "\x00etcdaas/history-probe"

// History is how much of a cluster's key history can still be read.
type History struct {
	// Oldest is the oldest revision that can be read: the revision of the last compaction, or
	// 1 if the history was never compacted.
	Oldest int64
	// Head is the cluster's current revision.
	Head int64
}

// ReadHistory finds how far the cluster's key history was compacted. etcd reports it in no
// status, so it reads one key at chosen revisions: a read at a compacted revision is refused.
// since is an oldest revision found before (0 if none): since compactions only move forward,
// one read confirms it is still the oldest, and otherwise a binary search over the revisions
// after it finds the new one in about log2(Head - since) reads.
func ReadHistory(ctx context.Context, access *Access, since int64) (History, error) {
	cli, err := access.New()
	if err != nil {
		return History{}, err
	}
	defer func() { _ = cli.Close() }()
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	head, err := cli.Get(ctx, historyProbeKey, clientv3.WithCountOnly())
	if err != nil {
		return History{}, fmt.Errorf("reading the current revision: %w", err)
	}
	h := History{Oldest: max(since, 1), Head: head.Header.Revision}
	if h.Oldest >= h.Head {
		return History{Oldest: h.Head, Head: h.Head}, nil
	}
	var probeErr error
	compacted := func(rev int64) bool {
		if probeErr != nil {
			return true
		}
		_, err := cli.Get(ctx, historyProbeKey, clientv3.WithRev(rev), clientv3.WithCountOnly())
		if err == nil {
			return false
		}
		if !errors.Is(err, rpctypes.ErrCompacted) && !isRPCError(err, rpctypes.ErrGRPCCompacted) {
			probeErr = fmt.Errorf("reading revision %d: %w", rev, err)
		}
		return true
	}
	if !compacted(h.Oldest) {
		return h, probeErr
	}
	// The oldest readable revision is in (h.Oldest, h.Head]: the head is always readable.
	after := h.Oldest
	h.Oldest = after + 1 + int64(sort.Search(int(h.Head-after-1), func(i int) bool {
		return !compacted(after + 1 + int64(i))
	}))
	return h, probeErr
}
