package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/klog/v2"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/durable"
	"github.com/etcdaas/etcdaas/pkg/embedetcd"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// The hand-off of a restore, under DIR/instances/<namespace>/<name>/restore: the API server
// receives the snapshot into a spool file there (same filesystem as the members' data),
// verifies it, renames it to pending-<id>.db and then links pending.json into place, which
// makes the restore pending at once and only once. The backend restores from it, and removes
// both once every member runs from the restored data; only those two: another upload may be
// arriving in the same directory, to be staged once this restore is no longer pending.
const (
	restoreDir     = "restore"
	pendingRequest = "pending.json"
)

// fallbackRevisionBump raises the revision of a restored cluster when the revision of the
// cluster it replaces cannot be read: far above anything a cluster reaches in practice, as
// etcd's own restore documentation suggests.
const fallbackRevisionBump = 1_000_000_000

// restoreState is a restore under way, recorded before the first member is stopped.
type restoreState struct {
	// ID is the Staged.ID being restored.
	ID string `json:"id"`
	// RevisionBump is added to the snapshot's revision, so that the restored cluster's
	// revision is above the replaced cluster's.
	RevisionBump uint64 `json:"revisionBump"`
	// Restored lists the members whose data directory has been rebuilt from the snapshot.
	Restored []string `json:"restored,omitempty"`
}

// Stager hands verified snapshots from the API server to the local backend through the
// instance's directory, for an API server sharing the backend's data directory (standalone
// mode, or the aggregated mode with --backup-local-data-dir).
type Stager struct {
	// Dir is the backend's data directory.
	Dir string
}

// SpoolDir returns the directory to receive a snapshot for the instance in. The instance must
// have been deployed by the backend (a member with an ID), as this UID, have no restore
// pending (snapshot.ErrRestorePending), so that a second restore is refused before its upload,
// and no recovery from quorum loss under way (snapshot.ErrRecoveryUnderWay), which a restore
// would otherwise take over halfway.
func (s Stager) SpoolDir(_ context.Context, instance *etcdaas.ETCDInstance) (string, error) {
	namespace, name, uid := instance.Namespace, instance.Name, instance.UID
	dir, err := instanceDir(s.Dir, namespace, name)
	if err != nil {
		return "", err
	}
	st, err := loadState(dir)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%w: instance %s/%s has not been deployed yet", etcdcluster.ErrNoMembers, namespace, name)
	}
	if err != nil {
		return "", err
	}
	if st.UID != string(uid) || !st.deployed() {
		return "", fmt.Errorf("%w: instance %s/%s has not been deployed yet", etcdcluster.ErrNoMembers, namespace, name)
	}
	if err := st.recoveryUnderWay(); err != nil {
		return "", err // Stage checks again: a recovery may be recorded while the snapshot uploads
	}
	staged, _, err := pendingRestore(dir)
	if err != nil {
		return "", err
	}
	if staged != nil && staged.InstanceUID == string(uid) {
		return "", snapshot.PendingError(staged) // Stage checks again: two uploads may race past this
	}
	spool := filepath.Join(dir, restoreDir)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return "", err
	}
	// Receipts cut short by a crash of the receiving server leave their spool file: the
	// instance's own directory is swept of those not written to for staleSpoolAge.
	before := time.Now().Add(-snapshot.StaleSpoolAge)
	deleted, err := snapshot.RemoveStaleSpool(spool, before)
	leftovers, lerr := removeStaleStaging(spool, before, staged)
	deleted, err = append(deleted, leftovers...), errors.Join(err, lerr)
	if len(deleted) > 0 || err != nil {
		klog.InfoS("Deleted the spool files of interrupted restores", "instance", namespace+"/"+name, "deleted", deleted, "err", err)
	}
	return spool, nil
}

