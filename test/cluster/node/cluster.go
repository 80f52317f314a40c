// Package node runs a real single-node Kubernetes cluster on this machine for the cluster
// test tier: etcd, kube-apiserver, kube-controller-manager and kube-scheduler from the
// pinned Kubernetes module, containerd v2 with runc, a CNI bridge of its own, a kubelet,
// kube-proxy in nftables mode, CoreDNS without an upstream, and a hostPath volume
// provisioner. It needs root. Test traffic stays on loopback and on the harness's bridge;
// every host change (bridge, route, nftables tables, sysctls, mounts, cgroups, paths the
// kubelet writes outside its root) is undone when the test ends, and swept at the start of
// the next run if a run died before its cleanup. A host-wide lock keeps runs apart.
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
	"github.com/etcdaas/etcdaas/test/testenv"
)

// Names of the node's tools, as hack/tools/build.sh writes them.
const (
	Kubelet         = "kubelet"
	KubeProxy       = "kube-proxy"
	KubeScheduler   = "kube-scheduler"
	Etcdctl         = "etcdctl"
	Containerd      = "containerd"
	ContainerdShim  = "containerd-shim-runc-v2"
	Ctr             = "ctr"
	CoreDNS         = "coredns"
	apiServerPort   = 6443
	startupDeadline = 4 * time.Minute
)

// nodeTools are every pinned binary the cluster runs.
var nodeTools = []string{
	framework.Etcd, framework.Etcdutl, framework.KubeAPIServer, framework.KubeControllerManager, framework.Kubectl,
	Kubelet, KubeProxy, KubeScheduler, Etcdctl, Containerd, ContainerdShim, Ctr, CoreDNS,
}

// Cluster is a running single-node cluster.
type Cluster struct {
	// Dir is the run's work directory (PKI, configs, data, logs, the node's state).
	Dir string
	// LogDir holds one log file per process.
	LogDir string
	// RepoRoot is the module root.
	RepoRoot string
	// Tools maps tool names to the pinned binaries.
	Tools map[string]string
	// DebRoot is where hack/tools/debs.sh unpacked runc, the CNI plugins and nft.
	DebRoot string
	// PKI is the cluster's certificates (the e2e tier's layout).
	PKI *framework.PKI
	// Server is kube-apiserver's URL, on the bridge address.
	Server string
	// AdminKubeconfig authenticates as a member of system:masters.
	AdminKubeconfig string
	// AdminConfig is the rest config of AdminKubeconfig.
	AdminConfig *rest.Config
	// Kube is a clientset for the admin.
	Kube kubernetes.Interface
	// Images are the run's images, imported into containerd.
	Images *Images

	t           testing.TB
	state       hostState
	nft         nftRunner
	provisioner *Provisioner

	mu    sync.Mutex
	procs map[string]*framework.Process
	order []string
}

// Start brings the cluster up and registers its teardown with t. It skips the test when
// not root or when network namespaces cannot be created; in CI a missing tool fails it.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if reason := Unsupported(); reason != "" {
		t.Skip(reason)
	}
	start := time.Now()
	tools := framework.RequireTools(t, nodeTools...)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	debRoot := filepath.Join(root, "_output", "root")
	if _, err := os.Stat(filepath.Join(debRoot, "usr", "sbin", "runc")); err != nil {
		msg := fmt.Sprintf("runc, CNI plugins and nft are not unpacked in %s (run hack/tools/debs.sh)", debRoot)
		if testenv.InCI() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	lock, err := LockHost(30 * time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(lock.Unlock)
	nft := nftRunner{bin: filepath.Join(debRoot, "usr", "sbin", "nft"), libDir: filepath.Join(debRoot, "usr", "lib", "x86_64-linux-gnu")}
	if err := sweepStaleState(nft); err != nil {
		t.Fatalf("sweeping the state a previous run left: %v", err)
	}
	if err := requireDiskRoom(os.TempDir()); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", scratchPrefix)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		Dir: dir, LogDir: filepath.Join(dir, "logs"), RepoRoot: root, Tools: tools, DebRoot: debRoot,
		t: t, nft: nft, procs: map[string]*framework.Process{},
	}
	// Registered first, so it runs last: after every process has been stopped.
	t.Cleanup(c.cleanupHost)
	if c.state, err = recordHostState(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startupDeadline)
	defer cancel()
	if err := c.bringUp(ctx); err != nil {
		c.DumpLogs(60)
		t.Fatal(err)
	}
	t.Logf("node %s Ready with CoreDNS after %s", NodeName, time.Since(start).Round(100*time.Millisecond))
	return c
}

