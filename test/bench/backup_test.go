package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// BackupSizeEnv is the size in MiB of the data the backup scenario fills its instance with
// (default 100): each backup stream is at least that long.
const BackupSizeEnv = "ETCDAAS_BENCH_BACKUP_MIB"

// The backup scenario streams GET etcdinstances/NAME/backup of a one-member instance through
// kube-apiserver and directly, next to a clientv3 snapshot of the same member taken by the
// benchmark itself, while the RSS of both API servers is sampled.
const (
	backupScenario    = "backup stream"
	backupRSSScenario = "backup stream: etcdaas-apiserver RSS growth"
	backupKubeRSS     = "backup stream: kube-apiserver RSS growth"
	backupCPU         = "backup stream: CPU per GiB of the processes on the path"
	snapshotPeer      = "clientv3 snapshot of the same member"
	snapshotSize      = "the snapshot's size"
	// backupNamespace is the only namespace etcdaas-controller acts in (--namespace): the
	// instances of the other scenarios are objects nobody runs.
	backupNamespace = "bench-backup"
	backupInstance  = "db"
	// backupValueSize is the size of each value written to fill the instance.
	backupValueSize = 512 << 10
	// backupQuotaBytes is the members' --quota-backend-bytes (etcd's largest suggested).
	backupQuotaBytes = 8 << 30
	// rssSampleEvery is how often the RSS is read during a stream.
	rssSampleEvery = 10 * time.Millisecond
)

// backupControllerArgs confine etcdaas-controller to the backup scenario's namespace.
var backupControllerArgs = []string{"--namespace=" + backupNamespace, "--quota-backend-bytes=" + strconv.Itoa(backupQuotaBytes)}

// startBackupInstance starts etcdaas-controller (local backend, backupNamespace only),
// creates a one-member instance there, waits until it runs and fills it with s.backupBytes
// of data. It returns how the benchmark reaches the member: as etcdaas-apiserver does. It does
// so once per control plane: later calls return the same member.
func (e *apiEnv) startBackupInstance(ctx context.Context, s apiSettings) (*etcdcluster.Access, error) {
	if e.backupMember != nil {
		return e.backupMember, nil
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: backupNamespace}}
	if _, err := e.cluster.Kube.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if err := e.cluster.StartEtcdaasController(); err != nil {
		return nil, err
	}
	resource := e.targets[1].resource(v1beta1.SchemeGroupVersion.Version).Namespace(backupNamespace)
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1beta1.SchemeGroupVersion.String(),
		"kind":       "ETCDInstance",
		"metadata":   map[string]any{"name": backupInstance},
		"spec":       map[string]any{"replicas": int64(1)},
	}}
	if _, err := resource.Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	err := framework.Poll(ctx, 500*time.Millisecond, 3*time.Minute, "the backup instance Running", func(ctx context.Context) (bool, error) {
		u, err := resource.Get(ctx, backupInstance, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		phase, _, _ := unstructured.NestedString(u.Object, "status", "phase")
		return phase == string(v1beta1.PhaseRunning), nil
	})
	if err != nil {
		return nil, fmt.Errorf("%w (etcdaas-controller log: %s)", err, e.cluster.Process("etcdaas-controller").Tail(20))
	}
	access, err := local.Dialer{Dir: e.cluster.ControllerDataDir()}.Access(ctx, backupNamespace, backupInstance)
	if err != nil {
		return nil, err
	}
	if err := fill(ctx, access, s.backupBytes); err != nil {
		return nil, err
	}
	e.backupMember = access
	return access, nil
}

// fill writes size bytes into the member in values of backupValueSize.
func fill(ctx context.Context, access *etcdcluster.Access, size int64) error {
	cli, err := access.New()
	if err != nil {
		return err
	}
	defer func() { _ = cli.Close() }()
	value := strings.Repeat("v", backupValueSize)
	for i := int64(0); i*backupValueSize < size; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("/bench/backup/%06d", i), value); err != nil {
			return fmt.Errorf("filling the backup instance: %w", err)
		}
	}
	return nil
}

