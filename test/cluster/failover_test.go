package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/test/cluster/node"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// controllerLease is the leader election Lease of etcdaas-controller (deploy/).
const controllerLease = "etcdaas-controller"

// testControllerKilled scales 3 -> 5 and kills the leading etcdaas-controller pod as soon
// as the first learner joins: the other replica takes the Lease and finishes the scale.
func testControllerKilled(t *testing.T, e *etcdaasInstall, ns, name string, figs *figures) {
	ctx := t.Context()
	leader, err := e.controllerLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	mustRun(t, e.kubectl(e.c.Tools[framework.Kubectl]), "", "scale", "etcdinstances.etcdaas.dev/"+name, "-n", ns, "--replicas=5")
	err = framework.Poll(ctx, 100*time.Millisecond, 2*time.Minute, "the scale under way", func(ctx context.Context) (bool, error) {
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, err
		}
		if len(inst.Status.Members) > 3 {
			return true, nil
		}
		return false, fmt.Errorf("%s", describe(inst))
	})
	if err != nil {
		t.Fatal(err)
	}
	// Killed, not stopped: no grace period, the Lease is not released.
	if err := e.c.Kube.CoreV1().Pods(node.EtcdaasNamespace).Delete(ctx, leader, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the leading controller %s mid-scale", leader)
	o := &scaleObserver{t: t}
	if _, err := e.waitSettled(ctx, ns, name, 5, 4*time.Minute, o.observe); err != nil {
		dumpNamespace(t, e.c, node.EtcdaasNamespace)
		t.Fatal(err)
	}
	figs.add(t, "scale 3 -> 5 with the leader killed", time.Since(start))
	newLeader, err := e.controllerLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if newLeader == leader {
		t.Errorf("the Lease is still held by the killed pod %s", leader)
	}
	if o.maxLearner > 1 {
		t.Errorf("%d learners at once across the failover", o.maxLearner)
	}
	mustRun(t, e.kubectl(e.c.Tools[framework.Kubectl]), "", "scale", "etcdinstances.etcdaas.dev/"+name, "-n", ns, "--replicas=3")
	if _, err := e.waitSettled(ctx, ns, name, 3, 4*time.Minute, nil); err != nil {
		t.Fatal(err)
	}
}

// controllerLeader returns the pod holding the controller's Lease (its identity starts
// with the pod name).
func (e *etcdaasInstall) controllerLeader(ctx context.Context) (string, error) {
	var holder string
	err := framework.Poll(ctx, 250*time.Millisecond, time.Minute, "a controller leader", func(ctx context.Context) (bool, error) {
		lease, err := e.c.Kube.CoordinationV1().Leases(node.EtcdaasNamespace).Get(ctx, controllerLease, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		holder = ptr.Deref(lease.Spec.HolderIdentity, "")
		pods, err := e.c.Kube.CoreV1().Pods(node.EtcdaasNamespace).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=etcdaas-controller"})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && strings.HasPrefix(holder, p.Name) {
				holder = p.Name
				return true, nil
			}
		}
		return false, fmt.Errorf("lease held by %q, no live controller pod of that name", holder)
	})
	return holder, err
}

