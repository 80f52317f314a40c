package framework

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/etcdaas/etcdaas/test/testenv"
)

// Names of etcdaas in the test cluster, the same as in deploy/.
const (
	Namespace         = "etcdaas-system"
	ServiceName       = "etcdaas-apiserver"
	APIServerSA       = "etcdaas-apiserver"
	ControllerSA      = "etcdaas-controller"
	Group             = "etcdaas.dev"
	ServiceClusterIPs = "10.0.0.0/24"
	// FieldManager is the server-side apply manager of the objects the harness applies.
	FieldManager = "etcdaas-e2e"
)

// MaxRestoreBytes is etcdaas-apiserver's --max-restore-size in the test cluster, small
// enough that a test can send a snapshot one byte over it.
const MaxRestoreBytes = 16 << 20

// APIServiceNames are the APIServices registering etcdaas, one per served version.
var APIServiceNames = []string{"v1beta1.etcdaas.dev", "v1alpha1.etcdaas.dev"}

// APIServiceGVR is the resource of APIServices.
var APIServiceGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// Cluster is a running test control plane with etcdaas registered in it.
type Cluster struct {
	// Dir is the run's work directory: PKI, kubeconfigs, data and logs.
	Dir string
	// LogDir holds one log file per process.
	LogDir string
	// RepoRoot is the module root (for deploy/).
	RepoRoot string
	// Tools maps tool names to the pinned binaries.
	Tools map[string]string
	// OurBin is the directory holding the freshly built etcdaas commands.
	OurBin string
	// PKI is the cluster's certificates.
	PKI *PKI
	// Server is kube-apiserver's URL.
	Server string
	// AdminKubeconfig authenticates as a member of system:masters.
	AdminKubeconfig string
	// AdminConfig is the rest config of AdminKubeconfig.
	AdminConfig *rest.Config
	// Kube is a clientset for the admin.
	Kube kubernetes.Interface
	// Dynamic is a dynamic client for the admin.
	Dynamic dynamic.Interface
	// EtcdaasPort is the secure port etcdaas-apiserver listens on.
	EtcdaasPort int
	// ControllerMetricsPort is the port etcdaas-controller serves /metrics on.
	ControllerMetricsPort int
	// ServicePort is the port of the Service and the APIServices: a ReadinessProxy to
	// EtcdaasPort, so that kube-apiserver reaches the server only while it is ready.
	ServicePort int
	// Proxy forwards ServicePort to EtcdaasPort while etcdaas-apiserver is ready.
	Proxy *ReadinessProxy
	// APIServerKubeconfig is the etcdaas-apiserver service account's kubeconfig.
	APIServerKubeconfig string
	// ControllerKubeconfig is the etcdaas-controller service account's kubeconfig.
	ControllerKubeconfig string

	// APIServerGracefulStop is true when etcdaas-apiserver can end its watches on SIGTERM
	// (--shutdown-watch-termination-grace-period), so that a stop must not need SIGKILL.
	APIServerGracefulStop bool

	t               testing.TB
	etcdaasEtcdPort int
	gracePeriods    map[string]time.Duration
	mu              sync.Mutex
	procs           map[string]*Process
	order           []string
	serverArgs      []string
	serverEnv       []string
	controlArgs     []string
}

// StartCluster starts the whole control plane and registers etcdaas; everything is
// stopped when t ends. On failure the work directory is kept and the tail of every log is
// printed.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterOptions{Controller: true})
}

// StartClusterWithoutController is StartCluster without etcdaas-controller: objects are
// stored and served but nothing acts on them (benchmarks of the API alone).
func StartClusterWithoutController(t testing.TB) *Cluster {
	t.Helper()
	return StartClusterWith(t, ClusterOptions{})
}

// ClusterOptions shape the control plane of StartClusterWith.
type ClusterOptions struct {
	// Controller starts etcdaas-controller too.
	Controller bool
	// KubeAPIServerArgs are appended to kube-apiserver's flags.
	KubeAPIServerArgs []string
	// EtcdaasAPIServerArgs are appended to etcdaas-apiserver's flags.
	EtcdaasAPIServerArgs []string
	// EtcdaasAPIServerEnv (KEY=value) is added to etcdaas-apiserver's environment only (for
	// instance the Go runtime's GOGC), also when it is started again.
	EtcdaasAPIServerEnv []string
	// ControllerArgs are appended to etcdaas-controller's flags, also when it is started
	// later by StartEtcdaasController.
	ControllerArgs []string
}

