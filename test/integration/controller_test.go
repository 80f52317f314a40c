package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1alpha1"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// checkMembers asserts that the instance has n voting members, all healthy, and that every
// key in want is stored on every member (serializable reads answered by each member itself).
func (e *ctlEnv) checkMembers(ns, name string, n int, want map[string]string) {
	e.t.Helper()
	ctx := context.Background()
	access := e.access(ns, name)
	if len(access.Endpoints) != n {
		e.t.Fatalf("%d recorded voting members, want %d", len(access.Endpoints), n)
	}
	cli := e.etcdClient(ns, name)
	members, err := etcdcluster.MemberList(ctx, cli)
	if err != nil {
		e.t.Fatal(err)
	}
	if len(members) != n {
		e.t.Fatalf("MemberList: %d members, want %d: %+v", len(members), n, members)
	}
	for _, m := range members {
		if m.IsLearner {
			e.t.Fatalf("member %s is still a learner", m.Name)
		}
	}
	for _, st := range etcdcluster.StatusAll(ctx, access, access.Endpoints) {
		if !st.Healthy {
			e.t.Fatalf("member %s unhealthy: %v", st.Endpoint, st.Err)
		}
	}
	for _, ep := range access.Endpoints {
		one := e.etcdClient(ns, name, ep)
		// Wait for the member to apply what the leader committed, then read locally.
		deadline := time.Now().Add(10 * time.Second)
		for k, v := range want {
			for {
				resp, err := one.Get(ctx, k, clientv3.WithSerializable())
				if err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == v {
					break
				}
				if time.Now().After(deadline) {
					e.t.Fatalf("member %s: key %s = %v (err %v), want %q", ep, k, resp, err, v)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		_ = one.Close()
	}
}

func (e *ctlEnv) scale(ns, name string, replicas int32) {
	e.t.Helper()
	ctx := context.Background()
	c := e.client.EtcdaasV1beta1().ETCDInstances(ns)
	// The controller writes status meanwhile, which moves the resourceVersion the Scale
	// carries as a precondition: read again and retry on a conflict, as a client should.
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := c.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc.Spec.Replicas = replicas
		_, err = c.UpdateScale(ctx, name, &autoscalingv1.Scale{ObjectMeta: sc.ObjectMeta, Spec: sc.Spec}, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// TestControllerLifecycle creates an instance of one member, scales it through /scale to 3,
// 5, 3 and 1 with data checked on every member at every step, and deletes it.
func TestControllerLifecycle(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "lifecycle", "db"
	ctx := context.Background()

	start := time.Now()
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1)}})
	inst := e.running(ns, name, time.Minute)
	t.Logf("FIGURE create-to-Running, 1 member: %s", time.Since(start).Round(time.Millisecond))
	checkFirstMemberStatus(t, ctx, e, ns, name, inst)

	want := map[string]string{}
	putStep(t, ctx, e, ns, name, "one", want)
	e.checkMembers(ns, name, 1, want)
	scaleThroughAndCheckData(t, ctx, e, ns, name, want)
	checkOnlyFirstMemberDataLeft(t, e, ns, name)

	// A 3-member instance from scratch.
	start = time.Now()
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "three"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}})
	e.running(ns, "three", 2*time.Minute)
	t.Logf("FIGURE create-to-Running, 3 members: %s", time.Since(start).Round(time.Millisecond))
	e.checkMembers(ns, "three", 3, nil)

	checkDeleteStopsAndRemoves(t, ctx, e, ns, name, "three")
}

