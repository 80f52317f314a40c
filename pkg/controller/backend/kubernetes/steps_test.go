package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/utils/ptr"

	v1beta1 "github.com/etcdaas/etcdaas/pkg/apis/etcdaas/v1beta1"
	"github.com/etcdaas/etcdaas/pkg/controller/backend"
	"github.com/etcdaas/etcdaas/pkg/etcdcluster"
)

// fakeMembership is an etcd cluster held in memory: the steps of a Sync run against it and
// it records the membership changes they make.
type fakeMembership struct {
	members  []etcdcluster.Member
	statuses []etcdcluster.EndpointStatus
	listErr  error
	nextID   uint64

	added                       []string
	promoted, removed, movedOff []uint64
}

func (f *fakeMembership) MemberList(context.Context) ([]etcdcluster.Member, error) {
	if f.listErr != nil {
		return nil, f.listErr
	}
	return slices.Clone(f.members), nil
}

func (f *fakeMembership) Statuses(context.Context) []etcdcluster.EndpointStatus {
	return slices.Clone(f.statuses)
}

func (f *fakeMembership) AddLearner(_ context.Context, peerURL string) (uint64, []etcdcluster.Member, error) {
	f.added = append(f.added, peerURL)
	f.nextID++
	f.members = append(f.members, etcdcluster.Member{ID: f.nextID, PeerURLs: []string{peerURL}, IsLearner: true})
	return f.nextID, slices.Clone(f.members), nil
}

func (f *fakeMembership) Promote(_ context.Context, id uint64) error {
	f.promoted = append(f.promoted, id)
	return nil
}

func (f *fakeMembership) MoveLeaderAway(_ context.Context, id uint64, _ []etcdcluster.Member, _ []etcdcluster.EndpointStatus) error {
	f.movedOff = append(f.movedOff, id)
	return nil
}

func (f *fakeMembership) Remove(_ context.Context, id uint64) error {
	f.removed = append(f.removed, id)
	f.members = slices.DeleteFunc(f.members, func(m etcdcluster.Member) bool { return m.ID == id })
	return nil
}

func (f *fakeMembership) Close() error { return nil }

const peerURLFormat = "http://db-%d.db-peers.ns.svc.cluster.local:2380"

// healthyCluster is a cluster of n started voting members, db-0 leading, member IDs 100+i.
func healthyCluster(n int) *fakeMembership {
	f := &fakeMembership{nextID: 200}
	for i := range n {
		id := uint64(100 + i)
		f.members = append(f.members, etcdcluster.Member{ID: id, Name: fmt.Sprintf("db-%d", i), PeerURLs: []string{fmt.Sprintf(peerURLFormat, i)}})
		f.statuses = append(f.statuses, etcdcluster.EndpointStatus{Healthy: true, MemberID: id, Leader: 100})
	}
	return f
}

// stepsFixture is a backend on a fake clientset whose plaintext instance db wants replicas
// members and whose StatefulSet has pods pods, ready of them ready.
type stepsFixture struct {
	b      *Backend
	client *fake.Clientset
	inst   *v1beta1.ETCDInstance
}

