package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/embedetcd"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/memberseed"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// Recover implements backend.Backend. It checks that quorum is lost, chooses the survivor
// and records the recovery before changing anything; finishRecovery does the rest.
func (b *Backend) Recover(ctx context.Context, inst *v1beta1.ETCDInstance, req backend.RecoverRequest) (*backend.Result, error) {
	dir, err := instanceDir(b.opts.Dir, inst.Namespace, inst.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", backend.ErrCannotRecover, err)
	}
	st, err := loadState(dir)
	if errors.Is(err, os.ErrNotExist) || (err == nil && st.UID != string(inst.UID)) {
		return nil, fmt.Errorf("%w: the instance has no members", backend.ErrCannotRecover)
	}
	if err != nil {
		return nil, err
	}
	if req.ID != "" && req.ID == st.LastRecovery {
		return nil, fmt.Errorf("%w: recover request %s", backend.ErrRecoveredAlready, req.ID)
	}
	if st.Recovery == nil {
		if err := restoreUnderWay(dir, st); err != nil {
			return nil, err
		}
		if err := b.ensureRunning(ctx, dir, st); err != nil {
			return nil, err
		}
		access, err := accessFor(dir, st, true)
		if err != nil {
			return nil, err
		}
		observed, _, err := b.observe(ctx, dir, access, st)
		if err != nil {
			return observed, err
		}
		if observed.QuorumLost == "" {
			return observed, fmt.Errorf("%w: quorum is not lost", backend.ErrCannotRecover)
		}
		survivor, err := b.chooseSurvivor(dir, st, req.Member)
		if err != nil {
			return observed, err
		}
		rec := &recoveryState{Survivor: survivor.Name, Request: req.ID, ID: strconv.FormatInt(time.Now().UnixNano(), 36), RevisionBump: fallbackRevisionBump}
		for _, m := range st.Members {
			if m.Name != survivor.Name {
				rec.Discard = append(rec.Discard, m.Name)
			}
		}
		survivor.Phase = phaseVoting
		// A replacement under way is moot: every other member goes.
		st.Recovery, st.Members, st.Replacement = rec, []memberState{survivor}, nil
		if err := st.save(dir); err != nil {
			return observed, err
		}
	}
	res, err := b.finishRecovery(ctx, dir, st, backend.DesiredReplicas(inst))
	return b.withMembers(ctx, dir, st, res), err
}

// restoreUnderWay returns an error wrapping backend.ErrCannotRecover when a restore of the
// instance is staged or under way: the recovery would rebuild a cluster the restore replaces.
func restoreUnderWay(dir string, st *instanceState) error {
	staged, _, err := pendingRestore(dir)
	if err != nil {
		return err
	}
	pending := staged != nil && staged.InstanceUID == st.UID && staged.ID != st.LastRestore
	if pending || st.Restore != nil {
		return fmt.Errorf("%w: a restore of the instance is under way", backend.ErrCannotRecover)
	}
	return nil
}

// chooseSurvivor returns the voting member to rebuild from: member when named, else the one
// with the highest revision (then applied index) among those running here. Without quorum
// a member does not serve clients, so its embedded server is asked directly.
func (b *Backend) chooseSurvivor(dir string, st *instanceState, member string) (memberState, error) {
	var best memberState
	var bestRev int64
	var bestIndex uint64
	found := false
	for _, m := range st.Members {
		e := b.embedded(dir, &m)
		if m.Phase != phaseVoting || e == nil {
			continue
		}
		if member != "" {
			if m.Name == member {
				return m, nil
			}
			continue
		}
		rev, index := e.Server.KV().Rev(), e.Server.AppliedIndex()
		if !found || rev > bestRev || (rev == bestRev && index > bestIndex) {
			best, bestRev, bestIndex, found = m, rev, index, true
		}
	}
	switch {
	case member != "":
		return memberState{}, fmt.Errorf("%w: member %s is not a voting member that runs", backend.ErrCannotRecover, member)
	case !found:
		return memberState{}, fmt.Errorf("%w: no voting member runs; restore from a backup instead", backend.ErrCannotRecover)
	}
	return best, nil
}

