package integration

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/etcdutl/v3/snapshot"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/loopback"
)

var filenameRE = regexp.MustCompile(`^attachment; filename="([a-z0-9-]+)-([a-z0-9-]+)-([0-9]+)\.db"$`)

// backupRevision checks the backup response headers and returns the revision in the filename.
func backupRevision(t *testing.T, ns, name string, header map[string][]string) int64 {
	t.Helper()
	if ct := strings.Join(header["Content-Type"], ","); ct != "application/octet-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	cd := strings.Join(header["Content-Disposition"], ",")
	m := filenameRE.FindStringSubmatch(cd)
	if m == nil || m[1]+"-"+m[2] != ns+"-"+name {
		t.Fatalf("Content-Disposition %q, want attachment; filename=\"%s-%s-<revision>.db\"", cd, ns, name)
	}
	rev, err := strconv.ParseInt(m[3], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return rev
}

// TestBackupAndRestore writes 50k keys, backs the instance up through the API, checks the
// file with etcdutl's snapshot package, restores it into a fresh data directory and reads
// the keys back from a member started on it.
func TestBackupAndRestore(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "backup", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 3)
	const keys = 50000
	writeNumberedKeys(t, ctx, cli, keys)

	start := time.Now()
	path, size, resp := e.backupToFile(ns, name)
	elapsed := time.Since(start)
	t.Logf("FIGURE backup of %d keys: %d bytes in %s", keys, size, elapsed.Round(time.Millisecond))
	rev := backupRevision(t, ns, name, resp.Header)

	lg := zap.NewNop()
	st, err := snapshot.NewV3(lg).Status(path)
	if err != nil {
		t.Fatalf("etcdutl snapshot status: %v", err)
	}
	if st.TotalKey < keys || st.Revision < rev {
		t.Fatalf("snapshot status %+v: want >= %d keys at revision >= %d", st, keys, rev)
	}

	rcli := startRestoredMember(t, path)
	count, err := rcli.Get(ctx, "/keys/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if count.Count != keys {
		t.Fatalf("restored member has %d keys, want %d", count.Count, keys)
	}
	for _, i := range []int{0, 12345, keys - 1} {
		got, err := rcli.Get(ctx, fmt.Sprintf("/keys/%06d", i))
		if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != fmt.Sprintf("value-%d", i) {
			t.Fatalf("restored key %d: %v %v", i, got, err)
		}
	}
}

// writeNumberedKeys writes n keys /keys/000000.. (values value-0..) through cli, 100 a
// transaction.
func writeNumberedKeys(t *testing.T, ctx context.Context, cli *clientv3.Client, n int) {
	t.Helper()
	start := time.Now()
	for batch := 0; batch < n; batch += 100 {
		ops := make([]clientv3.Op, 0, 100)
		for i := batch; i < batch+100; i++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/keys/%06d", i), fmt.Sprintf("value-%d", i)))
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("wrote %d keys in %s", n, time.Since(start).Round(time.Millisecond))
}

// startRestoredMember restores the snapshot at path with etcdutl's library into a new data
// directory, starts an etcd member on it until the test ends, and returns a client of it.
func startRestoredMember(t *testing.T, path string) *clientv3.Client {
	t.Helper()
	lg := zap.NewNop()
	restored := filepath.Join(t.TempDir(), "restored")
	ports := freeTestPorts(t, 2)
	peerPort, clientPort := ports[0], ports[1]
	peer := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	if err := snapshot.NewV3(lg).Restore(snapshot.RestoreConfig{
		SnapshotPath: path, Name: "restored", OutputDataDir: restored,
		PeerURLs: []string{peer}, InitialCluster: "restored=" + peer, InitialClusterToken: "restored",
	}); err != nil {
		t.Fatalf("restore: %v", err)
	}
	cfg := embed.NewConfig()
	cfg.Name, cfg.Dir, cfg.LogLevel = "restored", restored, "error"
	cfg.InitialCluster, cfg.InitialClusterToken = "restored="+peer, "restored"
	pu, _ := url.Parse(peer)
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", clientPort))
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	select {
	case <-srv.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("the restored member did not start")
	}
	rcli, err := clientv3.New(clientv3.Config{Endpoints: []string{cu.String()}, DialTimeout: 5 * time.Second, Logger: lg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rcli.Close() })
	return rcli
}

func freeTestPort(t *testing.T) int {
	t.Helper()
	return freeTestPorts(t, 1)[0]
}

// freeTestPorts returns n distinct free ports, found at once: lookups one after the other may
// return the same port.
func freeTestPorts(t *testing.T, n int) []int {
	t.Helper()
	ports, err := loopback.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}

// vmRSS returns this process's resident set size in bytes, from /proc/self/status.
func vmRSS(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb * 1024
		}
	}
	t.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// TestBackupStreamsWithoutBuffering backs up more than 200 MiB and checks that the process
