package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// repairGrace is the member repair grace period of these tests. A member that crashed once is
// replaced unless it serves again within the grace period (counted from the look that found
// it dead, with the controller's looks backing off meanwhile), so the period must leave room
// for a restart on a machine busy with other tests: with 3 s, the period these tests had, a
// restart slower than that (looks at 0.1, 0.3, 0.7, 1.5 and 3.1 s) replaced the member the
// first test expects to stay.
const repairGrace = 10 * time.Second

// events returns "Reason Message" of the instance's Events, oldest first.
func (e *ctlEnv) events(ns string, inst *v1beta1.ETCDInstance) []string {
	e.t.Helper()
	kube, err := kubernetes.NewForConfig(e.srv.Config())
	if err != nil {
		e.t.Fatal(err)
	}
	selector := fields.Set{"involvedObject.name": inst.Name, "involvedObject.uid": string(inst.UID)}.AsSelector().String()
	list, err := kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		e.t.Fatal(err)
	}
	items := list.Items
	sort.SliceStable(items, func(i, j int) bool { return items[i].EventTime.Before(&items[j].EventTime) })
	out := make([]string, 0, len(items))
	for _, ev := range items {
		out = append(out, ev.Reason+" "+ev.Message)
	}
	return out
}

// waitForEvent waits until an Event starting with prefix is recorded and returns every Event.
func (e *ctlEnv) waitForEvent(ns string, inst *v1beta1.ETCDInstance, prefix string) []string {
	e.t.Helper()
	return e.waitForEventWithin(ns, inst, prefix, 30*time.Second)
}

// waitForEventWithin is waitForEvent with a timeout.
func (e *ctlEnv) waitForEventWithin(ns string, inst *v1beta1.ETCDInstance, prefix string, timeout time.Duration) []string {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := e.events(ns, inst)
		if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, prefix) }) {
			return got
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("no event %q in %q", prefix, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// memberNames are the names of the instance's members in status.
func memberNames(inst *v1beta1.ETCDInstance) string {
	var names []string
	for _, m := range inst.Status.Members {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// runningWith waits until the instance is Running with exactly the named members.
func (e *ctlEnv) runningWith(ns, name, members string, timeout time.Duration) *v1beta1.ETCDInstance {
	e.t.Helper()
	return e.waitFor(ns, name, timeout, "Running with "+members, func(i *v1beta1.ETCDInstance) bool {
		return i.Status.Phase == v1beta1.PhaseRunning && i.Status.ReadyReplicas == *i.Spec.Replicas && memberNames(i) == members
	})
}

// putKeys writes n keys under /k/ and returns a function checking they are all there.
func (e *ctlEnv) putKeys(ns, name string, n int) func() {
	e.t.Helper()
	ctx := context.Background()
	cli := e.etcdClient(ns, name)
	for i := range n {
		if _, err := cli.Put(ctx, fmt.Sprintf("/k/%03d", i), fmt.Sprintf("v%d", i)); err != nil {
			e.t.Fatal(err)
		}
	}
	return func() {
		e.t.Helper()
		got, err := e.etcdClient(ns, name).Get(ctx, "/k/", clientv3.WithPrefix())
		if err != nil || len(got.Kvs) != n {
			e.t.Fatalf("keys: %v, %v; want %d", got, err, n)
		}
		for i, kv := range got.Kvs {
			if string(kv.Value) != fmt.Sprintf("v%d", i) {
				e.t.Fatalf("key %s = %q", kv.Key, kv.Value)
			}
		}
	}
}

// waitServing waits until the member with the given ID answers healthy. Once Kill returned,
// the killed server refuses every request: an answer comes from the server the controller
// started again in its place (on the ports the state records now).
func (e *ctlEnv) waitServing(ns, name, id string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	var last []etcdcluster.EndpointStatus
	for {
		access := e.access(ns, name)
		last = etcdcluster.StatusAll(context.Background(), access, access.Endpoints)
		if slices.ContainsFunc(last, func(st etcdcluster.EndpointStatus) bool { return st.Healthy && etcdcluster.FormatID(st.MemberID) == id }) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s/%s: member %s not serving within %s: %+v", ns, name, id, timeout, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMemberRepairReplacesAMemberThatKeepsDying kills a member's embedded server once (it is
// restarted from its data, not replaced), then keeps killing it: past the grace period it is
// replaced by a new member while the others keep quorum, every key is still there, and Events
// say which member replaced which and why.
func TestMemberRepairReplacesAMemberThatKeepsDying(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{MemberRepairGracePeriod: repairGrace})
	ns, name := "repair", "db"
	inst := e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](3)}})
	e.running(ns, name, 2*time.Minute)
	check := e.putKeys(ns, name, 100)

	// One crash: the member restarts from its data and stays.
	running := e.runningWith(ns, name, "db-0,db-1,db-2", time.Minute)
	killed := time.Now()
	if !e.backend.Kill(ns, name, "db-1") {
		t.Fatal("db-1 does not run here")
	}
	e.waitServing(ns, name, running.Status.Members[1].ID, time.Minute)
	t.Logf("FIGURE local backend: one crash of a member of 3 to the member serving again, restarted from its data: %s", time.Since(killed).Round(time.Millisecond))
	// Past the grace period and the health looks (every 2 s) that forget the crash of a member
	// seen healthy for that long, it can no longer be replaced; a replacement would have
	// removed db-1 for good.
	time.Sleep(repairGrace + 5*time.Second)
	e.runningWith(ns, name, "db-0,db-1,db-2", 30*time.Second)

	// A crash loop: db-1 dies whenever it comes back.
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	loopDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(loopDone)
		for ctx.Err() == nil {
			e.backend.Kill(ns, name, "db-1")
			time.Sleep(10 * time.Millisecond)
		}
	}()
	e.runningWith(ns, name, "db-0,db-2,db-3", 2*time.Minute)
	t.Logf("FIGURE local backend: member failure (crash loop) to a healthy replacement, grace period %s: %s", repairGrace, time.Since(start).Round(time.Millisecond))
	stop()
	<-loopDone
	check()
	if _, err := os.Stat(filepath.Join(e.dir, "instances", ns, name, "db-1")); !os.IsNotExist(err) {
		t.Errorf("the replaced member's data is still there: %v", err)
	}
	events := e.waitForEvent(ns, inst, "MemberReplaced Replaced member db-1 with db-3")
	unhealthy := slices.IndexFunc(events, func(s string) bool {
		return strings.HasPrefix(s, "MemberUnhealthy Replacing member db-1 with a new member db-3: unhealthy for") && strings.Contains(s, "grace period of "+repairGrace.String())
	})
	if unhealthy < 0 {
		t.Fatalf("no MemberUnhealthy event saying why db-1 is replaced: %q", events)
	}
}

