package local

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

// verifiedSnapshot makes a snapshot holding key k = v and returns it with what verifying it
// finds, as the API server hands it to the stager.
func verifiedSnapshot(t *testing.T) (string, *snapshot.Info) {
	t.Helper()
	path := snapshottest.Make(t, t.TempDir(), "snap.db", map[string]string{"k": "v"})
	info, err := snapshot.Verify(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return path, info
}

// TestARestoreDuringARecoveryIsRefused: while a recovery from quorum loss is recorded and
// not finished, a restore is refused before its upload (SpoolDir) and, when the recovery was
// recorded while it uploaded, when it is staged, with nothing left in the spool directory;
// the error names the recovery, not a restore. The recovery then finishes with the
// survivor's keys.
func TestARestoreDuringARecoveryIsRefused(t *testing.T) {
	dir := t.TempDir()
	idir, survivor := rebuiltRecovery(t, dir, "vrest")
	inst := instance("vrest", 3, false)
	internal := internalInstance("ns", "vrest", inst.UID)

	_, err := Stager{Dir: dir}.SpoolDir(context.Background(), internal)
	if !errors.Is(err, snapshot.ErrRecoveryUnderWay) || errors.Is(err, snapshot.ErrRestorePending) || !strings.Contains(err.Error(), survivor.Name) {
		t.Fatalf("SpoolDir during a recovery from %s: %v, want ErrRecoveryUnderWay naming it", survivor.Name, err)
	}
	// The recovery was recorded while the snapshot uploaded.
	spool := filepath.Join(idir, restoreDir)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	path, info := verifiedSnapshot(t)
	if err := stageFrom(t, dir, spool, inst, path, "r1", info); !errors.Is(err, snapshot.ErrRecoveryUnderWay) {
		t.Fatalf("Stage during a recovery: %v, want ErrRecoveryUnderWay", err)
	}
	if left, err := filepath.Glob(filepath.Join(spool, "*")); err != nil || len(left) != 0 {
		t.Fatalf("a refused restore left %v (%v) in the spool directory", left, err)
	}

	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	if res := converge(t, b, inst); res == nil || !res.Converged {
		t.Fatalf("the recovery did not finish: %+v", res)
	}
	checkKeysKept(t, context.Background(), b, "vrest", 20)
}

// TestARestoreStagedAsARecoveryIsRecordedRunsAfterIt: a restore and a recovery that pass
// their checks at once are both recorded. The recovery is finished first (the members it
// discards are gone before anything else starts), then the restore runs on the recovered
// cluster.
func TestARestoreStagedAsARecoveryIsRecordedRunsAfterIt(t *testing.T) {
	dir := t.TempDir()
	idir, survivor := rebuiltRecovery(t, dir, "vboth")
	inst := instance("vboth", 3, false)
	path, info := verifiedSnapshot(t)
	writePendingRestore(t, idir, path, &snapshot.Staged{ID: "r1", InstanceUID: string(inst.UID), Info: *info, RequestedAt: time.Now().UTC()})

	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	res, err := b.Sync(context.Background(), inst)
	if err != nil || res.StepReason != backend.StepRecovering || !strings.Contains(res.Step, "recovered from member "+survivor.Name) {
		t.Fatalf("first sync with a recovery and a restore recorded: %+v, %v; want the recovery finished", res, err)
	}
	if st, err := loadState(idir); err != nil || st.Recovery != nil || st.LastRecovery != "req" {
		t.Fatalf("after the first sync: %+v, %v; want the recovery finished", st, err)
	}
	if staged, _, err := pendingRestore(idir); err != nil || staged == nil || staged.ID != "r1" {
		t.Fatalf("the restore staged meanwhile: %+v, %v; want it still pending", staged, err)
	}
	converge(t, b, inst)
	cli := instanceClient(t, context.Background(), b, "vboth")
	defer func() { _ = cli.Close() }()
	if got, _ := values(t, cli); len(got) != 1 || got["k"] != "v" {
		t.Fatalf("keys after the restore that followed the recovery: %v, want the snapshot's", got)
	}
}

// writePendingRestore records staged as the pending restore of the instance directory idir
// with a copy of the snapshot at path, as Stage does, without Stage's checks.
func writePendingRestore(t *testing.T, idir, path string, staged *snapshot.Staged) {
	t.Helper()
	spool := filepath.Join(idir, restoreDir)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	request, err := json.Marshal(staged)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pendingSnapshot(spool, staged.ID), data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(spool, pendingRequest), request, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestARecoveryIsRefusedWhileARestoreIsPending: a recovery requested while a restore is staged
// is refused (ErrCannotRecover saying a restore is under way) before any member is looked at
// or stopped, as the kubernetes backend refuses it.
func TestARecoveryIsRefusedWhileARestoreIsPending(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance("vpend", 1, false)
	converge(t, b, inst)
	path, info := verifiedSnapshot(t)
	if err := stage(t, dir, inst, path, "r1", info); err != nil {
		t.Fatal(err)
	}
	_, err := b.Recover(context.Background(), inst, backend.RecoverRequest{ID: "rec-1"})
	if !errors.Is(err, backend.ErrCannotRecover) || !strings.Contains(err.Error(), "a restore of the instance is under way") {
		t.Fatalf("a recovery with a restore pending: %v, want ErrCannotRecover saying a restore is under way", err)
	}
	if st, err := loadState(filepath.Join(dir, "instances", "ns", "vpend")); err != nil || st.Recovery != nil {
		t.Fatalf("a refused recovery was recorded: %+v, %v", st, err)
	}
}
