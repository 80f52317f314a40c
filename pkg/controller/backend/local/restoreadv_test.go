package local

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// planStagedRestore stages a restore (stageRestore) and plans it as a controller stopped
// right after would have: it returns the instance directory, the recorded state and the
// snapshot path.
func planStagedRestore(t *testing.T, b *Backend, dir string, inst *v1beta1.ETCDInstance) (string, *instanceState, string) {
	t.Helper()
	idir := stageRestore(t, b, dir, inst)
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	staged, path, err := pendingRestore(idir)
	if err != nil || staged == nil {
		t.Fatalf("pending restore: %v %v", staged, err)
	}
	if err := b.planRestore(context.Background(), idir, st, staged); err != nil {
		t.Fatal(err)
	}
	return idir, st, path
}

// stageRestore converges a three-member instance, writes k=snap, snapshots it, writes
// k=later and stages the snapshot: it returns the instance directory.
func stageRestore(t *testing.T, b *Backend, dir string, inst *v1beta1.ETCDInstance) string {
	t.Helper()
	converge(t, b, inst)
	ctx := context.Background()
	cli := client(t, b, inst.Name)
	if _, err := cli.Put(ctx, "k", "snap"); err != nil {
		t.Fatal(err)
	}
	snapPath := filepath.Join(t.TempDir(), "snap.db")
	info := saveSnapshot(t, b, inst.Name, snapPath)
	if _, err := cli.Put(ctx, "k", "later"); err != nil {
		t.Fatal(err)
	}
	if err := stage(t, dir, inst, snapPath, "r1", info); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "instances", "ns", inst.Name)
}

// convergeWithin calls Sync until it converges or within passes, returning the last result
// and error when it does not.
func convergeWithin(b *Backend, inst *v1beta1.ETCDInstance, within time.Duration) (*backend.Result, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	var res *backend.Result
	var err error
	for ctx.Err() == nil {
		res, err = b.Sync(ctx, inst)
		if err == nil && res.Converged {
			return res, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return res, err
}

// checkEveryMemberServes checks that every member of res, asked alone, serves k=snap.
func checkEveryMemberServes(t *testing.T, res *backend.Result) {
	t.Helper()
	checkEveryMemberServesValue(t, res, "snap")
}

// checkEveryMemberServesValue checks that every member of res, asked alone, serves k=want.
func checkEveryMemberServesValue(t *testing.T, res *backend.Result, want string) {
	t.Helper()
	for _, m := range res.Members {
		if got := servedAlone(t, m.ClientURL); got["k"] != want {
			t.Errorf("member %s alone serves %v after the restore, want k=%s", m.Name, got, want)
		}
	}
}

// servedAlone returns the keys and values the member at clientURL serves, asked alone.
func servedAlone(t *testing.T, clientURL string) map[string]string {
	t.Helper()
	one, err := (&etcdcluster.Access{Endpoints: []string{clientURL}}).New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = one.Close() }()
	got, _ := values(t, one)
	return got
}

// restoreEveryMember does what the planned restore st does to each member's data, as the
// controller would before it starts them: every member's data directory under idir restored
// from the snapshot at path and recorded as restored.
func restoreEveryMember(t *testing.T, idir string, st *instanceState, path string) {
	t.Helper()
	cluster := restoreCluster(st)
	for i, m := range st.Members {
		data := filepath.Join(idir, m.Name)
		if err := os.RemoveAll(data); err != nil {
			t.Fatal(err)
		}
		if err := snapshot.Restore(snapshot.RestoreConfig{Snapshot: path, DataDir: data, Member: cluster[i], Cluster: cluster,
			ClusterToken: st.ClusterToken, RevisionBump: st.Restore.RevisionBump}, nil); err != nil {
			t.Fatal(err)
		}
		st.Restore.Restored = append(st.Restore.Restored, m.Name)
	}
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
}

// TestARestoreResumesWhenAPlannedPortWasTaken stops the controller after it planned a restore
// (members stopped, new ports recorded); another process takes a recorded port before the
// next controller starts. The restore must still finish, on other ports, not fail forever
// with "address already in use".
func TestARestoreResumesWhenAPlannedPortWasTaken(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("rport", 3, false)
	idir, st, _ := planStagedRestore(t, b, dir, inst)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	taken := st.Members[1]
	l, err := net.Listen("tcp", loopback.HostPort(taken.PeerPort))
	if err != nil {
		t.Fatalf("occupying port %d: %v", taken.PeerPort, err)
	}
	defer func() { _ = l.Close() }()

	b = newBackend(t, dir)
	defer func() { _ = b.Close() }()
	res, err := convergeWithin(b, inst, 45*time.Second)
	if err != nil || res == nil || !res.Converged {
		t.Fatalf("the restore did not finish with a taken port: %+v, %v", res, err)
	}
	checkEveryMemberServes(t, res)
	if st, err = loadState(idir); err != nil || st.member(taken.Name).PeerPort == taken.PeerPort {
		t.Fatalf("member %s kept its taken peer port: %+v, %v", taken.Name, st, err)
	}
}

// TestARestoredMemberWhoseDataWentIsRestoredAgain stops the controller after it restored
// every member's data, before it started them; a member's data directory is then deleted.
// That member must not start empty (it would join the restored cluster without its data and
// serve an empty keyspace): it is restored from the snapshot again.
func TestARestoredMemberWhoseDataWentIsRestoredAgain(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("rgone", 3, false)
	idir, st, path := planStagedRestore(t, b, dir, inst)
	restoreEveryMember(t, idir, st, path)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(idir, st.Members[2].Name)); err != nil {
		t.Fatal(err)
	}

	b = newBackend(t, dir)
	defer func() { _ = b.Close() }()
	res := converge(t, b, inst)
	checkEveryMemberServes(t, res)
}