// StartClusterWith is StartCluster shaped by opts.
func StartClusterWith(t testing.TB, opts ClusterOptions) *Cluster {
	t.Helper()
	start := time.Now()
	// Our commands build while the control plane starts.
	RequireTools(t, Etcd, Etcdutl, KubeAPIServer, KubeControllerManager, Kubectl)
	go func() { _, _ = buildCommands() }()
	c, serviceListener := startControlPlane(t, opts.KubeAPIServerArgs)
	c.OurBin = BuildCommands(t)
	t.Logf("our commands built in %s (concurrently with the control plane)", BuildTime().Round(100*time.Millisecond))
	// The build can take minutes on a loaded machine: the start-up deadline begins after it,
	// and the ports our processes bind are chosen only now, so that nothing else on the
	// machine takes them in between.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ports, err := FreePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	c.EtcdaasPort, c.ControllerMetricsPort = ports[0], ports[1]
	c.Proxy = ServeReadinessProxy(serviceListener, HostPort(c.EtcdaasPort), c.PKI.ServingCA.CertPEM)
	t.Cleanup(c.Proxy.Close)
	c.serverArgs = append(c.etcdaasAPIServerArgs(), opts.EtcdaasAPIServerArgs...)
	c.serverEnv = opts.EtcdaasAPIServerEnv
	if err := c.StartEtcdaasAPIServer(); err != nil {
		t.Fatal(err)
	}
	c.controlArgs = append(c.etcdaasControllerArgs(), opts.ControllerArgs...)
	if opts.Controller {
		if err := c.StartEtcdaasController(); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.WaitForAPIServicesAvailable(ctx, 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	t.Logf("control plane with etcdaas registered and Available after %s", time.Since(start).Round(100*time.Millisecond))
	return c
}

// startControlPlane starts etcd, kube-apiserver, kube-controller-manager and the etcd of
// etcdaas, applies the RBAC, Service and APIServices of deploy/ (adapted to loopback) and
// writes the service accounts' kubeconfigs; etcdaas itself is not started. It returns the
// listener held open on the Service's port, for the readiness proxy.
func startControlPlane(t testing.TB, kubeAPIServerArgs []string) (*Cluster, net.Listener) {
	t.Helper()
	start := time.Now()
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	ports, err := FreePorts(6)
	if err != nil {
		t.Fatal(err)
	}
	kubeEtcdClient, kubeEtcdPeer, apiPort, kcmPort := ports[0], ports[1], ports[2], ports[3]
	c.etcdaasEtcdPort = ports[4]
	etcdaasEtcdPeer := ports[5]
	serviceListener := c.holdServicePort()

	kubeEtcd := c.startEtcd("etcd-kube", kubeEtcdClient, kubeEtcdPeer)
	ourEtcd := c.startEtcd("etcd-etcdaas", c.etcdaasEtcdPort, etcdaasEtcdPeer)
	c.waitEtcd(ctx, kubeEtcd, kubeEtcdClient)

	c.startKubeAPIServerWithAdmin(ctx, apiPort, kubeEtcdClient, kubeAPIServerArgs)
	t.Logf("kube-apiserver ready at %s after %s", c.Server, time.Since(start).Round(100*time.Millisecond))

	c.startKubeControllerManager(kcmPort)
	c.waitEtcd(ctx, ourEtcd, c.etcdaasEtcdPort)

	// The RBAC of deploy/ and the Service and APIServices, patched for loopback.
	c.ApplyDeployOverlay(ctx)
	c.writeServiceAccountKubeconfigs(ctx)
	return c, serviceListener
}

// newCluster is a Cluster with the pinned tools, a new work directory (removed when the test
// ends, unless it failed) holding the log directory and the PKI.
func newCluster(t testing.TB) *Cluster {
	t.Helper()
	tools := RequireTools(t, Etcd, Etcdutl, KubeAPIServer, KubeControllerManager, Kubectl)
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "etcdaas-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		Dir: dir, LogDir: filepath.Join(dir, "logs"), RepoRoot: root, Tools: tools,
		t: t, procs: map[string]*Process{}, gracePeriods: map[string]time.Duration{},
	}
	// Registered first, so it runs last: after every process has been stopped.
	t.Cleanup(func() {
		if t.Failed() {
			c.DumpLogs(80)
			t.Logf("work directory kept for inspection: %s", dir)
			return
		}
		_ = os.RemoveAll(dir)
	})
	if err := os.MkdirAll(c.LogDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if c.PKI, err = NewPKI(filepath.Join(dir, "pki"), Namespace, ServiceName); err != nil {
		t.Fatal(err)
	}
	return c
}

// holdServicePort listens on a free loopback port for the Service, c.ServicePort, until the
// test ends.
func (c *Cluster) holdServicePort() net.Listener {
	c.t.Helper()
	// The Service's port is held open from now on: the proxy serves on this listener.
	serviceListener, err := net.Listen("tcp", HostPort(0))
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { _ = serviceListener.Close() })
	c.ServicePort = serviceListener.Addr().(*net.TCPAddr).Port
	return serviceListener
}

// startKubeAPIServerWithAdmin starts kube-apiserver on port, storing in the etcd on etcdPort,
// writes the admin kubeconfig, builds the admin clients and waits until the server is ready.
func (c *Cluster) startKubeAPIServerWithAdmin(ctx context.Context, port, etcdPort int, extraArgs []string) {
	c.t.Helper()
	var err error
	c.Server = "https://" + HostPort(port)
	c.startKubeAPIServer(port, etcdPort, extraArgs...)
	if c.AdminKubeconfig, err = c.PKI.ClientKubeconfig(c.Server, "e2e-admin", "system:masters"); err != nil {
		c.t.Fatal(err)
	}
	if c.AdminConfig, err = clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig); err != nil {
		c.t.Fatal(err)
	}
	c.AdminConfig.QPS, c.AdminConfig.Burst = 100, 200
	c.Kube = kubernetes.NewForConfigOrDie(c.AdminConfig)
	c.Dynamic = dynamic.NewForConfigOrDie(c.AdminConfig)
	c.waitKubeAPIServer(ctx)
}

