package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// brokenRelease is the release whose image the harness builds without etcd in it.
const brokenRelease = "3.7.99"

// testFailedRoll sets spec.version of a running 3-member instance (on release good) to a
// release whose image cannot start etcd. The roll restarts one follower onto it and stops
// there once the step timeout (the tier's --upgrade-step-timeout) passes: Degraded
// UpgradeFailed names that member and an UpgradeFailed Event says so, the two other members
// keep their pods and a write succeeds (quorum), and the phase stays Running. spec.version
// set back to good resumes the roll: the failed member is restarted on its image, and the
// instance ends with every member on good, the write there.
func testFailedRoll(t *testing.T, e *etcdaasInstall, ns, name, good string, figs *figures) {
	ctx := t.Context()
	image, err := e.c.BuildBrokenEtcdImage(ctx, "v"+brokenRelease)
	if err != nil {
		t.Fatal(err)
	}
	leader := leaderOf(mustInstance(t, e, ns, name))
	uids := e.memberPodUIDs(t, ns, name)
	pinned := e.kubectl(e.c.Tools[framework.Kubectl])

	start := time.Now()
	mustRun(t, pinned, "", "patch", "etcdinstances.etcdaas.dev", name, "-n", ns, "--type=merge", "-p", `{"spec":{"version":"`+brokenRelease+`"}}`)
	stalled := waitRollStalled(t, ctx, e, ns, name)
	figs.add(t, "roll to a broken image -> UpgradeFailed", time.Since(start))
	t.Logf("Degraded: %s", stalled.Message)

	// Quorum holds: the two members left serve a write.
	clientURL := fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns)
	e.mustClient(t, ns, "put-during-failed-roll", "", clientURL, "put", "/upgrade/during-failed-roll", "kept")

	// Exactly one member was restarted, a follower, onto the broken image; the others
	// still run their pods of before (read after the write, so a while after the stop).
	restarted := e.restartedMembers(t, ns, name, uids)
	if len(restarted) != 1 {
		t.Fatalf("members restarted by the failed roll: %v, want exactly one", restarted)
	}
	victim := restarted[0]
	if victim == leader {
		t.Errorf("the failed roll restarted the leader %s first, want a follower", victim)
	}
	if img := e.podImage(t, ns, victim); img != image {
		t.Errorf("restarted member %s runs %s, want the broken %s", victim, img, image)
	}
	if !strings.Contains(stalled.Message, "member "+victim) || !strings.Contains(stalled.Message, image) {
		t.Errorf("Degraded UpgradeFailed does not name member %s and image %s: %s", victim, image, stalled.Message)
	}
	selector := fields.Set{"regarding.name": name, "reason": "UpgradeFailed"}.AsSelector().String()
	if err := pollEvents(ctx, e, ns, selector, "member "+victim+" is not up to date"); err != nil {
		t.Error(err)
	}

	resumed := time.Now()
	mustRun(t, pinned, "", "patch", "etcdinstances.etcdaas.dev", name, "-n", ns, "--type=merge", "-p", `{"spec":{"version":"`+good+`"}}`)
	var back rollObserver
	_, err = e.waitVersion(ctx, ns, name, good, 4*time.Minute, back.observe)
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	back.check(t, "the roll back")
	figs.add(t, "spec.version back -> Running", time.Since(resumed))
	if img := e.podImage(t, ns, victim); img == image {
		t.Errorf("member %s still runs the broken image", victim)
	}
	if got := e.restartedMembers(t, ns, name, uids); len(got) != 1 || got[0] != victim {
		t.Errorf("members restarted after going back: %v, want only %s", got, victim)
	}
	selector = fields.Set{"regarding.name": name, "reason": "MemberUpgraded"}.AsSelector().String()
	if err := pollEvents(ctx, e, ns, selector, fmt.Sprintf("Member %s runs etcd %s", victim, good)); err != nil {
		t.Error(err)
	}
	if got := e.mustClient(t, ns, "get-after-failed-roll", "", clientURL, "get", "/upgrade/during-failed-roll", "--print-value-only"); got != "kept" {
		t.Errorf("after the failed roll /upgrade/during-failed-roll = %q, want kept", got)
	}
}