// checkFirstMemberStatus checks a Running instance of one member: the finalizer, the
// selector, the leader, Available, and the v1alpha1 status.
func checkFirstMemberStatus(t *testing.T, ctx context.Context, e *ctlEnv, ns, name string, inst *v1beta1.ETCDInstance) {
	t.Helper()
	if !slices.Contains(inst.Finalizers, controller.Finalizer) {
		t.Fatalf("finalizers %v", inst.Finalizers)
	}
	if inst.Status.Selector != etcdaas.MemberSelector(name) || len(inst.Status.Members) != 1 || !inst.Status.Members[0].Leader {
		t.Fatalf("status %+v", inst.Status)
	}
	if c := meta.FindStatusCondition(inst.Status.Conditions, etcdaas.ConditionAvailable); c == nil || c.Status != metav1.ConditionTrue || c.Message != "1/1 members ready" {
		t.Fatalf("Available %+v", c)
	}
	old, err := e.client.EtcdaasV1alpha1().ETCDInstances(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if old.Status.State != v1alpha1.StateRunning || old.Status.Message != "1/1 members ready" {
		t.Fatalf("v1alpha1 status %+v", old.Status)
	}
}

// putStep writes 20 keys under /step/ to instance ns/name, records them in want and reads
// them back.
func putStep(t *testing.T, ctx context.Context, e *ctlEnv, ns, name, step string, want map[string]string) {
	t.Helper()
	cli := e.etcdClient(ns, name)
	for i := range 20 {
		k, v := fmt.Sprintf("/%s/%02d", step, i), fmt.Sprintf("value written at %s", step)
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	got, err := cli.Get(ctx, "/"+step+"/", clientv3.WithPrefix())
	if err != nil || len(got.Kvs) != 20 {
		t.Fatalf("get after put: %v %v", got, err)
	}
}

// scaleThroughAndCheckData scales ns/name through /scale to 3, 5, 3 and 1, checking the
// status and every member's data at every step and writing more at each.
func scaleThroughAndCheckData(t *testing.T, ctx context.Context, e *ctlEnv, ns, name string, want map[string]string) {
	t.Helper()
	prev := int32(1)
	for _, n := range []int32{3, 5, 3, 1} {
		start := time.Now()
		e.scale(ns, name, n)
		got := e.running(ns, name, 2*time.Minute)
		t.Logf("FIGURE scale %d -> %d: %s", prev, n, time.Since(start).Round(time.Millisecond))
		if got.Status.Replicas != n || len(got.Status.Members) != int(n) {
			t.Fatalf("status after scaling to %d: %+v", n, got.Status)
		}
		e.checkMembers(ns, name, int(n), want)
		putStep(t, ctx, e, ns, name, fmt.Sprintf("after-%d-%d", prev, n), want)
		prev = n
	}
}

// checkOnlyFirstMemberDataLeft checks that removed members' data is gone and names are
// never reused.
func checkOnlyFirstMemberDataLeft(t *testing.T, e *ctlEnv, ns, name string) {
	t.Helper()
	// Removed members' data is gone and names are never reused.
	entries, err := os.ReadDir(e.dir + "/instances/" + ns + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, en := range entries {
		if en.IsDir() && strings.HasPrefix(en.Name(), name+"-") {
			dirs = append(dirs, en.Name())
		}
	}
	if !slices.Equal(dirs, []string{name + "-0"}) {
		t.Fatalf("member data directories after scaling back to 1: %v", dirs)
	}
}

// checkDeleteStopsAndRemoves deletes the instances names and checks their members are
// stopped, their data removed and their finalizer cleared.
func checkDeleteStopsAndRemoves(t *testing.T, ctx context.Context, e *ctlEnv, ns string, names ...string) {
	t.Helper()
	// Delete: members stopped, data removed, finalizer cleared (the object goes away).
	for _, n := range names {
		if err := e.client.EtcdaasV1beta1().ETCDInstances(ns).Delete(ctx, n, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range names {
		deadline := time.Now().Add(time.Minute)
		for {
			_, err := e.client.EtcdaasV1beta1().ETCDInstances(ns).Get(ctx, n, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not gone after delete: %v", n, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := os.Stat(e.dir + "/instances/" + ns + "/" + n); !os.IsNotExist(err) {
			t.Fatalf("data of %s left after delete: %v", n, err)
		}
	}
	if running := e.backend.Running(); len(running) != 0 {
		t.Fatalf("members still running after delete: %v", running)
	}
}

// TestControllerResumesAfterRestart stops the controller in the middle of a scale-up and
// of a scale-down; a new controller (a new backend on the same data) converges.
func TestControllerResumesAfterRestart(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "restart", "db"
	ctx := context.Background()
	cli := e.runningClient(ns, name, 1)
	if _, err := cli.Put(ctx, "before", "restart"); err != nil {
		t.Fatal(err)
	}
	_ = cli.Close()

	// Scale up to 5 and stop the controller once the second member is there.
	e.scale(ns, name, 5)
	mid := e.waitFor(ns, name, time.Minute, "a second member", func(i *v1beta1.ETCDInstance) bool { return i.Status.Replicas >= 2 })
	e.stopController()
	if mid.Status.Replicas >= 5 {
		t.Fatalf("the scale finished before the controller stopped: %+v", mid.Status)
	}
	t.Logf("controller stopped with %d members, phase %s", mid.Status.Replicas, mid.Status.Phase)
	e.startController()
	e.running(ns, name, 2*time.Minute)
	e.checkMembers(ns, name, 5, map[string]string{"before": "restart"})

	// Scale down to 1 and stop once a member is gone.
	e.scale(ns, name, 1)
	e.waitFor(ns, name, time.Minute, "a removed member", func(i *v1beta1.ETCDInstance) bool { return i.Status.Replicas <= 4 })
	e.stopController()
	e.startController()
	e.running(ns, name, 2*time.Minute)
	e.checkMembers(ns, name, 1, map[string]string{"before": "restart"})
}

// TestControllerFailsUnsupportedVersions reports a version the local backend cannot run.
func TestControllerFailsUnsupportedVersions(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns := "versions"
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: "old"}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](1), Version: "3.4"}})
	got := e.waitFor(ns, "old", 30*time.Second, "Failed", func(i *v1beta1.ETCDInstance) bool { return i.Status.Phase == v1beta1.PhaseFailed })
	c := meta.FindStatusCondition(got.Status.Conditions, etcdaas.ConditionDegraded)
	if c == nil || c.Status != metav1.ConditionTrue || c.Reason != "UnsupportedVersion" || !strings.Contains(c.Message, `"3.4"`) {
		t.Fatalf("Degraded %+v", c)
	}
	old, err := e.client.EtcdaasV1alpha1().ETCDInstances(ns).Get(context.Background(), "old", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if old.Status.State != v1alpha1.StateFailed || !strings.Contains(old.Status.Message, "3.4") {
		t.Fatalf("v1alpha1 status %+v", old.Status)
	}
	// No member: a backup is a conflict with a clear message.
	resp := e.backup(context.Background(), ns, "old")
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != 409 {
		t.Fatalf("backup of an instance without members: %d", resp.StatusCode)
	}
	missing := e.backup(context.Background(), ns, "missing")
	defer func() { _ = missing.Body.Close() }()
	if missing.StatusCode != 404 {
		t.Fatalf("backup of a missing instance: %d", missing.StatusCode)
	}
}
