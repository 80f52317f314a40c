package local

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/loopback"
)

// TestAClusterWhoseClientPortsWereTakenRestarts restarts a three-member cluster whose recorded
// client ports (only) were all taken while the controller was down. The members move to
// other client ports; their peer ports, free, must stay: members restart from their data and
// reach each other at the peer URLs their data records, so moving every peer port as well
// leaves no two members able to form a quorum, and the instance down for good.
func TestAClusterWhoseClientPortsWereTakenRestarts(t *testing.T) {
	dir := t.TempDir()
	b := newBackend(t, dir)
	inst := instance("cports", 3, false)
	converge(t, b, inst)
	putKeys(t, context.Background(), b, "cports", 5)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(filepath.Join(dir, "instances", "ns", "cports"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Members {
		l, err := net.Listen("tcp", loopback.HostPort(m.ClientPort))
		if err != nil {
			t.Fatalf("occupying port %d: %v", m.ClientPort, err)
		}
		defer func() { _ = l.Close() }()
	}

	b = newBackend(t, dir)
	defer func() { _ = b.Close() }()
	res, err := convergeWithin(b, inst, 45*time.Second)
	if err != nil || res == nil || !res.Converged {
		t.Fatalf("the cluster did not come back with its client ports taken: %+v, %v", res, err)
	}
	checkKeysKept(t, context.Background(), b, "cports", 5)
}