// testTLS creates a one-member TLS instance and checks that a client pod presenting the
// instance's client certificate is served while one without it is refused, then that its
// certificates are renewed once due without a restart (testTLSRenewal).
func testTLS(t *testing.T, e *etcdaasInstall, figs *figures) {
	const ns, name = "tls", "secure"
	e.createNamespace(t, ns)
	mustRun(t, e.kubectl(skewKubectl), fmt.Sprintf(instanceManifest, name, ns, 1, true), "apply", "-f", "-")
	if _, err := e.waitSettled(t.Context(), ns, name, 1, 4*time.Minute, nil); err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	inst := mustInstance(t, e, ns, name)
	if m := inst.Status.Members[0]; !strings.HasPrefix(m.PeerURL, "https://") || !strings.HasPrefix(m.ClientURL, "https://") {
		t.Errorf("TLS member URLs: peer %s, client %s", m.PeerURL, m.ClientURL)
	}
	endpoint := fmt.Sprintf("--endpoints=https://%s.%s.svc.cluster.local:2379", name, ns)
	secret := name + "-client-tls" // what clients mount: no member key
	withCert := []string{endpoint, "--cacert=/certs/ca.crt", "--cert=/certs/client.crt", "--key=/certs/client.key"}
	const value = "served-only-with-the-client-certificate"
	e.mustClient(t, ns, "with-cert", secret, append(withCert, "put", "/tls", value)...)
	if got := e.mustClient(t, ns, "with-cert-get", secret, append(withCert, "get", "/tls", "--print-value-only")...); got != value {
		t.Errorf("with the client certificate, /tls = %q, want %q", got, value)
	}
	for _, c := range []struct {
		pod  string
		args []string
	}{
		{"no-cert", []string{endpoint, "--cacert=/certs/ca.crt", "get", "/tls"}},
		{"plaintext", []string{fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns), "get", "/tls"}},
	} {
		out, ok, err := e.clientPod(t.Context(), ns, c.pod, secret, c.args...)
		if err != nil {
			t.Fatal(err)
		}
		if ok || strings.Contains(out, value) {
			t.Errorf("%s: a client without the instance's certificate was served:\n%s", c.pod, out)
		}
	}
	t.Run("certificates renewed", func(t *testing.T) { testTLSRenewal(t, e, figs, ns, name) })
}

// ownedObjects lists what is left of an instance in ns: objects it owns and objects with
// its member labels (pods and claims are owned by its StatefulSet).
func ownedObjects(ctx context.Context, c *node.Cluster, ns, name string, uid types.UID) ([]string, error) {
	sel := metav1.ListOptions{LabelSelector: etcdaas.MemberSelector(name)}
	var left []string
	owned := func(kind string, m metav1.Object) {
		for _, ref := range m.GetOwnerReferences() {
			if ref.UID == uid {
				left = append(left, kind+"/"+m.GetName())
				return
			}
		}
		if m.GetLabels()[etcdaas.LabelInstance] == name {
			left = append(left, kind+"/"+m.GetName())
		}
	}
	core, apps := c.Kube.CoreV1(), c.Kube.AppsV1()
	stss, err := apps.StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range stss.Items {
		owned("statefulset", &stss.Items[i])
	}
	svcs, err := core.Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range svcs.Items {
		owned("service", &svcs.Items[i])
	}
	secrets, err := core.Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range secrets.Items {
		owned("secret", &secrets.Items[i])
	}
	pdbs, err := c.Kube.PolicyV1().PodDisruptionBudgets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	for i := range pdbs.Items {
		owned("poddisruptionbudget", &pdbs.Items[i])
	}
	pods, err := core.Pods(ns).List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		owned("pod", &pods.Items[i])
	}
	pvcs, err := core.PersistentVolumeClaims(ns).List(ctx, sel)
	if err != nil {
		return nil, err
	}
	for i := range pvcs.Items {
		owned("persistentvolumeclaim", &pvcs.Items[i])
	}
	return left, nil
}

// testUnboundClaim creates an instance whose storage class has no provisioner: its status
// must say that the member's claim is Pending, not merely that it waits.
func testUnboundClaim(t *testing.T, e *etcdaasInstall) {
	const ns, name = "unbound", "stuck"
	e.createNamespace(t, ns)
	manifest := fmt.Sprintf(instanceManifest, name, ns, 1, false) + "  storage:\n    storageClassName: no-such-class\n"
	mustRun(t, e.kubectl(e.c.Tools[framework.Kubectl]), manifest, "apply", "-f", "-")
	want := "volume claim data-" + name + "-0 is Pending"
	err := framework.Poll(t.Context(), 500*time.Millisecond, 2*time.Minute, "the status to name the Pending claim", func(ctx context.Context) (bool, error) {
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, err
		}
		for _, c := range inst.Status.Conditions {
			if strings.Contains(c.Message, want) {
				t.Logf("%s=%s %s: %s", c.Type, c.Status, c.Reason, c.Message)
				return true, nil
			}
		}
		return false, fmt.Errorf("%s", describe(inst))
	})
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, e.kubectl(e.c.Tools[framework.Kubectl]), "", "delete", "etcdinstances.etcdaas.dev", name, "-n", ns, "--wait=true", "--timeout=2m")
}
