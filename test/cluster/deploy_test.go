package cluster

import (
	"context"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/test/cluster/node"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// etcdaasInstall is etcdaas installed from deploy/aggregated.
type etcdaasInstall struct {
	c *node.Cluster
	// plugin is the directory holding kubectl-etcdaas, put on kubectl's PATH.
	plugin string
	// storageEtcd is the storage etcd's CA and certificates (Secrets etcdaas-etcd-server
	// and etcdaas-etcd-client).
	storageEtcd *storageEtcdPKI
}

// deployOverlay is the kustomization the tier applies: the whole of deploy/aggregated plus
// its per-cluster inputs (the serving certificate Secret, the APIServices' caBundle and the
// storage etcd's Secrets, etcd-tls.yaml) and the run's images: etcdaas from this checkout, and the etcd image built
// from the pinned module for both the storage etcd and the members (--etcd-image). A roll
// step fails after 45s (--upgrade-step-timeout) and a member failing for a minute is
// replaced (--member-repair-grace-period), so that the failed-roll and repair scenarios do
// not wait the defaults' 5 minutes; a member restart takes a few seconds on this node.
// etcdaas's own pods request 10m of CPU instead of deploy/'s 50m-100m: the node has 2 cores
// to allocate, and the scenarios side by side run up to 18 members requesting 100m each (a
// member that cannot be scheduled stops a roll like one that cannot start).
const deployOverlay = `apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- %[1]s/aggregated
- serving-cert.yaml
- etcd-tls.yaml
images:
- name: ghcr.io/etcdaas/etcdaas
  newTag: %[2]s
- name: quay.io/coreos/etcd
  newName: %[3]s
  newTag: %[4]s
patches:
- target:
    kind: APIService
  patch: |-
    - op: replace
      path: /spec/caBundle
      value: %[5]s
- target:
    kind: Deployment
    name: etcdaas-controller
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/command/-
      value: --etcd-image=%[3]s
    - op: add
      path: /spec/template/spec/containers/0/command/-
      value: --upgrade-step-timeout=45s
    - op: add
      path: /spec/template/spec/containers/0/command/-
      value: --member-repair-grace-period=60s
- target:
    kind: Deployment
  patch: &cpu |-
    - op: replace
      path: /spec/template/spec/containers/0/resources/requests/cpu
      value: 10m
- target:
    kind: StatefulSet
    name: etcdaas-etcd
  patch: *cpu
`

const servingCertSecret = `apiVersion: v1
kind: Secret
metadata:
  name: etcdaas-apiserver-serving-cert
  namespace: etcdaas-system
type: kubernetes.io/tls
data:
  tls.crt: %s
  tls.key: %s
`

// installEtcdaas applies deploy/aggregated and waits until its workloads are ready and both
// APIServices are Available through the real Service.
func installEtcdaas(t *testing.T, c *node.Cluster) *etcdaasInstall {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	overlay := filepath.Join(c.Dir, "deploy-overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	deployDir, err := filepath.Rel(overlay, filepath.Join(c.RepoRoot, "deploy"))
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, ok := strings.Cut(c.Images.Etcd, ":")
	if !ok {
		t.Fatalf("etcd image %q has no tag", c.Images.Etcd)
	}
	_, etcdaasTag, _ := strings.Cut(c.Images.Etcdaas, ":")
	b64 := func(name string) string {
		data, err := os.ReadFile(c.PKI.Path(name))
		if err != nil {
			t.Fatal(err)
		}
		return base64.StdEncoding.EncodeToString(data)
	}
	storageEtcd, err := newStorageEtcdPKI()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"kustomization.yaml": fmt.Sprintf(deployOverlay, deployDir, etcdaasTag, repo, tag, b64("serving-ca.crt")),
		"serving-cert.yaml":  fmt.Sprintf(servingCertSecret, b64("etcdaas-apiserver.crt"), b64("etcdaas-apiserver.key")),
		"etcd-tls.yaml":      storageEtcd.secrets(),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(overlay, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k := c.AdminKubectl()
	built := k.Run(ctx, "", "kustomize", overlay)
	if built.Err != nil {
		t.Fatalf("%s", built)
	}
	if err := c.Apply(ctx, built.Stdout); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"etcdaas-apiserver", "etcdaas-controller"} {
		if err := c.WaitDeploymentReady(ctx, node.EtcdaasNamespace, d, 4*time.Minute); err != nil {
			dumpNamespace(t, c, node.EtcdaasNamespace)
			t.Fatal(err)
		}
	}
	for _, name := range framework.APIServiceNames {
		if err := waitAPIServiceAvailable(ctx, c, name); err != nil {
			dumpNamespace(t, c, node.EtcdaasNamespace)
			t.Fatal(err)
		}
	}
	t.Logf("deploy/aggregated applied: storage etcd, 2 etcdaas-apiservers and 2 controllers ready, APIServices Available after %s",
		time.Since(start).Round(100*time.Millisecond))
	return &etcdaasInstall{c: c, plugin: framework.BuildCommands(t), storageEtcd: storageEtcd}
}

func waitAPIServiceAvailable(ctx context.Context, c *node.Cluster, name string) error {
	return framework.Poll(ctx, 500*time.Millisecond, 2*time.Minute, "APIService "+name+" Available", func(ctx context.Context) (bool, error) {
		r := c.AdminKubectl().Run(ctx, "", "get", "apiservice", name, "-o", `jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.conditions[?(@.type=="Available")].message}`)
		if r.Err != nil {
			return false, fmt.Errorf("%s", r)
		}
		if strings.HasPrefix(r.Stdout, "True") {
			return true, nil
		}
		return false, fmt.Errorf("%s", r.Stdout)
	})
}

// dumpNamespace writes the ETCDInstances, pods, events and pod logs of a namespace, for a
// failure, to a file of the work directory (kept after a failure) and logs its path: the
// test's output stays short enough that its failures are read at its end.
func dumpNamespace(t *testing.T, c *node.Cluster, ns string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	k := c.AdminKubectl()
	var out strings.Builder
	for _, args := range [][]string{
		{"get", "etcdinstances.etcdaas.dev", "-n", ns, "-o", "yaml"},
		{"get", "pods,pvc,statefulsets,deployments", "-n", ns, "-o", "wide"},
		{"get", "events", "-n", ns, "--sort-by=.lastTimestamp"},
	} {
		fmt.Fprintf(&out, "%s\n", k.Run(ctx, "", args...))
	}
	if pods, err := c.Kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			fmt.Fprintf(&out, "%s\n", k.Run(ctx, "", "logs", "-n", ns, p.Name, "--all-containers", "--tail=30"))
		}
	}
	path := filepath.Join(c.Dir, "dumps", fmt.Sprintf("%s-%s.txt", ns, time.Now().Format("150405.000")))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Logf("dumping namespace %s: %v\n%s", ns, err, out.String())
		return
	}
	if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
		t.Logf("dumping namespace %s: %v\n%s", ns, err, out.String())
		return
	}
	t.Logf("namespace %s (ETCDInstances, pods, events, pod logs) dumped to %s", ns, path)
}

// kubectl returns the kubectl at path for the admin, with kubectl-etcdaas on its PATH.
func (e *etcdaasInstall) kubectl(path string) framework.KubectlClient {
	return framework.KubectlClient{
		Path: path, Kubeconfig: e.c.AdminKubeconfig,
		Env: []string{"PATH=" + e.plugin + string(os.PathListSeparator) + os.Getenv("PATH")},
	}
}
