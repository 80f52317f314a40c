package node

import (
	"context"
	"fmt"
	"net"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// CoreDNSImage is the CoreDNS image the harness imports.
const CoreDNSImage = "registry.local/coredns:etcdaas"

// coreDNSManifest runs CoreDNS on the pod network behind Service kube-dns. It answers only
// for the cluster's zones: there is no forward plugin, so no query ever leaves the machine.
// It listens on 1053 (it runs as an unprivileged user) behind the Service's port 53.
const coreDNSManifest = `apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- {apiGroups: [""], resources: [endpoints, services, pods, namespaces], verbs: [list, watch]}
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:1053 {
        errors
        health :8080
        ready :8181
        kubernetes %[1]s in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 5
    }
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: %[2]s
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, targetPort: 1053, protocol: UDP}
  - {name: dns-tcp, port: 53, targetPort: 1053, protocol: TCP}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      securityContext: {runAsNonRoot: true, runAsUser: 65532}
      containers:
      - name: coredns
        image: %[3]s
        imagePullPolicy: Never
        args: ["-conf", "/etc/coredns/Corefile"]
        readinessProbe:
          httpGet: {path: /ready, port: 8181}
          periodSeconds: 1
        livenessProbe:
          httpGet: {path: /health, port: 8080}
          periodSeconds: 10
        securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
        volumeMounts:
        - {name: config, mountPath: /etc/coredns}
      volumes:
      - {name: config, configMap: {name: coredns}}
`

// deployCoreDNS applies CoreDNS and waits until it is ready: pods started before it serves
// would fail their first lookups.
func (c *Cluster) deployCoreDNS(ctx context.Context) error {
	if err := c.Apply(ctx, fmt.Sprintf(coreDNSManifest, ClusterDomain, DNSServiceIP, CoreDNSImage)); err != nil {
		return err
	}
	if err := c.WaitDeploymentReady(ctx, "kube-system", "coredns", 2*time.Minute); err != nil {
		return err
	}
	// Ready is not yet reachable: kube-proxy programs the Service's endpoint after the
	// readiness probe passes.
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, net.JoinHostPort(DNSServiceIP, "53"))
	}}
	name := "kubernetes.default.svc." + ClusterDomain
	return framework.Poll(ctx, 250*time.Millisecond, time.Minute, "CoreDNS answering through its ClusterIP", func(ctx context.Context) (bool, error) {
		addrs, err := resolver.LookupHost(ctx, name)
		if err != nil {
			return false, err
		}
		if len(addrs) != 1 || addrs[0] != KubernetesServiceIP {
			return false, fmt.Errorf("%s resolves to %v, want %s", name, addrs, KubernetesServiceIP)
		}
		return true, nil
	})
}

// Apply applies manifests with the pinned kubectl (server-side, as the harness).
func (c *Cluster) Apply(ctx context.Context, manifests string) error {
	r := c.AdminKubectl().Run(ctx, manifests, "apply", "--server-side", "--field-manager=etcdaas-cluster-tier", "-f", "-")
	if r.Err != nil {
		return fmt.Errorf("%s", r)
	}
	return nil
}

// AdminKubectl returns the pinned kubectl for the admin.
func (c *Cluster) AdminKubectl() framework.KubectlClient {
	return framework.KubectlClient{Path: c.Tools[framework.Kubectl], Kubeconfig: c.AdminKubeconfig}
}

// WaitDeploymentReady waits until every replica of a Deployment is updated and ready.
func (c *Cluster) WaitDeploymentReady(ctx context.Context, namespace, name string, timeout time.Duration) error {
	return framework.Poll(ctx, 250*time.Millisecond, timeout, "deployment "+namespace+"/"+name+" ready", func(ctx context.Context) (bool, error) {
		d, err := c.Kube.AppsV1().Deployments(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return deploymentReady(d)
	})
}

func deploymentReady(d *appsv1.Deployment) (bool, error) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	s := d.Status
	if s.ObservedGeneration >= d.Generation && s.UpdatedReplicas == want && s.ReadyReplicas == want && s.Replicas == want {
		return true, nil
	}
	return false, fmt.Errorf("%d/%d ready, %d updated, %d total", s.ReadyReplicas, want, s.UpdatedReplicas, s.Replicas)
}
