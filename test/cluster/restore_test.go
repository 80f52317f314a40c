package cluster

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/test/cluster/node"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/s3server"
)

// restoreBulk is the data written before the backup, so that the restore figures are those of
// a snapshot of this size (plus etcd's overhead).
const (
	restoreBulkValues = 128
	restoreBulkValue  = 1 << 20 // 128 MiB in all
)

const backedUpManifest = `apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: %s
  namespace: %s
spec:
  replicas: 3
  version: "3.7"
  backup:
    schedule: "* * * * *"
    keep: 10
    destination:
      s3:
        endpoint: %s
        bucket: %s
        credentialsSecretRef: {name: s3-creds}
`

const restoredManifest = `apiVersion: etcdaas.dev/v1beta1
kind: ETCDInstance
metadata:
  name: %s
  namespace: %s
spec:
  replicas: 3
  version: "3.7"
  restoreFrom:
    instance: %s
    key: %s
`

// testRestore covers the kubernetes backend's restores, with an S3 server on the node's bridge
// address that the member pods, the controller and the API server reach: a new instance
// created from the scheduled backup of another (spec.restoreFrom) holds the backed-up data,
// and POST /restore of a snapshot taken earlier rolls an instance's data back, with a
// revision above the one it had; both end with three ready members.
func testRestore(t *testing.T, e *etcdaasInstall, figs *figures) {
	const ns, src, dst = "restore", "src", "dst"
	store := s3server.StartOn(t, node.NodeIP)
	e.createNamespace(t, ns)
	creds := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "s3-creds"}, StringData: map[string]string{
		"accessKeyID": store.AccessKeyID, "secretAccessKey": store.SecretAccessKey}}
	if _, err := e.c.Kube.CoreV1().Secrets(ns).Create(t.Context(), creds, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pinned := e.kubectl(e.c.Tools[framework.Kubectl])
	mustRun(t, pinned, fmt.Sprintf(backedUpManifest, src, ns, store.Endpoint, store.Bucket), "apply", "-f", "-")
	if _, err := e.waitSettled(t.Context(), ns, src, 3, 4*time.Minute, nil); err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}

	cli := e.memberClient(t, ns, src)
	ctx := t.Context()
	written := writeBeforeBackup(t, ctx, cli)
	// The scheduled backup (every minute) that follows the writes is what restoreFrom uses; the
	// next ones hold the changes below, hence its key (and keep: 10, so that it stays).
	key, err := e.waitBackupAt(ctx, ns, src, written.Header.Revision)
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	snap := filepath.Join(t.TempDir(), "earlier.db")
	mustRun(t, pinned, "", "etcdaas", "backup", src, "-n", ns, "-o", snap)
	st, err := os.Stat(snap)
	if err != nil {
		t.Fatal(err)
	}
	before := changeAfterBackup(t, ctx, cli)
	_ = cli.Close()

	t.Run("restoreFrom", func(t *testing.T) {
		start := time.Now()
		mustRun(t, pinned, fmt.Sprintf(restoredManifest, dst, ns, src, key), "apply", "-f", "-")
		if _, err := e.waitSettled(t.Context(), ns, dst, 3, 8*time.Minute, nil); err != nil {
			dumpNamespace(t, e.c, ns)
			t.Fatal(err)
		}
		figs.add(t, fmt.Sprintf("restoreFrom %d MiB -> Running (3)", st.Size()>>20), time.Since(start))
		e.logSeed(t, ns, dst)
		e.checkRestoredData(t, ns, dst, 0)
	})

	t.Run("restore subresource", func(t *testing.T) {
		start := time.Now()
		out := mustRunWaiting(t, pinned, 10*time.Minute, "etcdaas", "restore", src, "-n", ns, "-f", snap)
		figs.add(t, fmt.Sprintf("/restore %d MiB -> Running (3)", st.Size()>>20), time.Since(start))
		t.Logf("kubectl etcdaas restore: %s", strings.TrimSpace(out))
		if _, err := e.waitSettled(t.Context(), ns, src, 3, 4*time.Minute, nil); err != nil {
			dumpNamespace(t, e.c, ns)
			t.Fatal(err)
		}
		e.checkPodsReady(t, ns, src, 3)
		e.logSeed(t, ns, src)
		// Watchers of the replaced cluster never see the revision go back.
		e.checkRestoredData(t, ns, src, before.Header.Revision)
		// An instance without an S3 destination cannot be restored on this backend: 409.
		r := pinned.Run(t.Context(), "", "etcdaas", "restore", dst, "-n", ns, "-f", snap, "--wait=false")
		if r.Err == nil || !strings.Contains(r.Stderr+r.Stdout, "S3 backup destination") {
			t.Errorf("restoring an instance without a backup destination: %s", r)
		}
	})
}

