package snapshot_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"

	"github.com/etcdaas/etcdaas/pkg/loopback"
	"github.com/etcdaas/etcdaas/pkg/snapshot"
	"github.com/etcdaas/etcdaas/pkg/snapshot/snapshottest"
)

func TestReceive(t *testing.T) {
	dir := t.TempDir()
	data := bytes.Repeat([]byte("x"), 1000)
	for _, tc := range []struct {
		name    string
		limit   int64
		tooBig  bool
		wantLen int64
	}{
		{"no limit", 0, false, 1000},
		{"exactly the limit", 1000, false, 1000},
		{"one byte over", 999, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, n, err := snapshot.Receive(bytes.NewReader(data), dir, tc.limit)
			var tl *snapshot.TooLargeError
			if tc.tooBig {
				if !errors.As(err, &tl) || tl.Limit != tc.limit {
					t.Fatalf("want TooLargeError with limit %d, got %v", tc.limit, err)
				}
				if entries, _ := os.ReadDir(dir); len(entries) != 0 {
					t.Fatalf("the refused stream left %d files behind", len(entries))
				}
				return
			}
			if err != nil || n != tc.wantLen {
				t.Fatalf("Receive = %d, %v", n, err)
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("spooled file differs: %v", err)
			}
			_ = os.Remove(path)
		})
	}
}

// failingReader yields some bytes, then fails as a cut-off request body does.
type failingReader struct{ sent bool }

func (f *failingReader) Read(p []byte) (int, error) {
	if !f.sent {
		f.sent = true
		return copy(p, "partial"), nil
	}
	return 0, errors.New("unexpected EOF from the client")
}

func TestReceiveTellsClientFromServerFailures(t *testing.T) {
	dir := t.TempDir()
	_, _, err := snapshot.Receive(&failingReader{}, dir, 1000)
	var re *snapshot.ReadError
	if !errors.As(err, &re) || !strings.Contains(err.Error(), "unexpected EOF from the client") {
		t.Fatalf("a failing body: want a ReadError naming the cause, got %v", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("the failed stream left %d files behind", len(entries))
	}

	_, _, err = snapshot.Receive(bytes.NewReader([]byte("data")), filepath.Join(dir, "missing"), 1000)
	if err == nil || errors.As(err, &re) {
		t.Fatalf("an unwritable spool directory: want a server error that is not a ReadError, got %v", err)
	}
}

func TestVerify(t *testing.T) {
	dir := t.TempDir()
	good := snapshottest.Make(t, dir, "good.db", map[string]string{"a": "1", "b": "2", "c": "3"})
	raw, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}

	info, err := snapshot.Verify(context.Background(), good)
	if err != nil {
		t.Fatalf("a snapshot from the etcd API does not verify: %v", err)
	}
	sum := sha256.Sum256(raw)
	if info.SHA256 != hex.EncodeToString(sum[:]) || info.Size != int64(len(raw)) {
		t.Errorf("info = %+v, want sha256 %x and size %d", info, sum, len(raw))
	}
	if info.TotalKeys != 3 || info.Revision < 4 || !strings.HasPrefix(info.StorageVersion, "3.") {
		t.Errorf("info = %+v, want 3 keys, revision >= 4 and a 3.x storage version", info)
	}

	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := bytes.Clone(raw)
	flipped[len(flipped)/2] ^= 0xFF
	corruptPage := filepath.Join(dir, "corrupt-page.db")
	snapshottest.WithCorruptPage(t, good, corruptPage)
	for name, path := range map[string]string{
		"truncated":                  write("truncated.db", raw[:len(raw)-512]),
		"one byte changed":           write("flipped.db", flipped),
		"no integrity hash":          write("nohash.db", raw[:len(raw)-sha256.Size]),
		"empty":                      write("empty.db", nil),
		"not a database, right hash": write("text.db", withHash(bytes.Repeat([]byte("not etcd"), 64))),
		"corrupt page, correct hash": corruptPage,
	} {
		t.Run(name, func(t *testing.T) {
			_, err := snapshot.Verify(context.Background(), path)
			if !snapshot.IsInvalid(err) {
				t.Fatalf("want an InvalidError, got %v", err)
			}
		})
	}
}

