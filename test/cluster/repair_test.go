package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// testVolumeLost deletes a member's volume claim and its pod: the StatefulSet recreates both,
// empty, and the controller replaces the member (a new member ID at the same ordinal, added
// as a learner and promoted) instead of letting it rejoin under its old ID with nothing. The
// new member serves every key from its own data, and Events say what happened.
func testVolumeLost(t *testing.T, e *etcdaasInstall, ns, name string, figs *figures) {
	ctx := t.Context()
	victim := name + "-1"
	clientURL := fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns)
	e.mustClient(t, ns, "put-before-volume-lost", "", clientURL, "put", "/before-volume-lost", "kept")
	before := mustInstance(t, e, ns, name)
	oldID := before.Status.Members[1].ID

	start := time.Now()
	mustRun(t, e.kubectl(skewKubectl), "", "delete", "pvc", "data-"+victim, "-n", ns, "--wait=false")
	mustRun(t, e.kubectl(skewKubectl), "", "delete", "pod", victim, "-n", ns, "--wait=false")
	var inst *v1beta1.ETCDInstance
	err := framework.Poll(ctx, 250*time.Millisecond, 4*time.Minute, victim+" replaced", func(ctx context.Context) (bool, error) {
		var err error
		if inst, err = e.getInstance(ctx, ns, name); err != nil {
			return false, err
		}
		if !settled(inst, 3) || inst.Status.Members[1].ID == oldID {
			return false, fmt.Errorf("%s (old ID of %s: %s)", describe(inst), victim, oldID)
		}
		return true, nil
	})
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
	figs.add(t, "member volume lost -> replaced", time.Since(start))
	if got := inst.Status.Members[1]; got.Name != victim || got.ID == oldID {
		t.Fatalf("member 1 after the replacement: %+v (old ID %s)", got, oldID)
	}
	member := fmt.Sprintf("--endpoints=http://%s.%s-peers.%s.svc.cluster.local:2379", victim, name, ns)
	if got := e.mustClient(t, ns, "get-after-volume-lost", "", member, "get", "/before-volume-lost", "--consistency=s", "--print-value-only"); got != "kept" {
		t.Errorf("the new %s does not hold the data: /before-volume-lost = %q", victim, got)
	}
	if got := e.mustClient(t, ns, "get-greeting-after-volume-lost", "", member, "get", "/greeting", "--consistency=s", "--print-value-only"); got != "written-at-3" {
		t.Errorf("the new %s does not hold the data: /greeting = %q", victim, got)
	}
	selector := fields.Set{"regarding.name": name, "reason": "MemberReplaced"}.AsSelector().String()
	err = pollEvents(ctx, e, ns, selector, fmt.Sprintf("Replaced member %s (ID %s)", victim, oldID))
	if err != nil {
		t.Error(err)
	}
}

// pollEvents waits for an events.k8s.io Event matching selector whose note contains want.
func pollEvents(ctx context.Context, e *etcdaasInstall, ns, selector, want string) error {
	deadline := time.Now().Add(time.Minute)
	var notes []string
	for time.Now().Before(deadline) {
		list, err := e.c.Kube.EventsV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			return err
		}
		notes = notes[:0]
		for _, ev := range list.Items {
			if strings.Contains(ev.Note, want) {
				return nil
			}
			notes = append(notes, ev.Note)
		}
		time.Sleep(time.Second)
	}
	return fmt.Errorf("no Event %q (%s); have %q", want, selector, notes)
}