// writeBeforeBackup writes what the restores bring back: /r/kept and /r/deleted-later, and the
// bulk values; it returns the read of /r/kept after them, at their revision.
func writeBeforeBackup(t *testing.T, ctx context.Context, cli *clientv3.Client) *clientv3.GetResponse {
	t.Helper()
	for k, v := range map[string]string{"/r/kept": "v1", "/r/deleted-later": "v1"} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	writeBulk(t, cli)
	written, err := cli.Get(ctx, "/r/kept")
	if err != nil {
		t.Fatal(err)
	}
	return written
}

// changeAfterBackup makes the changes the restores must undo: /r/kept changed, /r/added-later
// added, /r/deleted-later deleted; it returns the read of /r/kept after them.
func changeAfterBackup(t *testing.T, ctx context.Context, cli *clientv3.Client) *clientv3.GetResponse {
	t.Helper()
	// What the restores must undo.
	if _, err := cli.Put(ctx, "/r/kept", "v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "/r/added-later", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "/r/deleted-later"); err != nil {
		t.Fatal(err)
	}
	before, err := cli.Get(ctx, "/r/kept")
	if err != nil {
		t.Fatal(err)
	}
	return before
}

// logSeed logs what member 0's seed init container reported: how long the download, the
// checks and etcdutl's restore took.
func (e *etcdaasInstall) logSeed(t *testing.T, ns, name string) {
	t.Helper()
	logs, err := e.c.Kube.CoreV1().Pods(ns).GetLogs(name+"-0", &corev1.PodLogOptions{Container: "seed"}).DoRaw(t.Context())
	if err != nil {
		t.Errorf("the seed step's log of %s-0: %v", name, err)
		return
	}
	for _, line := range strings.Split(string(logs), "\n") {
		if strings.Contains(line, "Seeded the member") {
			t.Logf("seed step of %s-0: %s", name, line)
			return
		}
	}
	t.Errorf("%s-0's seed step did not report seeding it:\n%s", name, logs)
}

// memberClient is an etcd client of the instance's members through their pod IPs: this
// process is on the node, whose bridge reaches them.
func (e *etcdaasInstall) memberClient(t *testing.T, ns, name string) *clientv3.Client {
	t.Helper()
	pods, err := e.c.Kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var endpoints []string
	for _, p := range pods.Items {
		if p.Status.PodIP != "" {
			endpoints = append(endpoints, fmt.Sprintf("http://%s:2379", p.Status.PodIP))
		}
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// writeBulk writes restoreBulkValues random values of restoreBulkValue bytes.
func writeBulk(t *testing.T, cli *clientv3.Client) {
	t.Helper()
	value := make([]byte, restoreBulkValue)
	for i := range restoreBulkValues {
		if _, err := rand.Read(value); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("/bulk/%04d", i), string(value))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitBackupAt waits until the instance reports a scheduled backup at revision rev or later,
// and returns its key.
func (e *etcdaasInstall) waitBackupAt(ctx context.Context, ns, name string, rev int64) (string, error) {
	var key string
	err := framework.Poll(ctx, time.Second, 4*time.Minute, fmt.Sprintf("a backup of %s/%s at revision %d", ns, name, rev), func(ctx context.Context) (bool, error) {
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, err
		}
		if b := inst.Status.Backup; b != nil && b.LastBackup != nil && b.LastBackup.Revision >= rev {
			key = b.LastBackup.Key
			return true, nil
		}
		return false, fmt.Errorf("%s; backup status %+v", describe(inst), inst.Status.Backup)
	})
	return key, err
}

// checkRestoredData checks that the instance holds the data of the snapshot — the bulk, /r/kept
// at v1, /r/deleted-later back, /r/added-later gone — on every member, at a revision above
// above.
func (e *etcdaasInstall) checkRestoredData(t *testing.T, ns, name string, above int64) {
	t.Helper()
	cli := e.memberClient(t, ns, name)
	for _, ep := range cli.Endpoints() {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		one, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		got := map[string]string{}
		resp, err := one.Get(ctx, "/r/", clientv3.WithPrefix(), clientv3.WithSerializable())
		if err == nil {
			for _, kv := range resp.Kvs {
				got[string(kv.Key)] = string(kv.Value)
			}
		}
		bulk, berr := one.Get(ctx, "/bulk/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithSerializable())
		_ = one.Close()
		cancel()
		if err != nil || berr != nil {
			t.Fatalf("member %s: %v %v", ep, err, berr)
		}
		if len(got) != 2 || got["/r/kept"] != "v1" || got["/r/deleted-later"] != "v1" || bulk.Count != restoreBulkValues {
			t.Errorf("member %s holds %v and %d bulk values, want /r/kept=v1, /r/deleted-later=v1 and %d", ep, got, bulk.Count, restoreBulkValues)
		}
		if resp.Header.Revision <= above {
			t.Errorf("member %s is at revision %d, not above the replaced cluster's %d", ep, resp.Header.Revision, above)
		}
	}
}
