package local

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
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

// TestARestoreNeverGivesAMemberAnotherMembersPort: a restore moves a member off a peer port
// another process took, when it plans the new cluster (the members just stopped) or when it
// resumes a plan (the members stopped with the controller). The stopped members' recorded
// ports are free, so the system may hand them out as new ones, as the port source does here
// first: a member moved onto another's port would share its URL, and the restored cluster
// would never start ("member exists with identical ID"). The restore must finish on ports
// of their own.
func TestARestoreNeverGivesAMemberAnotherMembersPort(t *testing.T) {
	for _, planned := range []bool{false, true} {
		t.Run(fmt.Sprintf("planned=%t", planned), func(t *testing.T) {
			dir := t.TempDir()
			b := newBackend(t, dir)
			inst := instance("rcollide", 3, false)
			var idir string
			if planned {
				idir, _, _ = planStagedRestore(t, b, dir, inst)
			} else {
				idir = stageRestore(t, b, dir, inst)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			st, err := loadState(idir)
			if err != nil {
				t.Fatal(err)
			}
			taken := st.Members[2]
			l, err := net.Listen("tcp", loopback.HostPort(taken.PeerPort))
			if err != nil {
				t.Fatalf("occupying port %d: %v", taken.PeerPort, err)
			}
			defer func() { _ = l.Close() }()
			var others []int
			for _, m := range st.Members[:2] {
				others = append(others, m.PeerPort, m.ClientPort)
			}

			b = newBackend(t, dir)
			defer func() { _ = b.Close() }()
			b.ports = func(n int) ([]int, error) {
				free, err := loopback.FreePorts(n)
				return append(slices.Clone(others), free...)[:n], err
			}
			res, err := convergeWithin(b, inst, 45*time.Second)
			if err != nil || res == nil || !res.Converged {
				t.Fatalf("the restore did not finish: %+v, %v", res, err)
			}
			checkEveryMemberServes(t, res)
			if st, err = loadState(idir); err != nil {
				t.Fatal(err)
			}
			seen := map[int]string{}
			for _, m := range st.Members {
				for _, p := range []int{m.PeerPort, m.ClientPort} {
					if seen[p] != "" {
						t.Errorf("port %d is recorded for both %s and %s", p, seen[p], m.Name)
					}
					seen[p] = m.Name
				}
			}
		})
	}
}