func newStepsFixture(t *testing.T, replicas int32, pods, ready int32, cluster *fakeMembership) *stepsFixture {
	t.Helper()
	ctx := context.Background()
	client := fake.NewClientset()
	b, err := New(Options{Client: client})
	if err != nil {
		t.Fatal(err)
	}
	b.connect = func(*etcdcluster.Access) (membership, error) { return cluster, nil }
	inst := testInstance()
	inst.Spec.TLS = nil
	inst.Spec.Replicas = ptr.To(replicas)
	if _, err := b.Sync(ctx, inst); err != nil {
		t.Fatal(err)
	}
	sts, err := client.AppsV1().StatefulSets("ns").Get(ctx, "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sts.Spec.Replicas = ptr.To(pods)
	sts.Status.ReadyReplicas = ready
	if _, err := client.AppsV1().StatefulSets("ns").Update(ctx, sts, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := range pods {
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("data-db-%d", i)}}
		if _, err := client.CoreV1().PersistentVolumeClaims("ns").Create(ctx, pvc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return &stepsFixture{b: b, client: client, inst: inst}
}

func (f *stepsFixture) view(t *testing.T) *instanceView {
	t.Helper()
	v, started, err := f.b.ensureObjects(context.Background(), f.inst)
	if err != nil || started != nil {
		t.Fatalf("ensureObjects on an existing StatefulSet: %+v, %v", started, err)
	}
	return v
}

func (f *stepsFixture) observe(t *testing.T, cluster *fakeMembership) (*instanceView, *observation) {
	t.Helper()
	v := f.view(t)
	obs, err := v.observe(context.Background(), cluster)
	if err != nil {
		t.Fatal(err)
	}
	return v, obs
}

// statefulSet returns the StatefulSet's replicas and the initial cluster its next pod gets.
func (f *stepsFixture) statefulSet(t *testing.T) (int32, string) {
	t.Helper()
	sts, err := f.client.AppsV1().StatefulSets("ns").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := sts.Spec.Template.Spec.Containers[0]
	if state := env(t, c, "ETCD_INITIAL_CLUSTER_STATE"); *sts.Spec.Replicas > 1 && state != "existing" {
		t.Fatalf("a joining member starts with cluster state %q", state)
	}
	return *sts.Spec.Replicas, env(t, c, "ETCD_INITIAL_CLUSTER")
}

func (f *stepsFixture) volumes(t *testing.T) []string {
	t.Helper()
	list, err := f.client.CoreV1().PersistentVolumeClaims("ns").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, pvc := range list.Items {
		out = append(out, pvc.Name)
	}
	slices.Sort(out)
	return out
}

func (f *stepsFixture) minAvailable(t *testing.T) int {
	t.Helper()
	pdb, err := f.client.PolicyV1().PodDisruptionBudgets("ns").Get(context.Background(), "db", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return pdb.Spec.MinAvailable.IntValue()
}

func TestObserveOrdersMembersByOrdinalAndReportsHealth(t *testing.T) {
	cluster := healthyCluster(3)
	cluster.statuses[0].Version, cluster.statuses[0].DBSize, cluster.statuses[0].DBSizeInUse, cluster.statuses[0].Revision = "3.6.5", 8192, 4096, 9
	cluster.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("not answering: connection refused")}
	cluster.statuses[2] = etcdcluster.EndpointStatus{MemberID: 102, Leader: 100, Version: "3.6.5", Alarms: []string{"NOSPACE"}, Err: errors.New("alarm NOSPACE raised")}
	// db-3 was added to etcd but has no pod yet; MemberList answers in ID order, not ordinals.
	cluster.members = append(cluster.members, etcdcluster.Member{ID: 50, PeerURLs: []string{fmt.Sprintf(peerURLFormat, 3)}, IsLearner: true})
	f := newStepsFixture(t, 4, 3, 2, cluster)
	_, obs := f.observe(t, cluster)
	var names []string
	for _, m := range obs.result.Members {
		names = append(names, m.Name)
	}
	if !slices.Equal(names, []string{"db-0", "db-1", "db-2", "db-3"}) {
		t.Fatalf("members %v, want ordinal order", names)
	}
	m0, m1, m3 := obs.result.Members[0], obs.result.Members[1], obs.result.Members[3]
	if !m0.Ready || !m0.Leader || m0.ID != "64" || m0.ClientURL != "http://db-0.db-peers.ns.svc.cluster.local:2379" {
		t.Fatalf("db-0: %+v", m0)
	}
	if m0.Version != "3.6.5" || m0.DBSize != 8192 || m0.DBSizeInUse != 4096 || m0.Revision != 9 || m0.Alarms != nil {
		t.Fatalf("db-0 does not carry what it reported: %+v", m0)
	}
	if m1.Ready || m1.Leader || m1.Version != "" || !m3.Learner || m3.Ready {
		t.Fatalf("db-1 %+v, db-3 %+v", m1, m3)
	}
	if m2 := obs.result.Members[2]; m2.Ready || !slices.Equal(m2.Alarms, []string{"NOSPACE"}) {
		t.Fatalf("db-2 with an alarm: %+v", m2)
	}
	if want := "unhealthy members: db-1: not answering: connection refused; db-2: alarm NOSPACE raised; db-3: no pod yet"; obs.result.Unhealthy != want {
		t.Fatalf("unhealthy %q, want %q", obs.result.Unhealthy, want)
	}
	if obs.members[3].ID != 50 {
		t.Fatalf("observed membership %+v not in ordinal order", obs.members)
	}
}

func TestResumeChange(t *testing.T) {
	ctx := context.Background()
	t.Run("a member added to etcd gets its pod", func(t *testing.T) {
		cluster := healthyCluster(2)
		cluster.members = append(cluster.members, etcdcluster.Member{ID: 102, PeerURLs: []string{fmt.Sprintf(peerURLFormat, 2)}, IsLearner: true})
		f := newStepsFixture(t, 3, 2, 2, cluster)
		v, obs := f.observe(t, cluster)
		resumed, err := f.b.resumeChange(ctx, v, cluster, obs)
		if err != nil || !resumed || obs.result.StepReason != backend.StepAddingMember || obs.result.Step != "starting member db-2" {
			t.Fatalf("resumed %v, %v: %+v", resumed, err, obs.result)
		}
		replicas, initial := f.statefulSet(t)
		// The member that never started is named after its pod in the initial cluster.
		if replicas != 3 || !strings.Contains(initial, "db-2="+fmt.Sprintf(peerURLFormat, 2)) || !strings.HasPrefix(initial, "db-0=") {
			t.Fatalf("StatefulSet replicas %d, initial cluster %q", replicas, initial)
		}
		if len(cluster.promoted) != 0 {
			t.Fatal("a learner without a pod was promoted")
		}
	})
	t.Run("a member removed from etcd loses its pod and volume", func(t *testing.T) {
		cluster := healthyCluster(2)
		f := newStepsFixture(t, 2, 3, 3, cluster)
		v, obs := f.observe(t, cluster)
		resumed, err := f.b.resumeChange(ctx, v, cluster, obs)
		if err != nil || !resumed || obs.result.StepReason != backend.StepRemovingMember {
			t.Fatalf("resumed %v, %v: %+v", resumed, err, obs.result)
		}
		if replicas, _ := f.statefulSet(t); replicas != 2 {
			t.Fatalf("StatefulSet replicas %d, want 2", replicas)
		}
		if got := f.volumes(t); !slices.Equal(got, []string{"data-db-0", "data-db-1"}) {
			t.Fatalf("volumes %v: the removed member's must go", got)
		}
		if f.minAvailable(t) != 2 {
			t.Fatalf("PDB minAvailable %d for 2 members", f.minAvailable(t))
		}
	})
	t.Run("a started learner is promoted", func(t *testing.T) {
		cluster := healthyCluster(3)
		cluster.members[2].IsLearner = true
		f := newStepsFixture(t, 3, 3, 3, cluster)
		v, obs := f.observe(t, cluster)
		resumed, err := f.b.resumeChange(ctx, v, cluster, obs)
		if err != nil || !resumed || obs.result.Step != "promoting member db-2" || !slices.Equal(cluster.promoted, []uint64{102}) {
			t.Fatalf("resumed %v, %v: %+v, promoted %v", resumed, err, obs.result, cluster.promoted)
		}
		wantEvents(t, obs.result, backend.Event{Reason: backend.ReasonMemberPromoted, Note: "Promoted member db-2 (ID 66) to a voting member"})
	})
	t.Run("a learner whose pod is starting waits", func(t *testing.T) {
		cluster := healthyCluster(3)
		cluster.members[2].IsLearner = true
		cluster.statuses[2] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
		f := newStepsFixture(t, 3, 3, 2, cluster)
		v, obs := f.observe(t, cluster)
		resumed, err := f.b.resumeChange(ctx, v, cluster, obs)
		if err != nil || !resumed || len(cluster.promoted) != 0 {
			t.Fatalf("resumed %v, %v, promoted %v", resumed, err, cluster.promoted)
		}
		wantEvents(t, obs.result)
	})
	t.Run("nothing half done", func(t *testing.T) {
		cluster := healthyCluster(3)
		f := newStepsFixture(t, 3, 3, 3, cluster)
		v, obs := f.observe(t, cluster)
		resumed, err := f.b.resumeChange(ctx, v, cluster, obs)
		if err != nil || resumed || obs.result.Step != "" {
			t.Fatalf("resumed %v, %v: %+v", resumed, err, obs.result)
		}
	})
}

func TestStepTowardSpec(t *testing.T) {
	ctx := context.Background()
	t.Run("scale up adds one learner and gives its pod the initial cluster", func(t *testing.T) {
		cluster := healthyCluster(1)
		f := newStepsFixture(t, 3, 1, 1, cluster)
		v, obs := f.observe(t, cluster)
		if err := f.b.stepTowardSpec(ctx, v, cluster, obs); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cluster.added, []string{fmt.Sprintf(peerURLFormat, 1)}) || obs.result.Step != "adding member db-1" || obs.result.Converged {
			t.Fatalf("added %v: %+v", cluster.added, obs.result)
		}
		wantEvents(t, obs.result, backend.Event{Reason: backend.ReasonMemberAdded, Note: fmt.Sprintf("Added member db-1 (ID %x) as a learner", cluster.members[1].ID)})
		replicas, initial := f.statefulSet(t)
		want := "db-0=" + fmt.Sprintf(peerURLFormat, 0) + ",db-1=" + fmt.Sprintf(peerURLFormat, 1)
		if replicas != 2 || initial != want {
			t.Fatalf("StatefulSet replicas %d, initial cluster %q; want 2, %q", replicas, initial, want)
		}
		if f.minAvailable(t) != 2 {
			t.Fatalf("PDB minAvailable %d for 2 members", f.minAvailable(t))
		}
	})
	t.Run("scale down removes the highest ordinal after moving leadership", func(t *testing.T) {
		cluster := healthyCluster(3)
		f := newStepsFixture(t, 1, 3, 3, cluster)
		v, obs := f.observe(t, cluster)
		if err := f.b.stepTowardSpec(ctx, v, cluster, obs); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cluster.movedOff, []uint64{102}) || !slices.Equal(cluster.removed, []uint64{102}) || obs.result.StepReason != backend.StepRemovingMember {
			t.Fatalf("moved leadership off %v, removed %v: %+v", cluster.movedOff, cluster.removed, obs.result)
		}
		wantEvents(t, obs.result, backend.Event{Reason: backend.ReasonMemberRemoved, Note: "Removed member db-2 (ID 66); its volume is deleted with its pod"})
		if replicas, _ := f.statefulSet(t); replicas != 2 {
			t.Fatalf("StatefulSet replicas %d, want 2", replicas)
		}
		if got := f.volumes(t); !slices.Equal(got, []string{"data-db-0", "data-db-1"}) {
			t.Fatalf("volumes %v", got)
		}
	})
	t.Run("as requested: converged once every pod is ready", func(t *testing.T) {
		for ready, converged := range map[int32]bool{3: true, 2: false} {
			cluster := healthyCluster(3)
			f := newStepsFixture(t, 3, 3, ready, cluster)
			v, obs := f.observe(t, cluster)
			if err := f.b.stepTowardSpec(ctx, v, cluster, obs); err != nil {
				t.Fatal(err)
			}
			if obs.result.Converged != converged || obs.result.Step != "" || len(cluster.added)+len(cluster.removed) != 0 {
				t.Fatalf("%d ready pods: %+v", ready, obs.result)
			}
			if f.minAvailable(t) != 2 {
				t.Fatalf("PDB minAvailable %d for 3 members", f.minAvailable(t))
			}
		}
	})
}

