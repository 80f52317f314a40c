package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/cmd/server"
	"github.com/etcdaas/etcdaas/pkg/controller"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
	"github.com/etcdaas/etcdaas/pkg/generated/clientset/versioned"
	"github.com/etcdaas/etcdaas/test/integration/framework"
)

// ctlEnv is a standalone server of its own with a controller on the local backend that a
// test can stop and start again, on the data directory the server's backup subresource reads.
type ctlEnv struct {
	t       *testing.T
	srv     *framework.Server
	dir     string
	client  *versioned.Clientset
	opts    local.Options
	backend *local.Backend
	cancel  context.CancelFunc
	done    chan struct{}
	// backups configures scheduled backups; its Dialer defaults to the local members.
	backups controller.BackupOptions
}

// ctlStart starts a server and a controller. Members use small etcd settings.
func ctlStart(t *testing.T, opts local.Options) *ctlEnv {
	t.Helper()
	return ctlStartWith(t, opts, framework.Options{})
}

// ctlStartWith starts a server with the given options (its data directory is the test's) and
// a controller.
func ctlStartWith(t *testing.T, opts local.Options, serverOpts framework.Options) *ctlEnv {
	t.Helper()
	return ctlStartFull(t, opts, serverOpts, controller.BackupOptions{})
}

// ctlStartWithBackups is ctlStart with scheduled backups configured by backups.
func ctlStartWithBackups(t *testing.T, opts local.Options, backups controller.BackupOptions) *ctlEnv {
	t.Helper()
	return ctlStartFull(t, opts, framework.Options{}, backups)
}

// ctlStartFull starts a server with serverOpts and a controller with opts and backups.
func ctlStartFull(t *testing.T, opts local.Options, serverOpts framework.Options, backups controller.BackupOptions) *ctlEnv {
	t.Helper()
	dir := t.TempDir()
	serverOpts.DataDir = dir
	srv := framework.StartT(t, serverOpts)
	client, err := versioned.NewForConfig(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	opts.Dir = dir
	if opts.SnapshotCount == 0 {
		opts.SnapshotCount = 1000
		opts.SnapshotCatchUpEntries = 500
	}
	if opts.StepTimeout == 0 {
		opts.StepTimeout = 30 * time.Second
	}
	if backups.Dialer == nil {
		backups.Dialer = local.Dialer{Dir: dir}
	}
	if backups.Resolver.LocalRoot == "" {
		// Where the standalone server's backups subresource looks, as its own controller.
		backups.Resolver.LocalRoot = server.StandaloneBackupDir(dir)
	}
	e := &ctlEnv{t: t, srv: srv, dir: dir, client: client, opts: opts, backups: backups}
	e.startController()
	// Registered after StartT's cleanup, so this runs first: members stop before the server.
	t.Cleanup(e.stopController)
	return e
}

func (e *ctlEnv) startController() {
	e.t.Helper()
	opts := e.opts
	if opts.RestoreSource == nil {
		// As the controllers wire it: spec.restoreFrom reads where the backups are written.
		opts.RestoreSource = controller.BackupRestoreSource{Client: e.client, Resolver: e.backups.Resolver}
	}
	b, err := local.New(opts)
	if err != nil {
		e.t.Fatal(err)
	}
	kube, err := kubernetes.NewForConfig(e.srv.Config())
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	recorder, stopEvents := controller.NewEventRecorder(ctx, kube)
	c, err := controller.New(controller.Options{Client: e.client, Backend: b, StepInterval: 50 * time.Millisecond, HealthInterval: 2 * time.Second, Events: recorder, Backups: e.backups})
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stopEvents()
		if err := c.Run(ctx); err != nil {
			e.t.Errorf("controller: %v", err)
		}
	}()
	e.backend, e.cancel, e.done = b, cancel, done
}

// stopController stops the controller and its members, keeping their data, as a process
// exit would.
func (e *ctlEnv) stopController() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	<-e.done
	if err := e.backend.Close(); err != nil {
		e.t.Errorf("closing the backend: %v", err)
	}
	e.cancel = nil
}