// waitRollStalled waits for the roll of ns/name to a broken release to stop with Degraded
// UpgradeFailed, which it returns, and checks that meanwhile the instance stayed Running with
// at most one member not ready.
func waitRollStalled(t *testing.T, ctx context.Context, e *etcdaasInstall, ns, name string) *metav1.Condition {
	t.Helper()
	var stalled *metav1.Condition
	var roll rollObserver
	err := framework.Poll(ctx, 500*time.Millisecond, 4*time.Minute, "the roll to "+brokenRelease+" stopped", func(ctx context.Context) (bool, error) {
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, err
		}
		roll.observe(inst)
		c := meta.FindStatusCondition(inst.Status.Conditions, "Degraded")
		if inst.Status.ObservedGeneration >= inst.Generation && c != nil && c.Status == metav1.ConditionTrue && c.Reason == "UpgradeFailed" {
			stalled = c
			return true, nil
		}
		return false, fmt.Errorf("%s", describe(inst))
	})
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	roll.check(t, "the failed roll")
	return stalled
}

// rollObserver keeps what went wrong while a roll ran, to report once after it: the first
// instance seen in another phase than Running, and the one seen with the most members not
// ready at once. A status written during an election (no member leads, so none is ready, as
// etcd itself reports) says nothing of how many members the roll took down: it is counted
// apart (an election on this node comes from a member starved of CPU, not from the roll,
// which moves leadership away before it restarts the leader). A roll that took a majority
// down would not hide there: the instance would turn Failed (QuorumLost), which the phase
// check reports.
type rollObserver struct {
	notRunning string
	maxDown    int
	worst      string
	elections  int
}

// observe notes one look at the instance during the roll.
func (o *rollObserver) observe(inst *v1beta1.ETCDInstance) {
	if inst.Status.Phase != v1beta1.PhaseRunning && o.notRunning == "" {
		o.notRunning = describe(inst)
	}
	if leaderOf(inst) == "" && len(inst.Status.Members) > 0 {
		o.elections++
		return
	}
	if n := notReady(inst); n > o.maxDown {
		o.maxDown, o.worst = n, describe(inst)
	}
}

// check fails t if the instance left the Running phase, or had more than one member not
// ready at once, during the roll (what names it).
func (o *rollObserver) check(t *testing.T, what string) {
	t.Helper()
	if o.elections > 0 {
		t.Logf("%d looks during %s saw no member lead (an election)", o.elections, what)
	}
	if o.notRunning != "" {
		t.Errorf("not Running during %s: %s", what, o.notRunning)
	}
	if o.maxDown > 1 {
		t.Errorf("%d members not ready at once during %s, want at most one: %s", o.maxDown, what, o.worst)
	}
}

// notReady counts the members the status reports not ready.
func notReady(inst *v1beta1.ETCDInstance) int {
	n := 0
	for _, m := range inst.Status.Members {
		if !m.Ready {
			n++
		}
	}
	return n
}

// leaderOf is the name of the member the status says leads ("" when none does).
func leaderOf(inst *v1beta1.ETCDInstance) string {
	for _, m := range inst.Status.Members {
		if m.Leader {
			return m.Name
		}
	}
	return ""
}

// memberPodUIDs are the UIDs of the instance's member pods, by name.
func (e *etcdaasInstall) memberPodUIDs(t *testing.T, ns, name string) map[string]types.UID {
	t.Helper()
	pods, err := e.c.Kube.CoreV1().Pods(ns).List(t.Context(), metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + name})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]types.UID{}
	for _, p := range pods.Items {
		out[p.Name] = p.UID
	}
	return out
}

// restartedMembers are the members whose pod is not the one of uids (recreated, or gone).
func (e *etcdaasInstall) restartedMembers(t *testing.T, ns, name string, uids map[string]types.UID) []string {
	t.Helper()
	now := e.memberPodUIDs(t, ns, name)
	var out []string
	for member, uid := range uids {
		if now[member] != uid {
			out = append(out, member)
		}
	}
	return out
}

// podImage is the image of a member pod's etcd container.
func (e *etcdaasInstall) podImage(t *testing.T, ns, pod string) string {
	t.Helper()
	p, err := e.c.Kube.CoreV1().Pods(ns).Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return etcdImageOf(*p)
}