// TestMemberRepairReplacesCorruptMembersOneAtATime corrupts two members of five while the
// controller is down (one database, one write-ahead log): neither can start, and past the
// grace period each is replaced by a new member, the second only once the first replacement
// votes, with every key kept.
func TestMemberRepairReplacesCorruptMembersOneAtATime(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{MemberRepairGracePeriod: repairGrace})
	ns, name := "repair-corrupt", "db"
	inst := e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{Replicas: ptr.To[int32](5)}})
	e.running(ns, name, 3*time.Minute)
	check := e.putKeys(ns, name, 100)

	e.stopController()
	data := filepath.Join(e.dir, "instances", ns, name)
	garbage := bytes.Repeat([]byte("not a bolt database "), 8192)
	if err := os.WriteFile(filepath.Join(data, "db-1", "member", "snap", "db"), garbage, 0o600); err != nil {
		t.Fatal(err)
	}
	wals, err := filepath.Glob(filepath.Join(data, "db-3", "member", "wal", "*.wal"))
	if err != nil || len(wals) == 0 {
		t.Fatalf("write-ahead log of db-3: %v %v", wals, err)
	}
	f, err := os.OpenFile(wals[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, 512), 64); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.startController()

	e.runningWith(ns, name, "db-0,db-2,db-4,db-5,db-6", 3*time.Minute)
	t.Logf("FIGURE local backend: two corrupt members of five to two healthy replacements, grace period %s: %s", repairGrace, time.Since(start).Round(time.Millisecond))
	check()
	e.waitForEvent(ns, inst, "MemberReplaced Replaced member db-1 with db-")
	events := e.waitForEvent(ns, inst, "MemberReplaced Replaced member db-3 with db-")
	var order []string
	for _, ev := range events {
		for _, p := range []string{"MemberUnhealthy Replacing member", "MemberRemoved Removed member", "MemberPromoted Promoted member", "MemberReplaced Replaced member"} {
			if strings.HasPrefix(ev, p) {
				order = append(order, strings.Fields(ev)[0]+" "+strings.Fields(ev)[3])
			}
		}
	}
	// The first five members join; then the corrupt members are replaced one after the
	// other (either first: both became unhealthy together), by db-5 and then db-6.
	first, second := "db-1", "db-3"
	if slices.Index(order, "MemberUnhealthy db-3") < slices.Index(order, "MemberUnhealthy db-1") {
		first, second = second, first
	}
	want := []string{
		"MemberPromoted db-1", "MemberPromoted db-2", "MemberPromoted db-3", "MemberPromoted db-4",
		"MemberUnhealthy " + first, "MemberRemoved " + first, "MemberPromoted db-5", "MemberReplaced " + first,
		"MemberUnhealthy " + second, "MemberRemoved " + second, "MemberPromoted db-6", "MemberReplaced " + second,
	}
	if strings.Join(order, ", ") != strings.Join(want, ", ") {
		t.Fatalf("events in order:\n%s\nwant\n%s\nall: %q", strings.Join(order, ", "), strings.Join(want, ", "), events)
	}
	for _, ev := range events {
		if strings.HasPrefix(ev, "MemberReplaced Replaced member "+first) && !strings.Contains(ev, "with db-5") ||
			strings.HasPrefix(ev, "MemberReplaced Replaced member "+second) && !strings.Contains(ev, "with db-6") {
			t.Errorf("unexpected successor: %s", ev)
		}
	}
	for _, ev := range events {
		if strings.HasPrefix(ev, "MemberUnhealthy Replacing member db-1") && !strings.Contains(ev, "corrupt: opening the database") ||
			strings.HasPrefix(ev, "MemberUnhealthy Replacing member db-3") && !strings.Contains(ev, "corrupt: reading the write-ahead log") {
			t.Errorf("the event does not say what is wrong: %s", ev)
		}
	}
}