// removeStaleStaging deletes what a staging cut short by a crash leaves in spool, last written
// before before: a snapshot renamed for a request never recorded, a request never linked.
// The snapshot of the pending request (of an older instance, if any) stays. A staging in
// progress is not touched: its snapshot keeps the time its receipt ended, minutes ago at most.
func removeStaleStaging(spool string, before time.Time, pending *snapshot.Staged) ([]string, error) {
	var stale []string
	for _, pattern := range []string{pendingSnapshot(spool, "*"), filepath.Join(spool, "request-*.tmp")} {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			return nil, err
		}
		for _, path := range matches {
			if pending == nil || path != pendingSnapshot(spool, pending.ID) {
				stale = append(stale, path)
			}
		}
	}
	return snapshot.RemoveStaleFiles(stale, before)
}

// Stage makes the verified snapshot at path the pending restore of the instance, taking the
// file over. It returns snapshot.ErrRestorePending when one is pending already and
// snapshot.ErrRecoveryUnderWay when a recovery was recorded while the snapshot uploaded; the
// file is deleted then.
func (s Stager) Stage(_ context.Context, instance *etcdaas.ETCDInstance, staged *snapshot.Staged, path string) error {
	dir, err := instanceDir(s.Dir, instance.Namespace, instance.Name)
	if err != nil {
		return err
	}
	spool := filepath.Join(dir, restoreDir)
	if st, err := loadState(dir); err == nil {
		if recovering := st.recoveryUnderWay(); recovering != nil {
			_ = os.Remove(path)
			return recovering
		}
	}
	if _, err := os.Stat(filepath.Join(spool, pendingRequest)); err == nil {
		_ = os.Remove(path)
		return pendingErrorIn(dir)
	}
	snapPath := pendingSnapshot(spool, staged.ID)
	if err := os.Rename(path, snapPath); err != nil {
		return err
	}
	data, err := json.Marshal(staged)
	if err != nil {
		return err
	}
	tmp, err := writeSynced(spool, data)
	if err != nil {
		_ = os.Remove(snapPath)
		return err
	}
	defer func() { _ = os.Remove(tmp) }()
	// A link never replaces an existing file: of two concurrent restores, one wins.
	if err := os.Link(tmp, filepath.Join(spool, pendingRequest)); err != nil {
		_ = os.Remove(snapPath)
		if errors.Is(err, os.ErrExist) {
			return pendingErrorIn(dir)
		}
		return err
	}
	// The request is recorded: a failure to make it durable is logged, not reported as a
	// failed request the controller would carry out anyway.
	if err := durable.SyncDir(spool); err != nil {
		klog.ErrorS(err, "Syncing the restore spool directory after recording a request", "directory", spool)
	}
	return nil
}

// recoveryUnderWay returns snapshot.RecoveryError when a recovery from quorum loss is
// recorded and has not finished, nil otherwise.
func (st *instanceState) recoveryUnderWay() error {
	if st.Recovery == nil {
		return nil
	}
	return snapshot.RecoveryError("member " + st.Recovery.Survivor)
}

// pendingErrorIn is snapshot.PendingError for the restore pending in the instance directory dir, or
// snapshot.ErrRestorePending alone when it cannot be read (it finished meanwhile, say).
func pendingErrorIn(dir string) error {
	if staged, _, err := pendingRestore(dir); err == nil && staged != nil {
		return snapshot.PendingError(staged)
	}
	return snapshot.ErrRestorePending
}

func pendingSnapshot(spool, id string) string {
	return filepath.Join(spool, "pending-"+id+".db")
}

// writeSynced writes data to a new temporary file in dir and flushes it to disk.
func writeSynced(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, "request-*.tmp")
	if err != nil {
		return "", err
	}
	if _, err := f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// pendingRestore returns the restore staged for the instance in dir and its snapshot file,
// or nil when there is none.
func pendingRestore(dir string) (*snapshot.Staged, string, error) {
	spool := filepath.Join(dir, restoreDir)
	data, err := os.ReadFile(filepath.Join(spool, pendingRequest))
	if errors.Is(err, os.ErrNotExist) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	staged := &snapshot.Staged{}
	if err := json.Unmarshal(data, staged); err != nil {
		return nil, "", fmt.Errorf("reading the pending restore: %w", err)
	}
	return staged, pendingSnapshot(spool, staged.ID), nil
}