// bringUp starts every component in dependency order.
func (c *Cluster) bringUp(ctx context.Context) error {
	// The images build (mostly go build) while the node comes up.
	type built struct {
		imgs *Images
		err  error
	}
	images := make(chan built, 1)
	go func() {
		imgs, err := BuildImages(ctx, c.RepoRoot, c.path("images"), c.Tools)
		images <- built{imgs, err}
	}()
	var err error
	if c.PKI, err = newClusterPKI(filepath.Join(c.Dir, "pki")); err != nil {
		return err
	}
	if err := setUpBridge(); err != nil {
		return err
	}
	if err := c.startContainerd(ctx); err != nil {
		return err
	}
	etcdPort, err := c.startEtcd(ctx)
	if err != nil {
		return err
	}
	c.Server = fmt.Sprintf("https://%s", net.JoinHostPort(NodeIP, fmt.Sprint(apiServerPort)))
	if err := c.startKubeAPIServer(ctx, etcdPort); err != nil {
		return err
	}
	if err := c.startControllers(); err != nil {
		return err
	}
	if err := c.startKubelet(ctx); err != nil {
		return err
	}
	if err := c.startKubeProxy(); err != nil {
		return err
	}
	if err := c.waitNodeReady(ctx); err != nil {
		return err
	}
	if err := c.startProvisioner(); err != nil {
		return err
	}
	b := <-images
	if b.err != nil {
		return b.err
	}
	c.Images = b.imgs
	if err := c.ImportImages(ctx, c.Images.Archives...); err != nil {
		return err
	}
	return c.deployCoreDNS(ctx)
}

// adminClient writes the admin kubeconfig and its clients.
func (c *Cluster) adminClient() error {
	var err error
	if c.AdminKubeconfig, err = c.PKI.ClientKubeconfig(c.Server, "cluster-admin", "system:masters"); err != nil {
		return err
	}
	if c.AdminConfig, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig); err != nil {
		return err
	}
	c.AdminConfig.QPS, c.AdminConfig.Burst = 50, 100
	c.Kube, err = kubernetes.NewForConfig(c.AdminConfig)
	return err
}

// start runs a process of the cluster and records it for Stop and the log dump.
func (c *Cluster) start(name string, env []string, bin string, args ...string) (*framework.Process, error) {
	p, err := framework.StartProcessWithEnv(name, c.LogDir, env, bin, args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if _, seen := c.procs[name]; !seen {
		c.order = append(c.order, name)
	}
	c.procs[name] = p
	c.mu.Unlock()
	return p, nil
}

// Process returns the running process called name.
func (c *Cluster) Process(name string) *framework.Process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[name]
}

// DumpLogs logs the last n lines of every process's log.
func (c *Cluster) DumpLogs(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, name := range c.order {
		p := c.procs[name]
		c.t.Logf("===== last %d lines of %s (%s) =====\n%s", n, name, p.LogPath, p.Tail(n))
	}
}

// stop stops the named processes in order, ignoring names never started.
func (c *Cluster) stop(names ...string) error {
	var errs []error
	for _, n := range names {
		if p := c.Process(n); p != nil {
			if err := p.Stop(); err != nil && !errors.Is(err, framework.ErrKilled) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// cleanupHost stops everything and undoes every host change, even after a failure.
func (c *Cluster) cleanupHost() {
	start := time.Now()
	c.drainWorkloads()
	if c.provisioner != nil {
		c.provisioner.Stop()
	}
	var errs []error
	errs = append(errs, c.stop(KubeProxy, Kubelet, KubeScheduler))
	errs = append(errs, c.stopContainers())
	errs = append(errs, c.stop(Containerd))
	killShims(filepath.Join(c.Dir, "containerd", "state"))
	errs = append(errs, c.stop(framework.KubeControllerManager, framework.KubeAPIServer, framework.Etcd))
	errs = append(errs, tearDownHost(c.state, c.nft))
	if err := errors.Join(errs...); err != nil {
		c.t.Errorf("cleaning the host up: %v (work directory kept whole: %s)", err, c.Dir)
		return
	}
	if c.t.Failed() {
		if err := trimWorkDir(c.Dir); err != nil {
			c.t.Errorf("removing the images and volumes of %s: %v", c.Dir, err)
		}
		// The logs are read there, not here: the output of the test stays short enough that
		// the failures printed at its end are read.
		c.t.Logf("work directory kept for inspection (images and volumes removed): %s: the components' logs in logs/, the pods' in pod-logs/, namespaces dumped at failures in dumps/", c.Dir)
	} else if err := os.RemoveAll(c.Dir); err != nil {
		c.t.Errorf("removing %s: %v", c.Dir, err)
	}
	_ = os.Remove(statePath)
	c.t.Logf("host cleaned up in %s", time.Since(start).Round(100*time.Millisecond))
}
