package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/etcdaas/etcdaas/test/e2e/framework"
)

// testVolumeLost deletes a member's volume claim and its pod: the StatefulSet recreates both,
// empty, and the controller replaces the member (a new member ID at the same ordinal, added
// as a learner and promoted) instead of letting it rejoin under its old ID with nothing. The
// new member serves every key from its own data, and Events say what happened.
func testVolumeLost(t *testing.T, e *etcdaasInstall, ns, name string, figs *figures) {
	victim := name + "-1"
	clientURL := fmt.Sprintf("--endpoints=http://%s.%s.svc.cluster.local:2379", name, ns)
	e.mustClient(t, ns, "put-before-volume-lost", "", clientURL, "put", "/before-volume-lost", "kept")
	before := mustInstance(t, e, ns, name)
	oldID := before.Status.Members[1].ID

	start := time.Now()
	mustRun(t, e.kubectl(skewKubectl), "", "delete", "pvc", "data-"+victim, "-n", ns, "--wait=false")
	mustRun(t, e.kubectl(skewKubectl), "", "delete", "pod", victim, "-n", ns, "--wait=false")
	awaitReplacement(t, e, ns, name, 1, oldID, 4*time.Minute)
	figs.add(t, "member volume lost -> replaced", time.Since(start))
	checkReplacement(t, e, ns, name, 1, oldID, "volume-lost", map[string]string{"/before-volume-lost": "kept", "/greeting": "written-at-3"})
}

// awaitReplacement waits until member ordinal of ns/name is a new member (another ID, same
// name) of a settled three-member instance.
func awaitReplacement(t *testing.T, e *etcdaasInstall, ns, name string, ordinal int, oldID string, timeout time.Duration) {
	t.Helper()
	victim := fmt.Sprintf("%s-%d", name, ordinal)
	err := framework.Poll(t.Context(), 250*time.Millisecond, timeout, victim+" replaced", func(ctx context.Context) (bool, error) {
		inst, err := e.getInstance(ctx, ns, name)
		if err != nil {
			return false, err
		}
		if !settled(inst, 3) || inst.Status.Members[ordinal].ID == oldID {
			return false, fmt.Errorf("%s (old ID of %s: %s)", describe(inst), victim, oldID)
		}
		if got := inst.Status.Members[ordinal]; got.Name != victim {
			return false, fmt.Errorf("member %d after the replacement: %+v (old ID %s)", ordinal, got, oldID)
		}
		return true, nil
	})
	if err != nil {
		dumpNamespace(t, e.c, ns)
		t.Fatal(err)
	}
}

// checkReplacement checks that the replaced member ordinal of ns/name serves want (key ->
// value) from its own data, and that a MemberReplaced Event names the old member ID. Client
// pods are named after step.
func checkReplacement(t *testing.T, e *etcdaasInstall, ns, name string, ordinal int, oldID, step string, want map[string]string) {
	t.Helper()
	victim := fmt.Sprintf("%s-%d", name, ordinal)
	member := fmt.Sprintf("--endpoints=http://%s.%s-peers.%s.svc.cluster.local:2379", victim, name, ns)
	i := 0
	for key, value := range want {
		i++
		if got := e.mustClient(t, ns, fmt.Sprintf("get-%d-after-%s", i, step), "", member, "get", key, "--consistency=s", "--print-value-only"); got != value {
			t.Errorf("the new %s does not hold the data: %s = %q, want %q", victim, key, got, value)
		}
	}
	selector := fields.Set{"regarding.name": name, "reason": "MemberReplaced"}.AsSelector().String()
	if err := pollEvents(t.Context(), e, ns, selector, fmt.Sprintf("Replaced member %s (ID %s)", victim, oldID)); err != nil {
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
