package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"time"

	"github.com/etcdaas/etcdaas/pkg/pki"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// Names of etcdaas's aggregated server in the cluster, as in deploy/.
const (
	EtcdaasNamespace = "etcdaas-system"
	EtcdaasService   = "etcdaas-apiserver"
)

// Certificates the node adds to the e2e tier's PKI.
const (
	kubeletServing = "kubelet-serving"
	kubeletClient  = "kube-apiserver-kubelet-client"
)

// newClusterPKI creates the e2e tier's PKI with kube-apiserver reachable at the bridge
// address and the kubernetes Service's ClusterIP, plus the kubelet's serving certificate
// and kube-apiserver's client certificate towards the kubelet.
func newClusterPKI(dir string) (*framework.PKI, error) {
	p, err := framework.NewPKIWithAPIServerIPs(dir, EtcdaasNamespace, EtcdaasService,
		net.ParseIP(NodeIP), net.ParseIP(KubernetesServiceIP), net.ParseIP("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	if err := p.Issue(p.ClusterCA, kubeletServing, pki.Request{
		CommonName: NodeName, DNSNames: []string{NodeName}, IPs: []net.IP{net.ParseIP(NodeIP)}, Usage: pki.ServerUsage,
	}); err != nil {
		return nil, err
	}
	if err := p.Issue(p.ClusterCA, kubeletClient, pki.Request{
		CommonName: "kube-apiserver-kubelet-client", Organization: []string{"system:masters"}, Usage: pki.ClientUsage,
	}); err != nil {
		return nil, err
	}
	return p, nil
}

// startEtcd starts kube-apiserver's etcd on loopback and returns its client port.
func (c *Cluster) startEtcd(ctx context.Context) (int, error) {
	ports, err := framework.FreePorts(2)
	if err != nil {
		return 0, err
	}
	client := "http://" + framework.HostPort(ports[0])
	peer := "http://" + framework.HostPort(ports[1])
	p, err := c.start(framework.Etcd, nil, c.Tools[framework.Etcd],
		"--name=kube", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=kube="+peer, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return 0, err
	}
	return ports[0], framework.Poll(ctx, 100*time.Millisecond, time.Minute, "etcd healthy", func(ctx context.Context) (bool, error) {
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("etcd %w: %v\n%s", framework.ErrExited, err, p.Tail(20))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, client+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// startKubeAPIServer starts kube-apiserver on the bridge address, so that pods reach it
// through the kubernetes Service, and waits for /readyz.
func (c *Cluster) startKubeAPIServer(ctx context.Context, etcdPort int) error {
	p := c.PKI.Path
	proc, err := c.start(framework.KubeAPIServer, nil, c.Tools[framework.KubeAPIServer],
		"--bind-address="+NodeIP,
		"--advertise-address="+NodeIP,
		"--secure-port="+strconv.Itoa(apiServerPort),
		"--cert-dir="+filepath.Join(c.Dir, "kube-apiserver-certs"),
		"--tls-cert-file="+p("kube-apiserver.crt"),
		"--tls-private-key-file="+p("kube-apiserver.key"),
		"--client-ca-file="+p("ca.crt"),
		"--etcd-servers=http://"+framework.HostPort(etcdPort),
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--service-account-key-file="+p("sa.pub"),
		"--service-account-signing-key-file="+p("sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc."+ClusterDomain,
		"--requestheader-client-ca-file="+p("front-proxy-ca.crt"),
		"--requestheader-allowed-names="+framework.FrontProxyClientName,
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-username-headers=X-Remote-User",
		"--proxy-client-cert-file="+p("front-proxy-client.crt"),
		"--proxy-client-key-file="+p("front-proxy-client.key"),
		// The node by its InternalIP: resolving its name would query the host's resolver.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority="+p("ca.crt"),
		"--kubelet-client-certificate="+p(kubeletClient+".crt"),
		"--kubelet-client-key="+p(kubeletClient+".key"),
		"--shutdown-watch-termination-grace-period=2s",
		"--shutdown-delay-duration=0s",
		"--profiling=false",
		"--v=1",
	)
	if err != nil {
		return err
	}
	if err := c.adminClient(); err != nil {
		return err
	}
	return framework.Poll(ctx, 200*time.Millisecond, 2*time.Minute, "kube-apiserver /readyz", func(ctx context.Context) (bool, error) {
		if exited, err := proc.Exited(); exited {
			return false, fmt.Errorf("kube-apiserver %w: %v\n%s", framework.ErrExited, err, proc.Tail(20))
		}
		body, err := c.Kube.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return false, fmt.Errorf("%v: %s", err, body)
		}
		return true, nil
	})
}

// controllers are the kube-controller-manager controllers a node running StatefulSets,
// Deployments and volumes needs, and the resourcequota controller that keeps the
// ResourceQuotas' status.used (of ETCDInstances too) that admission checks.
const controllers = "namespace-controller,garbage-collector-controller,serviceaccount-controller," +
	"clusterrole-aggregation-controller,root-ca-certificate-publisher-controller,resourcequota-controller," +
	"statefulset-controller,replicaset-controller,deployment-controller,disruption-controller," +
	"endpoints-controller,endpointslice-controller," +
	"node-ipam-controller,node-lifecycle-controller," +
	"persistentvolume-binder-controller,persistentvolume-protection-controller,persistentvolumeclaim-protection-controller"

// startControllers starts kube-controller-manager and kube-scheduler on loopback.
func (c *Cluster) startControllers() error {
	// With --use-service-account-credentials=false every controller uses this identity;
	// the namespace and garbage-collector controllers delete every kind, so it is an admin.
	kcm, err := c.PKI.ClientKubeconfig(c.Server, "system:kube-controller-manager", "system:masters")
	if err != nil {
		return err
	}
	ports, err := framework.FreePorts(2)
	if err != nil {
		return err
	}
	if _, err := c.start(framework.KubeControllerManager, nil, c.Tools[framework.KubeControllerManager],
		"--kubeconfig="+kcm, "--authentication-kubeconfig="+kcm, "--authorization-kubeconfig="+kcm,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[0]),
		"--cert-dir="+filepath.Join(c.Dir, "kube-controller-manager-certs"),
		"--controllers="+controllers,
		"--allocate-node-cidrs=true", "--cluster-cidr="+ClusterCIDR, "--node-cidr-mask-size=24",
		"--service-cluster-ip-range="+ServiceCIDR,
		"--service-account-private-key-file="+c.PKI.Path("sa.key"),
		"--root-ca-file="+c.PKI.Path("ca.crt"),
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--v=1",
	); err != nil {
		return err
	}
	sched, err := c.PKI.ClientKubeconfig(c.Server, "system:kube-scheduler")
	if err != nil {
		return err
	}
	_, err = c.start(KubeScheduler, nil, c.Tools[KubeScheduler],
		"--kubeconfig="+sched, "--authentication-kubeconfig="+sched, "--authorization-kubeconfig="+sched,
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(ports[1]),
		"--leader-elect=false", "--v=1")
	return err
}
