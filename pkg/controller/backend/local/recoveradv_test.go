package local

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/loopback"
)

// rebuiltRecovery converges instance name with three members holding 20 keys, loses two of
// them for good and records a recovery from the third, whose data it rebuilds, as a
// controller stopped right after the rebuild would have: the backend is closed. It returns
// the instance directory and the survivor.
func rebuiltRecovery(t *testing.T, dir, name string) (string, memberState) {
	t.Helper()
	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	inst := instance(name, 3, false)
	converge(t, b, inst)
	ctx := context.Background()
	putKeys(t, ctx, b, name, 20)
	idir := filepath.Join(dir, "instances", "ns", name)
	loseMember(t, b, idir, name+"-1")
	loseMember(t, b, idir, name+"-2")
	st, err := loadState(idir)
	if err != nil {
		t.Fatal(err)
	}
	survivor := *st.member(name + "-0")
	st.Recovery = &recoveryState{Survivor: survivor.Name, Discard: []string{name + "-1", name + "-2"}, Request: "req",
		ID: strconv.FormatInt(time.Now().UnixNano(), 36), RevisionBump: fallbackRevisionBump}
	st.Members = []memberState{survivor}
	if err := st.save(idir); err != nil {
		t.Fatal(err)
	}
	b.stop(idir, st.member(survivor.Name), true)
	if err := rebuildSurvivor(ctx, idir, st, st.member(survivor.Name)); err != nil {
		t.Fatal(err)
	}
	return idir, *st.member(survivor.Name)
}

// TestARecoveryResumesWhenTheSurvivorsPortWasTaken: the controller stops after it rebuilt the
// survivor of a recovery, before it started it; another process takes the survivor's client
// port. The next controller finishes the recovery on another port, with the survivor's keys,
// instead of failing forever with "address already in use".
func TestARecoveryResumesWhenTheSurvivorsPortWasTaken(t *testing.T) {
	dir := t.TempDir()
	_, survivor := rebuiltRecovery(t, dir, "vport")
	l, err := net.Listen("tcp", loopback.HostPort(survivor.ClientPort))
	if err != nil {
		t.Fatalf("occupying port %d: %v", survivor.ClientPort, err)
	}
	defer func() { _ = l.Close() }()

	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	res, err := convergeWithin(b, instance("vport", 3, false), 60*time.Second)
	if err != nil || res == nil || !res.Converged {
		t.Fatalf("the recovery did not finish with the survivor's port taken: %+v, %v", res, err)
	}
	checkKeysKept(t, context.Background(), b, "vport", 20)
}

// TestARecoveryDoesNotStartTheSurvivorEmpty: the controller stops after it rebuilt the
// survivor of a recovery; the survivor's data directory is then deleted. The next controller
// must say that the survivor's data is lost, not start it empty as a new cluster and report
// the recovery done: every key would be gone without a word.
func TestARecoveryDoesNotStartTheSurvivorEmpty(t *testing.T) {
	dir := t.TempDir()
	idir, survivor := rebuiltRecovery(t, dir, "vgone")
	if err := os.RemoveAll(filepath.Join(idir, survivor.Name)); err != nil {
		t.Fatal(err)
	}

	b := newBackend(t, dir)
	defer func() { _ = b.Close() }()
	res, err := b.Sync(context.Background(), instance("vgone", 3, false))
	if !errors.Is(err, errDataLost) {
		t.Fatalf("sync with the rebuilt survivor's data gone: %+v, %v; want errDataLost", res, err)
	}
	if st, err := loadState(idir); err != nil || st.Recovery == nil {
		t.Fatalf("the recovery is no longer recorded: %+v, %v", st, err)
	}
	if running := b.Running(); len(running) != 0 {
		t.Fatalf("running with the survivor's data gone: %v", running)
	}
}
