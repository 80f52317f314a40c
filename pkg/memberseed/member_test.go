package memberseed

import (
	"context"
	"fmt"

	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/etcdaas/etcdaas/pkg/embedetcd"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
)

// freeURLs returns n URLs on distinct free loopback ports.
func freeURLs(t *testing.T, n int) []string {
	t.Helper()
	ports, err := loopback.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	urls := make([]string, n)
	for i, p := range ports {
		urls[i] = "http://" + loopback.HostPort(p)
	}
	return urls
}

// A member rebuilt from a survivor streams the survivor's snapshot from its client URL
// (MemberSource), with no sha256 known beforehand, and restores every key it holds.
func TestSeedFromASurvivingMember(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	urls := freeURLs(t, 2)
	survivor, err := embedetcd.Start(embedetcd.Member{Name: "db-2", Dir: filepath.Join(dir, "survivor"), PeerURL: urls[0], ClientURL: urls[1],
		LogOutput: filepath.Join(dir, "etcd.log")})
	if err != nil {
		t.Fatal(err)
	}
	defer survivor.Close()
	if err := embedetcd.WaitReady(ctx, survivor); err != nil {
		t.Fatal(err)
	}
	clientURL := survivor.Config().AdvertiseClientUrls[0].String()
	access := &etcdcluster.Access{Endpoints: []string{clientURL}}
	cli, err := access.New()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	for i := range 20 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/k/%02d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}

	volume := filepath.Join(dir, "volume")
	if err := os.MkdirAll(volume, 0o700); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(volume, "data")
	m := snapshot.Member{Name: "db-0", PeerURL: "http://db-0.db-peers.ns.svc.cluster.local:2380"}
	res, err := Seed(ctx, Config{ID: "recover-1", Source: MemberSource{Access: &etcdcluster.Access{}}, Key: clientURL, EtcdVersion: "3.7",
		DataDir: data, Member: m, Cluster: []snapshot.Member{m}, ClusterToken: "new", RevisionBump: RevisionMargin})
	if err != nil {
		t.Fatal(err)
	}
	if res.Info.TotalKeys < 20 || res.Info.Revision < 21 {
		t.Fatalf("streamed snapshot: %+v, want the survivor's 20 keys at revision 21", res.Info)
	}
	st, err := snapshot.Status(ctx, filepath.Join(data, "member", "snap", "db"))
	if err != nil || st.TotalKey < 20 || st.Revision < 21+RevisionMargin {
		t.Fatalf("rebuilt database: %+v, %v", st, err)
	}
	// Refused with the reason, not after waiting for ctx to end.
	if _, _, err := (MemberSource{}).Open(ctx, freeURLs(t, 1)[0]); err == nil || !strings.Contains(err.Error(), "does not answer") {
		t.Fatalf("a snapshot from a member that does not run: %v", err)
	}
}