// writeServiceAccountKubeconfigs writes the kubeconfigs of etcdaas-apiserver's and the
// controller's service accounts.
func (c *Cluster) writeServiceAccountKubeconfigs(ctx context.Context) {
	c.t.Helper()
	var err error
	if c.APIServerKubeconfig, err = c.ServiceAccountKubeconfig(ctx, APIServerSA); err != nil {
		c.t.Fatal(err)
	}
	if c.ControllerKubeconfig, err = c.ServiceAccountKubeconfig(ctx, ControllerSA); err != nil {
		c.t.Fatal(err)
	}
}

// start runs a process and stops it when the test ends; a process that must be killed
// fails the test unless its name is in killTolerated.
func (c *Cluster) start(name, bin string, args ...string) (*Process, error) {
	return c.startWithEnv(name, nil, bin, args...)
}

// startWithEnv is start with env (KEY=value) added to the process's environment.
func (c *Cluster) startWithEnv(name string, env []string, bin string, args ...string) (*Process, error) {
	p, err := StartProcessWithEnv(name, c.LogDir, env, bin, args...)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if _, seen := c.procs[name]; !seen {
		c.order = append(c.order, name)
	}
	c.procs[name] = p
	if g, ok := c.gracePeriods[name]; ok {
		p.GracePeriod = g
	}
	c.mu.Unlock()
	c.t.Cleanup(func() {
		err := p.Stop()
		switch {
		case err == nil:
		case errors.Is(err, ErrKilled) && c.killTolerated(name):
			c.t.Logf("stopping %s: %v (tolerated: see APIServerGracefulStop)", name, err)
		default:
			c.t.Errorf("stopping %s: %v", name, err)
		}
	})
	return p, nil
}

