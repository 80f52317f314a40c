package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
)

// conditionIs reports whether the instance's condition typ has the status and reason given,
// at the instance's generation.
func conditionIs(i *v1beta1.ETCDInstance, typ string, status metav1.ConditionStatus, reason string) bool {
	c := meta.FindStatusCondition(i.Status.Conditions, typ)
	return c != nil && c.Status == status && c.Reason == reason && c.ObservedGeneration == i.Generation
}

// countEvents counts the events (as ctlEnv.events gives them) that start with prefix.
func countEvents(events []string, prefix string) int {
	n := 0
	for _, ev := range events {
		if strings.HasPrefix(ev, prefix) {
			n++
		}
	}
	return n
}

// TestMemberRepairOffSaysWhatBlocks: with member repair off, a member whose data directory is
// lost never comes back by itself, and the status says so: Progressing turns False (reason
// MemberRepairDisabled) with a message naming the member and what a person can do, Degraded
// stays True naming it, the cluster stays Available and Running, and one Warning Event says
// so however often the controller looks. Once the data is back the member starts again and
// Progressing is Converged; when the data is lost for good and repair is turned on, the
// member is replaced (Progressing True while the grace period runs) and the instance converges
// again with every key.
func TestMemberRepairOffSaysWhatBlocks(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{MemberRepairGracePeriod: -1}) // --member-repair-grace-period=0
	ns, name := "repair-off", "db"
	inst := e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}})
	e.running(ns, name, 2*time.Minute)
	check := e.putKeys(ns, name, 20)

	// db-2's data directory goes away while the controller is down: db-2 cannot start.
	e.stopController()
	data := filepath.Join(e.dir, "instances", ns, name, "db-2")
	if err := os.Rename(data, data+".away"); err != nil {
		t.Fatal(err)
	}
	e.startController()
	checkRepairDisabledReported(t, e, inst)

	// The data is back: the running controller starts db-2 again, and Progressing says so.
	if err := os.Rename(data+".away", data); err != nil {
		t.Fatal(err)
	}
	e.waitFor(ns, name, time.Minute, "Converged with db-2 back", func(i *v1beta1.ETCDInstance) bool {
		return conditionIs(i, etcdaas.ConditionProgressing, metav1.ConditionFalse, controller.ReasonConverged) &&
			conditionIs(i, etcdaas.ConditionDegraded, metav1.ConditionFalse, controller.ReasonAsExpected) && i.Status.ReadyReplicas == 3
	})
	check()

	// Lost for good this time, and the controller restarts with repair on: Progressing is True
	// while the grace period runs, then db-2 is replaced and the instance converges.
	e.stopController()
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	e.opts.MemberRepairGracePeriod = repairGrace
	e.startController()
	e.waitFor(ns, name, time.Minute, "Progressing=True while repair waits", func(i *v1beta1.ETCDInstance) bool {
		return conditionIs(i, etcdaas.ConditionProgressing, metav1.ConditionTrue, controller.ReasonReconciling) &&
			conditionIs(i, etcdaas.ConditionDegraded, metav1.ConditionTrue, controller.ReasonMemberUnhealthy)
	})
	replaced := e.runningWith(ns, name, "db-0,db-1,db-3", 2*time.Minute)
	if !conditionIs(replaced, etcdaas.ConditionProgressing, metav1.ConditionFalse, controller.ReasonConverged) {
		t.Errorf("after the replacement: %+v", replaced.Status.Conditions)
	}
	check()
	events := e.waitForEvent(ns, inst, "MemberReplaced Replaced member db-2 with db-3")
	if n := countEvents(events, "MemberRepairDisabled "); n != 1 {
		t.Errorf("%d MemberRepairDisabled events in all, want 1: %q", n, events)
	}
}

// checkRepairDisabledReported checks how inst, whose member db-2 lost its data directory with
// repair off, reports it: Progressing=False (MemberRepairDisabled) saying what blocks and
// how to unblock it, Degraded naming db-2, Available and Running on two members, and one
// Event however often the controller looks.
func checkRepairDisabledReported(t *testing.T, e *ctlEnv, inst *v1beta1.ETCDInstance) {
	t.Helper()
	ns, name := inst.Namespace, inst.Name
	stuck := e.waitFor(ns, name, time.Minute, "Progressing=False (MemberRepairDisabled)", func(i *v1beta1.ETCDInstance) bool {
		return conditionIs(i, etcdaas.ConditionProgressing, metav1.ConditionFalse, "MemberRepairDisabled")
	})
	progressing := meta.FindStatusCondition(stuck.Status.Conditions, etcdaas.ConditionProgressing)
	t.Logf("Progressing while db-2 is lost: %s: %s", progressing.Reason, progressing.Message)
	for _, want := range []string{"member db-2", "its data directory is lost", "--member-repair-grace-period", "kubectl etcdaas recover"} {
		if !strings.Contains(progressing.Message, want) {
			t.Errorf("the Progressing message does not say %q: %s", want, progressing.Message)
		}
	}
	if !conditionIs(stuck, etcdaas.ConditionDegraded, metav1.ConditionTrue, controller.ReasonMemberUnhealthy) ||
		!strings.Contains(meta.FindStatusCondition(stuck.Status.Conditions, etcdaas.ConditionDegraded).Message, "db-2") {
		t.Errorf("Degraded does not name db-2: %+v", stuck.Status.Conditions)
	}
	if !conditionIs(stuck, etcdaas.ConditionAvailable, metav1.ConditionTrue, controller.ReasonQuorumReady) || stuck.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("two of three members serve, yet phase %s, conditions %+v", stuck.Status.Phase, stuck.Status.Conditions)
	}
	// The controller keeps looking (with backoff): the Event is recorded once.
	time.Sleep(5 * time.Second)
	events := e.waitForEvent(ns, inst, "MemberRepairDisabled ")
	if n := countEvents(events, "MemberRepairDisabled "); n != 1 {
		t.Errorf("%d MemberRepairDisabled events, want 1: %q", n, events)
	}
	if still, err := e.instances(ns).Get(t.Context(), name, metav1.GetOptions{}); err != nil ||
		!conditionIs(still, etcdaas.ConditionProgressing, metav1.ConditionFalse, "MemberRepairDisabled") {
		t.Fatalf("no longer blocked while db-2 is still away: %+v, %v", still, err)
	}
}
