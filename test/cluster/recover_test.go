package cluster

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// testQuorumLossRecovered makes two of the instance's three members unrecoverable — their
// volumes unreadable by the member user, their pods restarted onto them, so they crash for
// good — and checks that the instance reports QuorumLost (phase Failed, the members named, a
// Warning Event) and does nothing by itself; then `kubectl etcdaas recover` through the
// aggregator rebuilds it from the survivor into three running members of a new cluster that
// hold every key the survivor had.
func testQuorumLossRecovered(t *testing.T, e *etcdaasInstall, ns, name string, figs *figures) {
	ctx := t.Context()
	clientURL := fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns)
	e.mustClient(t, ns, "put-before-quorum-loss", "", clientURL, "put", "/before-quorum-loss", "kept")
	keysBefore := e.mustClient(t, ns, "keys-before-quorum-loss", "", clientURL, "get", "", "--prefix", "--keys-only")
	before := mustInstance(t, e, ns, name)
	if !settled(before, 3) {
		t.Fatalf("the instance does not run 3 members: %s", describe(before))
	}
	lost := []string{name + "-1", name + "-2"}
	for _, member := range lost {
		e.breakVolume(t, ns, "data-"+member)
	}
	start := time.Now()
	mustRun(t, e.kubectl(skewKubectl), "", append([]string{"delete", "pod", "-n", ns, "--wait=false"}, lost...)...)
	inst := waitQuorumLost(t, e, ns, name)
	figs.add(t, "2 of 3 members lost -> QuorumLost", time.Since(start))
	if msg := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionDegraded).Message; !strings.Contains(msg, fmt.Sprintf("(%s, %s)", lost[0], lost[1])) {
		t.Errorf("the Degraded condition does not name the members down: %s", msg)
	}
	if err := pollEvents(ctx, e, ns, fields.Set{"regarding.name": name, "reason": "QuorumLost"}.AsSelector().String(), "quorum lost"); err != nil {
		t.Error(err)
	}

	start = time.Now()
	out := mustRunWaiting(t, e.kubectl(e.c.Tools[framework.Kubectl]), 6*time.Minute, "etcdaas", "recover", name, "-n", ns)
	figs.add(t, "recover -> Running (3 members)", time.Since(start))
	t.Logf("kubectl etcdaas recover: %s", strings.TrimSpace(out))
	after, err := e.waitSettled(ctx, ns, name, 3, 2*time.Minute, nil)
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	for i, m := range after.Status.Members {
		if m.ID == before.Status.Members[i].ID {
			t.Errorf("member %s kept ID %s: a recovered cluster is a new one", m.Name, m.ID)
		}
	}
	e.checkPodsReady(t, ns, name, 3)
	checkRecoveredData(t, e, ns, name, clientURL, keysBefore)
	if err := pollEvents(ctx, e, ns, fields.Set{"regarding.name": name, "reason": "Recovered"}.AsSelector().String(), "Rebuilt the cluster from member "+name+"-0"); err != nil {
		t.Error(err)
	}
}

// waitQuorumLost waits for instance ns/name to report its quorum lost (phase Failed,
// Degraded for QuorumLost), and returns it.
func waitQuorumLost(t *testing.T, e *etcdaasInstall, ns, name string) *v1beta1.ETCDInstance {
	t.Helper()
	var inst *v1beta1.ETCDInstance
	err := framework.Poll(t.Context(), 250*time.Millisecond, 3*time.Minute, "QuorumLost", func(ctx context.Context) (bool, error) {
		var err error
		if inst, err = e.getInstance(ctx, ns, name); err != nil {
			return false, err
		}
		c := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionDegraded)
		if inst.Status.Phase != v1beta1.PhaseFailed || c == nil || c.Reason != "QuorumLost" {
			return false, fmt.Errorf("%s", describe(inst))
		}
		return true, nil
	})
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	return inst
}

// checkRecoveredData checks the data of instance ns/name after its recovery: the keys the
// survivor had (keysBefore, through clientURL), the key written before the quorum loss, and
// every member serving the data from its own copy.
func checkRecoveredData(t *testing.T, e *etcdaasInstall, ns, name, clientURL, keysBefore string) {
	t.Helper()
	keysAfter := e.mustClient(t, ns, "keys-after-recovery", "", clientURL, "get", "", "--prefix", "--keys-only")
	if got, want := strings.Fields(keysAfter), strings.Fields(keysBefore); !slices.Equal(got, want) {
		t.Errorf("keys after the recovery %v, want the survivor's %v", got, want)
	}
	if got := e.mustClient(t, ns, "get-after-recovery", "", clientURL, "get", "/before-quorum-loss", "--print-value-only"); got != "kept" {
		t.Errorf("/before-quorum-loss = %q after the recovery", got)
	}
	// Every member serves the data from its own copy.
	for i := range 3 {
		member := fmt.Sprintf("--endpoints=http://%s-%d.%s-peers.%s.svc.cluster.local:2379", name, i, name, ns)
		if got := e.mustClient(t, ns, fmt.Sprintf("get-from-%d-after-recovery", i), "", member, "get", "/greeting", "--consistency=s", "--print-value-only"); got != "written-at-3" {
			t.Errorf("member %d after the recovery: /greeting = %q", i, got)
		}
	}
}

// breakVolume makes the volume of claim unreadable by the members (root keeps access), so that
// a member started on it crashes for good; the test's end makes it readable again.
func (e *etcdaasInstall) breakVolume(t *testing.T, ns, claim string) {
	t.Helper()
	dir := e.hostPathOf(t, ns, claim)
	if err := os.Chmod(dir, 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(dir, 0o777) })
}

// hostPathOf is the node directory of the hostPath volume bound to claim.
func (e *etcdaasInstall) hostPathOf(t *testing.T, ns, claim string) string {
	t.Helper()
	pvc, err := e.c.Kube.CoreV1().PersistentVolumeClaims(ns).Get(t.Context(), claim, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pv, err := e.c.Kube.CoreV1().PersistentVolumes().Get(t.Context(), pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pv.Spec.HostPath == nil {
		t.Fatalf("volume %s of %s is not a hostPath volume", pv.Name, claim)
	}
	return pv.Spec.HostPath.Path
}
