package local

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// TestDialerOfAnInstanceNeverDeployed: the first member's ports are recorded before it
// starts, and stay recorded when it never does (spec.restoreFrom failed). Access says the
// instance has no members (a 409 for GET backup) instead of handing out the address of a
// member that never listened, where a backup waited for a minute and more before a 503.
func TestDialerOfAnInstanceNeverDeployed(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "instances", "ns", "db")
	st := &instanceState{UID: "uid-1", Members: []memberState{{Name: "db-0", PeerPort: 1, ClientPort: 2, Phase: phaseVoting, ClusterState: "new"}}}
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}
	d := Dialer{Dir: root}
	if access, err := d.Access(context.Background(), "ns", "db"); !errors.Is(err, etcdcluster.ErrNoMembers) {
		t.Fatalf("Access of an instance whose member never started: %+v, %v; want ErrNoMembers", access, err)
	}

	st.Members[0].ID = "8e9e05c52164694d" // it joined: from now on its address is handed out
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}
	access, err := d.Access(context.Background(), "ns", "db")
	if err != nil || len(access.Endpoints) != 1 || access.Endpoints[0] != "http://127.0.0.1:2" {
		t.Fatalf("Access of a deployed instance: %+v, %v", access, err)
	}
}