// withHash appends the sha256 of data, as etcd does to a snapshot.
func withHash(data []byte) []byte {
	sum := sha256.Sum256(data)
	return append(bytes.Clone(data), sum[:]...)
}

func TestCheckVersion(t *testing.T) {
	dir := t.TempDir()
	good := snapshottest.Make(t, dir, "good.db", map[string]string{"k": "v"})
	newer := filepath.Join(dir, "newer.db")
	snapshottest.WithStorageVersion(t, good, newer, "3.99.0")

	info, err := snapshot.Verify(context.Background(), good)
	if err != nil {
		t.Fatal(err)
	}
	if err := snapshot.CheckVersion(info, info.StorageVersion); err != nil {
		t.Errorf("a snapshot of the same version is refused: %v", err)
	}
	if err := snapshot.CheckVersion(info, "v3.99"); err != nil {
		t.Errorf("a snapshot of an older version is refused: %v", err)
	}

	newInfo, err := snapshot.Verify(context.Background(), newer)
	if err != nil {
		t.Fatalf("the rewritten snapshot must still be intact: %v", err)
	}
	if newInfo.StorageVersion != "3.99.0" {
		t.Fatalf("storage version = %q", newInfo.StorageVersion)
	}
	err = snapshot.CheckVersion(newInfo, "3.7")
	if !snapshot.IsInvalid(err) || !strings.Contains(err.Error(), "3.99") {
		t.Fatalf("a newer snapshot: want an InvalidError naming 3.99, got %v", err)
	}
	if err := snapshot.CheckVersion(&snapshot.Info{}, "3.7"); err != nil {
		t.Errorf("a snapshot without a version (etcd < 3.6) is refused: %v", err)
	}
}

func TestRestoreStartsANewClusterWithTheData(t *testing.T) {
	dir := t.TempDir()
	kvs := map[string]string{"a": "1", "b": "2"}
	snap := snapshottest.Make(t, dir, "snap.db", kvs)
	ports, err := loopback.FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	member := snapshot.Member{Name: "m0", PeerURL: peer}
	dataDir := filepath.Join(dir, "m0")
	cfg := snapshot.RestoreConfig{Snapshot: snap, DataDir: dataDir, Member: member, Cluster: []snapshot.Member{member}, ClusterToken: "restored", RevisionBump: 1000}
	// Leftovers of an interrupted attempt do not matter.
	if err := os.MkdirAll(dataDir+".restoring/member", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Restore(cfg, nil); err != nil {
		t.Fatal(err)
	}
	if err := snapshot.Restore(cfg, nil); err == nil {
		t.Fatal("restoring over an existing data directory must fail")
	}

	ecfg := embed.NewConfig()
	ecfg.Name, ecfg.Dir, ecfg.LogLevel = "m0", dataDir, "error"
	ecfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	p, _ := url.Parse(peer)
	c, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", ports[1]))
	ecfg.ListenPeerUrls, ecfg.AdvertisePeerUrls = []url.URL{*p}, []url.URL{*p}
	ecfg.ListenClientUrls, ecfg.AdvertiseClientUrls = []url.URL{*c}, []url.URL{*c}
	ecfg.InitialCluster = snapshot.InitialCluster(cfg.Cluster)
	ecfg.InitialClusterToken = "restored"
	e, err := embed.StartEtcd(ecfg)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("restored member not ready")
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.String()}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cli.Close() }()
	resp, err := cli.Get(context.Background(), "", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range resp.Kvs {
		got[string(kv.Key)] = string(kv.Value)
	}
	if len(got) != len(kvs) || got["a"] != "1" || got["b"] != "2" {
		t.Fatalf("restored keys = %v, want %v", got, kvs)
	}
	if resp.Header.Revision < 1000 {
		t.Errorf("revision %d: the restore did not bump it", resp.Header.Revision)
	}
}