// mustStart is start for the start-up sequence, which runs in the top-level test.
func (c *Cluster) mustStart(name, bin string, args ...string) *Process {
	c.t.Helper()
	p, err := c.start(name, bin, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *Cluster) killTolerated(name string) bool {
	return name == "etcdaas-apiserver" && !c.APIServerGracefulStop
}

// Process returns the running process called name (etcd-kube, kube-apiserver,
// kube-controller-manager, etcd-etcdaas, etcdaas-apiserver, etcdaas-controller).
func (c *Cluster) Process(name string) *Process {
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

func (c *Cluster) startEtcd(name string, clientPort, peerPort int) *Process {
	client := "http://" + HostPort(clientPort)
	peer := "http://" + HostPort(peerPort)
	return c.mustStart(name, c.Tools[Etcd],
		"--name="+name,
		"--data-dir="+filepath.Join(c.Dir, name),
		"--listen-client-urls="+client,
		"--advertise-client-urls="+client,
		"--listen-peer-urls="+peer,
		"--initial-advertise-peer-urls="+peer,
		"--initial-cluster="+name+"="+peer,
		"--initial-cluster-state=new",
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
}

func (c *Cluster) waitEtcd(ctx context.Context, p *Process, clientPort int) {
	c.t.Helper()
	url := "http://" + HostPort(clientPort) + "/health"
	err := Poll(ctx, 100*time.Millisecond, time.Minute, p.Name+" healthy", func(ctx context.Context) (bool, error) {
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("%w: %v", ErrExited, err)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		c.t.Fatalf("%v\n%s", err, p.Tail(40))
	}
}

func (c *Cluster) startKubeAPIServer(port, etcdPort int, extra ...string) {
	p := c.PKI.Path
	c.mustStart("kube-apiserver", c.Tools[KubeAPIServer], append([]string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(c.Dir, "kube-apiserver-certs"),
		"--tls-cert-file=" + p("kube-apiserver.crt"),
		"--tls-private-key-file=" + p("kube-apiserver.key"),
		"--client-ca-file=" + p("ca.crt"),
		"--etcd-servers=http://" + HostPort(etcdPort),
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=" + ServiceClusterIPs,
		"--service-account-key-file=" + p("sa.pub"),
		"--service-account-signing-key-file=" + p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--requestheader-client-ca-file=" + p("front-proxy-ca.crt"),
		"--requestheader-allowed-names=" + FrontProxyClientName,
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file=" + p("front-proxy-client.crt"),
		"--proxy-client-key-file=" + p("front-proxy-client.key"),
		// The Service of etcdaas is an ExternalName to localhost: kube-apiserver refuses
		// Endpoints on loopback, so aggregator routing to endpoints stays off.
		"--enable-aggregator-routing=false",
		// No kubernetes Service endpoints on loopback either.
		"--endpoint-reconciler-type=none",
		"--shutdown-watch-termination-grace-period=2s",
		"--shutdown-delay-duration=0s",
		"--profiling=false",
		"--v=1",
	}, extra...)...)
}

func (c *Cluster) waitKubeAPIServer(ctx context.Context) {
	c.t.Helper()
	p := c.Process("kube-apiserver")
	err := Poll(ctx, 200*time.Millisecond, 2*time.Minute, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("%w: %v", ErrExited, err)
		}
		body, err := c.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, body)
		}
		return true, nil
	})
	if err != nil {
		c.t.Fatalf("%v\n%s", err, p.Tail(40))
	}
}

func (c *Cluster) startKubeControllerManager(port int) {
	c.t.Helper()
	// With --use-service-account-credentials=false every controller uses this identity;
	// the namespace controller deletes every kind of object, so it is a cluster admin.
	kubeconfig, err := c.PKI.ClientKubeconfig(c.Server, "system:kube-controller-manager", "system:masters")
	if err != nil {
		c.t.Fatal(err)
	}
	p := c.PKI.Path
	c.mustStart("kube-controller-manager", c.Tools[KubeControllerManager],
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig,
		"--authorization-kubeconfig="+kubeconfig,
		"--bind-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(c.Dir, "kube-controller-manager-certs"),
		"--controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller,clusterrole-aggregation-controller,resourcequota-controller",
		"--service-account-private-key-file="+p("sa.key"),
		"--root-ca-file="+p("ca.crt"),
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--concurrent-namespace-syncs=2",
		// A quota created before the controller discovered a resource (etcdinstances, a
		// CRD: discovery is re-read every 30s) is counted for it at the next full resync.
		"--resource-quota-sync-period=10s",
		"--v=1",
	)
}