// (API server, controller, members and the reading client) grows by less than 32 MiB of RSS
// meanwhile. It also measures the API's throughput against a direct clientv3 snapshot of
// the same member.
func TestBackupStreamsWithoutBuffering(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 200 MiB")
	}
	// Few raft entries kept in memory: the values are large.
	e := ctlStart(t, local.Options{SnapshotCount: 40, SnapshotCatchUpEntries: 20, QuotaBackendBytes: 1 << 30})
	ns, name := "bigbackup", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 1)
	const total = 210 << 20
	start := time.Now()
	putLarge(t, cli, total)
	t.Logf("wrote %d MiB in %s", total>>20, time.Since(start).Round(time.Millisecond))

	// The stream allocates garbage (etcd and gRPC allocate every 32 KiB chunk) and Go's GC
	// lets the heap grow up to twice its live size before collecting, so RSS would also
	// measure the GC's slack, which depends on what ran before. A soft memory limit a little
	// above the current footprint removes that slack, as GOMEMLIMIT does on a server; it
	// cannot hide memory a buffering implementation would hold, which is live.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	limit := int64(ms.Sys-ms.HeapReleased) + 16<<20
	prevLimit := debug.SetMemoryLimit(limit)
	defer debug.SetMemoryLimit(prevLimit)
	t.Logf("Go memory limit during the measurement: %d MiB", limit>>20)

	var worstGrowth int64
	for round := 1; round <= 2; round++ {
		n, d, base, peak := apiBackupRSS(t, ctx, e, ns, name)
		if n < 200<<20 {
			t.Fatalf("backup of %d bytes, want >= 200 MiB", n)
		}
		dn, dd := directSnapshot(t, ctx, e, ns, name)
		growth := peak - base
		worstGrowth = max(worstGrowth, growth)
		t.Logf("FIGURE round %d: API backup %d MiB in %s = %.0f MiB/s; direct clientv3 snapshot %d MiB in %s = %.0f MiB/s; RSS %d MiB -> peak %d MiB (+%.1f MiB)",
			round, n>>20, d.Round(time.Millisecond), mbps(n, d), dn>>20, dd.Round(time.Millisecond), mbps(dn, dd), base>>20, peak>>20, float64(growth)/(1<<20))
	}
	if worstGrowth >= 32<<20 {
		t.Fatalf("RSS grew by %.1f MiB while streaming a backup, want < 32 MiB", float64(worstGrowth)/(1<<20))
	}
}

// mbps is n bytes in d as MiB/s.
func mbps(n int64, d time.Duration) float64 { return float64(n) / (1 << 20) / d.Seconds() }

// sampleRSS raises *peak (under mu) to this process's RSS every 10 ms until stop is closed.
func sampleRSS(t *testing.T, mu *sync.Mutex, stop <-chan struct{}, peak *int64) {
	for {
		rss := vmRSS(t)
		mu.Lock()
		*peak = max(*peak, rss)
		mu.Unlock()
		select {
		case <-stop:
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// apiBackupRSS streams a backup of ns/name through the API and discards it: it returns its
// size, how long it took, this process's RSS before it and the peak RSS during it.
func apiBackupRSS(t *testing.T, ctx context.Context, e *ctlEnv, ns, name string) (int64, time.Duration, int64, int64) {
	t.Helper()
	var mu sync.Mutex
	base := vmRSS(t)
	peak := base
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() { sampleRSS(t, &mu, stop, &peak); close(sampled) }()
	start := time.Now()
	resp := e.backup(ctx, ns, name)
	if resp.StatusCode != 200 {
		t.Fatalf("backup: %d", resp.StatusCode)
	}
	backupRevision(t, ns, name, resp.Header)
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	elapsed := time.Since(start)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	return n, elapsed, base, peak
}

// directSnapshot reads a snapshot of ns/name's first member with clientv3 and discards it: it
// returns its size and how long it took.
func directSnapshot(t *testing.T, ctx context.Context, e *ctlEnv, ns, name string) (int64, time.Duration) {
	t.Helper()
	access := e.access(ns, name)
	start := time.Now()
	snap, err := etcdcluster.OpenSnapshot(ctx, access, access.Endpoints[0])
	if err != nil {
		t.Fatal(err)
	}
	n, err := io.Copy(io.Discard, snap)
	_ = snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	return n, time.Since(start)
}

// TestTLSInstance runs an instance with tls.enabled: a plaintext client and a client without
// a certificate are refused, a client with a certificate signed by the instance's CA works,
// and so does a backup.
func TestTLSInstance(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "tls", "secure"
	ctx := context.Background()
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{
		Replicas: ptr.To[int32](3), TLS: &v1beta1.TLSSpec{Enabled: true},
	}})
	inst := e.running(ns, name, 2*time.Minute)
	for _, m := range inst.Status.Members {
		if !strings.HasPrefix(m.ClientURL, "https://") || !strings.HasPrefix(m.PeerURL, "https://") {
			t.Fatalf("member %s is not on TLS: %+v", m.Name, m)
		}
	}
	access := e.access(ns, name)
	endpoint := access.Endpoints[0]

	plain := &etcdcluster.Access{Endpoints: []string{"http://" + strings.TrimPrefix(endpoint, "https://")}}
	if st := etcdcluster.Status(ctx, plain, plain.Endpoints[0]); st.Healthy || st.Err == nil {
		t.Fatal("a plaintext client was served by a TLS member")
	}
	noCert := &etcdcluster.Access{Endpoints: []string{endpoint}, TLS: &tls.Config{RootCAs: access.TLS.RootCAs, MinVersion: tls.VersionTLS12}}
	if st := etcdcluster.Status(ctx, noCert, endpoint); st.Healthy || st.Err == nil {
		t.Fatal("a client without a certificate was served by a TLS member")
	}

	cli := e.etcdClient(ns, name)
	if _, err := cli.Put(ctx, "secret", "value"); err != nil {
		t.Fatalf("put with the instance's client certificate: %v", err)
	}
	e.checkMembers(ns, name, 3, map[string]string{"secret": "value"})

	path, _, resp := e.backupToFile(ns, name)
	rev := backupRevision(t, ns, name, resp.Header)
	st, err := snapshot.NewV3(zap.NewNop()).Status(path)
	if err != nil {
		t.Fatalf("snapshot status: %v", err)
	}
	if st.TotalKey < 1 || st.Revision < rev {
		t.Fatalf("snapshot status %+v, revision %d", st, rev)
	}
}