// backups streams the backup s.repetitions times through kube-apiserver, directly and as a
// clientv3 snapshot of the member, in a rotating order, and records throughput, size and the
// servers' RSS growth during each stream.
func (e *apiEnv) backups(ctx context.Context, s apiSettings, m measurements) error {
	access, err := e.startBackupInstance(ctx, s)
	if err != nil {
		return err
	}
	server, kube := e.cluster.Process("etcdaas-apiserver").Pid(), e.cluster.Process("kube-apiserver").Pid()
	member, client := e.cluster.Process("etcdaas-controller").Pid(), os.Getpid()
	pids := []int{server, kube}
	type stream struct {
		subject string
		open    func(ctx context.Context) (io.ReadCloser, error)
		// path are the processes the bytes go through: the member's (etcdaas-controller),
		// the servers' and this one, the client.
		path []int
	}
	streams := []stream{
		{viaAggregator, e.targets[0].backupIn(v1beta1.SchemeGroupVersion.Version), []int{member, server, kube, client}},
		{direct, e.targets[1].backupIn(v1beta1.SchemeGroupVersion.Version), []int{member, server, client}},
		{snapshotPeer, func(ctx context.Context) (io.ReadCloser, error) { return stockSnapshot(ctx, access) }, []int{member, client}},
	}
	for rep := range s.repetitions {
		for i := range streams {
			st := streams[(i+rep)%len(streams)]
			var n int64
			var elapsed time.Duration
			var cpu float64
			growth, err := rssGrowthDuring(pids, func() error {
				var err error
				cpu, err = cpuSecondsDuring(st.path, func() error {
					var err error
					n, elapsed, err = drain(ctx, s.deadline, st.open)
					return err
				})
				return err
			})
			if err == nil && n < s.backupBytes {
				err = fmt.Errorf("streamed %d bytes, want at least the %d written", n, s.backupBytes)
			}
			if err != nil {
				return fmt.Errorf("%s: backup: %w", st.subject, err)
			}
			mib := float64(n) / (1 << 20)
			m.add(backupScenario, "", st.subject, mib/elapsed.Seconds())
			m.add(snapshotSize, "", st.subject, mib)
			m.add(backupRSSScenario, "", st.subject, growth[0])
			m.add(backupKubeRSS, "", st.subject, growth[1])
			m.add(backupCPU, "", st.subject, cpu/(mib/1024))
		}
	}
	return nil
}

// backup opens GET etcdinstances/NAME/backup of the backup instance in version.
func (t target) backup(ctx context.Context, version string) (io.ReadCloser, error) {
	u := fmt.Sprintf("%s/apis/%s/%s/namespaces/%s/etcdinstances/%s/backup", t.host, t.group, version,
		backupNamespace, backupInstance)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.http.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		_ = resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", u, resp.Status, body)
	}
	return resp.Body, nil
}

// backupIn is backup in version, as the opener drain takes.
func (t target) backupIn(version string) func(ctx context.Context) (io.ReadCloser, error) {
	return func(ctx context.Context) (io.ReadCloser, error) { return t.backup(ctx, version) }
}

// stockSnapshot opens a snapshot of the instance's first member with clientv3's defaults,
// as `etcdctl snapshot save` takes it: the peer owes nothing to etcdaas's own client settings.
func stockSnapshot(ctx context.Context, access *etcdcluster.Access) (io.ReadCloser, error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: access.Endpoints[:1], TLS: access.TLS, DialTimeout: 10 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return nil, err
	}
	resp, err := cli.SnapshotWithVersion(ctx)
	if err != nil {
		_ = cli.Close()
		return nil, err
	}
	return &clientStream{ReadCloser: resp.Snapshot, client: cli}, nil
}

// clientStream is a stream that closes its client with it.
type clientStream struct {
	io.ReadCloser
	client *clientv3.Client
}

func (s *clientStream) Close() error {
	err := s.ReadCloser.Close()
	if cerr := s.client.Close(); err == nil {
		err = cerr
	}
	return err
}

// drain opens a stream and reads it to the end, within deadline; it returns the bytes read
// and the time from opening to the last byte.
func drain(ctx context.Context, deadline time.Duration, open func(ctx context.Context) (io.ReadCloser, error)) (int64, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	start := time.Now()
	r, err := open(ctx)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, r)
	elapsed := time.Since(start)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return n, elapsed, err
}

// cpuSecondsDuring runs op and returns the CPU time the processes pids used meanwhile.
func cpuSecondsDuring(pids []int, op func() error) (float64, error) {
	total := func() (float64, error) {
		var sum float64
		for _, pid := range pids {
			s, err := cpuSeconds(pid)
			if err != nil {
				return 0, err
			}
			sum += s
		}
		return sum, nil
	}
	before, err := total()
	if err != nil {
		return 0, err
	}
	if err := op(); err != nil {
		return 0, err
	}
	after, err := total()
	return after - before, err
}

// rssGrowthDuring runs op while sampling the RSS of pids every rssSampleEvery, and returns
// each process's peak RSS during op minus its RSS before, in MiB.
func rssGrowthDuring(pids []int, op func() error) ([]float64, error) {
	base := make([]float64, len(pids))
	for i, pid := range pids {
		var err error
		if base[i], err = rssMiB(pid); err != nil {
			return nil, err
		}
	}
	peak := make([]float64, len(pids))
	copy(peak, base)
	var sampleErr error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(rssSampleEvery)
		defer tick.Stop()
		for {
			for i, pid := range pids {
				rss, err := rssMiB(pid)
				if err != nil {
					sampleErr = err
					return
				}
				peak[i] = max(peak[i], rss)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	})
	err := op()
	close(stop)
	wg.Wait()
	if err == nil {
		err = sampleErr
	}
	growth := make([]float64, len(pids))
	for i := range pids {
		growth[i] = peak[i] - base[i]
	}
	return growth, err
}