func (e *ctlEnv) instances(ns string) interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*v1beta1.ETCDInstance, error)
} {
	return e.client.EtcdaasV1beta1().ETCDInstances(ns)
}

// waitFor polls the instance until cond holds, failing after timeout with the last status.
func (e *ctlEnv) waitFor(ns, name string, timeout time.Duration, what string, cond func(*v1beta1.ETCDInstance) bool) *v1beta1.ETCDInstance {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var last *v1beta1.ETCDInstance
	for {
		got, err := e.instances(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			e.t.Fatal(err)
		}
		if err == nil {
			last = got
			if cond(got) {
				return got
			}
		}
		if time.Now().After(deadline) {
			if last != nil {
				e.t.Fatalf("%s/%s: %s not reached within %s; status %+v", ns, name, what, timeout, last.Status)
			}
			e.t.Fatalf("%s/%s: %s not reached within %s: %v", ns, name, what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// running waits until the instance runs its current generation with every member ready.
func (e *ctlEnv) running(ns, name string, timeout time.Duration) *v1beta1.ETCDInstance {
	e.t.Helper()
	return e.waitFor(ns, name, timeout, "Running", func(i *v1beta1.ETCDInstance) bool {
		return i.Status.Phase == v1beta1.PhaseRunning && i.Status.ObservedGeneration == i.Generation &&
			i.Status.ReadyReplicas == *i.Spec.Replicas && int(i.Status.Replicas) == int(*i.Spec.Replicas)
	})
}

// access returns how to reach the instance's voting members.
func (e *ctlEnv) access(ns, name string) *etcdcluster.Access {
	e.t.Helper()
	a, err := local.Dialer{Dir: e.dir}.Access(context.Background(), ns, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// runningClient creates an instance of the given size with nothing else set, waits until it
// runs (a minute per two members) and returns a client of all its members.
func (e *ctlEnv) runningClient(ns, name string, replicas int32) *clientv3.Client {
	e.t.Helper()
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To(replicas)}})
	e.running(ns, name, time.Duration(replicas/2+1)*time.Minute)
	return e.etcdClient(ns, name)
}

// putLarge writes 512 KiB values under /big/ until they add up to at least total bytes and
// returns how many it wrote.
func putLarge(t *testing.T, cli *clientv3.Client, total int) int {
	t.Helper()
	value := strings.Repeat("v", 512*1024)
	n := 0
	for ; n*len(value) < total; n++ {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("/big/%04d", n), value); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// etcdClient opens a client to the given endpoints of the instance (all when none).
func (e *ctlEnv) etcdClient(ns, name string, endpoints ...string) *clientv3.Client {
	e.t.Helper()
	cli, err := e.access(ns, name).New(endpoints...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// backup GETs the backup subresource and returns the response; the caller closes the body.
func (e *ctlEnv) backup(ctx context.Context, ns, name string) *http.Response {
	e.t.Helper()
	cfg := e.srv.Config()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	url := fmt.Sprintf("%s/apis/etcdaas.dev/v1beta1/namespaces/%s/etcdinstances/%s/backup", cfg.Host, ns, name)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// backupToFile streams a backup into a file and returns its path, size and response.
func (e *ctlEnv) backupToFile(ns, name string) (string, int64, *http.Response) {
	e.t.Helper()
	resp := e.backup(context.Background(), ns, name)
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		e.t.Fatalf("backup: %d %s", resp.StatusCode, body)
	}
	path := filepath.Join(e.t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		e.t.Fatal(err)
	}
	n, err := io.Copy(f, resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		e.t.Fatal(err)
	}
	return path, n, resp
}

// create creates an instance in namespace ns.
func (e *ctlEnv) create(ns string, inst *v1beta1.ETCDInstance) *v1beta1.ETCDInstance {
	e.t.Helper()
	inst.Namespace = ns
	created, err := e.client.EtcdaasV1beta1().ETCDInstances(ns).Create(context.Background(), inst, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return created
}
