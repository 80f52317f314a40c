package embedetcd

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdaas/etcdaas/pkg/loopback"
)

func TestAMemberServesAndRestartsFromItsData(t *testing.T) {
	ports, err := loopback.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := Member{
		Name: "solo", Dir: filepath.Join(dir, "solo"),
		PeerURL: "http://" + loopback.HostPort(ports[0]), ClientURL: "http://" + loopback.HostPort(ports[1]),
		InitialClusterToken: "token-1", SnapshotCount: 100, LogOutput: filepath.Join(dir, "solo.log"),
	}
	cfg, err := m.Config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.InitialCluster != "solo="+m.PeerURL || cfg.ClusterState != "new" || cfg.LogLevel != "warn" || cfg.SnapshotCount != 100 {
		t.Fatalf("config: initial cluster %q, state %q, log level %q, snapshot count %d", cfg.InitialCluster, cfg.ClusterState, cfg.LogLevel, cfg.SnapshotCount)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	put := func(key, value string) {
		t.Helper()
		e, err := Start(m)
		if err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		if err := WaitReady(ctx, e); err != nil {
			t.Fatal(err)
		}
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.ClientURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cli.Close() }()
		if value == "" {
			resp, err := cli.Get(ctx, key)
			if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "kept" {
				t.Fatalf("after a restart: %v, %v", resp, err)
			}
			return
		}
		if _, err := cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	put("k", "kept")
	put("k", "") // the second start restarts from the data
	if _, err := (Member{Name: "bad", PeerURL: "http://[::1", ClientURL: m.ClientURL}).Config(); err == nil {
		t.Fatal("a malformed peer URL was accepted")
	}
}