// finishRecovery stops every member, deletes the data of all but the survivor, rebuilds the
// survivor's data directory from its own database as a new one-member cluster (new cluster
// and member IDs, the revision raised by RevisionBump and the older revisions marked
// compacted), starts it and clears the record. etcd's force-new-cluster would keep the
// survivor's revision: the members lost may have been ahead of it, so revisions their clients
// saw would come again with other data, and a watcher resuming from one would miss what was
// written meanwhile. Each part is idempotent, so a recovery interrupted anywhere finishes on
// the next call. desired is the number of members the spec asks for, which the Recovered
// Event counts the members to add back by.
func (b *Backend) finishRecovery(ctx context.Context, dir string, st *instanceState, desired int) (*backend.Result, error) {
	rec := st.Recovery
	res := &backend.Result{Step: fmt.Sprintf("recovering from member %s", rec.Survivor), StepReason: backend.StepRecovering}
	survivor := st.member(rec.Survivor)
	if survivor == nil {
		return res, fmt.Errorf("recovery survivor %s is not recorded", rec.Survivor)
	}
	b.stop(dir, survivor, true)
	for _, name := range rec.Discard {
		b.stop(dir, &memberState{Name: name}, true)
		b.setStartError(dir, &memberState{Name: name}, nil)
		b.health.Forget(filepath.Join(dir, name))
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return res, err
		}
		if err := os.Remove(memberLog(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return res, err
		}
	}
	if err := b.moveSurvivor(dir, st, survivor); err != nil {
		return res, err
	}
	if !rec.Rebuilt {
		if err := rebuildSurvivor(ctx, dir, st, survivor); err != nil {
			return res, err
		}
	} else if err := checkData(filepath.Join(dir, survivor.Name)); err != nil {
		// The rebuilt data is all that is left of the cluster: started without it, the
		// survivor would be a new, empty cluster.
		return res, fmt.Errorf("survivor %s cannot start: %w", survivor.Name, err)
	}
	e, err := b.start(dir, st, survivor)
	if err != nil {
		return res, err
	}
	sctx, cancel := b.stepContext(ctx)
	defer cancel()
	select {
	case <-e.Server.ReadyNotify():
	case <-sctx.Done():
		return res, fmt.Errorf("survivor %s did not become ready: %w", survivor.Name, sctx.Err())
	}
	survivor.ID = etcdcluster.FormatID(uint64(e.Server.MemberID()))
	st.Recovery, st.LastRecovery = nil, rec.Request
	if err := st.save(dir); err != nil {
		return res, err
	}
	res.Step = fmt.Sprintf("recovered from member %s", rec.Survivor)
	res.Record(backend.ReasonRecovered, "Rebuilt the cluster from member %s (revision %d, raised by %d; older revisions marked compacted) as a new cluster; discarded the data of %s; %s",
		rec.Survivor, e.Server.KV().Rev(), rec.RevisionBump, strings.Join(rec.Discard, ", "), rejoining(desired-1))
	return res, nil
}

// moveSurvivor moves the stopped survivor of the recovery under way off a recorded port
// another process took meanwhile (while the controller was down, say; replaceTakenPorts). A
// survivor rebuilt already restarts from its data, a one-member cluster, and the next Sync
// tells it its new peer URL (readvertise); one not yet rebuilt is rebuilt with it.
func (b *Backend) moveSurvivor(dir string, st *instanceState, m *memberState) error {
	p, c, moved, err := b.replaceTakenPorts(st, m)
	if err != nil || !moved {
		return err
	}
	klog.InfoS("Recorded ports of the survivor of a recovery are taken, moving it", "member", m.Name, "peerPort", p, "clientPort", c)
	m.move(st.TLS, p, c)
	return st.save(dir)
}

// rebuildSurvivor replaces the data directory of m, the stopped survivor of the recovery
// under way, with a one-member cluster restored from m's own database, as the kubernetes
// backend's seed does it (memberseed.Seed: the database copied, checked and kept beside the
// data directory until the restore is done, so a crash after the old directory went resumes
// from it; a data directory seeded already is kept).
func rebuildSurvivor(ctx context.Context, dir string, st *instanceState, m *memberState) error {
	rec, data := st.Recovery, filepath.Join(dir, m.Name)
	if rec.RevisionBump == 0 {
		rec.RevisionBump = fallbackRevisionBump // recorded by a controller that restarted the survivor as it was
	}
	// A stop that did not finish in time still holds the database, and may still write it.
	if err := embedetcd.CheckDatabaseUnlocked(m.Name, data); err != nil {
		return err
	}
	st.ClusterToken = fmt.Sprintf("%s-recover-%s", st.UID, rec.ID)
	member := snapshot.Member{Name: m.Name, PeerURL: m.peerURL(st.TLS)}
	if _, err := memberseed.Seed(ctx, memberseed.Config{
		ID: "recover-" + rec.ID, FromOwnData: true, EtcdVersion: EmbeddedVersion(), DataDir: data,
		Member: member, Cluster: []snapshot.Member{member}, ClusterToken: st.ClusterToken,
		RevisionBump: rec.RevisionBump,
	}); err != nil {
		return fmt.Errorf("rebuilding survivor %s from its database: %w", m.Name, err)
	}
	m.ClusterState, m.InitialCluster = "new", snapshot.InitialCluster([]snapshot.Member{member})
	rec.Rebuilt = true
	return st.save(dir)
}

// rejoining is what the Recovered Event says of the n members to add back to the rebuilt
// one-member cluster (spec.replicas less one).
func rejoining(n int) string {
	switch {
	case n <= 0:
		return "spec.replicas asks for no other member"
	case n == 1:
		return "1 more member joins it as a learner"
	}
	return fmt.Sprintf("%d more members join it as learners", n)
}