// TestARestoreWhoseClientPortWasTakenKeepsWhatItsStartedMembersServed: the restore's members
// 0 and 1 have started (a quorum of the restored cluster, which serves) when member 2 cannot
// start, as its client port was taken meanwhile. Only a member's peer URL is in the restored
// data, so member 2 moves to a new client port and joins: the restore must not restore every
// member again, which would wipe what members 0 and 1 accepted and hand out its revisions a
// second time with other data.
func TestARestoreWhoseClientPortWasTakenKeepsWhatItsStartedMembersServed(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("rclient", 3, false)
	st := startTwoRestoredMembers(t, b, dir, inst)
	l, err := net.Listen("tcp", loopback.HostPort(st.Members[2].ClientPort))
	if err != nil {
		t.Fatalf("occupying port %d: %v", st.Members[2].ClientPort, err)
	}
	defer func() { _ = l.Close() }()

	res, err := convergeWithin(b, inst, 45*time.Second)
	if err != nil || res == nil || !res.Converged {
		t.Fatalf("the restore did not finish with a taken client port: %+v, %v", res, err)
	}
	got, _ := values(t, client(t, b, inst.Name))
	if got["k"] != "served" {
		t.Errorf("after the restore k = %q, want %q, which the restored cluster served before", got["k"], "served")
	}
}

// TestARestoreWhosePeerPortWasTakenKeepsWhatItsStartedMembersServed: as above, but member 2's
// peer port was taken, with the controller running on or restarted, and member 2's restored
// data there or deleted. Every restored data directory names member 2's old peer URL, yet
// members 0 and 1 have served: they must be kept, with what they accepted, and member 2
// brought in on a new peer port (restored again for its old peer URL, the one its ID comes
// from, when its data went), not every member restored again for the new peer URL.
func TestARestoreWhosePeerPortWasTakenKeepsWhatItsStartedMembersServed(t *testing.T) {
	for _, tc := range []struct{ restart, dataGone bool }{{false, false}, {true, false}, {true, true}} {
		t.Run(fmt.Sprintf("restart=%t,dataGone=%t", tc.restart, tc.dataGone), func(t *testing.T) {
			dir := t.TempDir()
			b := newBackend(t, dir)
			defer func() { _ = b.Close() }()
			inst := instance("rpeer", 3, false)
			st := startTwoRestoredMembers(t, b, dir, inst)
			if tc.restart {
				if err := b.Close(); err != nil {
					t.Fatal(err)
				}
				b = newBackend(t, dir)
			}
			if tc.dataGone {
				if err := os.RemoveAll(filepath.Join(dir, "instances", "ns", inst.Name, st.Members[2].Name)); err != nil {
					t.Fatal(err)
				}
			}
			taken := st.Members[2].PeerPort
			l, err := net.Listen("tcp", loopback.HostPort(taken))
			if err != nil {
				t.Fatalf("occupying port %d: %v", taken, err)
			}
			defer func() { _ = l.Close() }()

			res, err := convergeWithin(b, inst, 60*time.Second)
			if err != nil || res == nil || !res.Converged {
				t.Fatalf("the restore did not finish with a taken peer port: %+v, %v", res, err)
			}
			checkEveryMemberServesValue(t, res, "served")
			if p := res.Members[2].PeerURL; p == "http://"+loopback.HostPort(taken) {
				t.Errorf("member %s kept its taken peer URL %s", res.Members[2].Name, p)
			}
		})
	}
}

// startTwoRestoredMembers plans the restore of a three-member instance (planStagedRestore),
// restores every member's data, and starts members 0 and 1 as startRestored does, recording
// them as started; they are a quorum of the restored cluster, and k=served is written
// through them. It returns the recorded state.
func startTwoRestoredMembers(t *testing.T, b *Backend, dir string, inst *v1beta1.ETCDInstance) *instanceState {
	t.Helper()
	idir, st, path := planStagedRestore(t, b, dir, inst)
	restoreEveryMember(t, idir, st, path)
	var endpoints []string
	for i := range st.Members[:2] {
		if _, err := b.start(idir, st, &st.Members[i]); err != nil {
			t.Fatal(err)
		}
		endpoints = append(endpoints, "http://"+loopback.HostPort(st.Members[i].ClientPort))
	}
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
	started, err := (&etcdcluster.Access{Endpoints: endpoints}).New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = started.Close() }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := started.Put(ctx, "k", "served"); err != nil {
		t.Fatalf("the restored cluster's started members do not serve: %v", err)
	}
	return st
}