// pendingRestoreStep runs the restore staged for this instance, if any; restoring is false
// when there is none. A restore staged for an older instance with the same name, or carried
// out already, is dropped.
func (b *Backend) pendingRestoreStep(ctx context.Context, dir string, st *instanceState) (res *backend.Result, restoring bool, err error) {
	staged, snapPath, err := pendingRestore(dir)
	if err != nil {
		return nil, true, err
	}
	if staged == nil {
		return nil, false, nil
	}
	// A restore staged for an older instance, or one carried out already whose request a
	// restart left behind, is removed.
	if staged.InstanceUID != st.UID || (st.Restore == nil && staged.ID == st.LastRestore) {
		if err := clearRestore(dir, staged.ID); err != nil {
			return nil, true, err
		}
		return nil, false, nil
	}
	res, err = b.restore(ctx, dir, st, staged, snapPath)
	return res, true, err
}

// clearRestore removes the pending restore id: its snapshot, then its request. Nothing else
// in the spool directory is touched: another upload may be arriving there, which passed
// SpoolDir before this one was staged and is staged in its turn once this request is gone.
// Removing the request last keeps a restart in between on the path that finds it carried out.
func clearRestore(dir, id string) error {
	spool := filepath.Join(dir, restoreDir)
	for _, path := range []string{pendingSnapshot(spool, id), filepath.Join(spool, pendingRequest)} {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// restore replaces the instance's cluster by a new one of the same members restored from the
// staged snapshot. Each part is recorded before the next, so that a restarted controller
// resumes where this one stopped: the plan (new cluster token, members, revision bump) before
// any member stops, every restored member, and the end.
func (b *Backend) restore(ctx context.Context, dir string, st *instanceState, staged *snapshot.Staged, snapPath string) (*backend.Result, error) {
	res := &backend.Result{
		Step:       fmt.Sprintf("restoring the snapshot of revision %d (%d keys) into every member", staged.Info.Revision, staged.Info.TotalKeys),
		StepReason: backend.StepRestoring,
	}
	if st.Restore == nil || st.Restore.ID != staged.ID {
		if err := b.planRestore(ctx, dir, st, staged); err != nil {
			return res, err
		}
	}
	if err := b.movePlannedPorts(dir, st); err != nil {
		return res, err
	}
	cluster := restoredCluster(st)
	for i := range st.Members {
		m := &st.Members[i]
		if slices.Contains(st.Restore.Restored, m.Name) && dataExists(filepath.Join(dir, m.Name)) {
			continue
		}
		// A member recorded as restored whose data directory is gone (deleted by hand) is
		// restored again: started empty, it would join the new cluster without the data.
		st.Restore.Restored = slices.DeleteFunc(st.Restore.Restored, func(n string) bool { return n == m.Name })
		b.stop(dir, m, true)
		data := filepath.Join(dir, m.Name)
		if err := os.RemoveAll(data); err != nil {
			return res, err
		}
		start := time.Now()
		if err := snapshot.Restore(snapshot.RestoreConfig{
			Snapshot: snapPath, DataDir: data, Member: cluster[i], Cluster: cluster,
			ClusterToken: st.ClusterToken, RevisionBump: st.Restore.RevisionBump,
		}, nil); err != nil {
			return res, err
		}
		klog.InfoS("Restored etcd member from a snapshot", "member", m.Name, "revision", staged.Info.Revision, "duration", time.Since(start))
		st.Restore.Restored = append(st.Restore.Restored, m.Name)
		if err := st.save(dir); err != nil {
			return res, err
		}
	}
	if err := b.startRestored(ctx, dir, st); err != nil {
		return res, err
	}
	// The end of the restore is recorded before its request is removed: a restart in between
	// finds the request and must know it was carried out (see pendingRestoreStep).
	st.Restore, st.LastRestore = nil, staged.ID
	if err := st.save(dir); err != nil {
		return res, err
	}
	if err := clearRestore(dir, staged.ID); err != nil {
		return res, err
	}
	res.Step = fmt.Sprintf("restored the snapshot of revision %d into %d members", staged.Info.Revision, len(st.Members))
	res.Record(backend.ReasonRestored, "Restored the snapshot of revision %d (%d keys, restore %s) into every member (%s), a new cluster",
		staged.Info.Revision, staged.Info.TotalKeys, staged.ID, memberNames(st.Members))
	return res, nil
}

// movePlannedPorts moves the members of the restore under way that do not run here off the
// recorded ports another process took meanwhile (while the controller was down, say;
// replaceTakenPorts). Every restored data directory names every member's peer URL, so every
// member is restored again for a moved peer port as long as none of them has started from
// its restored data. Once one has, the restored cluster may have accepted writes, so the
// members' data is kept: a member restarts from it on its new peer port and startRestored
// tells the cluster its new peer URL (readvertiseRestored). A client port is in no restored
// data: members whose client port alone moved keep their data in any case.
func (b *Backend) movePlannedPorts(dir string, st *instanceState) error {
	moved, peerMoved := false, false
	for i := range st.Members {
		m := &st.Members[i]
		if b.isRunning(dir, m) {
			continue
		}
		p, c, taken, err := b.replaceTakenPorts(st, m)
		if err != nil {
			return err
		}
		if !taken {
			continue
		}
		klog.InfoS("Recorded ports of a member being restored are taken, moving it", "member", m.Name, "peerPort", p, "clientPort", c)
		peerMoved = peerMoved || p != m.PeerPort
		m.PeerPort, m.ClientPort, moved = p, c, true
	}
	if !moved {
		return nil
	}
	if !peerMoved || restoreStarted(st) {
		return st.save(dir)
	}
	initial := snapshot.InitialCluster(restoreCluster(st))
	for i := range st.Members {
		st.Members[i].InitialCluster = initial
	}
	st.Restore.Restored = nil
	return st.save(dir)
}

// restoreStarted reports whether a member of the restore under way may have started from its
// restored data (startRestored records it before it starts one): from then on the restored
// cluster may have accepted writes, which restoring its members again would wipe.
func restoreStarted(st *instanceState) bool {
	return slices.ContainsFunc(st.Members, func(m memberState) bool { return m.Started })
}

// restoreCluster is the cluster a restore rebuilds: every member of st, with its peer URL.
func restoreCluster(st *instanceState) []snapshot.Member {
	cluster := make([]snapshot.Member, len(st.Members))
	for i := range st.Members {
		cluster[i] = snapshot.Member{Name: st.Members[i].Name, PeerURL: st.Members[i].peerURL(st.TLS)}
	}
	return cluster
}

// restoredCluster is the cluster the restore under way wrote into the members' data: every
// member with the peer URL its initial cluster names for it, which a peer port moved since
// (movePlannedPorts) does not change. A member restored again must be given these, else its
// member ID (derived from its peer URL) is not the one the other members know.
func restoredCluster(st *instanceState) []snapshot.Member {
	cluster := restoreCluster(st)
	for i := range st.Members {
		m := &st.Members[i]
		for _, entry := range strings.Split(m.InitialCluster, ",") {
			if name, url, ok := strings.Cut(entry, "="); ok && name == m.Name {
				cluster[i].PeerURL = url
			}
		}
	}
	return cluster
}

// dataExists reports whether the data directory data is there.
func dataExists(data string) bool {
	fi, err := os.Stat(data)
	return err == nil && fi.IsDir()
}

// planRestore records the new cluster: the members of the old one keep their names (members
// still joining or being removed are dropped with their data), on free ports, with a new
// cluster token. The old cluster's revision, read before its members stop, sets the bump.
func (b *Backend) planRestore(ctx context.Context, dir string, st *instanceState, staged *snapshot.Staged) error {
	bump := b.revisionBump(ctx, dir, st, staged.Info.Revision)
	b.stopInstance(dir, st)
	var keep []memberState
	for _, m := range st.Members {
		if m.ID != "" && (m.Phase == phaseVoting || m.Phase == phaseLearner) {
			keep = append(keep, m)
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, m.Name)); err != nil {
			return err
		}
	}
	if len(keep) == 0 {
		return backend.Permanent("NothingToRestore", "the instance has no member to restore")
	}
	// A new port must be none recorded for a member: the kept ones are free while they are
	// stopped, and a member given another's port would share its URL.
	avoid := recordedPorts(st.Members)
	for i := range keep {
		m := &keep[i]
		if !loopback.PortFree(m.PeerPort) || !loopback.PortFree(m.ClientPort) {
			p, c, err := b.freePorts(avoid)
			if err != nil {
				return err
			}
			m.PeerPort, m.ClientPort = p, c
		}
		// Started says from now on whether the member started from its restored data.
		m.ID, m.Phase, m.ClusterState, m.Started = "", phaseVoting, "new", false
	}
	cluster := make([]snapshot.Member, len(keep))
	for i := range keep {
		cluster[i] = snapshot.Member{Name: keep[i].Name, PeerURL: keep[i].peerURL(st.TLS)}
	}
	for i := range keep {
		keep[i].InitialCluster = snapshot.InitialCluster(cluster)
	}
	st.Members = keep
	st.ClusterToken = fmt.Sprintf("%s-restore-%s", st.UID, staged.ID)
	st.Restore = &restoreState{ID: staged.ID, RevisionBump: bump}
	klog.InfoS("Restoring an instance from a snapshot", "dir", dir, "members", len(keep), "revision", staged.Info.Revision, "revisionBump", bump)
	return st.save(dir)
}

// revisionBump returns how far to raise the restored cluster's revision above the snapshot's
// so that it passes the running cluster's.
func (b *Backend) revisionBump(ctx context.Context, dir string, st *instanceState, snapRevision int64) uint64 {
	access, err := accessFor(dir, st, false)
	if err != nil {
		return fallbackRevisionBump
	}
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	best, err := etcdcluster.BestSnapshotSource(sctx, access)
	if err != nil {
		return fallbackRevisionBump
	}
	// A margin covers writes the old cluster takes between this read and its stop.
	return uint64(max(best.Revision-snapRevision, 0)) + 10_000
}

// startRestored starts every member of the restored cluster, tells it the peer URLs of members
// that moved since their data was restored (readvertiseRestored), waits until each serves,
// and records their new IDs. A member is recorded as started before it starts: with a
// quorum of members started, the restored cluster may accept writes, which movePlannedPorts
// must then keep.
func (b *Backend) startRestored(ctx context.Context, dir string, st *instanceState) error {
	servers := make([]*embedetcd.Etcd, len(st.Members))
	for i := range st.Members {
		m := &st.Members[i]
		b.mu.Lock()
		e := b.running[filepath.Join(dir, m.Name)]
		b.mu.Unlock()
		if e == nil {
			if !m.Started {
				m.Started = true
				if err := st.save(dir); err != nil {
					return err
				}
			}
			var err error
			if e, err = b.start(dir, st, m); err != nil {
				return err
			}
		}
		servers[i] = e
	}
	sctx, cancel := b.stepContext(ctx)
	defer cancel()
	if err := readvertiseRestored(sctx, dir, st); err != nil {
		return err
	}
	for i, e := range servers {
		select {
		case <-e.Server.ReadyNotify():
		case <-sctx.Done():
			return fmt.Errorf("restored member %s did not become ready: %w", st.Members[i].Name, sctx.Err())
		}
		st.Members[i].ID = etcdcluster.FormatID(uint64(e.Server.MemberID()))
	}
	return nil
}

// readvertiseRestored tells the restored cluster, through its quorum, the peer URL of each
// member whose peer port moved after its data was restored (movePlannedPorts): the cluster
// knows the member by its old one and would not reach it, so it could not catch up. Members
// are known by name: their IDs are recorded only once every member serves. It retries until
// the cluster answers or ctx ends.
func readvertiseRestored(ctx context.Context, dir string, st *instanceState) error {
	restored := restoredCluster(st)
	if slices.Equal(restored, restoreCluster(st)) {
		return nil
	}
	access, err := accessFor(dir, st, false)
	if err != nil {
		return err
	}
	cli, err := access.New()
	if err != nil {
		return err
	}
	defer func() { _ = cli.Close() }()
	for {
		err := updateRestoredPeerURLs(ctx, cli, st)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("telling the restored cluster its members' new peer URLs: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// updateRestoredPeerURLs updates the peer URL the cluster has for every member of st named in
// it whose recorded peer URL is another.
func updateRestoredPeerURLs(ctx context.Context, cli *clientv3.Client, st *instanceState) error {
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	members, err := etcdcluster.MemberList(lctx, cli)
	if err != nil {
		return err
	}
	return updatePeerURLs(lctx, cli, st, members, func(cm etcdcluster.Member) *memberState { return st.member(cm.Name) })
}

// memberNames lists the members' names, comma-separated.
func memberNames(members []memberState) string {
	names := make([]string, len(members))
	for i := range members {
		names[i] = members[i].Name
	}
	return strings.Join(names, ", ")
}

// seedFromBackup builds the first member's data directory from the backup spec.restoreFrom
// names, checked against the sha256 its provenance records and verified as a snapshot, and
// records a Restored event in res. A data directory that exists was seeded (or started)
// before: it is kept.
func (b *Backend) seedFromBackup(ctx context.Context, dir string, st *instanceState, m *memberState, inst *v1beta1.ETCDInstance, res *backend.Result) error {
	spool := filepath.Join(dir, restoreDir)
	sweepSeedSpool(spool)
	data := filepath.Join(dir, m.Name)
	if _, err := os.Stat(data); err == nil {
		return nil
	}
	if b.opts.RestoreSource == nil {
		return backend.Permanent("RestoreUnavailable", "spec.restoreFrom is set, but this controller has no access to backups")
	}
	body, prov, err := b.opts.RestoreSource.OpenRestoreSource(ctx, inst)
	if err != nil {
		return err
	}
	defer func() { _ = body.Close() }()
	if err := os.MkdirAll(spool, 0o700); err != nil {
		return err
	}
	path, _, err := snapshot.Receive(body, spool, 0)
	if err != nil {
		return fmt.Errorf("reading backup %s of %s: %w", prov.Key, inst.Spec.RestoreFrom.Instance, err)
	}
	defer func() { _ = os.Remove(path) }()
	info, err := snapshot.Verify(ctx, path)
	if snapshot.IsInvalid(err) {
		return backend.Permanent(backend.ReasonInvalidBackup, "backup %s of %s: %v", prov.Key, inst.Spec.RestoreFrom.Instance, err)
	}
	if err != nil {
		return err
	}
	if info.SHA256 != prov.SHA256 {
		return backend.Permanent(backend.ReasonInvalidBackup, "backup %s of %s has sha256 %s, but its provenance records %s: it changed after it was taken",
			prov.Key, inst.Spec.RestoreFrom.Instance, info.SHA256, prov.SHA256)
	}
	if err := snapshot.CheckVersion(info, EmbeddedVersion()); err != nil {
		return backend.Permanent(backend.ReasonInvalidBackup, "backup %s of %s: %v", prov.Key, inst.Spec.RestoreFrom.Instance, err)
	}
	member := snapshot.Member{Name: m.Name, PeerURL: m.peerURL(st.TLS)}
	if err := snapshot.Restore(snapshot.RestoreConfig{
		Snapshot: path, DataDir: data, Member: member, Cluster: []snapshot.Member{member}, ClusterToken: st.ClusterToken,
	}, nil); err != nil {
		return err
	}
	klog.InfoS("Seeded the first member from a backup", "member", m.Name, "source", inst.Spec.RestoreFrom.Instance, "key", prov.Key, "revision", info.Revision, "keys", info.TotalKeys)
	res.Record(backend.ReasonRestored, "Seeded member %s from backup %s of %s (revision %d, %d keys)", m.Name, prov.Key, inst.Spec.RestoreFrom.Instance, info.Revision, info.TotalKeys)
	return nil
}

// sweepSeedSpool deletes the backup copies that seeds of the instance cut short by a crash left
// in its spool directory (a copy as large as the backup per crash), whatever their age: the
// instance's first member has not served yet, so SpoolDir has let no restore upload in, and
// every file Receive left there is a seed's.
func sweepSeedSpool(spool string) {
	deleted, err := snapshot.RemoveStaleSpool(spool, time.Now().Add(time.Second))
	if len(deleted) > 0 || (err != nil && !errors.Is(err, os.ErrNotExist)) {
		klog.InfoS("Deleted what interrupted seeds from a backup left", "spool", spool, "deleted", deleted, "err", err)
	}
}
