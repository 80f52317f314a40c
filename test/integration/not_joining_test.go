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

// TestAMemberThatNeverJoinsSaysWhatBlocks: a scale-up's member that cannot start (a file
// stands where its data directory goes) is retried until the join deadline (2s here, 10m by
// default), then Progressing turns False with reason MemberNotJoining, naming the member and
// what a person can do, Degraded names it and why, the cluster stays Available, and one
// Warning Event says so however often the controller looks. Once it can start it joins and
// the instance converges; blocked again on the next scale-up, setting spec.replicas back
// removes the member and the instance converges without it.
func TestAMemberThatNeverJoinsSaysWhatBlocks(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{JoinDeadline: 2 * time.Second})
	ns, name := "not-joining", "db"
	inst := e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}})
	e.running(ns, name, time.Minute)
	check := e.putKeys(ns, name, 10)

	blockOn := func(member string, replicas int32) string {
		t.Helper()
		inTheWay := filepath.Join(e.dir, "instances", ns, name, member)
		if err := os.WriteFile(inTheWay, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
		e.scale(ns, name, replicas)
		stuck := e.waitFor(ns, name, time.Minute, "Progressing=False (MemberNotJoining)", func(i *v1beta1.ETCDInstance) bool {
			return conditionIs(i, etcdaas.ConditionProgressing, metav1.ConditionFalse, "MemberNotJoining")
		})
		progressing := meta.FindStatusCondition(stuck.Status.Conditions, etcdaas.ConditionProgressing)
		t.Logf("Progressing while %s cannot start: %s", member, progressing.Message)
		for _, want := range []string{"member " + member + ", added as a learner", "has not served for longer than 2s", "set spec.replicas back to"} {
			if !strings.Contains(progressing.Message, want) {
				t.Errorf("the Progressing message does not say %q: %s", want, progressing.Message)
			}
		}
		degraded := meta.FindStatusCondition(stuck.Status.Conditions, etcdaas.ConditionDegraded)
		if !conditionIs(stuck, etcdaas.ConditionDegraded, metav1.ConditionTrue, controller.ReasonMemberUnhealthy) ||
			!strings.Contains(degraded.Message, member+": cannot start") || !strings.Contains(degraded.Message, "not a directory") {
			t.Errorf("Degraded does not say why %s does not start: %+v", member, degraded)
		}
		if !conditionIs(stuck, etcdaas.ConditionAvailable, metav1.ConditionTrue, controller.ReasonMembersReady) {
			t.Errorf("the voting members serve, yet %+v", stuck.Status.Conditions)
		}
		return inTheWay
	}

	// db-1 cannot start; the controller keeps looking (with backoff): one Event.
	inTheWay := blockOn("db-1", 2)
	time.Sleep(5 * time.Second)
	events := e.waitForEvent(ns, inst, "MemberNotJoining member db-1, added as a learner for spec.replicas 2")
	if n := countEvents(events, "MemberNotJoining "); n != 1 {
		t.Errorf("%d MemberNotJoining events, want 1: %q", n, events)
	}
	// What kept it from starting is gone: it joins, and the instance converges.
	if err := os.Remove(inTheWay); err != nil {
		t.Fatal(err)
	}
	joined := e.runningWith(ns, name, "db-0,db-1", 2*time.Minute)
	if !conditionIs(joined, etcdaas.ConditionProgressing, metav1.ConditionFalse, controller.ReasonConverged) {
		t.Errorf("once db-1 joined: %+v", joined.Status.Conditions)
	}
	check()

	// db-2 cannot start either; spec.replicas goes back to 2: db-2 is removed.
	inTheWay = blockOn("db-2", 3)
	e.scale(ns, name, 2)
	back := e.waitFor(ns, name, 2*time.Minute, "Converged with db-0,db-1", func(i *v1beta1.ETCDInstance) bool {
		return conditionIs(i, etcdaas.ConditionProgressing, metav1.ConditionFalse, controller.ReasonConverged) && memberNames(i) == "db-0,db-1"
	})
	if !conditionIs(back, etcdaas.ConditionDegraded, metav1.ConditionFalse, controller.ReasonAsExpected) || back.Status.Phase != v1beta1.PhaseRunning {
		t.Errorf("after the scale back: phase %s, %+v", back.Status.Phase, back.Status.Conditions)
	}
	if _, err := os.Stat(inTheWay); !os.IsNotExist(err) {
		t.Errorf("the removed member's data path is still there: %v", err)
	}
	check()
	events = e.waitForEvent(ns, inst, "MemberRemoved Removed member db-2")
	if n := countEvents(events, "MemberNotJoining "); n != 2 {
		t.Errorf("%d MemberNotJoining events in all, want 2 (one per block): %q", n, events)
	}
}
