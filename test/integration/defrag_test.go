package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/etcdaas/etcdaas/pkg/apis/etcdaas"
	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend/local"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// defragEvents returns the notes of the instance's Defragmented Events in the order they were
// recorded, once there are at least n, failing after timeout.
func (e *ctlEnv) defragEvents(ns, name string, n int, timeout time.Duration) []string {
	e.t.Helper()
	kube, err := kubernetes.NewForConfig(e.srv.Config())
	if err != nil {
		e.t.Fatal(err)
	}
	selector := fields.Set{"involvedObject.name": name, "reason": "Defragmented"}.AsSelector().String()
	deadline := time.Now().Add(timeout)
	for {
		list, err := kube.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: selector})
		if err != nil {
			e.t.Fatal(err)
		}
		// The recorder names an Event <object>.<hex UnixNano of its creation>.
		slices.SortFunc(list.Items, func(a, b corev1.Event) int { return strings.Compare(a.Name, b.Name) })
		var notes []string
		for _, ev := range list.Items {
			if ev.Reason == "Defragmented" && ev.Type == corev1.EventTypeNormal {
				notes = append(notes, ev.Message)
			}
		}
		if len(notes) >= n {
			return notes
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s/%s: %d Defragmented events within %s, want %d: %q", ns, name, len(notes), timeout, n, notes)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// postDefrag POSTs the defrag subresource and returns the status code and body.
func (e *ctlEnv) postDefrag(ns, name string) (int, string) {
	e.t.Helper()
	cfg := e.srv.Config()
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	url := fmt.Sprintf("%s/apis/etcdaas.dev/v1beta1/namespaces/%s/etcdinstances/%s/defrag", cfg.Host, ns, name)
	resp, err := hc.Post(url, "application/json", nil)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// fill writes n keys of size bytes under prefix through cli.
func fill(t *testing.T, cli *clientv3.Client, prefix string, n, size int) {
	t.Helper()
	value := strings.Repeat("x", size)
	for i := range n {
		if _, err := cli.Put(context.Background(), fmt.Sprintf("%s%04d", prefix, i), value); err != nil {
			t.Fatal(err)
		}
	}
}

// deleteAndCompact deletes every key under prefix and compacts the history up to the delete,
// which leaves their space free inside the members' database files.
func deleteAndCompact(t *testing.T, cli *clientv3.Client, prefix string) {
	t.Helper()
	del, err := cli.Delete(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(context.Background(), del.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
}

// keepWriting writes a small key every 100ms until the returned stop is called (at most 3000
// times), as a live cluster does: a member reports the space compaction freed in its
// dbSizeInUse only once its next write has been committed.
func keepWriting(t *testing.T, cli *clientv3.Client) (stop func()) {
	t.Helper()
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		for i := range 3000 {
			select {
			case <-done:
				return
			case <-time.After(100 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = cli.Put(ctx, "/heartbeat", fmt.Sprint(i)) // a member being defragmented may not answer
			cancel()
		}
	}()
	return func() {
		close(done)
		<-finished
	}
}

// checkLeaderLast checks that notes defragmented every one of members once, the followers
// first and the leader last, after moving leadership to another member.
func checkLeaderLast(t *testing.T, notes []string, members int) {
	t.Helper()
	if len(notes) != members {
		t.Fatalf("%d defragmentations, want %d: %q", len(notes), members, notes)
	}
	seen := map[string]bool{}
	for i, note := range notes {
		words := strings.Fields(note)
		if len(words) < 4 || !strings.HasPrefix(note, "Defragmented member ") {
			t.Fatalf("event %q", note)
		}
		member, role := words[2], words[3]
		seen[member] = true
		want := "(follower)"
		if i == len(notes)-1 {
			want = "(leader)"
		}
		if role != want {
			t.Errorf("defragmentation %d of %d was of a %s, want %s: %q", i+1, len(notes), role, want, notes)
		}
		if _, to, moved := strings.Cut(note, "; leadership moved to member "); role == "(leader)" &&
			(!moved || strings.HasPrefix(to, member+" ")) {
			t.Errorf("the leader %s was defragmented without moving leadership to another member first: %q", member, note)
		}
	}
	if len(seen) != members {
		t.Errorf("members defragmented: %v, want %d distinct", seen, members)
	}
}

// TestDefragmentation fills a 3-member instance with keys, deletes and compacts them: the
// controller defragments every member on its own (spec.defragmentation's thresholds), the
// followers first and the leader last, and the status and metrics show the smaller files.
// Then the defrag subresource defragments every member again, on demand.
func TestDefragmentation(t *testing.T) {
	t.Parallel()
	e := ctlStart(t, local.Options{})
	ns, name := "defrag", "db"
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{
		Replicas:        ptr.To[int32](3),
		Defragmentation: &v1beta1.DefragmentationSpec{FreePercent: ptr.To[int32](50), FreeBytes: ptr.To(resource.MustParse("2Mi"))},
	}})
	e.running(ns, name, 2*time.Minute)
	cli := e.etcdClient(ns, name)

	const keys, size = 256, 32 << 10 // 8 MiB
	fill(t, cli, "/fill/", keys, size)
	full := e.waitFor(ns, name, time.Minute, "every member's size reported", func(i *v1beta1.ETCDInstance) bool {
		return len(i.Status.Members) == 3 && !slices.ContainsFunc(i.Status.Members, func(m v1beta1.MemberStatus) bool { return m.DBSize < keys*size })
	})
	if notes := e.defragEvents(ns, name, 0, time.Second); len(notes) != 0 {
		t.Fatalf("defragmented with nothing free: %q", notes)
	}
	metricBefore := checkDBSizeMetrics(t, e, ns, name, full, keys*size)

	start := time.Now()
	deleteAndCompact(t, cli, "/fill/")
	before := etcdcluster.StatusAll(context.Background(), e.access(ns, name), e.access(ns, name).Endpoints)
	stop := keepWriting(t, cli)
	notes := e.defragEvents(ns, name, 3, 2*time.Minute)
	took := time.Since(start)
	stop()
	checkLeaderLast(t, notes, 3)
	after := e.waitFor(ns, name, time.Minute, "smaller files reported", func(i *v1beta1.ETCDInstance) bool {
		return !slices.ContainsFunc(i.Status.Members, func(m v1beta1.MemberStatus) bool { return m.DBSize*4 > keys*size })
	})
	families := e.scrape()
	for _, m := range after.Status.Members {
		v, _ := sample(families, "etcdaas_member_db_size_bytes", map[string]string{"namespace": ns, "name": name, "member": m.Name})
		if v*4 > metricBefore[m.Name] {
			t.Errorf("db size metric of %s: %v after defragmenting, %v before", m.Name, v, metricBefore[m.Name])
		}
	}
	for i, st := range before {
		t.Logf("FIGURE automatic defragmentation: %s: database file %d bytes (%d in use) -> %d bytes",
			after.Status.Members[i].Name, st.DBSize, st.DBSizeInUse, after.Status.Members[i].DBSize)
	}
	t.Logf("FIGURE automatic defragmentation of 3 members, from the compaction to the last Defragmented Event: %s", took.Round(time.Millisecond))
	for _, n := range notes {
		t.Logf("event: %s", n)
	}

	// Writes still work, and nothing is due: no further defragmentation.
	if _, err := cli.Put(context.Background(), "/after", "v"); err != nil {
		t.Fatal(err)
	}

	checkDefragOnDemand(t, e, ns, name)
}

// checkDBSizeMetrics checks that the database size metric of each member of inst (ns/name)
// is at least least bytes, and returns them by member.
func checkDBSizeMetrics(t *testing.T, e *ctlEnv, ns, name string, inst *v1beta1.ETCDInstance, least int) map[string]float64 {
	t.Helper()
	sizes := map[string]float64{}
	families := e.scrape()
	for _, m := range inst.Status.Members {
		v, ok := sample(families, "etcdaas_member_db_size_bytes", map[string]string{"namespace": ns, "name": name, "member": m.Name})
		if !ok || v < float64(least) {
			t.Fatalf("db size metric of %s: %v (%v), want at least %d", m.Name, v, ok, least)
		}
		sizes[m.Name] = v
	}
	return sizes
}

// checkDefragOnDemand checks a defragmentation on demand of ns/name, after the 3 automatic
// ones: every member once more, whatever the thresholds, leader last; the request is
// consumed once all are done. A missing instance answers 404.
func checkDefragOnDemand(t *testing.T, e *ctlEnv, ns, name string) {
	t.Helper()
	code, body := e.postDefrag(ns, name)
	if code != http.StatusAccepted || !strings.Contains(body, "defragmentation of every member of db requested") {
		t.Fatalf("defrag: %d %s", code, body)
	}
	if code, body := e.postDefrag(ns, "missing"); code != http.StatusNotFound {
		t.Fatalf("defrag of a missing instance: %d %s", code, body)
	}
	notes := e.defragEvents(ns, name, 6, 2*time.Minute)
	checkLeaderLast(t, notes[3:], 3)
	e.waitFor(ns, name, time.Minute, "the defrag request consumed", func(i *v1beta1.ETCDInstance) bool {
		_, requested := i.Annotations[etcdaas.DefragRequestedAnnotation]
		return !requested
	})
	if notes := e.defragEvents(ns, name, 6, time.Second); len(notes) != 6 {
		t.Fatalf("more defragmentations than requested: %q", notes)
	}
}

// TestDefragmentationRecoversFromNoSpace fills a member's quota until etcd raises NOSPACE and
// refuses writes; once the keys are deleted and compacted, the controller defragments the
// member, disarms the alarm and writes work again. The free-space trigger is off (100 %
// free is never reached): etcd may never report the space the compaction freed, since it
// counts it only at later commits of a database that refuses writes, so the controller
// must see the compaction itself.
func TestDefragmentationRecoversFromNoSpace(t *testing.T) {
	t.Parallel()
	const quota = 8 << 20
	e := ctlStart(t, local.Options{QuotaBackendBytes: quota})
	ns, name := "nospace", "db"
	e.create(ns, &v1beta1.ETCDInstance{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1beta1.ETCDInstanceSpec{
		Replicas: ptr.To[int32](1),
		Defragmentation: &v1beta1.DefragmentationSpec{
			FreePercent: ptr.To[int32](100),
			FreeBytes:   ptr.To(resource.MustParse("1Mi")),
		},
	}})
	e.running(ns, name, time.Minute)
	cli := e.etcdClient(ns, name)
	ctx := context.Background()

	// Bounded: at most 4 times the quota is written before NOSPACE.
	value := strings.Repeat("x", 64<<10)
	var putErr error
	for i := 0; i < 4*quota/len(value) && putErr == nil; i++ {
		_, putErr = cli.Put(ctx, fmt.Sprintf("/fill/%04d", i), value)
	}
	if putErr == nil || !strings.Contains(putErr.Error(), "database space exceeded") {
		t.Fatalf("writing 4 times the quota: %v", putErr)
	}
	e.waitFor(ns, name, time.Minute, "the NOSPACE alarm reported", func(i *v1beta1.ETCDInstance) bool {
		return len(i.Status.Members) == 1 && slices.Contains(i.Status.Members[0].Alarms, "NOSPACE") && i.Status.ReadyReplicas == 0
	})
	if notes := e.defragEvents(ns, name, 0, time.Second); len(notes) != 0 {
		t.Fatalf("defragmented with nothing free: %q", notes)
	}

	deleteAndCompact(t, cli, "/fill/")
	notes := e.defragEvents(ns, name, 1, time.Minute)
	if !strings.Contains(notes[0], "(leader)") || !strings.HasSuffix(notes[0], "; NOSPACE alarm disarmed") {
		t.Fatalf("event %q", notes[0])
	}
	t.Logf("event: %s", notes[0])
	if _, err := cli.Put(ctx, "/after", "v"); err != nil {
		t.Fatalf("write after the alarm was disarmed: %v", err)
	}
	e.waitFor(ns, name, time.Minute, "Running without alarms", func(i *v1beta1.ETCDInstance) bool {
		return i.Status.Phase == v1beta1.PhaseRunning && i.Status.ReadyReplicas == 1 && len(i.Status.Members[0].Alarms) == 0
	})
}