// ApplyDeployOverlay applies deploy/aggregated/rbac and deploy/aggregated/apiservice
// through a kustomize overlay that only adapts them to loopback: the Service becomes an
// ExternalName to localhost and the APIServices get the test serving CA and port.
func (c *Cluster) ApplyDeployOverlay(ctx context.Context) {
	c.t.Helper()
	overlay := filepath.Join(c.Dir, "deploy-overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		c.t.Fatal(err)
	}
	// kustomize takes resource directories relative to the kustomization only.
	deployDir, err := filepath.Rel(overlay, filepath.Join(c.RepoRoot, "deploy"))
	if err != nil {
		c.t.Fatal(err)
	}
	caBundle := base64.StdEncoding.EncodeToString(c.PKI.ServingCA.CertPEM)
	port := strconv.Itoa(c.ServicePort)
	kustomization := fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %[1]s/aggregated/rbac
- %[1]s/aggregated/apiservice
patches:
- target:
    kind: Service
    name: %[2]s
  patch: |-
    - op: replace
      path: /spec/type
      value: ExternalName
    - op: add
      path: /spec/externalName
      value: localhost
    - op: remove
      path: /spec/selector
    - op: replace
      path: /spec/ports/0/port
      value: %[3]s
- target:
    kind: APIService
  patch: |-
    - op: replace
      path: /spec/caBundle
      value: %[4]s
    - op: replace
      path: /spec/service/port
      value: %[3]s
`, deployDir, ServiceName, port, caBundle)
	if err := os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(kustomization), 0o644); err != nil {
		c.t.Fatal(err)
	}
	k := c.AdminKubectl()
	built := k.Run(ctx, "", "kustomize", overlay)
	if built.Err != nil {
		c.t.Fatalf("%s", built)
	}
	if strings.Contains(built.Stdout, "insecureSkipTLSVerify") {
		c.t.Fatalf("the deploy manifests skip TLS verification:\n%s", built.Stdout)
	}
	if r := k.Run(ctx, built.Stdout, "apply", "--server-side", "--field-manager="+FieldManager, "-f", "-"); r.Err != nil {
		c.t.Fatalf("%s", r)
	}
}

// ServiceAccountKubeconfig requests a token for the service account name in Namespace and
// writes a kubeconfig using it.
func (c *Cluster) ServiceAccountKubeconfig(ctx context.Context, name string) (string, error) {
	expiration := int64(4 * 3600)
	tr, err := c.Kube.CoreV1().ServiceAccounts(Namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiration},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("requesting a token for %s/%s: %w", Namespace, name, err)
	}
	return c.PKI.TokenKubeconfig(c.Server, "sa-"+name, tr.Status.Token)
}

// AdminKubectl returns the pinned kubectl for the admin.
func (c *Cluster) AdminKubectl() KubectlClient {
	return KubectlClient{Path: c.Tools[Kubectl], Kubeconfig: c.AdminKubeconfig}
}

// UserKubeconfig issues a client certificate for user in groups and returns a kubeconfig.
func (c *Cluster) UserKubeconfig(t testing.TB, user string, groups ...string) string {
	t.Helper()
	path, err := c.PKI.ClientKubeconfig(c.Server, user, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// etcdaasAPIServerArgs returns the flags of etcdaas-apiserver. When the binary has
// --shutdown-watch-termination-grace-period (kube-apiserver's ServerRunOptions) it gets 2s,
// and a stop must be graceful; without it, open watches (the garbage collector's, the
// namespace controller's) hold the shutdown for the whole request timeout (60s), so the
// harness kills it 10s after SIGTERM and logs the gap instead of failing.
func (c *Cluster) etcdaasAPIServerArgs() []string {
	p := c.PKI.Path
	var extra []string
	help, _ := exec.Command(filepath.Join(c.OurBin, APIServerCommand), "--help").CombinedOutput()
	if strings.Contains(string(help), "--shutdown-watch-termination-grace-period") {
		c.APIServerGracefulStop = true
		extra = append(extra, "--shutdown-watch-termination-grace-period=2s")
	} else {
		c.t.Logf("etcdaas-apiserver has no --shutdown-watch-termination-grace-period: its stops wait for open watches; the harness kills it 10s after SIGTERM")
		c.gracePeriods["etcdaas-apiserver"] = 10 * time.Second
	}
	return append([]string{
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(c.EtcdaasPort),
		"--tls-cert-file=" + p("etcdaas-apiserver.crt"),
		"--tls-private-key-file=" + p("etcdaas-apiserver.key"),
		"--etcd-servers=http://" + HostPort(c.etcdaasEtcdPort),
		// The controller runs the local backend: backups come from its members.
		"--backup-local-data-dir=" + c.ControllerDataDir(),
		"--max-restore-size=" + strconv.Itoa(MaxRestoreBytes),
		"--kubeconfig=" + c.APIServerKubeconfig,
		"--authentication-kubeconfig=" + c.APIServerKubeconfig,
		"--authorization-kubeconfig=" + c.APIServerKubeconfig,
		"--v=1",
	}, extra...)
}

// EtcdaasEtcdEndpoint is the client URL of the etcd that etcdaas-apiserver stores its
// objects in (plaintext loopback).
func (c *Cluster) EtcdaasEtcdEndpoint() string { return "http://" + HostPort(c.etcdaasEtcdPort) }

// ControllerDataDir is etcdaas-controller's --data-dir: the local backend's members and
// state under instances/<namespace>/<name>/, the local backups under backups/<namespace>/<name>/.
func (c *Cluster) ControllerDataDir() string { return filepath.Join(c.Dir, "controller") }

func (c *Cluster) etcdaasControllerArgs() []string {
	return []string{
		"--kubeconfig=" + c.ControllerKubeconfig,
		"--backend=local",
		"--data-dir=" + c.ControllerDataDir(),
		// Leader election as in deploy/: the Lease RBAC of deploy/ is exercised too.
		"--leader-elect=true",
		"--leader-elect-namespace=" + Namespace,
		"--metrics-bind-address=" + HostPort(c.ControllerMetricsPort),
		"--v=1",
	}
}

// StartEtcdaasAPIServer starts etcdaas-apiserver in aggregated mode (again, after
// StopEtcdaasAPIServer) with the same flags, environment and port.
func (c *Cluster) StartEtcdaasAPIServer() error {
	_, err := c.startWithEnv("etcdaas-apiserver", c.serverEnv, filepath.Join(c.OurBin, APIServerCommand), c.serverArgs...)
	return err
}

// StopEtcdaasAPIServer stops etcdaas-apiserver with SIGTERM; the error wraps ErrKilled when
// it did not end within its grace period.
func (c *Cluster) StopEtcdaasAPIServer() error {
	return c.Process("etcdaas-apiserver").Stop()
}

// StartEtcdaasController starts etcdaas-controller with the local backend (members are
// embedded etcd servers in its process, on loopback) under its service account.
func (c *Cluster) StartEtcdaasController() error {
	_, err := c.start("etcdaas-controller", filepath.Join(c.OurBin, ControllerCommand), c.controlArgs...)
	return err
}

// APIServiceAvailable returns whether the APIService name is Available, with the
// condition's reason and message otherwise.
func (c *Cluster) APIServiceAvailable(ctx context.Context, name string) (bool, string, error) {
	u, err := c.Dynamic.Resource(APIServiceGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, "", err
	}
	conds, _, _ := unstructuredSlice(u.Object, "status", "conditions")
	for _, cond := range conds {
		m, ok := cond.(map[string]any)
		if !ok || m["type"] != "Available" {
			continue
		}
		return m["status"] == "True", fmt.Sprintf("%v: %v", m["reason"], m["message"]), nil
	}
	return false, "no Available condition yet", nil
}

// WaitForAPIServicesAvailable waits until every APIService of etcdaas is Available,
// failing fast when etcdaas-apiserver exits.
func (c *Cluster) WaitForAPIServicesAvailable(ctx context.Context, timeout time.Duration) error {
	for _, name := range APIServiceNames {
		err := Poll(ctx, 200*time.Millisecond, timeout, "APIService "+name+" Available", func(ctx context.Context) (bool, error) {
			if p := c.Process("etcdaas-apiserver"); p != nil {
				if exited, err := p.Exited(); exited {
					return false, fmt.Errorf("etcdaas-apiserver %w: %v\n%s", ErrExited, err, p.Tail(40))
				}
			}
			ok, why, err := c.APIServiceAvailable(ctx, name)
			if err != nil {
				return false, err
			}
			if !ok {
				return false, fmt.Errorf("%s", why)
			}
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func unstructuredSlice(obj map[string]any, fields ...string) ([]any, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false, fmt.Errorf("%s is not an object", f)
		}
		if cur, ok = m[f]; !ok {
			return nil, false, nil
		}
	}
	s, ok := cur.([]any)
	return s, ok, nil
}
