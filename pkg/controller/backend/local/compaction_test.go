package local

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"

	"github.com/etcdaas/etcdaas/pkg/controller/backend"
)

// TestMembersCompactTheirHistory: etcd compacts nothing unless told to, so without
// auto-compaction an instance's history grows until its database reaches its quota (NOSPACE,
// writes refused) unless every client compacts by itself. With a short retention, an old
// revision of a real member becomes compacted while no client compacts; by default members
// keep an hour of history.
func TestMembersCompactTheirHistory(t *testing.T) {
	b, err := New(Options{Dir: t.TempDir(), StepTimeout: 30 * time.Second, AutoCompaction: backend.AutoCompaction{Retention: "1s"}})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	inst := instance("compacting", 1, false)
	converge(t, b, inst)
	if cfg := memberConfig(t, b, inst, "compacting-0"); cfg.AutoCompactionMode != "periodic" || cfg.AutoCompactionRetention != "1s" {
		t.Fatalf("member runs with auto-compaction %q %q", cfg.AutoCompactionMode, cfg.AutoCompactionRetention)
	}
	cli := memberClient(t, b, "compacting")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := cli.Put(ctx, "k", "v1")
	if err != nil {
		t.Fatal(err)
	}
	old := first.Header.Revision
	for ctx.Err() == nil {
		if _, err := cli.Put(ctx, "k", "v2"); err != nil {
			t.Fatal(err)
		}
		_, err := cli.Get(ctx, "k", clientv3.WithRev(old))
		if errors.Is(err, rpctypes.ErrCompacted) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Fatalf("revision %d of a member with a retention of 1s was not compacted within 30s", old)
}

// TestMembersKeepAnHourOfHistoryByDefault: a backend made without auto-compaction settings
// (as the standalone server's in-process controller) runs its members with the defaults.
func TestMembersKeepAnHourOfHistoryByDefault(t *testing.T) {
	b := newBackend(t, t.TempDir())
	defer func() { _ = b.Close() }()
	inst := instance("defaults", 1, false)
	converge(t, b, inst)
	if cfg := memberConfig(t, b, inst, "defaults-0"); cfg.AutoCompactionMode != "periodic" || cfg.AutoCompactionRetention != "1h" {
		t.Errorf("member runs with auto-compaction %q %q, want periodic 1h", cfg.AutoCompactionMode, cfg.AutoCompactionRetention)
	}
}

// memberConfig is the etcd configuration the running member name of inst was started with.
func memberConfig(t *testing.T, b *Backend, inst *v1beta1.ETCDInstance, name string) embed.Config {
	t.Helper()
	dir, err := instanceDir(b.opts.Dir, inst.Namespace, inst.Name)
	if err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.running[filepath.Join(dir, name)]
	if e == nil {
		t.Fatalf("member %s is not running", name)
	}
	return e.Config()
}
