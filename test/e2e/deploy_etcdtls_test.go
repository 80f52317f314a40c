package e2e

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// The Secrets deploy/README.md asks the operator for: the storage etcd's member certificate
// (server and peer) and etcdaas-apiserver's client certificate, each with the etcd CA.
const (
	etcdServerSecret = "etcdaas-etcd-server"
	etcdClientSecret = "etcdaas-etcd-client"
)

// testDeployStorageEtcdTLS checks that the storage etcd serves clients and peers only over
// mutual TLS from the operator's Secret, that its probes need no certificate, that
// etcdaas-apiserver dials it over https with its client certificate, and that the pinned
// etcd knows every flag the StatefulSet passes.
func testDeployStorageEtcdTLS(t *testing.T, r *rendered, etcdBin string) {
	const ns = framework.Namespace
	sts, _ := r.has(t, "StatefulSet", ns, "etcdaas-etcd").(*appsv1.StatefulSet)
	if sts == nil {
		return
	}
	pod := sts.Spec.Template.Spec
	ctr := pod.Containers[0]
	flags := commandFlags(ctr.Command)
	for _, name := range []string{"listen-client-urls", "advertise-client-urls", "listen-peer-urls", "initial-advertise-peer-urls"} {
		if !strings.HasPrefix(flags[name], "https://") {
			t.Errorf("storage etcd --%s=%q, want https", name, flags[name])
		}
	}
	for _, member := range strings.Split(flags["initial-cluster"], ",") {
		if _, url, _ := strings.Cut(member, "="); !strings.HasPrefix(url, "https://") {
			t.Errorf("storage etcd --initial-cluster member %q is not https", member)
		}
	}
	for _, name := range []string{"client-cert-auth", "peer-client-cert-auth"} {
		if v, ok := flags[name]; !ok || (v != "" && v != "true") {
			t.Errorf("storage etcd without --%s: a client without a certificate is served", name)
		}
	}
	for flag, key := range map[string]string{
		"trusted-ca-file": "ca.crt", "cert-file": "tls.crt", "key-file": "tls.key",
		"peer-trusted-ca-file": "ca.crt", "peer-cert-file": "tls.crt", "peer-key-file": "tls.key",
	} {
		if secret := secretOf(pod, ctr, flags[flag]); secret != etcdServerSecret+"/"+key {
			t.Errorf("storage etcd --%s=%q is %q, want key %s of Secret %s", flag, flags[flag], secret, key, etcdServerSecret)
		}
	}
	if !strings.HasPrefix(flags["listen-metrics-urls"], "http://") || !strings.HasSuffix(flags["listen-metrics-urls"], ":2381") {
		t.Errorf("storage etcd --listen-metrics-urls=%q, want plaintext :2381 for the probes", flags["listen-metrics-urls"])
	}
	for _, p := range []*corev1.Probe{ctr.LivenessProbe, ctr.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme == corev1.URISchemeHTTPS || !portIs(ctr, p.HTTPGet.Port, 2381) {
			t.Errorf("storage etcd probe %+v: want HTTP on the metrics port 2381 (no client certificate)", p)
		}
	}
	checkFlags(t, etcdBin, ctr.Command[1:])
	testDeployServerEtcdClient(t, r)
	testDeployEtcdNetworkPolicy(t, r)
}

// testDeployServerEtcdClient checks that etcdaas-apiserver dials every storage etcd member
// over https with the CA and client certificate of Secret etcdaas-etcd-client.
func testDeployServerEtcdClient(t *testing.T, r *rendered) {
	server, ok := r.deployments["etcdaas-apiserver"]
	if !ok {
		t.Fatal("no etcdaas-apiserver Deployment")
	}
	pod := server.Spec.Template.Spec
	ctr := pod.Containers[0]
	flags := commandFlags(ctr.Command)
	for _, s := range strings.Split(flags["etcd-servers"], ",") {
		if !strings.HasPrefix(s, "https://") {
			t.Errorf("etcdaas-apiserver --etcd-servers lists %q, want https", s)
		}
	}
	for flag, key := range map[string]string{"etcd-cafile": "ca.crt", "etcd-certfile": "tls.crt", "etcd-keyfile": "tls.key"} {
		if secret := secretOf(pod, ctr, flags[flag]); secret != etcdClientSecret+"/"+key {
			t.Errorf("etcdaas-apiserver --%s=%q is %q, want key %s of Secret %s", flag, flags[flag], secret, key, etcdClientSecret)
		}
	}
}

// testDeployEtcdNetworkPolicy checks that only etcdaas-apiserver pods reach the storage
// etcd's client port, only its members the peer port, and no pod the metrics port.
func testDeployEtcdNetworkPolicy(t *testing.T, r *rendered) {
	np, _ := r.has(t, "NetworkPolicy", framework.Namespace, "etcdaas-etcd").(*networkingv1.NetworkPolicy)
	if np == nil {
		return
	}
	allowed := map[int32][]string{}
	for _, rule := range np.Spec.Ingress {
		for _, port := range rule.Ports {
			for _, peer := range rule.From {
				who := "anything but a pod selector"
				if peer.PodSelector != nil && peer.NamespaceSelector == nil && peer.IPBlock == nil {
					who = peer.PodSelector.MatchLabels["app.kubernetes.io/name"]
				}
				allowed[port.Port.IntVal] = append(allowed[port.Port.IntVal], who)
			}
		}
		if len(rule.Ports) == 0 || len(rule.From) == 0 {
			t.Errorf("NetworkPolicy etcdaas-etcd opens every port or to every source: %+v", rule)
		}
	}
	want := map[int32][]string{2379: {"etcdaas-apiserver"}, 2380: {"etcdaas-etcd"}}
	if fmt.Sprint(allowed) != fmt.Sprint(want) {
		t.Errorf("NetworkPolicy etcdaas-etcd lets in %v, want %v", allowed, want)
	}
}

// commandFlags maps a command's --name=value arguments to their values (a bare --name maps
// to "").
func commandFlags(command []string) map[string]string {
	flags := map[string]string{}
	for _, arg := range command {
		if name, ok := strings.CutPrefix(arg, "--"); ok {
			name, value, _ := strings.Cut(name, "=")
			flags[name] = value
		}
	}
	return flags
}

// secretOf returns "secret/key" when file is key of a Secret volume ctr mounts, and what
// the file is otherwise.
func secretOf(pod corev1.PodSpec, ctr corev1.Container, file string) string {
	for _, m := range ctr.VolumeMounts {
		if path.Dir(file) != path.Clean(m.MountPath) {
			continue
		}
		i := slices.IndexFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name })
		if i < 0 || pod.Volumes[i].Secret == nil {
			return "volume " + m.Name + " (not a Secret)"
		}
		return pod.Volumes[i].Secret.SecretName + "/" + filepath.Base(file)
	}
	return "in no mounted volume"
}

// portIs says whether port (a number or a container port's name) is number on ctr.
func portIs(ctr corev1.Container, port intstr.IntOrString, number int32) bool {
	if port.Type == intstr.Int {
		return port.IntVal == number
	}
	return slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.Name == port.StrVal && p.ContainerPort == number })
}