func TestSyncStepsOnlyOnAHealthyCluster(t *testing.T) {
	ctx := context.Background()
	cluster := healthyCluster(2)
	cluster.statuses[1] = etcdcluster.EndpointStatus{Err: errors.New("connection refused")}
	f := newStepsFixture(t, 3, 2, 1, cluster)
	res, err := f.b.Sync(ctx, f.inst)
	if err != nil || res.Unhealthy == "" || res.Step != "" || len(cluster.added) != 0 {
		t.Fatalf("sync with an unhealthy member: %+v, %v, added %v", res, err, cluster.added)
	}

	cluster.statuses[1] = etcdcluster.EndpointStatus{Healthy: true, MemberID: 101, Leader: 100}
	res, err = f.b.Sync(ctx, f.inst)
	if err != nil || res.StepReason != backend.StepAddingMember || len(cluster.added) != 1 {
		t.Fatalf("sync on a healthy cluster: %+v, %v, added %v", res, err, cluster.added)
	}

	// No quorum: the members with a pod are reported, unhealthy, and nothing changes.
	cluster.listErr = errors.New("listing members: context deadline exceeded")
	res, err = f.b.Sync(ctx, f.inst)
	if err != nil || res.Unhealthy != cluster.listErr.Error() || len(res.Members) != 3 || res.Step != "" {
		t.Fatalf("sync without quorum: %+v, %v", res, err)
	}
}

// wantEvents fails the test unless the result reports exactly the events want, in order.
func wantEvents(t *testing.T, res *backend.Result, want ...backend.Event) {
	t.Helper()
	if !slices.Equal(res.Events, want) {
		t.Fatalf("events %+v, want %+v", res.Events, want)
	}
}
