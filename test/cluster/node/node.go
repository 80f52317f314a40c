package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// PauseImage is the sandbox image containerd pins; the harness imports it before the
// kubelet starts.
const PauseImage = "registry.local/pause:etcdaas"

// nftRunner runs the unpacked Debian nft with its libraries.
type nftRunner struct{ bin, libDir string }

func (n nftRunner) env() []string {
	return []string{"LD_LIBRARY_PATH=" + n.libDir, "PATH=" + filepath.Dir(n.bin) + ":" + os.Getenv("PATH")}
}

func (n nftRunner) run(args ...string) error {
	cmd := exec.Command(n.bin, args...)
	cmd.Env = append(os.Environ(), n.env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

func (n nftRunner) tableExists(family, table string) bool {
	if _, err := os.Stat(n.bin); err != nil {
		return false
	}
	return n.run("list", "table", family, table) == nil
}

func (c *Cluster) path(parts ...string) string {
	return filepath.Join(append([]string{c.Dir}, parts...)...)
}

func (c *Cluster) containerdSocket() string { return c.path("containerd", "containerd.sock") }

// containerdConfig is containerd's configuration: everything under the work directory;
// restrict_oom_score_adj because these machines lack CAP_SYS_RESOURCE (runc cannot lower
// oom_score_adj); runc and the CNI plugins from the unpacked Debian packages.
func (c *Cluster) containerdConfig() string {
	d := c.path("containerd")
	return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
temp = %[3]q

[grpc]
  address = %[4]q
[ttrpc]
  address = %[5]q
[debug]
  address = %[6]q
  level = "info"
[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[7]q
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = %[8]q
  [plugins."io.containerd.cri.v1.runtime"]
    netns_mounts_under_state_dir = true
    restrict_oom_score_adj = true
    cdi_spec_dirs = []
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          BinaryName = %[9]q
          Root = %[10]q
          SystemdCgroup = false
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = [%[11]q]
      conf_dir = %[12]q
`, filepath.Join(d, "root"), filepath.Join(d, "state"), filepath.Join(d, "tmp"),
		c.containerdSocket(), c.containerdSocket()+".ttrpc", filepath.Join(d, "debug.sock"),
		filepath.Join(d, "opt"), PauseImage,
		filepath.Join(c.DebRoot, "usr", "sbin", "runc"), filepath.Join(d, "runc-root"),
		filepath.Join(c.DebRoot, "usr", "lib", "cni"), c.path("cni", "net.d"))
}

// cniConfig is the pods' network: the harness's bridge, no gateway, no masquerading
// (nothing leaves the machine), host-local addresses kept under the work directory.
func (c *Cluster) cniConfig() string {
	return fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "etcdaas",
  "plugins": [{
    "type": "bridge",
    "bridge": %q,
    "isGateway": false,
    "ipMasq": false,
    "hairpinMode": true,
    "ipam": {
      "type": "host-local",
      "dataDir": %q,
      "ranges": [[{"subnet": %q, "rangeStart": "10.244.0.10", "rangeEnd": "10.244.0.250"}]],
      "routes": [{"dst": %q, "gw": %q}]
    }
  }]
}
`, BridgeName, c.path("cni", "ipam"), PodCIDR, ServiceCIDR, NodeIP)
}

// startContainerd writes its configuration and the CNI network, starts it and waits for
// its socket.
func (c *Cluster) startContainerd(ctx context.Context) error {
	for _, d := range []string{c.path("containerd"), c.path("cni", "net.d"), c.path("cni", "ipam")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cfg := c.path("containerd", "config.toml")
	if err := os.WriteFile(cfg, []byte(c.containerdConfig()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(c.path("cni", "net.d", "10-etcdaas.conflist"), []byte(c.cniConfig()), 0o644); err != nil {
		return err
	}
	// The shim is found next to containerd; runc through the runtime options.
	env := []string{"PATH=" + filepath.Dir(c.Tools[ContainerdShim]) + ":" + os.Getenv("PATH")}
	p, err := c.start(Containerd, env, c.Tools[Containerd], "--config", cfg)
	if err != nil {
		return err
	}
	return framework.Poll(ctx, 100*time.Millisecond, time.Minute, "containerd socket", func(ctx context.Context) (bool, error) {
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("containerd %w: %v\n%s", framework.ErrExited, err, p.Tail(20))
		}
		_, err := os.Stat(c.containerdSocket())
		return err == nil, err
	})
}

// Ctr runs ctr against the node's containerd in the k8s.io namespace.
func (c *Cluster) Ctr(ctx context.Context, args ...string) (string, error) {
	full := append([]string{"--address", c.containerdSocket(), "--namespace", "k8s.io"}, args...)
	out, err := exec.CommandContext(ctx, c.Tools[Ctr], full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// ImportImages loads image tarballs (OCI or docker archives) into the node's containerd.
func (c *Cluster) ImportImages(ctx context.Context, tarballs ...string) error {
	for _, tb := range tarballs {
		if _, err := c.Ctr(ctx, "images", "import", "--all-platforms", tb); err != nil {
			return err
		}
	}
	return nil
}

// kubeletConfig is the kubelet's configuration: cgroup v1 with the cgroupfs driver,
// serving on the bridge address with the cluster CA's certificate, pods' DNS through
// CoreDNS, no eviction of a busy test machine, logs under the work directory.
func (c *Cluster) kubeletConfig() string {
	p := c.PKI.Path
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://%s
resolvConf: %s
clusterDomain: %s
clusterDNS: [%q]
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
podLogsDir: %s
tlsCertFile: %s
tlsPrivateKeyFile: %s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %s}
authorization:
  mode: Webhook
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "1%%"
  imagefs.available: "1%%"
  nodefs.inodesFree: "1%%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
registerNode: true
serializeImagePulls: false
`, c.containerdSocket(), c.path("resolv.conf"), ClusterDomain, DNSServiceIP, NodeIP, c.path("pod-logs"),
		p(kubeletServing+".crt"), p(kubeletServing+".key"), p("ca.crt"))
}

// startKubelet starts the kubelet and waits for its health endpoint.
func (c *Cluster) startKubelet(ctx context.Context) error {
	if err := os.WriteFile(c.path("resolv.conf"), []byte("nameserver "+DNSServiceIP+"\n"), 0o644); err != nil {
		return err
	}
	cfg := c.path("kubelet.yaml")
	if err := os.WriteFile(cfg, []byte(c.kubeletConfig()), 0o644); err != nil {
		return err
	}
	kubeconfig, err := c.PKI.ClientKubeconfig(c.Server, "system:node:"+NodeName, "system:nodes")
	if err != nil {
		return err
	}
	p, err := c.start(Kubelet, nil, c.Tools[Kubelet],
		"--config="+cfg, "--kubeconfig="+kubeconfig,
		"--root-dir="+c.path("kubelet"), "--cert-dir="+c.path("kubelet-pki"),
		"--hostname-override="+NodeName, "--node-ip="+NodeIP, "--v=2")
	if err != nil {
		return err
	}
	err = framework.Poll(ctx, 200*time.Millisecond, time.Minute, "kubelet /healthz", func(ctx context.Context) (bool, error) {
		if exited, err := p.Exited(); exited {
			return false, fmt.Errorf("kubelet %w: %v\n%s", framework.ErrExited, err, p.Tail(30))
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:10248/healthz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	return err
}

// startKubeProxy starts kube-proxy in nftables mode: Services on the bridge only, no
// conntrack sysctls touched, health and metrics on loopback.
func (c *Cluster) startKubeProxy() error {
	kubeconfig, err := c.PKI.ClientKubeconfig(c.Server, "system:kube-proxy")
	if err != nil {
		return err
	}
	_, err = c.start(KubeProxy, c.nft.env(), c.Tools[KubeProxy],
		"--proxy-mode=nftables", "--kubeconfig="+kubeconfig,
		"--hostname-override="+NodeName, "--cluster-cidr="+ClusterCIDR,
		"--nodeport-addresses="+NodeIP+"/32",
		"--healthz-bind-address=127.0.0.1:10256", "--metrics-bind-address=127.0.0.1:10249",
		"--conntrack-max-per-core=0", "--conntrack-tcp-timeout-established=0", "--conntrack-tcp-timeout-close-wait=0",
		"--v=1")
	return err
}

// waitNodeReady waits for the node to be Ready, with its pod CIDR and without taints, then
// restores the host sysctls the kubelet set.
func (c *Cluster) waitNodeReady(ctx context.Context) error {
	err := framework.Poll(ctx, 250*time.Millisecond, 2*time.Minute, "node Ready and untainted", func(ctx context.Context) (bool, error) {
		if exited, err := c.Process(Kubelet).Exited(); exited {
			return false, fmt.Errorf("kubelet %w: %v", framework.ErrExited, err)
		}
		n, err := c.Kube.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if len(n.Spec.Taints) > 0 {
			return false, fmt.Errorf("taints %v", n.Spec.Taints)
		}
		if n.Spec.PodCIDR == "" {
			return false, errors.New("no pod CIDR yet")
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status != corev1.ConditionTrue {
					return false, fmt.Errorf("Ready=%s: %s", cond.Status, cond.Message)
				}
				return true, nil
			}
		}
		return false, errors.New("no Ready condition yet")
	})
	if err != nil {
		return err
	}
	// The kubelet's container manager sets vm.overcommit_memory, kernel.panic and
	// kernel.panic_on_oops as it starts, which is done once the node is Ready: put them back.
	return c.state.restoreSysctls()
}

// drainWorkloads deletes every namespace's workloads and pods so that the kubelet unmounts
// their volumes and stops their containers; bounded, best effort (containers left are
// killed through containerd next).
func (c *Cluster) drainWorkloads() {
	if c.Kube == nil || c.Process(Kubelet) == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nss, err := c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	zero := int64(0)
	for _, ns := range nss.Items {
		apps := c.Kube.AppsV1()
		_ = apps.StatefulSets(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = apps.Deployments(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = apps.ReplicaSets(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		_ = c.Kube.CoreV1().Pods(ns.Name).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{})
	}
	_ = framework.Poll(ctx, 500*time.Millisecond, 45*time.Second, "pods gone", func(ctx context.Context) (bool, error) {
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		return len(pods.Items) == 0, nil
	})
}

// stopContainers kills every task left in containerd and deletes it.
func (c *Cluster) stopContainers() error {
	if c.Process(Containerd) == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := c.Ctr(ctx, "tasks", "ls", "-q")
	if err != nil {
		return err
	}
	ids := strings.Fields(out)
	for _, id := range ids {
		_, _ = c.Ctr(ctx, "tasks", "kill", "--signal", "SIGKILL", id)
	}
	for _, id := range ids {
		_, _ = c.Ctr(ctx, "tasks", "delete", "--force", id)
	}
	return nil
}
